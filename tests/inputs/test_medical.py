"""The medical formats: DICOM windows against pydicom's own VOI function, 16-bit depth kept until the
model's input, NIfTI display orientation worked out from world coordinates, and the one-line errors
when the medical extra is missing."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import dicom_file as write_dicom
from PIL import Image

from gradcam.errors import ImageError, UsageError
from gradcam.inputs.images import load_for_model, load_image, resize_for_model
from gradcam.inputs.medical import apply_window, check_readers, parse_window, read_dicom, to_display

pydicom = pytest.importorskip("pydicom")


def ct_pixels(rng: np.random.Generator, shape=(48, 64)) -> np.ndarray:
    """Stored CT values 0-4095 (HU = value - 1024 with the usual intercept)."""
    return rng.integers(0, 4096, shape).astype(np.uint16)


@pytest.mark.parametrize("centre, width", [(40.0, 400.0), (-600.0, 1500.0), (300.0, 2.0), (1000.0, 4000.0)])
def test_the_window_equals_pydicoms_voi_function(tmp_path, centre, width):
    from pydicom.pixels import apply_modality_lut, apply_windowing

    rng = np.random.default_rng(3)
    path = tmp_path / "ct.dcm"
    write_dicom(path, ct_pixels(rng), RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=centre,
                WindowWidth=width)
    dataset = pydicom.dcmread(path)
    hounsfield = apply_modality_lut(dataset.pixel_array, dataset)
    theirs = apply_windowing(hounsfield, dataset)  # onto the stored range shifted by the intercept
    low, high = -1024.0, 65535.0 - 1024.0
    expected = (theirs - low) / (high - low) * 255.0
    grey, is_grey = read_dicom(path)
    assert is_grey and grey.shape == (48, 64)
    np.testing.assert_allclose(grey, expected, atol=1e-6)
    np.testing.assert_allclose(apply_window(hounsfield, centre, width), expected, atol=1e-6)


def test_window_by_hand_and_what_overrides_it(tmp_path):
    # stored 1000, 1064, 1224 with intercept -1024: HU -24, 40, 200; window 40/400 covers [-160, 240)
    pixels = np.array([[1000, 1064, 1224, 0]], np.uint16)
    path = tmp_path / "ct.dcm"
    write_dicom(path, pixels, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)
    grey, _ = read_dicom(path)
    by_hand = [((hu - 39.5) / 399 + 0.5) * 255 for hu in (-24, 40, 200)] + [0.0]
    np.testing.assert_allclose(grey[0], by_hand)
    assert 0 < grey[0, 0] < grey[0, 1] < grey[0, 2] < 255
    # --window overrides the file's: 0/100 covers [-50, 50)
    grey, _ = read_dicom(path, (0.0, 100.0))
    np.testing.assert_allclose(grey[0], [((hu + 0.5) / 99 + 0.5) * 255 for hu in (-24, 40)] + [255, 0])
    # no window in the file: the image's own range
    write_dicom(path, pixels, RescaleSlope=2, RescaleIntercept=-10)
    grey, _ = read_dicom(path)
    np.testing.assert_allclose(grey[0], np.array([1000, 1064, 1224, 0]) / 1224 * 255)
    # MONOCHROME1: bright means low
    write_dicom(path, pixels, "MONOCHROME1")
    np.testing.assert_allclose(read_dicom(path)[0][0], 255 - np.array([1000, 1064, 1224, 0]) / 1224 * 255)


def test_16_bit_depth_reaches_the_model_and_the_photo_is_rounded(tmp_path):
    # a smooth ramp of 16-bit values in a narrow window: the model input keeps the fractions
    pixels = (30000 + np.add.outer(np.arange(40), np.arange(60)) * 7).astype(np.uint16)
    path = tmp_path / "ramp.dcm"
    write_dicom(path, pixels, WindowCenter=30400, WindowWidth=1000)
    grey, _ = read_dicom(path)
    photo, model_input = load_for_model(path, (20, 30))
    np.testing.assert_array_equal(photo, np.repeat(np.rint(grey).astype(np.uint8)[..., None], 3, axis=2))
    np.testing.assert_array_equal(load_image(path), photo)
    # bilinear as for photos, but of the unrounded values
    expected = np.asarray(Image.fromarray(grey.astype(np.float32), mode="F").resize((30, 20), Image.BILINEAR))
    np.testing.assert_allclose(model_input[..., 0], expected, rtol=1e-6)
    assert np.all(model_input[..., 0] == model_input[..., 2])
    assert np.abs(model_input - np.rint(model_input)).max() > 0.1  # not rounded to 8 bits
    assert np.abs(model_input - resize_for_model(photo, (20, 30))).max() < 1.0  # yet the same picture


def test_a_dicom_file_without_its_extension_is_known_by_its_preamble(tmp_path):
    path = tmp_path / "IM0001"
    write_dicom(path, np.full((8, 8), 500, np.uint16), WindowCenter=500, WindowWidth=100)
    assert load_image(path).shape == (8, 8, 3)


def test_dicom_errors_are_one_line(tmp_path):
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    with pytest.raises(ImageError, match="not a readable DICOM file|a DICOM file without an image"):
        load_image(broken)
    (tmp_path / "empty.dcm").write_bytes(b"")
    for path, message in ((tmp_path / "empty.dcm", "empty file"), (tmp_path / "gone.dcm", "cannot read the file")):
        for read in (load_image, lambda p: load_for_model(p, (8, 8))):
            with pytest.raises(ImageError, match=message):
                read(path)
    big = tmp_path / "big.dcm"
    write_dicom(big, np.zeros((100, 100), np.uint16))
    with pytest.raises(ImageError, match="image is too large: 100x100 pixels is more than the limit of 5,000"):
        load_image(big, max_pixels=5000)


def test_parse_window():
    assert parse_window("40,400") == (40.0, 400.0) and parse_window("-600,1500.5") == (-600.0, 1500.5)
    for text in ("40", "40,0", "a,b", "40,400,1"):
        with pytest.raises(ValueError):
            parse_window(text)


def world_axes(affine: np.ndarray, shape) -> list[np.ndarray]:
    """The world x (to the right), y (to the front), z (up) coordinates of every voxel (RAS+ millimetres)."""
    index = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1).astype(float)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    return [world[..., axis] for axis in range(3)]


@pytest.mark.parametrize("affine", [
    np.diag([1.0, 1.0, 1.0, 1.0]),  # RAS
    np.array([[-1.5, 0, 0, 90.0], [0, -1.5, 0, 120.0], [0, 0, 1.5, -60.0], [0, 0, 0, 1]]),  # LPS
    np.array([[0, 0, 2.0, 0], [0, -1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]]),  # axes S, P, R: permuted
])
def test_nifti_volumes_are_drawn_top_down_front_up_right_on_the_left(affine):
    pytest.importorskip("nibabel")
    shape = (5, 6, 7)
    x, y, z = to_display(affine, *world_axes(affine, shape))
    assert np.all(np.diff(z, axis=0) < 0)  # axial slices from the top down
    assert np.all(np.diff(y, axis=1) < 0)  # rows from the front to the back: anterior up
    assert np.all(np.diff(x, axis=2) < 0)  # columns to the patient's left: their right on the viewer's left
    (unchanged,) = to_display(None, np.arange(8.0).reshape(2, 2, 2))
    np.testing.assert_array_equal(unchanged, np.arange(8.0).reshape(2, 2, 2))


def test_a_missing_extra_is_one_line_before_the_model_loads(tmp_path, monkeypatch, capsys):
    from gradcam.cli import main

    scan = tmp_path / "scan.dcm"
    write_dicom(scan, np.zeros((8, 8), np.uint16))
    volume = tmp_path / "head.nii.gz"
    volume.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(UsageError, match=r'reading DICOM files needs pydicom: pip install nibabel "pydicom>=3"'):
        check_readers([scan])
    with pytest.raises(UsageError, match=r'reading NIfTI volumes needs nibabel: pip install nibabel "pydicom>=3"'):
        check_readers([volume, scan])  # every input needs a missing extra
    check_readers([tmp_path / "a.jpg", tmp_path / "b.npy"])  # nothing needed
    check_readers([tmp_path / "a.jpg", scan])  # only some need it: each of those fails alone
    assert main([str(scan), "--model", "vgg19", "--weights", "random", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == 'gradcam: error: reading DICOM files needs pydicom: pip install nibabel "pydicom>=3"'


def test_a_missing_extra_fails_only_the_files_that_need_it(tiny_model_file, tmp_path, monkeypatch, capsys):
    from gradcam.cli import main

    folder = tmp_path / "mixed"
    folder.mkdir()
    write_dicom(folder / "scan.dcm", np.zeros((8, 8), np.uint16))
    Image.new("RGB", (20, 16), (200, 30, 30)).save(folder / "photo.png")
    monkeypatch.setitem(sys.modules, "pydicom", None)
    assert main([str(folder), "--model", str(tiny_model_file), "-o", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "1 explained, 0 skipped, 1 failed" in captured.out
    assert f'failed: {folder / "scan.dcm"}: reading DICOM files needs pydicom: pip install nibabel "pydicom>=3"' \
        in captured.err


def test_cli_explains_dicom_with_its_window_and_a_new_window_redoes(tiny_model_file, tmp_path, capsys):
    from gradcam.cli import main
    from gradcam.outputs.manifest import input_records, read_records

    rng = np.random.default_rng(8)
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("a.dcm", "b.DCM"):
        write_dicom(folder / name, ct_pixels(rng), RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40,
                    WindowWidth=400)
    out = tmp_path / "out"
    command = [str(folder), "--model", str(tiny_model_file), "-o", str(out), "--save-npy"]
    assert main(command) == 0
    assert "2 explained" in capsys.readouterr().out
    assert np.asarray(Image.open(out / "a.dcm.png")).shape[:2] == (48, 64)
    assert np.load(out / "b.DCM.npy").shape == (48, 64)
    assert main(command + ["--window=-600,1500"]) == 0  # a negative centre needs the = form
    assert "2 explained (2 redone" in capsys.readouterr().out
    records = input_records(read_records(out / "manifest.jsonl"))
    assert [r["settings"]["window"] for r in records] == [None, None, [-600.0, 1500.0], [-600.0, 1500.0]]
    assert main(command + ["--window", "40"]) == 2
    assert "is not CENTRE,WIDTH" in capsys.readouterr().err


def pydicom_test_file(name: str):
    """One of the DICOM files that pydicom ships in its package (never downloaded)."""
    from pathlib import Path

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.is_file():
        pytest.skip(f"pydicom does not ship {name} here")
    return path


def test_colour_dicom_is_rgb_once_ybr_converted_by_pillow_too():
    # YBR_FULL_422 pixels: pydicom gives RGB; Pillow's own YCbCr conversion of the raw values agrees
    from pydicom.pixels import pixel_array

    path = pydicom_test_file("SC_ybr_full_422_uncompressed.dcm")
    raw = pixel_array(pydicom.dcmread(path), as_rgb=False)
    by_pillow = np.asarray(Image.fromarray(raw, mode="YCbCr").convert("RGB"), np.int16)
    photo = load_image(path)
    assert photo.shape == raw.shape
    assert np.abs(photo.astype(np.int16) - by_pillow).max() <= 3


def test_palette_colour_dicom_goes_through_its_colour_tables():
    path = pydicom_test_file("examples_palette.dcm")
    dataset = pydicom.dcmread(path)
    entries, first, bits = dataset.RedPaletteColorLookupTableDescriptor
    tables = [np.frombuffer(dataset[f"{c}PaletteColorLookupTableData"].value, np.uint16 if bits == 16 else np.uint8)
              for c in ("Red", "Green", "Blue")]
    index = np.clip(dataset.pixel_array.astype(int) - first, 0, entries - 1)
    by_hand = np.stack([table[index] for table in tables], axis=-1) * (255.0 / (2**bits - 1))
    photo = load_image(path)
    np.testing.assert_array_equal(photo, np.rint(by_hand).astype(np.uint8))
    assert len({tuple(c) for c in photo.reshape(-1, 3)[::97]}) > 10  # colours, not greys


def test_dicom_without_an_image_or_decoder_says_so(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"  # RT Plan Storage: no pixels
    meta.MediaStorageSOPInstanceUID = generate_uid()
    plan = Dataset()
    plan.file_meta = meta
    plan.SOPClassUID = meta.MediaStorageSOPClassUID
    plan.save_as(tmp_path / "plan.dcm", enforce_file_format=True)
    with pytest.raises(ImageError, match=r"^a DICOM file without an image \(RT Plan Storage\): no pixel data$"):
        load_image(tmp_path / "plan.dcm")
    compressed = tmp_path / "jls.dcm"
    write_dicom(compressed, np.zeros((8, 8), np.uint16))
    dataset = pydicom.dcmread(compressed)
    dataset.file_meta.TransferSyntaxUID = JPEGLSLossless
    dataset.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not really JPEG-LS \xff\xd9"])
    dataset.save_as(compressed)
    with pytest.raises(ImageError, match="cannot decode the DICOM pixels"):
        load_image(compressed)
