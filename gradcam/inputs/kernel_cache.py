"""The machine code of :mod:`.resample_fast`'s kernel, kept on disk so that a process loads it with llvmlite
alone (~0.08 s of CPU) instead of importing numba and loading numba's own cache (~0.7-0.9 s: its typing
and lowering registries are built before any cached function is looked up).

A cache file holds one JSON header line (the key, the symbol, the object code's SHA-256) and the object code
numba compiled. It is used only where every part of its key is the same: the source file that defines the kernel (its C signature included),
the numba, llvmlite and Python versions, and the LLVM target (triple, CPU name and features, numba's CPU
environment settings) it was compiled for. A new file is kept only once a fresh Python process, with llvmlite
and no numba, has linked it (:func:`loads_alone`). Files are written whole (a temporary file renamed into place).
Imports numba only in :func:`save` and :func:`numba_signature`, when numba is compiling anyway.
"""
from __future__ import annotations

import ctypes
import hashlib
import inspect
import json
import os
import platform
import sys
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from .regular import open_regular

#: the header's version: a file of another format is ignored (and replaced)
FORMAT = 1
_CTYPES = {"i32": ctypes.c_int32, "i64": ctypes.c_int64}


def cache_dirs() -> list[Path]:
    """Where cache files are looked for, then written, in order: ``$NUMBA_CACHE_DIR/gradcam`` where set, else
    the package's ``__pycache__`` and the user's cache (``$XDG_CACHE_HOME`` or ``~/.cache``)/gradcam."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return [Path(os.environ["NUMBA_CACHE_DIR"]) / "gradcam"]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "gradcam"
    return [Path(__file__).resolve().parent / "__pycache__", user]


def key(function) -> dict:
    """What the kernel's machine code depends on (imports llvmlite, not numba)."""
    settings = {name: os.environ.get(name) for name in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_OPT",
                                                        "NUMBA_ENABLE_AVX", "NUMBA_BOUNDSCHECK", "NUMBA_FASTMATH")}
    return {"format": FORMAT, "source": _source_digest(function), **_installed(), "settings": settings}


@lru_cache(maxsize=1)
def _installed() -> dict:
    """The versions and the target, which do not change while a process runs (looked up once: ~1 ms a kernel)."""
    import llvmlite

    return {"numba": metadata.version("numba"), "llvmlite": llvmlite.__version__, "python": sys.version,
            "machine": platform.machine(), "target": list(host_target())}


def _source_digest(function) -> str:
    """SHA-256 of the source file that defines ``function`` and of its qualified name: any edit of that module
    makes its kernels new (read whole, ~20 us, where ``inspect.getsource`` tokenizes the module: ~10 ms a kernel,
    four kernels a run); the function's own source where the file cannot be read."""
    try:
        with open(function.__code__.co_filename, "rb") as handle:
            text = handle.read()
    except (OSError, AttributeError):
        text = inspect.getsource(function).encode()
    return hashlib.sha256(text + b"\0" + function.__qualname__.encode()).hexdigest()


def host_target() -> tuple[str, str, str]:
    """(triple, CPU name, CPU features) of this process, as numba's codegen names its target."""
    import llvmlite.binding as llvm

    return llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


def _file_name(cache_key: dict) -> str:
    digest = hashlib.sha256(json.dumps(cache_key, sort_keys=True).encode()).hexdigest()
    return f"resample_fast-kernel-{digest[:32]}.bin"


def load(cache_key: dict) -> tuple[object, int] | None:
    """(llvmlite's execution engine, which must be kept alive; the kernel's address) from the first cache file
    with this key, or None where there is none (or it is damaged: a file that is not what :func:`save` writes
    is passed over, and replaced at the next compile)."""
    for folder in cache_dirs():
        read = _read(folder / _file_name(cache_key))
        if read is None:
            continue
        header, code = read
        if (header.get("key") != cache_key or header.get("sha256") != hashlib.sha256(code).hexdigest()
                or not isinstance(header.get("symbol"), str)):
            continue
        engine, address = _engine(code, header["symbol"])
        if address:
            return engine, address
    return None


#: the largest cache file read (the kernels' object code is a few hundred KB)
MAX_FILE_BYTES = 64 << 20


def _read(path: Path) -> tuple[dict, bytes] | None:
    """(the header, a dict; the object code) of a cache file, opened without blocking (a FIFO put in its place
    must not hang the loader) and read only as a regular file of at most :data:`MAX_FILE_BYTES`; None otherwise."""
    try:
        opened = open_regular(path)
        if opened is None:
            return None
        handle, status = opened
        with handle:
            if status.st_size > MAX_FILE_BYTES:
                return None
            data = handle.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError):
        return None
    line, newline, code = data.partition(b"\n")
    try:
        header = json.loads(line) if newline else None
    except ValueError:
        return None
    return (header, code) if isinstance(header, dict) else None


def _engine(code: bytes, symbol: str) -> tuple[object, int]:
    """(an llvmlite MCJIT engine holding the object ``code``, the address of ``symbol`` in it, 0 if absent)."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target, cpu, features = host_target()
    machine = llvm.Target.from_triple(target).create_target_machine(cpu=cpu, features=features, jit=True)
    module = llvm.parse_assembly("")
    module.triple = target
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.add_object_file(llvm.ObjectFileRef.from_data(code))
    engine.finalize_object()
    return engine, engine.get_function_address(symbol)


#: run in a fresh interpreter on a new cache file: the object code links with nothing but llvmlite loaded
#: (an unresolved symbol would abort the process that loads it: that must not be a run)
_CHECK = ("import json, sys\nfrom gradcam.inputs.kernel_cache import _engine\n"
          "with open(sys.argv[1], 'rb') as f:\n    header = json.loads(f.readline()); code = f.read()\n"
          "print('loads' if _engine(code, header['symbol'])[1] else 'missing')")


def loads_alone(path: Path) -> bool:
    """Whether a fresh Python process (llvmlite only, no numba) loads the cache file at ``path``."""
    import subprocess

    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    try:
        done = subprocess.run([sys.executable, "-c", _CHECK, str(path)], env=env, capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip() == "loads"


def save(cache_key: dict, compiled) -> bool:
    """Write a numba ``cfunc``'s object code to the first cache folder that takes it, once a fresh process
    has loaded it (:func:`loads_alone`); False where none does, or where the code was not compiled for the
    target the key names."""
    library = compiled._library
    if list(library.codegen.magic_tuple()) != cache_key["target"]:
        return False
    _, kind, (code, _) = library.serialize_using_object_code()
    if kind != "object":
        return False
    header = {"key": cache_key, "symbol": compiled.native_name, "sha256": hashlib.sha256(code).hexdigest()}
    data = json.dumps(header).encode() + b"\n" + code
    for folder in cache_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".kernel.", suffix=".part", dir=folder)
        except OSError:
            continue
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(temporary, 0o644)  # readable by every user of a shared installation, as numba's cache
            if not loads_alone(Path(temporary)):
                return False
            os.replace(temporary, folder / _file_name(cache_key))
            return True
        except OSError:
            continue
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return False


def numba_signature(signature: tuple):
    """numba's type of a C signature written as ("f32*", "i64", ...) (a void function)."""
    from numba import types

    names = {"f32": types.float32, "f64": types.float64, "i32": types.int32, "i64": types.int64, "u8": types.uint8,
             "u32": types.uint32, "u64": types.uint64}
    return types.void(*(types.CPointer(names[kind[:-1]]) if kind.endswith("*") else names[kind] for kind in signature))


def ctypes_function(signature: tuple, address: int):
    """The C function at ``address`` as a ctypes function (the GIL is released while it runs)."""
    arguments = [ctypes.c_void_p if kind.endswith("*") else _CTYPES[kind] for kind in signature]
    return ctypes.CFUNCTYPE(None, *arguments)(address)
