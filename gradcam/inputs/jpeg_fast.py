"""A faster JPEG decode with Pillow's exact pixels: simplejpeg (libjpeg-turbo's TurboJPEG API) straight into a
uint8 (H, W, 3) array, for the JPEGs where it gives what Pillow gives, and None for every other file, so the
caller decodes those with Pillow as before.

Taken: 8-bit baseline, extended or progressive Huffman JPEGs, greyscale or YCbCr with 4:4:4, 4:2:2, 4:2:0,
4:4:0 or 4:1:1 subsampling, any restart interval, upright (no EXIF/XMP orientation other than 1), of at
most ``max_pixels`` pixels (read from the header before decoding). Left to Pillow (None): anything else
(not a JPEG, 12-bit, lossless, hierarchical, arithmetic-coded, CMYK/YCCK, RGB-coded, Adobe transforms
other than the usual, unusual sampling factors, MPO, turned by EXIF, more than 100 scans), a file that
libjpeg-turbo decodes only with a warning (truncated or damaged: Pillow then gives its one-line error or its
own pixels), a file whose header Pillow cannot open, simplejpeg not installed, or ``GRADCAM_NO_FAST_JPEG=1``.

The decoder is libjpeg-turbo as Pillow's, both with their defaults: the accurate integer DCT (ISLOW),
fancy upsampling, block smoothing. simplejpeg bundles its own libjpeg-turbo, which need not be Pillow's, so
the first call compares the two on JPEGs made in memory (each subsampling, greyscale, progressive, a
progressive file missing its last scans, restart markers, odd sizes) and turns the fast path off for the
process if any pixel differs.
"""
from __future__ import annotations

import io
import os
import threading
import warnings

import numpy as np

from .headers import has_orientation, scan_markers
from .regular import open_regular

#: Environment variable that turns the fast path off ("1"; "" or "0" leave it on).
DISABLE_ENV: str = "GRADCAM_NO_FAST_JPEG"

_SOF_TAKEN = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive (Huffman)
_SOF_ANY = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # every start-of-frame marker
_SKIPPED = frozenset({0xC4, 0xDB, 0xDD, 0xFE} | set(range(0xE0, 0xF0)))  # DHT, DQT, DRI, COM, APPn
#: luma (h, v) sampling factors, chroma at (1, 1), and simplejpeg's name for the subsampling
_SUBSAMPLING = {(1, 1): "444", (2, 1): "422", (2, 2): "420", (1, 2): "440", (4, 1): "411"}
_MAX_SEGMENTS = 1024  # header segments before the first scan (a few dozen in practice)
_HEAD_BYTES = 1 << 20  # a file's first bytes, read (and its header checked) before the rest
_BYTES_PER_PIXEL = 6  # a file of more bytes a pixel of its frame (+ 4 MiB) is left unread (q100 4:4:4 noise: 4.1)
_MAX_SCANS = 100  # a file of more scans is left to Pillow, not decoded twice (see SCAN_LIMIT)

_verdict: bool | None = None  # the self-check's answer, once made
_lock = threading.Lock()


def decode_jpeg(path: str | os.PathLike, max_pixels: int) -> np.ndarray | None:
    """The upright photo of the JPEG file at ``path`` exactly as gradcam's Pillow decode gives it
    (images._decode: ``np.asarray(Image.open(path).convert("RGB"))``, EXIF-turned where
    headers.has_orientation says so; this module takes only upright files): a new, writable, C-contiguous uint8 (H, W, 3)
    array; None where this module leaves the file to Pillow (see the module's docstring), including
    files of more than ``max_pixels`` pixels (checked from the header, before decoding), files larger
    than 6 bytes a pixel of their frame + 4 MiB or ``3 * max_pixels`` bytes + 1 MiB (never read whole) and
    files of more than 100 scans (each decoded over the whole frame). Never raises."""
    if not enabled():
        return None
    data = _read(path, max_pixels)
    return None if data is None else _decode_checked(data, max_pixels)


def decode_jpeg_bytes(data: bytes, max_pixels: int) -> np.ndarray | None:
    """:func:`decode_jpeg` for a JPEG file's bytes."""
    if not enabled() or not isinstance(data, (bytes, bytearray)):
        return None
    return _decode_checked(bytes(data), max_pixels)


def enabled() -> bool:
    """Whether the fast path is on: simplejpeg importable, ``GRADCAM_NO_FAST_JPEG`` not set, and the
    first call's self-check passed (made once per process)."""
    global _verdict
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    if _verdict is None:
        with _lock:
            if _verdict is None:
                _verdict = _self_check()
    return _verdict


def _read(path: str | os.PathLike, max_pixels: int) -> bytes | None:
    """The bytes of a regular file whose header (in its first MiB) is one this module takes, of at most ``max_pixels``
    pixels, and that holds at most 6 bytes a pixel of that frame + 4 MiB (and 3 * max_pixels + 1 MiB: a small frame
    with megabytes after it is never read whole); None otherwise, or when it cannot be read or grows while read."""
    try:
        opened = open_regular(path)
        if opened is None:
            return None
        file, status = opened
        with file:
            size = status.st_size
            if size > 3 * max(int(max_pixels), 0) + (1 << 20):
                return None
            head = file.read(min(size, _HEAD_BYTES))
            frame = _frame(head)
            if frame is None or frame[0] * frame[1] > max_pixels or size > _BYTES_PER_PIXEL * frame[0] * frame[1] + (
                    4 << 20):
                return None
            # the size (+ 1: a file grown since its stat is refused), not the limit: read(n) first allocates n bytes
            data = head + file.read(size - len(head) + 1)
    except (OSError, ValueError, TypeError, OverflowError):
        return None
    return data if len(data) == size else None


#: a JPEG of more scans is refused (images._decode), Pillow's path too: each scan is decoded over the whole frame
#: (2,000 scans of 4000x4000 in 156 KB: 49 s in Pillow); libjpeg-turbo suggests 500, a progressive photo has ~10
SCAN_LIMIT = 500


def scan_count(path: str | os.PathLike, limit: int = SCAN_LIMIT) -> int:
    """The start-of-scan markers (0xFFDA, any in APPn too) of a regular file that starts as a JPEG, counted 1 MiB
    at a time until more than ``limit``; 0 for any other file or one that cannot be read. Never blocks (as _read)."""
    count = 0
    try:
        opened = open_regular(path)
        if opened is None:
            return 0
        with opened[0] as file:
            if file.read(3) != b"\xff\xd8\xff":
                return 0
            carry = b"\xff"  # the last byte read: a marker across two reads is counted once
            while count <= limit and (chunk := file.read(1 << 20)):
                count += scan_markers(chunk) + (carry == b"\xff" and chunk[:1] == b"\xda")
                carry = chunk[-1:]
    except (OSError, ValueError, TypeError, OverflowError):
        return count
    return count


def _decode_checked(data: bytes, max_pixels: int) -> np.ndarray | None:
    """:func:`_decode_bytes`, None for any exception (a damaged file is left to Pillow)."""
    try:
        return _decode_bytes(data, max_pixels)
    except Exception:  # simplejpeg's ValueError for damaged data, MemoryError, Pillow's header errors
        return None


def _decode_bytes(data: bytes, max_pixels: int) -> np.ndarray | None:
    """The checks in order of cost (our header parse, simplejpeg's, Pillow's), then the decode."""
    frame = _frame(data)
    if frame is None:
        return None
    width, height, components, subsampling = frame
    if width * height > max_pixels or scan_markers(data) > _MAX_SCANS:  # counts scans (and any 0xFFDA in APPn)
        return None
    import simplejpeg

    colourspace = "YCbCr" if components == 3 else "Gray"
    if simplejpeg.decode_jpeg_header(data, strict=True) != (height, width, colourspace, subsampling):
        return None
    if not _pillow_takes(data, (width, height), "RGB" if components == 3 else "L"):
        return None
    rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False, strict=True)
    if (not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.shape != (height, width, 3)
            or not rgb.flags.c_contiguous):
        return None
    return rgb


def _frame(data: bytes) -> tuple[int, int, int, str] | None:
    """(width, height, components, subsampling name) from the markers before the first scan, for the
    JPEGs this module takes; None for anything else or anything unexpected in the header."""
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    pos, end = 2, len(data)
    sof, jfif, adobe = None, False, None
    for _ in range(_MAX_SEGMENTS):
        if pos + 4 > end or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the header is complete
            return _taken(sof, jfif, adobe)
        length = (data[pos + 2] << 8) | data[pos + 3]
        body = data[pos + 4:pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            return None
        if marker in _SOF_ANY:
            if sof is not None or marker not in _SOF_TAKEN:
                return None
            sof = _start_of_frame(body)
            if sof is None:
                return None
        elif marker == 0xE0 and body.startswith(b"JFIF\0"):
            jfif = jfif or len(body) >= 14  # libjpeg's test for a JFIF marker
        elif marker == 0xEE and body.startswith(b"Adobe"):
            if len(body) < 12 or adobe is not None:
                return None
            adobe = body[11]
        elif marker not in _SKIPPED:  # DAC, DNL, DHP, EXP, JPGn, a stray SOI/EOI/RSTn/TEM
            return None
        pos += 2 + length
    return None


def _start_of_frame(body: bytes) -> tuple[int, int, list[tuple[int, int, int]]] | None:
    """(width, height, [(component id, h, v, quantisation table)]) of an 8-bit, 1- or 3-component frame; None otherwise."""
    if len(body) < 6 or body[0] != 8 or body[5] not in (1, 3) or len(body) != 6 + 3 * body[5]:
        return None
    height, width = (body[1] << 8) | body[2], (body[3] << 8) | body[4]
    parts = [(body[i], body[i + 1] >> 4, body[i + 1] & 15, body[i + 2]) for i in range(6, len(body), 3)]
    if any(not (1 <= h <= 4 and 1 <= v <= 4 and table <= 3) for _, h, v, table in parts):
        return None
    if len({part[0] for part in parts}) != len(parts) or width < 1 or height < 1:
        return None
    return width, height, parts


def _taken(sof, jfif: bool, adobe: int | None) -> tuple[int, int, int, str] | None:
    """The frame's (width, height, components, subsampling) where libjpeg reads it as greyscale or
    YCbCr with one of the usual subsamplings (chroma at 1x1); None otherwise."""
    if sof is None:
        return None
    width, height, parts = sof
    if len(parts) == 1:
        return (width, height, 1, "Gray") if adobe in (None, 0) and parts[0][1:3] == (1, 1) else None
    ycbcr = adobe == 1 or (adobe is None and (jfif or [part[0] for part in parts] == [1, 2, 3]))
    luma, chroma = parts[0][1:3], {part[1:3] for part in parts[1:]}
    if not ycbcr or chroma != {(1, 1)} or luma not in _SUBSAMPLING:
        return None
    return width, height, 3, _SUBSAMPLING[luma]


def _pillow_takes(data: bytes, size: tuple[int, int], mode: str) -> bool:
    """Whether Pillow opens these bytes (its header parse only) as a plain JPEG of ``size`` and ``mode``
    with no orientation to apply, as gradcam's Pillow decode (images._decode) would see it."""
    from PIL import Image, JpegImagePlugin

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
            return (type(image) is JpegImagePlugin.JpegImageFile and image.size == size and image.mode == mode
                    and not has_orientation(image))


def _self_check() -> bool:
    """Whether simplejpeg decodes every JPEG of :func:`_check_images` through this module's path to
    Pillow's exact pixels (False also where simplejpeg cannot be imported or Pillow's libjpeg is not
    libjpeg-turbo)."""
    try:
        import simplejpeg  # noqa: F401
        from PIL import Image, features

        if not features.check_feature("libjpeg_turbo"):
            return False
        for data in _check_images():
            fast = _decode_checked(data, 1 << 20)
            with Image.open(io.BytesIO(data)) as image:
                expected = np.asarray(image.convert("RGB"))
            if fast is None or not np.array_equal(fast, expected):
                return False
        return True
    except Exception:  # ImportError, or an encoder that does not take these settings
        return False


def _check_images() -> list[bytes]:
    """Small JPEGs made in memory: 4:4:4, 4:2:2, 4:2:0 (Pillow), 4:4:0 and 4:1:1 (simplejpeg's encoder),
    greyscale, progressive, a progressive file cut after its third scan, restart markers, sizes 1x1 and
    odd; content with smooth ramps and noise so that upsampling and rounding both matter."""
    import simplejpeg
    from PIL import Image

    rng = np.random.default_rng(24)
    ramps = np.add.outer(np.arange(35) * 7, np.arange(41) * 5)[:, :, None] + np.array([0, 80, 160])
    rgb = np.clip(ramps % 256 + rng.normal(0, 20, (35, 41, 3)), 0, 255).astype(np.uint8)
    out = []
    for size, settings in (((41, 35), dict(subsampling=0)), ((41, 35), dict(subsampling=1)),
                           ((41, 35), dict(subsampling=2)), ((1, 1), dict(subsampling=2)),
                           ((17, 9), dict(subsampling=2, progressive=True, quality=95)),
                           ((41, 35), dict(subsampling=1, progressive=True, restart_marker_blocks=3))):
        buffer = io.BytesIO()
        Image.fromarray(rgb[:size[1], :size[0]]).save(buffer, "JPEG", **settings)
        out.append(buffer.getvalue())
    grey = io.BytesIO()
    Image.fromarray(rgb[:, :, 1]).save(grey, "JPEG", progressive=True)
    out.append(grey.getvalue())
    for subsampling in ("440", "411"):
        out.append(simplejpeg.encode_jpeg(rgb[:, :33], 85, colorspace="RGB", colorsubsampling=subsampling))
    progressive = io.BytesIO()
    Image.fromarray(rgb).save(progressive, "JPEG", progressive=True, quality=90)
    scans = _scan_starts(progressive.getvalue())
    out.append(progressive.getvalue()[:scans[3]] + b"\xff\xd9")  # first three scans only: block smoothing
    return out


def _scan_starts(data: bytes) -> list[int]:
    """Offsets of the start-of-scan markers (0xFFDA) in a JPEG's bytes (entropy-coded data never holds
    0xFF followed by 0xDA: a 0xFF there is followed by 0x00 or a restart marker)."""
    starts, pos = [], data.find(b"\xff\xda")
    while pos >= 0:
        starts.append(pos)
        pos = data.find(b"\xff\xda", pos + 2)
    return starts
