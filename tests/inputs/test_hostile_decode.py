"""Hostile photos against the fast decode and resize (jpeg_fast, resize_fast, images): crafted JPEG headers
(sizes 0 and 65535, sampling factors, quantisation tables, restart intervals, segment lengths, EXIF and XMP
orientations in odd places, Adobe markers, fill bytes, trailing images, files under another format's name)
and photos of extreme shapes give exactly what the Pillow path gives (the same arrays, or the same one-line
ImageError); a JPEG of more than 500 scans is one ImageError on both paths and one of hundreds is decoded once
(by Pillow), a small frame followed by megabytes is never read whole, a photo thousands of times longer than its
resize is weighted without gigabytes of temporaries, and threads decoding while the compiled resize loads all get
Pillow's pixels."""
from __future__ import annotations

import contextlib
import io
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

simplejpeg = pytest.importorskip("simplejpeg")

from gradcam.errors import GradcamError  # noqa: E402
from gradcam.inputs import images, jpeg_fast, resample_fast, resize_fast  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def fast_paths():
    """The compiled resize loaded where numba is (else both runs below take Pillow's resize), and the fast JPEG
    path on whatever the environment says (GRADCAM_NO_FAST_JPEG restored afterwards)."""
    resample_fast.load(wait=True)
    before = os.environ.pop(jpeg_fast.DISABLE_ENV, None)
    yield
    if before is not None:
        os.environ[jpeg_fast.DISABLE_ENV] = before


@contextlib.contextmanager
def pillow_path():
    """GRADCAM_NO_FAST_JPEG=1 and the compiled resize unloaded: the reference path."""
    saved, before = resize_fast.KERNEL.compiled, os.environ.get(jpeg_fast.DISABLE_ENV)
    os.environ[jpeg_fast.DISABLE_ENV] = "1"
    resize_fast.KERNEL.compiled = None
    try:
        yield
    finally:
        resize_fast.KERNEL.compiled = saved
        if before is None:
            os.environ.pop(jpeg_fast.DISABLE_ENV, None)
        else:
            os.environ[jpeg_fast.DISABLE_ENV] = before


def outcome(path, size, max_size=None, max_pixels=images.DEFAULT_MAX_PIXELS):
    """load_for_model's (photo, model input), or its ImageError's type and message (any other exception fails)."""
    try:
        return images.load_for_model(path, size, max_pixels=max_pixels, max_size=max_size)
    except GradcamError as exc:
        return type(exc).__name__, str(exc)


def assert_as_pillow_path(path, size=(24, 20), max_size=None, max_pixels=images.DEFAULT_MAX_PIXELS):
    fast = outcome(path, size, max_size, max_pixels)
    with pillow_path():
        reference = outcome(path, size, max_size, max_pixels)
    if isinstance(reference[0], str):
        assert fast == reference
        assert "\n" not in reference[1]
    else:
        assert not isinstance(fast[0], str), fast
        for got, want in zip(fast, reference):
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


def jpeg(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def marker_offsets(data: bytes) -> dict[int, int]:
    """{marker: offset} of the first of each marker before the first scan (its offset included)."""
    pos, found = 2, {}
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        found.setdefault(marker, pos)
        if marker == 0xDA:
            break
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    return found


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


RNG = np.random.default_rng(20261202)
PHOTO = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
BASE = jpeg(PHOTO, quality=90)
GREY = jpeg(PHOTO[:, :, 1].copy())
SOF, SOS = marker_offsets(BASE)[0xC0], marker_offsets(BASE)[0xDA]


def sof_patched(data: bytes, offset: int, value: bytes) -> bytes:
    """``data`` with the start-of-frame's bytes from ``offset`` (0: its 0xFF) replaced by ``value``."""
    at = SOF + offset
    return data[:at] + value + data[at + len(value):]


CRAFTED = st.one_of(
    st.tuples(st.just("height"), st.sampled_from([0, 1, 2, 36, 37, 38, 65535]) | st.integers(0, 65535))
    .map(lambda c: sof_patched(BASE, 5, struct.pack(">H", c[1]))),
    st.tuples(st.just("width"), st.sampled_from([0, 1, 2, 52, 53, 54, 65535]) | st.integers(0, 65535))
    .map(lambda c: sof_patched(BASE, 7, struct.pack(">H", c[1]))),
    st.tuples(st.sampled_from([11, 14, 17]), st.integers(0, 255))  # sampling factors of each component
    .map(lambda c: sof_patched(BASE, c[0], bytes([c[1]]))),
    st.tuples(st.sampled_from([12, 15, 18]), st.integers(0, 255))  # quantisation table of each component
    .map(lambda c: sof_patched(BASE, c[0], bytes([c[1]]))),
    st.tuples(st.sampled_from([4, 9]), st.integers(0, 255))  # precision, number of components
    .map(lambda c: sof_patched(BASE, c[0], bytes([c[1]]))),
    st.sampled_from([0xC1, 0xC2, 0xC3, 0xC5, 0xC9, 0xCA, 0xCB, 0xCF, 0xF7])  # another start-of-frame marker
    .map(lambda m: sof_patched(BASE, 1, bytes([m]))),
    st.integers(0, 65535).map(lambda n: BASE[:SOS] + segment(0xDD, struct.pack(">H", n)) + BASE[SOS:]),  # DRI
    st.tuples(st.integers(0xE0, 0xEF), st.integers(0, 65535), st.binary(max_size=40))  # a segment of any length
    .map(lambda c: BASE[:2] + bytes([0xFF, c[0]]) + struct.pack(">H", c[1]) + c[2] + BASE[2:]),
    st.tuples(st.integers(0, 10), st.sampled_from(["first", "second", "after_sof", "after_eoi"]))  # EXIF orientation
    .map(lambda c: _with_exif(c[0], c[1])),
    st.tuples(st.integers(0, 9), st.sampled_from(['tiff:Orientation="{}"', "<tiff:Orientation>{}</tiff:Orientation>"]),
              st.booleans())  # XMP orientation, before or after the frame
    .map(lambda c: _with_xmp(c[1].format(c[0]).encode(), c[2])),
    st.tuples(st.integers(0, 3), st.booleans())  # Adobe marker, colour or grey
    .map(lambda c: (GREY if c[1] else BASE)[:2] + segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00" + bytes([c[0]]))
         + (GREY if c[1] else BASE)[2:]),
    st.integers(1, 40).map(lambda n: BASE[:SOS] + b"\xff" * n + BASE[SOS:]),  # fill bytes
    st.integers(2, len(BASE)).map(lambda n: BASE[:n]),  # truncated
    st.binary(max_size=200).map(lambda junk: BASE + junk),  # trailing bytes
    st.just(BASE + jpeg(PHOTO[::-1].copy())),  # a second image after the first
)


def _with_exif(value: int, where: str) -> bytes:
    app1 = segment(0xE1, exif_orientation(value))
    upright = segment(0xE1, exif_orientation(1))
    return {"first": BASE[:2] + app1 + BASE[2:], "second": BASE[:2] + upright + app1 + BASE[2:],
            "after_sof": BASE[:SOS] + app1 + BASE[SOS:], "after_eoi": BASE + app1}[where]


def _with_xmp(packet: bytes, after_sof: bool) -> bytes:
    xmp = segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>" + packet + b"</x:xmpmeta>")
    return BASE[:SOS] + xmp + BASE[SOS:] if after_sof else BASE[:2] + xmp + BASE[2:]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=CRAFTED, max_size=st.sampled_from([None, 1, 7, 40]), name=st.sampled_from(["a.jpg", "a.png", "a"]))
def test_crafted_jpeg_headers_as_pillow_path(tmp_path, data, max_size, name):
    path = tmp_path / name
    path.write_bytes(data)
    assert_as_pillow_path(path, max_size=max_size)


def test_png_named_jpg_and_jpeg_named_png(tmp_path):
    png = io.BytesIO()
    Image.fromarray(PHOTO).save(png, "PNG")
    (tmp_path / "png.jpg").write_bytes(png.getvalue())
    (tmp_path / "jpeg.png").write_bytes(BASE)
    for name in ("png.jpg", "jpeg.png"):
        assert_as_pillow_path(tmp_path / name, max_size=20)


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (1, 20000), (20000, 1), (3, 9000)])
@pytest.mark.parametrize("kind", ["jpg", "png"])
def test_extreme_shapes_as_pillow_path(tmp_path, shape, kind):
    path = tmp_path / f"photo.{kind}"
    Image.fromarray(RNG.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(path)
    pixels = shape[0] * shape[1]
    for size in ((224, 224), (1, 1), (1, 300), (300, 1)):
        for max_size in (None, 1, 2, 64):
            assert_as_pillow_path(path, size, max_size, max_pixels=pixels)
    assert_as_pillow_path(path, (8, 8), max_pixels=pixels - 1)  # one pixel too many: the same error


def many_scans(scans: int) -> bytes:
    """A progressive 64x64 JPEG whose smallest scan is repeated until it has ``scans`` scans (a few dozen bytes
    each: libjpeg-turbo decodes each over the whole frame, warning of a bogus progression)."""
    data = jpeg(np.full((64, 64, 3), 128, np.uint8), progressive=True)
    starts = jpeg_fast._scan_starts(data)
    ends = starts[1:] + [len(data) - 2]
    smallest = min(range(1, len(starts)), key=lambda i: ends[i] - starts[i])
    return data[:-2] + data[starts[smallest]:ends[smallest]] * (scans - len(starts)) + b"\xff\xd9"


def test_hundreds_of_scans_decoded_once_by_pillow(tmp_path, monkeypatch):
    """Such a file costs libjpeg a decode of the whole frame a scan (2,000 scans of 2000x2000 pixels: 11 s); the
    fast path decoded it first and, at libjpeg's warning of a bogus progression, left it to Pillow: twice the time."""
    path = tmp_path / "scans.jpg"
    path.write_bytes(many_scans(jpeg_fast._MAX_SCANS + 50))
    assert jpeg_fast.enabled()  # the first call's self-check done (it decodes its own JPEGs)
    calls = []
    original = simplejpeg.decode_jpeg
    monkeypatch.setattr(simplejpeg, "decode_jpeg", lambda *a, **k: calls.append(1) or original(*a, **k))
    assert jpeg_fast.decode_jpeg(path, 10 ** 8) is None
    assert calls == []
    assert not isinstance(outcome(path, (8, 8))[0], str)  # Pillow's pixels
    assert_as_pillow_path(path)


def test_thousands_of_scans_refused_on_both_paths(tmp_path, monkeypatch):
    """2,000 scans of 4000x4000 pixels in 156 KB took Pillow 49 s (minutes at 100 megapixels): more than
    SCAN_LIMIT scans is one ImageError, before any decode."""
    path = tmp_path / "scans.jpg"
    path.write_bytes(many_scans(jpeg_fast.SCAN_LIMIT + 1))
    assert jpeg_fast.enabled()
    monkeypatch.setattr(simplejpeg, "decode_jpeg", None)  # never reached
    error = outcome(path, (8, 8))
    assert error == ("ImageError", f"a JPEG of more than {jpeg_fast.SCAN_LIMIT} scans (photos have about 10; each "
                                   "costs a whole decode)")
    assert_as_pillow_path(path)
    path.write_bytes(many_scans(jpeg_fast.SCAN_LIMIT))
    monkeypatch.undo()
    assert_as_pillow_path(path)  # at the limit: decoded (Pillow's pixels)
    assert not isinstance(outcome(path, (8, 8))[0], str)


def test_scans_counted_by_hand(tmp_path):
    baseline, progressive = jpeg(PHOTO), jpeg(PHOTO, progressive=True)
    grey = jpeg(PHOTO[:, :, 0].copy(), progressive=True)
    filler = bytearray(b"\xff\xd8\xff" + bytes(3 << 20))
    filler[3 + (1 << 20) - 1:3 + (1 << 20) + 1] = b"\xff\xda"  # across the first two reads of 1 MiB
    filler[100:102] = b"\xff\xda"
    for name, data, scans in (("baseline", baseline, 1), ("progressive", progressive, 10), ("grey", grey, 6),
                              ("across", bytes(filler), 2), ("png", b"\x89PNG\xff\xda\xff\xda", 0),
                              ("short", b"\xff\xd8", 0)):
        (tmp_path / name).write_bytes(data)
        assert jpeg_fast.scan_count(tmp_path / name) == scans, name
    (tmp_path / "many").write_bytes(many_scans(900))
    assert jpeg_fast.scan_count(tmp_path / "many") == 900  # one read of 1 MiB
    padded = bytearray(many_scans(900) + bytes(8 << 20))
    (tmp_path / "padded").write_bytes(padded + b"\xff\xda")
    assert jpeg_fast.scan_count(tmp_path / "padded", limit=2000) == 901
    assert jpeg_fast.scan_count(tmp_path / "padded", limit=20) == 900  # stops past the limit: its last scan unread
    assert jpeg_fast.scan_count(tmp_path) == 0 and jpeg_fast.scan_count(tmp_path / "missing") == 0
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        assert jpeg_fast.scan_count(tmp_path / "fifo") == 0  # returns at once


def test_small_frame_followed_by_megabytes_not_read_whole(tmp_path):
    """A 16x16 JPEG with 20 MB after it (within 3 * max_pixels): left to Pillow, which reads to the image's end,
    without the fast path reading the file whole first."""
    path = tmp_path / "padded.jpg"
    path.write_bytes(jpeg(PHOTO[:16, :16].copy()) + bytes(20 << 20))
    tracemalloc.start()
    try:
        assert jpeg_fast.decode_jpeg(path, 10 ** 8) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    assert_as_pillow_path(path)


def test_photos_with_large_headers_still_taken_or_as_pillow(tmp_path):
    """A camera-like header (EXIF with a thumbnail, an ICC profile) is still taken; a header past the first MiB
    is left to Pillow: the same pixels either way."""
    thumbnail = jpeg(PHOTO[:8, :8].copy())
    exif = Image.Exif()
    exif[0x0112] = 1
    small = jpeg(PHOTO, exif=exif.tobytes() + thumbnail, icc_profile=bytes(200_000))
    large = BASE[:2] + segment(0xFE, bytes(65000)) * 20 + BASE[2:]
    for name, data, taken in (("small", small, True), ("large", large, False)):
        (tmp_path / f"{name}.jpg").write_bytes(data)
        assert (jpeg_fast.decode_jpeg(tmp_path / f"{name}.jpg", 10 ** 8) is not None) is taken
        assert_as_pillow_path(tmp_path / f"{name}.jpg", max_size=30)


CONCURRENT = textwrap.dedent("""
    import os, sys, threading
    import numpy as np
    from gradcam.inputs import images, resample_fast, resize_fast
    paths = sys.argv[1:]
    os.environ["GRADCAM_NO_FAST_JPEG"] = "1"
    reference = [images.load_for_model(p, (48, 40), max_size=33) for p in paths]
    del os.environ["GRADCAM_NO_FAST_JPEG"]
    wrong, with_kernel = [], []
    def work():
        for _ in range(40):
            for path, want in zip(paths, reference):
                loaded = resize_fast.KERNEL.compiled is not None
                got = images.load_for_model(path, (48, 40), max_size=33)
                with_kernel.append(loaded)
                if not all(np.array_equal(g, w) and g.dtype == w.dtype for g, w in zip(got, want)):
                    wrong.append(path)
    threads = [threading.Thread(target=work) for _ in range(6)]
    resample_fast.load(wait=False)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(len(wrong), any(with_kernel), resample_fast.available())
""")


def test_threads_decoding_while_the_resize_loads(tmp_path):
    """In a fresh process, six threads decode and resize while the compiled resize loads: every result is the
    Pillow path's (a thread never sees a half-loaded kernel)."""
    paths = []
    for index, (height, width) in enumerate(((37, 53), (120, 90), (1, 70), (64, 64))):
        paths.append(str(tmp_path / f"p{index}.jpg"))
        Image.fromarray(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(paths[-1], quality=80)
    done = subprocess.run([sys.executable, "-c", CONCURRENT, *paths], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wrong, any_kernel, available = done.stdout.split()
    assert wrong == "0"
    assert any_kernel == available  # where numba is, some calls took the compiled resize


def test_a_very_long_photo_weighted_a_few_rows_at_a_time():
    """A 1 x 2,000,000 photo resized to 50 wide: 80,001 taps an output. The int32 table (16 MB) is made without
    float64 temporaries of the whole table (the old code peaked at 197 MB: at 1 x 100,000,000 pixels, gigabytes)
    and is not kept once used."""
    tracemalloc.start()
    try:
        bounds, weights = resize_fast.coefficients(2_000_000, 50)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert weights.shape == (50, 80_001) and weights.dtype == np.int32
    assert peak < 1.5 * weights.nbytes
    assert resize_fast.coefficients(2_000_000, 50)[1] is not weights  # not remembered
    assert resize_fast.coefficients(640, 224)[1] is resize_fast.coefficients(640, 224)[1]  # small ones are


@contextlib.contextmanager
def chunk_weights(count: int):
    default = resize_fast._CHUNK_WEIGHTS
    resize_fast._CHUNK_WEIGHTS = count
    try:
        yield
    finally:
        resize_fast._CHUNK_WEIGHTS = default


@settings(max_examples=60, deadline=None)
@given(in_size=st.integers(1, 20_000), out_size=st.integers(1, 300), chunk=st.integers(1, 5000))
def test_coefficients_made_in_chunks_equal_those_made_whole(in_size, out_size, chunk):
    with chunk_weights(1 << 40):  # one chunk: the whole table, as before
        whole = resize_fast._coefficients(in_size, out_size)
    with chunk_weights(chunk):
        chunked = resize_fast._coefficients(in_size, out_size)
    for got, want in zip(chunked, whole):
        assert got.dtype == want.dtype and np.array_equal(got, want)


def test_tables_too_large_for_numpy_left_to_pillow():
    """1 x 30,000,000 pixels to 224: 60 million weights took 7.4 s through NumPy, 1.6 s in Pillow's C loop; a table
    of more than CACHED_WEIGHTS weights is left to Pillow, one just under it taken (Pillow's pixels either way)."""
    if resize_fast.KERNEL.compiled is None:
        pytest.skip("the compiled resize is not loaded here")
    photo = RNG.integers(0, 256, (1, 400_000, 3), dtype=np.uint8)
    assert resize_fast.weight_count(400_000, 50) + resize_fast.weight_count(1, 1) <= resize_fast.CACHED_WEIGHTS
    expected = np.asarray(Image.fromarray(photo).resize((50, 1), Image.BILINEAR))
    np.testing.assert_array_equal(resize_fast.resize(photo, (1, 50)), expected)
    wider = np.concatenate([photo] * 5, axis=1)  # 2,000,000 wide: 4 million weights
    assert resize_fast.weight_count(2_000_000, 50) > resize_fast.CACHED_WEIGHTS
    assert resize_fast.resize(wider, (1, 50)) is None
    assert resize_fast.resize(wider.transpose(1, 0, 2), (50, 1)) is None


@pytest.mark.parametrize("shape", [(1, 2_000_000), (2_000_000, 1)])
def test_a_very_long_png_as_pillow_path(tmp_path, shape):
    path = tmp_path / "long.png"
    Image.fromarray(RNG.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(path, compress_level=1)
    for max_size in (None, 300):
        assert_as_pillow_path(path, (50, 40), max_size, max_pixels=2_000_000)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(st.sampled_from([b"\xff", b"\xda", b"\x00", b"\xd8", b"\xffx"]), max_size=60).map(b"".join),
       jpeg_start=st.booleans())
def test_scan_count_fuzzed(tmp_path, body, jpeg_start):
    data = (b"\xff\xd8\xff" if jpeg_start else b"") + body
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(data)
    expected = data[2:].count(b"\xff\xda") if data.startswith(b"\xff\xd8\xff") else 0
    assert jpeg_fast.scan_count(path) == expected
