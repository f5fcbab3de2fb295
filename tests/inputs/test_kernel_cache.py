"""A damaged or hostile file where a kernel's cached machine code belongs is passed over (the kernel is compiled
again and the file replaced), never trusted, and never hangs the loader."""
from __future__ import annotations

import json
import os
import threading

import pytest

from gradcam.inputs import kernel_cache, resample_fast

pytest.importorskip("llvmlite")


@pytest.fixture
def cache_file(tmp_path, monkeypatch):
    """(the render kernel's cache key, the path its cache file would have in a private cache folder)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    key = kernel_cache.key(resample_fast._kernel)
    folder = tmp_path / "gradcam"
    folder.mkdir()
    return key, folder / kernel_cache._file_name(key)


def header(key, **changes) -> bytes:
    values = {"key": key, "symbol": "kernel", "sha256": "0" * 64, **changes}
    return json.dumps(values).encode() + b"\n"


@pytest.mark.parametrize("content", [
    b"[1]\ncode",  # a header that is not an object
    b'"text"\ncode',
    b"{not json\ncode",
    b"",
    b"no newline at all",
])
def test_a_header_that_is_not_an_object_is_passed_over(cache_file, content):
    key, path = cache_file
    path.write_bytes(content)
    assert kernel_cache.load(key) is None


@pytest.mark.parametrize("symbol", [None, 3, ["kernel"]])
def test_a_header_without_a_symbol_is_passed_over(cache_file, symbol):
    import hashlib

    key, path = cache_file
    code = b"\x7fELF not really"
    changes = {"sha256": hashlib.sha256(code).hexdigest()}
    data = {"key": key, **changes} if symbol is None else {"key": key, "symbol": symbol, **changes}
    path.write_bytes(json.dumps(data).encode() + b"\n" + code)
    assert kernel_cache.load(key) is None  # before: KeyError / TypeError, the kernel off for the whole process


def test_a_code_whose_digest_does_not_match_is_passed_over(cache_file):
    key, path = cache_file
    path.write_bytes(header(key) + b"garbage object code")
    assert kernel_cache.load(key) is None


def test_a_folder_or_a_large_file_is_passed_over(cache_file, monkeypatch):
    key, path = cache_file
    path.mkdir()
    assert kernel_cache.load(key) is None
    path.rmdir()
    path.write_bytes(header(key) + b"x" * 1000)
    monkeypatch.setattr(kernel_cache, "MAX_FILE_BYTES", 500)
    assert kernel_cache._read(path) is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_the_cache_file_does_not_hang_the_loader(cache_file):
    key, path = cache_file
    os.mkfifo(path)
    answers = []
    reader = threading.Thread(target=lambda: answers.append(kernel_cache.load(key)), daemon=True)
    reader.start()
    reader.join(10)
    assert answers == [None]  # before: blocked in open() for ever


def test_the_key_names_the_defining_file_and_the_function_without_tokenizing_it(tmp_path, monkeypatch):
    import importlib.util
    import inspect

    def load(text: str, name: str):
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    source = "def kernel(a):\n    a[0] = 1\n\n\ndef other(a):\n    a[0] = 1\n"
    first = load(source, "first")
    monkeypatch.setattr(inspect, "getsource", lambda function: (_ for _ in ()).throw(AssertionError("tokenized")))
    same = kernel_cache.key(first.kernel)
    assert kernel_cache.key(load(source, "again").kernel)["source"] == same["source"]  # same text, same name
    assert kernel_cache.key(first.other)["source"] != same["source"]  # another function of the file
    edited = load(source + "\n# a comment\n", "edited")
    assert kernel_cache.key(edited.kernel)["source"] != same["source"]  # any edit of the module
    monkeypatch.undo()
    (tmp_path / "edited.py").unlink()  # the file gone: its source too (the kernel then stays off: LazyKernel.error)
    with pytest.raises(OSError):
        kernel_cache.key(edited.kernel)


def _status_returns(compiled) -> list[str]:
    """The status codes numba's compiled function (the one the cfunc wrapper calls) returns, from its LLVM IR."""
    import re

    ir = compiled.inspect_llvm()
    inner = [line for line in ir.splitlines() if line.startswith("define") and "@cfunc." not in line
             and "@_ZN" in line]
    assert len(inner) == 1, inner
    body = ir[ir.index(inner[0]):]
    body = body[: body.index("\n}")]
    return re.findall(r"\bret i32 (\S+)", body)


def _may_raise(values_p, divisor):  # pragma: no cover - compiled by numba
    values_p[0] = values_p[0] // divisor  # ZeroDivisionError where divisor is 0


def test_the_kernels_never_report_an_exception_so_numbas_error_helpers_are_never_called():
    # the cached machine code refers to numba_gil_ensure & co. (in a branch for an exception): a process that
    # loaded it without numba would crash there. The branch is dead while the kernel's only status is 0.
    pytest.importorskip("numba")
    from gradcam.inputs import resize_fast
    from gradcam.outputs import png_huffman

    for kernel in (resample_fast.KERNEL, resize_fast.KERNEL, png_huffman.BLOCK):
        returns = _status_returns(kernel.numba_cfunc())
        assert returns and set(returns) == {"0"}, (kernel.function.__name__, returns)
    raising = resample_fast.LazyKernel(_may_raise, ("i64*", "i64")).numba_cfunc()
    assert set(_status_returns(raising)) - {"0"}  # what the check catches: a kernel that can raise
