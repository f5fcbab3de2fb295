"""simplejpeg's decode (gradcam.inputs.jpeg_fast) gives Pillow's exact pixels for every JPEG it takes, and
None (Pillow decodes) for everything else: the kinds it refuses, damaged, truncated and random files (fuzzed),
too many pixels (checked before the decode), simplejpeg missing, switched off, or failing the self-check."""
from __future__ import annotations

import glob
import io
import os
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

simplejpeg = pytest.importorskip("simplejpeg")

from gradcam.inputs import jpeg_fast  # noqa: E402
from gradcam.inputs.headers import has_orientation  # noqa: E402
from gradcam.inputs.images import load_image  # noqa: E402
from gradcam.inputs.jpeg_fast import decode_jpeg, decode_jpeg_bytes  # noqa: E402

SAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "sample_images", "*.jpg")))
BIG = 10 ** 8


def pillow_pixels(data: bytes) -> np.ndarray:
    """What Pillow gives for these bytes, as gradcam decodes with it (images._decode): upright (EXIF transpose
    where has_orientation says so: an unreadable EXIF block is no orientation), RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return np.asarray((ImageOps.exif_transpose(image) if has_orientation(image) else image).convert("RGB"))


def pillow_or_none(data: bytes) -> np.ndarray | None:
    try:
        return pillow_pixels(data)
    except Exception:
        return None


def photo(width: int, height: int, kind: str = "mixed", seed: int = 0, channels: int = 3) -> np.ndarray:
    """uint8 (height, width, channels): smooth ramps, noise, both, or one flat colour."""
    rng = np.random.default_rng(seed)
    ramps = np.add.outer(np.arange(height) * 9, np.arange(width) * 4)[:, :, None] + np.arange(channels) * 70
    noise = rng.normal(0, 40, (height, width, channels))
    values = {"smooth": ramps % 256, "noise": 128 + 2 * noise, "mixed": ramps % 256 + noise / 2,
              "flat": np.full((height, width, channels), 37 + seed % 200)}[kind]
    return np.clip(values, 0, 255).astype(np.uint8)


def pillow_jpeg(array: np.ndarray, **settings) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, "JPEG", **settings)
    return buffer.getvalue()


def marker_offset(data: bytes, marker: int) -> int:
    """Offset of the first header segment with this marker (walking the segments)."""
    pos = 2
    while data[pos + 1] != marker:
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return pos


def with_segment(data: bytes, marker: int, body: bytes) -> bytes:
    """The JPEG with one more header segment just after its SOI."""
    return data[:2] + bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body + data[2:]


def patched(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1:]


def check_same(data: bytes) -> np.ndarray:
    fast = decode_jpeg_bytes(data, BIG)
    assert fast is not None, "a JPEG the fast path should take was refused"
    expected = pillow_pixels(data)
    assert fast.dtype == np.uint8 and fast.shape == expected.shape and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, expected)
    return fast


# --- Pillow's pixels exactly ---
@settings(max_examples=150, deadline=None)
@given(width=st.integers(1, 70), height=st.integers(1, 70), kind=st.sampled_from(["mixed", "smooth", "noise", "flat"]),
       quality=st.integers(1, 100), subsampling=st.sampled_from([0, 1, 2, "grey"]), progressive=st.booleans(),
       optimize=st.booleans(), restart=st.sampled_from([None, ("restart_marker_blocks", 1),
                                                        ("restart_marker_blocks", 5), ("restart_marker_rows", 1)]),
       seed=st.integers(0, 1000))
def test_pillow_encoded_jpegs_exact(width, height, kind, quality, subsampling, progressive, optimize, restart, seed):
    grey = subsampling == "grey"
    array = photo(width, height, kind, seed, 1 if grey else 3)
    settings = dict(quality=quality, progressive=progressive, optimize=optimize, **dict([restart] if restart else []))
    if not grey:
        settings["subsampling"] = subsampling
    check_same(pillow_jpeg(array, **settings))


@settings(max_examples=60, deadline=None)
@given(width=st.integers(1, 70), height=st.integers(1, 70), kind=st.sampled_from(["mixed", "smooth", "noise"]),
       quality=st.integers(1, 100), subsampling=st.sampled_from(["444", "422", "420", "440", "411", "Gray"]),
       seed=st.integers(0, 1000))
def test_libjpeg_turbo_encoded_jpegs_exact(width, height, kind, quality, subsampling, seed):
    """simplejpeg's encoder writes 4:4:0 and 4:1:1, which Pillow's does not."""
    grey = subsampling == "Gray"
    array = photo(width, height, kind, seed, 1 if grey else 3)
    check_same(simplejpeg.encode_jpeg(array, quality, colorspace="GRAY" if grey else "RGB",
                                      colorsubsampling=subsampling))


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_sample_photos_exact(path):
    fast = decode_jpeg(path, BIG)
    assert fast is not None
    with open(path, "rb") as file:
        np.testing.assert_array_equal(fast, pillow_pixels(file.read()))
    np.testing.assert_array_equal(fast, load_image(path))  # gradcam's Pillow decode itself


@pytest.mark.parametrize("size", [(640, 480), (1023, 767)])
def test_camera_sized_photo_exact(tmp_path, size):
    """A photo as benchmarks/throughput.py makes them (bilinear-enlarged noise, quality 90), from its file."""
    base = np.random.default_rng(0).integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(base).resize(size, Image.BILINEAR).save(path, quality=90)
    np.testing.assert_array_equal(decode_jpeg(path, BIG), pillow_pixels(path.read_bytes()))


def test_usual_adobe_markers_and_upright_exif_taken():
    """Adobe transform 1 (YCbCr) on colour, 0 on greyscale, and EXIF orientation 1 change nothing."""
    colour, grey = pillow_jpeg(photo(33, 21)), pillow_jpeg(photo(33, 21, channels=1))
    adobe = b"Adobe" + bytes([0, 100, 0, 0, 0, 0])
    check_same(with_segment(colour, 0xEE, adobe + b"\x01"))
    check_same(with_segment(grey, 0xEE, adobe + b"\x00"))
    exif = Image.Exif()
    exif[0x0112] = 1
    check_same(pillow_jpeg(photo(33, 21), exif=exif.tobytes()))


def test_bytes_after_the_end_marker_ignored_as_by_pillow():
    """Both decoders stop at the first end-of-image marker (a thumbnail or another image may follow)."""
    colour = pillow_jpeg(photo(33, 21))
    check_same(colour + b"\0" * 100)
    check_same(colour + pillow_jpeg(photo(5, 4, seed=1)))


def test_a_new_writable_array_each_call():
    data = pillow_jpeg(photo(9, 7))
    first, second = decode_jpeg_bytes(data, BIG), decode_jpeg_bytes(data, BIG)
    assert first.flags.writeable and first.flags.owndata and not np.shares_memory(first, second)


# --- refused: None, so that Pillow decodes ---
def refused_kinds() -> dict[str, bytes]:
    colour, grey = pillow_jpeg(photo(24, 16)), pillow_jpeg(photo(24, 16, channels=1))
    sof = marker_offset(colour, 0xC0)
    turned, xmp = Image.Exif(), b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta tiff:Orientation=\"3\"/>"
    turned[0x0112] = 6
    cmyk, mpo = io.BytesIO(), io.BytesIO()
    Image.fromarray(photo(24, 16)).convert("CMYK").save(cmyk, "JPEG")
    Image.fromarray(photo(24, 16)).save(mpo, "MPO", save_all=True, append_images=[Image.fromarray(photo(24, 16))])
    png = io.BytesIO()
    Image.fromarray(photo(24, 16)).save(png, "PNG")
    return {
        "png": png.getvalue(), "cmyk": cmyk.getvalue(), "mpo": mpo.getvalue(),
        "rgb coded (Adobe transform 0)": pillow_jpeg(photo(24, 16), keep_rgb=True),
        "Adobe transform 2 on colour": with_segment(colour, 0xEE, b"Adobe" + bytes([0, 100, 0, 0, 0, 0, 2])),
        "Adobe transform 1 on grey": with_segment(grey, 0xEE, b"Adobe" + bytes([0, 100, 0, 0, 0, 0, 1])),
        "exif orientation 6": pillow_jpeg(photo(24, 16), exif=turned.tobytes()),
        "xmp orientation 3": with_segment(colour, 0xE1, xmp),
        "12-bit": patched(colour, sof + 4, 12),
        "arithmetic (SOF9)": patched(colour, sof + 1, 0xC9),
        "lossless (SOF3)": patched(colour, sof + 1, 0xC3),
        "hierarchical (SOF5)": patched(colour, sof + 1, 0xC5),
        "chroma sampled 2x1": patched(colour, sof + 2 + 2 + 6 + 3 + 1, 0x21),
        "luma sampled 3x1": patched(colour, sof + 11, 0x31),
        "grey sampled 2x2": patched(grey, marker_offset(grey, 0xC0) + 10 + 1, 0x22),
        "arithmetic conditioning (DAC)": with_segment(colour, 0xCC, b"\x00\x10"),
        "two frames": with_segment(colour, 0xC0, colour[sof + 4:sof + 2 + int.from_bytes(colour[sof + 2:sof + 4], "big")]),
        "truncated": colour[:len(colour) * 2 // 3],
        "no end marker": colour[:-2],
        "junk between segments": colour[:marker_offset(colour, 0xDB)] + b"\x00" + colour[marker_offset(colour, 0xDB):],
        "soi only": b"\xff\xd8\xff",
        "empty": b"",
        "too many segments": b"\xff\xd8" + b"\xff\xfe\x00\x02" * 1100 + colour[2:],
    }


@pytest.mark.parametrize("kind", list(refused_kinds()))
def test_refused_kinds_return_none(kind):
    data = refused_kinds()[kind]
    assert decode_jpeg_bytes(data, BIG) is None


def test_refused_kinds_still_decoded_by_pillow_where_they_can():
    """The refusals that matter most are files Pillow reads: they are left to it, not lost."""
    kinds = refused_kinds()
    for kind in ("cmyk", "mpo", "rgb coded (Adobe transform 0)", "exif orientation 6", "xmp orientation 3",
                 "too many segments", "junk between segments", "luma sampled 3x1"):
        assert pillow_or_none(kinds[kind]) is not None, kind
    assert pillow_or_none(kinds["12-bit"]) is None and pillow_or_none(kinds["truncated"]) is None


def test_too_many_pixels_refused_before_decoding(monkeypatch):
    data = pillow_jpeg(photo(30, 20))
    assert decode_jpeg_bytes(data, 600) is not None
    monkeypatch.setattr(simplejpeg, "decode_jpeg", lambda *a, **k: pytest.fail("decoded past the limit"))
    assert decode_jpeg_bytes(data, 599) is None
    sof = marker_offset(data, 0xC0)  # a header that claims 65535 x 65535 over a few bytes of data
    huge = data[:sof + 5] + b"\xff\xff\xff\xff" + data[sof + 9:]
    assert decode_jpeg_bytes(huge, BIG) is None


def test_files(tmp_path):
    data = pillow_jpeg(photo(30, 20))
    (tmp_path / "a.jpg").write_bytes(data)
    np.testing.assert_array_equal(decode_jpeg(tmp_path / "a.jpg", BIG), pillow_pixels(data))
    np.testing.assert_array_equal(decode_jpeg(str(tmp_path / "a.jpg"), BIG), pillow_pixels(data))
    (tmp_path / "big.jpg").write_bytes(data + b"\0" * 2_000_000)  # more bytes than 3 x pixels + 1 MiB
    assert decode_jpeg(tmp_path / "big.jpg", 600) is None
    assert decode_jpeg(tmp_path / "big.jpg", BIG) is not None
    assert decode_jpeg(tmp_path / "missing.jpg", BIG) is None
    assert decode_jpeg(tmp_path, BIG) is None
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert decode_jpeg(tmp_path / "empty.jpg", BIG) is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_not_opened_for_ever(tmp_path, monkeypatch):
    # a FIFO named like a photo (or a file swapped for one after its stat): refused, never blocking on open
    import threading

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(jpeg_fast.os, "stat", lambda path, *a, **k: real_stat(__file__))  # the stat said "file"
    answers = []
    reader = threading.Thread(target=lambda: answers.append(decode_jpeg(fifo, 10**6)), daemon=True)
    reader.start()
    reader.join(10)
    assert answers == [None]


def test_switched_off_by_environment(monkeypatch):
    data = pillow_jpeg(photo(8, 8))
    monkeypatch.setenv("GRADCAM_NO_FAST_JPEG", "1")
    assert decode_jpeg_bytes(data, BIG) is None and not jpeg_fast.enabled()
    monkeypatch.setenv("GRADCAM_NO_FAST_JPEG", "0")
    assert decode_jpeg_bytes(data, BIG) is not None


def test_without_simplejpeg(monkeypatch):
    monkeypatch.setattr(jpeg_fast, "_verdict", None)
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # import simplejpeg -> ImportError
    assert decode_jpeg_bytes(pillow_jpeg(photo(8, 8)), BIG) is None and jpeg_fast._verdict is False


@pytest.mark.parametrize("index", range(len(jpeg_fast._check_images())))
def test_self_check_turns_off_for_one_differing_pixel(monkeypatch, index):
    """A libjpeg-turbo that changed one pixel of any one of the self-check's JPEGs turns the fast path off."""
    images, decode = jpeg_fast._check_images(), simplejpeg.decode_jpeg

    def one_pixel_off(data, **settings):
        rgb = decode(data, **settings)
        if data == images[index]:
            rgb[-1, -1, 0] ^= 1
        return rgb

    monkeypatch.setattr(jpeg_fast, "_verdict", None)
    monkeypatch.setattr(simplejpeg, "decode_jpeg", one_pixel_off)
    assert decode_jpeg_bytes(pillow_jpeg(photo(8, 8)), BIG) is None and jpeg_fast._verdict is False


def test_self_check_covers_each_kind():
    frames = [jpeg_fast._frame(data) for data in jpeg_fast._check_images()]
    assert {frame[3] for frame in frames} == {"444", "422", "420", "440", "411", "Gray"}
    assert (1, 1) in {frame[:2] for frame in frames}
    progressive = [data for data in jpeg_fast._check_images() if b"\xff\xc2" in data[:marker_offset(data, 0xDA)]]
    assert len(progressive) >= 3
    assert jpeg_fast._self_check() is True


# --- fuzzing: never raises, None or exactly Pillow's pixels ---
def check_fuzzed(data: bytes) -> None:
    fast = decode_jpeg_bytes(data, BIG)
    if fast is not None:
        expected = pillow_or_none(data)
        assert expected is not None, "decoded a file Pillow refuses"
        np.testing.assert_array_equal(fast, expected)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [pillow_jpeg(photo(37, 23), quality=80), pillow_jpeg(photo(37, 23), progressive=True, restart_marker_blocks=2),
         pillow_jpeg(photo(20, 13, channels=1)), simplejpeg.encode_jpeg(photo(29, 31), 75, colorsubsampling="440")]


@FUZZ
@given(st.binary(max_size=2000), st.booleans())
def test_fuzz_random_bytes(data, with_soi):
    check_fuzzed(b"\xff\xd8\xff" + data if with_soi else data)


@FUZZ
@given(st.sampled_from(range(len(SEEDS))), st.floats(0, 1))
def test_fuzz_truncated(seed, fraction):
    data = SEEDS[seed]
    check_fuzzed(data[:int(len(data) * fraction)])


@FUZZ
@given(st.sampled_from(range(len(SEEDS))), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                                                     min_size=1, max_size=4))
def test_fuzz_bit_flips(seed, flips):
    data = bytearray(SEEDS[seed])
    for where, bit in flips:
        data[int(len(data) * where)] ^= 1 << bit
    check_fuzzed(bytes(data))


@FUZZ
@given(st.sampled_from(range(len(SEEDS))), st.floats(0, 1), st.binary(min_size=1, max_size=8))
def test_fuzz_spliced_bytes(seed, where, junk):
    data = SEEDS[seed]
    cut = int(len(data) * where)
    check_fuzzed(data[:cut] + junk + data[cut:])
