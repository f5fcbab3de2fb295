"""The DICOM VOI transformation (PS3.3 C.11.2) against pydicom's ``apply_voi_lut``, rescaled from its
output range onto 0-255: VOI LUT Sequences (8-, 12- and 16-bit, first mapped value negative), the
SIGMOID, LINEAR_EXACT and LINEAR functions, MONOCHROME1; the image's own range without its padding
pixels, worked out by hand; and crafted headers that give a result or a one-line error, never a crash."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import dicom_file
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gradcam.errors import ImageError
from gradcam.inputs.medical import read_dicom

# pydicom, the oracle here, warns on its own arithmetic (exp overflows to its saturated end, which is the
# right value) and on float input to a LUT (the tests pass it floored values); gradcam's code warns on none.
pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered in:RuntimeWarning:pydicom"),
    pytest.mark.filterwarnings("ignore:Applying a VOI LUT on a float input array:UserWarning"),
]

pydicom = pytest.importorskip("pydicom")

TOLERANCE = 1e-6 * 255  # 1e-6 of the grey range


def pydicom_grey(path) -> np.ndarray:
    """The oracle: pydicom's modality LUT and ``apply_voi_lut``, rescaled onto 0-255 from pydicom's own
    output range: 0..2**bits - 1 for a VOI LUT, and for a window the range it maps the far ends to."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing

    dataset = pydicom.dcmread(path)
    values = apply_modality_lut(dataset.pixel_array, dataset)
    out = np.asarray(apply_voi_lut(values, dataset), np.float64)
    if dataset.get("VOILUTSequence"):
        return out * (255.0 / (2 ** dataset.VOILUTSequence[0].LUTDescriptor[2] - 1))
    low, high = apply_windowing(np.array([-1e300, 1e300]), dataset)
    return (out - low) * (255.0 / (high - low))


def ow(values) -> bytes:
    """LUT Data as OW: 16-bit little-endian words."""
    return np.asarray(values, "<u2").tobytes()


def ct(rng) -> np.ndarray:
    """Every stored value 0..4095 once, shuffled (64, 64): HU -1024..3071 with the usual intercept."""
    return rng.permutation(4096).reshape(64, 64).astype(np.uint16)


def s_curve(entries: int, top: int) -> np.ndarray:
    """A monotone non-linear LUT: 0 .. ``top``."""
    curve = np.tanh(np.linspace(-3, 3, entries))
    return np.rint((curve - curve[0]) / (curve[-1] - curve[0]) * top).astype(np.int64)


# -- VOI LUT Sequence


def lut_cases(rng):
    """(name, pixels, lut, tags) for LUTs pydicom applies by the standard."""
    signed = rng.permutation(np.arange(-1500, 1500)).reshape(50, 60).astype(np.int16)
    return [
        # a 16-bit LUT over HU from -1024 (SS), 3000 entries, as OW, next to a window it takes precedence over
        ("16-bit, CT, first -1024", ct(rng), ([3000, -1024, 16], ow(s_curve(3000, 65535)), "SS", "OW"),
         dict(RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)),
        # an 8-bit LUT of 256 entries from 100, as US values, on unsigned pixels without a rescale
        # (pixels below 356: pydicom indexes 8-bit LUTs in uint8, so larger offsets from the first would wrap)
        ("8-bit, first 100", rng.permutation(356).reshape(4, 89).astype(np.uint16),
         ([200, 100, 8], s_curve(200, 255).tolist(), "US", "US"), {}),
        # a 12-bit LUT on signed pixels, the first mapped value negative
        ("12-bit, signed, first -1000", signed, ([2048, -1000, 12], s_curve(2048, 4095).tolist(), "SS", "US"), {}),
        # the same LUT through MONOCHROME1: inverted after the VOI LUT
        ("12-bit, MONOCHROME1", signed, ([2048, -1000, 12], s_curve(2048, 4095).tolist(), "SS", "US"),
         dict(PhotometricInterpretation="MONOCHROME1")),
    ]


@pytest.mark.parametrize("case", range(4))
def test_a_voi_lut_sequence_equals_pydicom(tmp_path, case):
    name, pixels, lut, tags = lut_cases(np.random.default_rng(5))[case]
    path = tmp_path / "lut.dcm"
    dicom_file(path, pixels, lut=lut, **tags)
    expected = pydicom_grey(path)
    if tags.get("PhotometricInterpretation") == "MONOCHROME1":
        expected = 255.0 - expected
    grey, is_grey = read_dicom(path)
    assert is_grey
    assert len(np.unique(np.rint(expected))) > 50 and expected.min() == 0 and expected.max() == 255
    np.testing.assert_allclose(grey, expected, rtol=0, atol=TOLERANCE, err_msg=name)


def test_a_first_mapped_value_read_as_us_is_signed_when_the_input_may_be(tmp_path):
    # -1024 written as US 64512 (the VR of the second value depends on the input, C.11.2.1.1): with an
    # intercept of -1024 the input may be negative, so it is -1024, as the SS file says
    pixels = ct(np.random.default_rng(6))
    table = s_curve(3000, 65535)
    as_ss, as_us = tmp_path / "ss.dcm", tmp_path / "us.dcm"
    dicom_file(as_ss, pixels, lut=([3000, -1024, 16], ow(table), "SS", "OW"), RescaleSlope=1, RescaleIntercept=-1024)
    dicom_file(as_us, pixels, lut=([3000, 64512, 16], ow(table), "US", "OW"), RescaleSlope=1, RescaleIntercept=-1024)
    np.testing.assert_allclose(read_dicom(as_us)[0], pydicom_grey(as_ss), rtol=0, atol=TOLERANCE)
    # by hand: HU below -1024 (none) give entry 0, HU h gives entry h + 1024 up to 2999
    hand = table[np.clip(pixels.astype(int), 0, 2999)] / 65535 * 255
    np.testing.assert_allclose(read_dicom(as_us)[0], hand, rtol=0, atol=TOLERANCE)


def test_eight_bit_lut_data_packed_in_bytes_and_entries_beyond_the_declared_depth(tmp_path):
    # 8-bit entries packed one per byte in OW (PS3.3: stored as 8 bits allocated), 5 entries + 1 pad byte
    pixels = np.array([[0, 10, 11, 12, 13, 14, 99]], np.uint16)
    path = tmp_path / "packed.dcm"
    dicom_file(path, pixels, lut=([5, 10, 8], bytes([0, 51, 102, 204, 255, 0]), "US", "OW"))
    np.testing.assert_allclose(read_dicom(path)[0][0], [0, 0, 51, 102, 204, 255, 255])
    # a descriptor that says 8 bits over 12-bit entries: the entries' own depth (4095), not wrapped or clipped
    dicom_file(path, pixels, lut=([3, 11, 8], [0, 1000, 4095], "US", "US"))
    np.testing.assert_allclose(read_dicom(path)[0][0], np.array([0, 0, 0, 1000, 4095, 4095, 4095]) / 4095 * 255)


# -- windows and their VOI LUT Functions


WINDOWS = [(40.0, 400.0), (-600.0, 1500.0), (300.0, 2.0), (1000.0, 4000.0), (100.0, 0.5)]


@pytest.mark.parametrize("function", ["SIGMOID", "LINEAR_EXACT"])
@pytest.mark.parametrize("centre, width", WINDOWS)
def test_sigmoid_and_linear_exact_equal_pydicom(tmp_path, function, centre, width):
    path = tmp_path / "ct.dcm"
    dicom_file(path, ct(np.random.default_rng(7)), bits_stored=12, RescaleSlope=1, RescaleIntercept=-1024,
               WindowCenter=centre, WindowWidth=width, VOILUTFunction=function)
    np.testing.assert_allclose(read_dicom(path)[0], pydicom_grey(path), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("centre, width", [(0.0, 800.0), (-300.5, 3.0), (500.0, 1.0)])
def test_windows_on_signed_pixels_and_monochrome1_equal_pydicom(tmp_path, photometric, function, centre, width):
    pixels = np.random.default_rng(8).permutation(np.arange(-2000, 2000)).reshape(40, 100).astype(np.int16)
    path = tmp_path / "signed.dcm"
    dicom_file(path, pixels, photometric, RescaleSlope=0.5, RescaleIntercept=10, WindowCenter=centre,
               WindowWidth=width, VOILUTFunction=function)
    expected = pydicom_grey(path)
    if photometric == "MONOCHROME1":
        expected = 255.0 - expected
    np.testing.assert_allclose(read_dicom(path)[0], expected, rtol=0, atol=TOLERANCE)


def test_a_user_window_overrides_the_lut_and_keeps_the_files_function(tmp_path):
    pixels = ct(np.random.default_rng(9))
    path, oracle = tmp_path / "lut.dcm", tmp_path / "oracle.dcm"
    common = dict(RescaleSlope=1, RescaleIntercept=-1024, VOILUTFunction="SIGMOID")
    dicom_file(path, pixels, lut=([4096, -1024, 16], ow(s_curve(4096, 65535)), "SS", "OW"), WindowCenter=500,
               WindowWidth=100, **common)
    dicom_file(oracle, pixels, WindowCenter=40, WindowWidth=400, **common)  # what --window 40,400 asks for
    np.testing.assert_allclose(read_dicom(path, (40.0, 400.0))[0], pydicom_grey(oracle), rtol=0, atol=TOLERANCE)


# -- the image's own range, without its padding


def scaled(values, low, high):
    return np.clip((np.asarray(values, float) - low) / (high - low) * 255, 0, 255)


def test_the_own_range_leaves_the_padding_out(tmp_path):
    path = tmp_path / "pad.dcm"
    # stored 0 is padding; tissue stored 1000..3000, HU -24..1976 with the intercept
    pixels = np.array([[0, 0, 1000, 2000, 3000]], np.uint16)
    dicom_file(path, pixels, RescaleSlope=1, RescaleIntercept=-1024, PixelPaddingValue=0)
    np.testing.assert_allclose(read_dicom(path)[0][0], [0, 0, 0, 127.5, 255])
    # signed, a padding range -2000..-1500 given the other way round, tissue -1000..1000
    pixels = np.array([[-2000, -1700, -1500, -1000, 0, 1000]], np.int16)
    dicom_file(path, pixels, PixelPaddingValue=-1500, PixelPaddingRangeLimit=-2000)
    np.testing.assert_allclose(read_dicom(path)[0][0], [0, 0, 0, 0, 127.5, 255])
    # the same with the padding values written as US (two's complement), as some files do
    dicom_file(path, pixels, PixelPaddingValue=("US", 65536 - 1500), PixelPaddingRangeLimit=("US", 65536 - 2000))
    np.testing.assert_allclose(read_dicom(path)[0][0], [0, 0, 0, 0, 127.5, 255])
    # MONOCHROME1 pads above the tissue: inverted, it is black too
    pixels = np.array([[4095, 100, 1100, 2100]], np.uint16)
    dicom_file(path, pixels, "MONOCHROME1", PixelPaddingValue=4095)
    np.testing.assert_allclose(read_dicom(path)[0][0], 255 - scaled([4095, 100, 1100, 2100], 100, 2100))
    # every pixel padding: the whole range, as without padding
    pixels = np.array([[0, 5, 10]], np.uint16)
    dicom_file(path, pixels, PixelPaddingValue=0, PixelPaddingRangeLimit=10)
    np.testing.assert_allclose(read_dicom(path)[0][0], [0, 127.5, 255])


# -- what a file gets wrong


def test_a_file_window_its_function_rejects_is_skipped_and_an_unknown_function_is_linear(tmp_path):
    pixels = np.array([[0, 100, 200, 400]], np.uint16)
    path = tmp_path / "w.dcm"
    dicom_file(path, pixels, WindowCenter=100, WindowWidth=0)  # "no window" in some files: the own range
    np.testing.assert_allclose(read_dicom(path)[0][0], [0, 63.75, 127.5, 255])
    dicom_file(path, pixels, WindowCenter=100, WindowWidth=0.5, VOILUTFunction="LINEAR_EXACT")  # valid: > 0
    np.testing.assert_allclose(read_dicom(path)[0][0], [0, 127.5, 255, 255])
    dicom_file(path, pixels, WindowCenter=150.5, WindowWidth=201, VOILUTFunction="GAMMA")  # LINEAR, the default
    np.testing.assert_allclose(read_dicom(path)[0][0], [0, 255 * 50 / 200, 255 * 150 / 200, 255])
    with pytest.raises(ImageError, match=r"^the window width must be at least 1 for this file's LINEAR VOI"):
        read_dicom(path, (100.0, 0.5))
    dicom_file(path, pixels, VOILUTFunction="SIGMOID")
    with np.errstate(over="ignore"):  # exp overflows to inf: the sigmoid's saturated end, 0
        expected = 255 / (1 + np.exp(-8 * (pixels[0] - 100.0)))
    np.testing.assert_allclose(read_dicom(path, (100.0, 0.5))[0][0], expected)


@pytest.mark.parametrize("lut, message", [
    (([100, 0, 16], list(range(99)), "US", "US"), "the LUT Descriptor gives 100 entries but the LUT Data holds 99"),
    (([100, 0, 16], ow(range(101)), "US", "OW"), "gives 100 entries but the LUT Data holds 202 bytes"),
    (([4, 0], [0, 1, 2, 3], "US", "US"), "the LUT Descriptor is not three numbers"),
    (([4, 0, 7], [0, 1, 2, 3], "US", "US"), "7 bits per entry"),
    (([4, 0, 17], [0, 1, 2, 3], "US", "US"), "17 bits per entry"),
])
def test_a_broken_voi_lut_is_one_line(tmp_path, lut, message):
    path = tmp_path / "broken.dcm"
    dicom_file(path, np.zeros((4, 4), np.uint16), lut=lut)
    with pytest.raises(ImageError, match=message) as caught:
        read_dicom(path)
    assert "\n" not in str(caught.value) and "--window CENTRE,WIDTH windows the image instead" in str(caught.value)
    assert read_dicom(path, (0.0, 10.0))[0].shape == (4, 4)  # --window is the way out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(signed=st.booleans(), entries=st.integers(0, 300), extra=st.sampled_from([0, 0, 0, 0, 0, -1, 1, 7]),
       first=st.integers(-32768, 32767), bits=st.one_of(st.integers(8, 16), st.integers(0, 20)),
       as_ow=st.booleans(), with_lut=st.booleans(),
       centre=st.floats(-5000, 5000).map(lambda v: round(v, 3)),
       width=st.sampled_from([-10.0, 0.0, 1e-9, 0.5, 1.0, 3.0, 400.0, 1e9]),
       function=st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID", "GAMMA", None]), seed=st.integers(0, 2**16))
def test_crafted_voi_headers_give_a_picture_or_one_line(tmp_path, signed, entries, extra, first, bits, as_ow,
                                                        with_lut, centre, width, function, seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(-3000 if signed else 0, 3000, (4, 5)).astype(np.int16 if signed else np.uint16)
    count = entries or 65536  # 0 means 65536
    data = rng.integers(0, 2 ** min(max(bits, 1), 16), max(count + extra, 1))
    as_ow = as_ow or len(data) > 30000  # explicit VR US holds at most 32767 values
    first = first if signed else abs(first)
    lut = ([entries, first, bits], ow(data) if as_ow else data.tolist(), "SS" if signed else "US",
           "OW" if as_ow else "US") if with_lut else None
    tags = {} if function is None else {"VOILUTFunction": function}
    path = tmp_path / "fuzz.dcm"
    dicom_file(path, pixels, lut=lut, WindowCenter=centre, WindowWidth=width, **tags)
    packed = as_ow and bits == 8 and 2 * len(data) in (count, count + 1)  # bytes, one 8-bit entry each
    table = np.frombuffer(ow(data), np.uint8)[:count] if packed else data
    well_formed = 8 <= bits <= 16 and len(table) == count
    try:
        grey, _ = read_dicom(path)
    except ImageError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("the file's VOI LUT is unusable")
        assert with_lut and not well_formed
        event("a broken LUT: one line")
        return
    assert grey.shape == (4, 5) and np.all(np.isfinite(grey)) and grey.min() >= 0 and grey.max() <= 255
    if with_lut:  # a well-formed LUT, by hand
        assert well_formed
        event("a LUT, by hand")
        hand = table[np.clip(pixels.astype(int) - first, 0, count - 1)] / (2**bits - 1) * 255
        np.testing.assert_allclose(grey, hand, rtol=0, atol=TOLERANCE)
    elif function != "GAMMA" and (width >= 1 or (function in ("LINEAR_EXACT", "SIGMOID") and width > 0)):
        event("a window, as pydicom")
        np.testing.assert_allclose(grey, pydicom_grey(path), rtol=0, atol=TOLERANCE)  # the window, as pydicom
