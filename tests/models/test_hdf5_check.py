"""HDF5 datasets that declare far more bytes than they store are refused before Keras reads them whole."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from conftest import build_tiny_model

from gradcam.errors import WeightsError
from gradcam.models.hdf5_check import FREE_BYTES, MAX_EXPANSION, check_declared_sizes
from gradcam.models.loading import load_model_file, load_weights_file

h5py = pytest.importorskip("h5py")

#: 256 MiB of float32 declared in chunks never written: a few KB on disk, Keras would read it all
HUGE = (8192, 8192)


def _swap_kernel(handle, shape=HUGE, **options) -> str:
    """Replace the first 4-D dataset (a conv kernel) of an open HDF5 file by an empty chunked one of ``shape``."""
    names: list[str] = []
    handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) and item.ndim == 4
                      else None)
    del handle[names[0]]
    handle.create_dataset(names[0], shape=shape, dtype="f4", chunks=(1024, 1024), **options)
    return names[0]


def test_a_weights_file_declaring_a_huge_kernel_is_one_line_before_keras_reads_it(tmp_path):
    model = build_tiny_model()
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "r+") as handle:
        _swap_kernel(handle)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightsError, match=r"declares 268435456 bytes but stores 0") as raised:
        load_weights_file(model, path, "tiny")
    assert len(str(raised.value).splitlines()) == 1
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def _rezip(source, target, compression: int, swap: bool) -> None:
    """``source`` .keras written again with ``compression``; with ``swap`` its weights' first kernel made huge."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", compression) as out:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "model.weights.h5" and swap:
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "r+") as handle:
                    _swap_kernel(handle)
                data = buffer.getvalue()
            out.writestr(info.filename, data)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_keras_model_file_declaring_a_huge_kernel_is_refused(tmp_path, compression):
    source = tmp_path / "m.keras"
    build_tiny_model().save(source)
    crafted = tmp_path / "crafted.keras"
    _rezip(source, crafted, compression, swap=True)
    assert crafted.stat().st_size < 100_000
    with pytest.raises(WeightsError, match="cannot load model .*declares 268435456 bytes"):
        load_model_file(crafted)
    plain = tmp_path / "plain.keras"  # the same file without the swap loads, deflated or not
    _rezip(source, plain, compression, swap=False)
    assert len(load_model_file(plain).weights) == len(build_tiny_model().weights)


def test_a_deflated_weights_member_that_inflates_past_kerass_bomb_rule_is_refused(tmp_path, monkeypatch):
    from gradcam.models import hdf5_check

    source = tmp_path / "m.keras"
    build_tiny_model().save(source)
    deflated = tmp_path / "deflated.keras"
    _rezip(source, deflated, zipfile.ZIP_DEFLATED, swap=False)
    check_declared_sizes(deflated, "model")
    monkeypatch.setattr(hdf5_check, "MEMBER_FLOOR_BYTES", 1000)  # the real floor, 256 MiB, is slow to write
    monkeypatch.setattr(hdf5_check, "MAX_MEMBER_EXPANSION", 1)
    with pytest.raises(WeightsError, match="model.weights.h5' inflates"):
        check_declared_sizes(deflated, "model")


def test_a_legacy_h5_model_file_declaring_a_huge_kernel_is_refused(tmp_path):
    path = tmp_path / "m.h5"
    build_tiny_model().save(path)
    with h5py.File(path, "r+") as handle:
        _swap_kernel(handle)
    with pytest.raises(WeightsError, match="declares 268435456 bytes but stores 0"):
        load_model_file(path)


def test_saved_and_compressed_files_pass(tmp_path):
    model = build_tiny_model()
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    model.save_weights(tmp_path / "w.weights.h5")
    for name in ("m.keras", "m.h5", "w.weights.h5"):
        check_declared_sizes(tmp_path / name, "model")
    # 64 MiB of zeros through deflate, the densest a real dataset gets (~1000:1), is not refused
    with h5py.File(tmp_path / "zeros.h5", "w") as handle:
        handle.create_dataset("zeros", data=np.zeros((4096, 4096), np.float32), chunks=(1024, 1024),
                              compression="gzip", compression_opts=9)
    with h5py.File(tmp_path / "zeros.h5", "r") as handle:
        stored = handle["zeros"].id.get_storage_size()
    assert 1 << 26 > MAX_EXPANSION * stored / 2 and 1 << 26 <= MAX_EXPANSION * stored + FREE_BYTES
    check_declared_sizes(tmp_path / "zeros.h5", "weights")


def test_files_h5py_cannot_open_are_left_to_keras(tmp_path):
    for name, content in (("not.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 100), ("junk.keras", b"PK\x03\x04junk"),
                          ("empty.weights.h5", b"")):
        (tmp_path / name).write_bytes(content)
        check_declared_sizes(tmp_path / name, "weights")  # no error of its own
