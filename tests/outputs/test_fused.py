"""The fused render (numba) and the compiled zoom against an independent oracle: SciPy's zoom called here,
matplotlib's colormap and the float32 blend formula written out; bit for bit, both ways (compiled and not)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradcam.errors import HeatmapError
from gradcam.explainers.heatmap import heatmap_at, normalize, upsample
from gradcam.inputs import resample_fast
from gradcam.outputs import fused

REPO = Path(__file__).resolve().parents[2]
COLORMAPS_256 = sorted(name for name in matplotlib.colormaps if matplotlib.colormaps[name].N == 256)
OTHER_COLORMAPS = sorted(name for name in matplotlib.colormaps if matplotlib.colormaps[name].N != 256)


def oracle_heatmap(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """scipy.ndimage.zoom, order 1, pixel centres aligned, edges held, clipped to [0, 1]: float32 (H, W)."""
    from scipy import ndimage

    big = ndimage.zoom(small, (shape[0] / small.shape[0], shape[1] / small.shape[1]), order=1, mode="nearest",
                       grid_mode=True)
    assert big.shape == tuple(shape)
    return np.clip(big, 0.0, 1.0)


def oracle_overlay(photo: np.ndarray, heatmap: np.ndarray, alpha: float, colormap: str) -> np.ndarray:
    """matplotlib's colours (bytes) and the blend rint((1 - alpha) * photo + alpha * colour) in float32."""
    colours = matplotlib.colormaps[colormap](heatmap, bytes=True)[..., :3].astype(np.float32)
    blended = (1.0 - alpha) * photo.astype(np.float32) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.fixture(scope="module")
def compiled():
    """The compiled kernels, loaded now (skipped where numba is not installed: the fallback tests still run)."""
    if not fused.available():
        pytest.skip("numba is not installed here (or GRADCAM_NO_JIT is set): the reference path is tested below")
    assert fused.prepare(), resample_fast.KERNEL.error
    return resample_fast.KERNEL.compiled


@pytest.fixture
def counted(compiled, monkeypatch):
    """Counts the fused kernel's calls (colouring photos): the tests below really took the compiled path."""
    calls = []

    def kernel(*args):
        if args[-1]:
            calls.append(args[-4].shape)
        return compiled(*args)

    monkeypatch.setattr(resample_fast.KERNEL, "compiled", kernel)
    return calls


def a_map(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    cam = rng.normal(size=shape).astype(np.float32)
    if kind == "relu":
        return np.maximum(cam, 0)
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "constant":
        return np.full(shape, 3.25, np.float32)
    if kind == "spike":  # one bright cell: values 0 and 1 only, edges of the colour table
        cam = np.zeros(shape, np.float32)
        cam[rng.integers(shape[0]), rng.integers(shape[1])] = 1e-3
    return cam.astype(np.float64) * 1e3 if kind == "wide" else cam


SIDES = st.one_of(st.integers(1, 9), st.integers(1, 700))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(map_shape=st.tuples(st.integers(1, 20), st.integers(1, 20)), photo_shape=st.tuples(SIDES, SIDES),
       alpha=st.floats(0, 1), colormap=st.sampled_from(COLORMAPS_256),
       kind=st.sampled_from(["normal", "relu", "zeros", "constant", "spike", "wide"]),
       keep=st.booleans(), scratch=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_the_fused_render_is_the_reference_bit_for_bit(counted, map_shape, photo_shape, alpha, colormap, kind, keep,
                                                       scratch, seed):
    """Map shapes 1-20 (1x1 and maps larger than the photo included), photos from 1x1 to 700 pixels a side,
    any alpha, every kind of map: the same overlay, heatmap and constancy as SciPy + matplotlib."""
    rng = np.random.default_rng(seed)
    cam = a_map(kind, map_shape, rng)
    photo = rng.integers(0, 256, (*photo_shape, 3), dtype=np.uint8)
    small, constant = normalize(cam)
    expected_heatmap = oracle_heatmap(small, photo_shape)
    image, heatmap, is_constant = fused.render(photo, cam, alpha, colormap, keep, scratch=scratch)
    assert counted[-1] == photo.shape
    # constant: a map of zeros or one value (a ReLU map of a few cells can be all zeros: hypothesis found (1, 2))
    assert is_constant == constant == (kind in ("zeros", "constant") or cam.size == 1 or cam.max() == cam.min())
    assert same_bits(image, oracle_overlay(photo, expected_heatmap, alpha, colormap))
    assert heatmap is None if not keep else same_bits(heatmap, expected_heatmap)


@pytest.mark.parametrize("colormap", COLORMAPS_256)
def test_every_256_colour_colormap(counted, colormap):
    rng = np.random.default_rng(len(colormap))
    cam = np.maximum(rng.normal(size=(7, 9)), 0).astype(np.float32)
    photo = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    image, heatmap, _ = fused.render(photo, cam, 0.45, colormap, True)
    expected = oracle_heatmap(normalize(cam)[0], (61, 83))
    assert counted and same_bits(heatmap, expected)
    assert same_bits(image, oracle_overlay(photo, expected, 0.45, colormap))


@settings(max_examples=150, deadline=None)
@given(map_shape=st.tuples(st.integers(1, 20), st.integers(1, 20)), photo_shape=st.tuples(SIDES, SIDES),
       seed=st.integers(0, 2**32 - 1))
def test_the_compiled_zoom_is_scipys_bit_for_bit(compiled, map_shape, photo_shape, seed):
    """upsample (--save-npy, the API) through the compiled zoom: SciPy's float32 values exactly."""
    small = np.random.default_rng(seed).random(map_shape).astype(np.float32)
    direct = resample_fast.upsample2d(small, photo_shape)
    assert direct is not None and same_bits(direct, oracle_heatmap(small, photo_shape))
    assert same_bits(upsample(small, photo_shape), direct)


#: the kernel's photo, blend table and overlay when it only upsamples
NO_COLOUR = (np.zeros((1, 1, 3), np.uint8), np.zeros((3, 1), np.uint8), np.zeros((1, 1, 3), np.uint8))


def clamped_coordinate_weights(n_in: int, n_out: int) -> tuple[np.ndarray, ...]:
    """The weights if the source coordinate were clamped to [0, n_in - 1] (what SciPy does not do)."""
    coordinate = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    start = np.floor(coordinate)
    first_weight = 1.0 - (coordinate - start)
    return start.astype(np.int64), np.minimum(start.astype(np.int64) + 1, n_in - 1), first_weight, 1.0 - first_weight


def test_clamping_the_coordinate_instead_would_not_be_exact(compiled):
    """Why the indices, not the coordinate, are clamped: the other way is off by an ulp at some edge pixels."""
    differing, ulps = 0, 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        rows, cols = (int(n) for n in rng.integers(1, 21, 2))
        small = rng.random((rows, cols)).astype(np.float32)
        expected = oracle_heatmap(small, (480, 640))
        out = np.empty((480, 640), np.float32)
        weights = (*clamped_coordinate_weights(rows, 480), *clamped_coordinate_weights(cols, 640))
        compiled(small, *weights, *NO_COLOUR, out, True, False)
        wrong = out.view(np.int32) != expected.view(np.int32)
        differing += int(wrong.sum())
        ulps = max(ulps, int(np.abs(out.view(np.int32).astype(np.int64) - expected.view(np.int32)).max()))
        assert same_bits(upsample(small, (480, 640)), expected)
    assert differing > 0 and ulps == 1


def test_upsample_keeps_nan_and_values_outside_0_1_as_scipy_does(compiled):
    """upsample of the public API: a map with NaN goes to SciPy (which spreads it); other values clip alike."""
    small = np.linspace(-0.5, 1.5, 12, dtype=np.float32).reshape(3, 4)
    assert same_bits(upsample(small, (7, 9)), oracle_heatmap(small, (7, 9)))
    small[1, 1] = np.nan
    assert resample_fast.upsample2d(small, (7, 9)) is None
    assert same_bits(upsample(small, (7, 9)), oracle_heatmap(small, (7, 9)))


def test_nan_and_infinity_are_refused_as_before(compiled):
    cam = np.ones((4, 4), np.float32)
    cam[1, 2] = np.nan
    with pytest.raises(HeatmapError) as reference:
        heatmap_at(cam, (20, 20))
    with pytest.raises(HeatmapError) as fused_error:
        fused.render(np.zeros((20, 20, 3), np.uint8), cam, 0.4, "jet", True)
    message = "heatmap is not finite: 1 NaN and 0 infinite value(s) of 16"
    assert str(fused_error.value) == str(reference.value) == message


def reference_call(photo, cam, alpha, colormap, keep):
    """today's path, written out: normalize, SciPy's zoom (reference_upsample) and overlay."""
    from gradcam.explainers.heatmap import reference_upsample
    from gradcam.outputs.colour import overlay

    small, constant = normalize(cam)
    big = reference_upsample(small, photo.shape[:2])
    return overlay(photo, big, alpha, colormap), big, constant


@pytest.mark.parametrize("colormap", OTHER_COLORMAPS[:6] + ["twilight"])
def test_colormaps_without_256_colours_take_todays_path(counted, colormap):
    rng = np.random.default_rng(1)
    cam, photo = rng.random((5, 6)).astype(np.float32), rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    image, heatmap, _ = fused.render(photo, cam, 0.6, colormap, True)
    expected = reference_call(photo, cam, 0.6, colormap, True)
    assert counted == [] and same_bits(image, expected[0]) and same_bits(heatmap, expected[1])


def test_without_the_compiled_path_renders_go_through_scipy(monkeypatch):
    """As on a platform without numba: nothing is loaded, the outputs are today's."""
    monkeypatch.setattr(resample_fast.KERNEL, "compiled", None)
    monkeypatch.setenv("GRADCAM_NO_JIT", "1")
    monkeypatch.setattr(fused, "WARM_AFTER_PIXELS", 0)
    assert not fused.available() and not fused.prepare()
    started = []
    monkeypatch.setattr(resample_fast.threading, "Thread", lambda *a, **k: started.append(1))
    rng = np.random.default_rng(2)
    for shape in [(1, 1), (3, 5), (480, 640)]:
        cam, photo = rng.random((7, 7)).astype(np.float32), rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        image, heatmap, _ = fused.render(photo, cam, 0.4, "jet", True, scratch=True)
        expected = reference_call(photo, cam, 0.4, "jet", True)
        assert same_bits(image, expected[0]) and same_bits(heatmap, expected[1])
        assert resample_fast.upsample2d(cam, shape) is None
    assert started == []


def test_a_size_scipy_would_round_takes_scipys_path(counted, monkeypatch):
    monkeypatch.setattr(resample_fast, "scipy_sizes_agree", lambda *shapes: False)
    photo = np.zeros((9, 9, 3), np.uint8)
    image, _, _ = fused.render(photo, np.eye(3, dtype=np.float32), 0.4, "jet", False)
    expected = reference_call(photo, np.eye(3, dtype=np.float32), 0.4, "jet", False)[0]
    assert counted == [] and same_bits(image, expected)
    assert resample_fast.upsample2d(np.eye(3, dtype=np.float32), (9, 9)) is None


def test_scipy_rounds_no_size_we_ask_for():
    assert all(resample_fast.scipy_sizes_agree((m, m), (n, n + 1)) for m in range(1, 65) for n in range(1, 4000))


def test_the_load_waits_for_enough_pixels_through_the_reference_path(monkeypatch):
    """No numba for a run of a photo or two: the background load starts only once WARM_AFTER_PIXELS went
    through the reference path, and never blocks a render."""
    loads = []
    monkeypatch.setattr(resample_fast.KERNEL, "compiled", None)
    monkeypatch.setattr(fused, "_REFERENCE_PIXELS", [0])
    monkeypatch.setattr(fused, "WARM_AFTER_PIXELS", 3 * 100 * 100)
    monkeypatch.setattr(resample_fast, "load", lambda wait: loads.append(wait))
    photo, cam = np.zeros((100, 100, 3), np.uint8), np.ones((2, 2), np.float32)
    for _ in range(3):
        fused.render(photo, cam, 0.4, "jet", False)
    assert loads == []
    fused.render(photo, cam, 0.4, "jet", False)
    assert loads == [False]


def test_a_run_that_expects_many_pixels_waits_for_the_kernel_until_the_deadline(compiled, monkeypatch):
    """expect() starts the load; renders then wait for it (no overlay through SciPy meanwhile), but never past
    LOAD_WAIT_SECONDS from the load's start (an uncached compile): then the reference path, without waiting."""
    import threading
    import time

    photo = np.random.default_rng(5).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    cam = np.random.default_rng(6).random((4, 4)).astype(np.float32)
    expected = reference_call(photo, cam, 0.4, "jet", True)
    for load_seconds, deadline, fused_path in [(0.3, 5.0, True), (30.0, 0.3, False)]:
        calls, release = [], threading.Event()

        def kernel(*args):
            calls.append(1)
            return compiled(*args)

        def slow_load():
            if release.wait(load_seconds):
                return
            resample_fast.KERNEL.compiled = kernel

        monkeypatch.setattr(resample_fast.KERNEL, "compiled", None)
        monkeypatch.setattr(fused, "_WAIT_UNTIL", [0.0])
        monkeypatch.setattr(fused, "LOAD_WAIT_SECONDS", deadline)
        monkeypatch.setattr(fused, "_REFERENCE_PIXELS", [0])
        monkeypatch.setattr(resample_fast, "available", lambda: True)
        monkeypatch.setattr(resample_fast, "_LOADER", None)
        monkeypatch.setattr(resample_fast.KERNEL, "compile", slow_load)
        fused.expect(fused.WARM_AFTER_PIXELS - 1)  # too few pixels: no load
        assert resample_fast._LOADER is None and fused._WAIT_UNTIL == [0.0]
        fused.expect(fused.WARM_AFTER_PIXELS)
        start = time.monotonic()
        image, heatmap, _ = fused.render(photo, cam, 0.4, "jet", True)
        waited = time.monotonic() - start
        assert same_bits(image, expected[0]) and same_bits(heatmap, expected[1])
        assert (calls == [1]) == fused_path
        assert (0.2 < waited < 5.0) if fused_path else (0.2 < waited < 2.0)
        if not fused_path:  # past the deadline: no second wait
            start = time.monotonic()
            fused.render(photo, cam, 0.4, "jet", False)
            assert time.monotonic() - start < 0.2 and calls == []
        release.set()
        resample_fast._LOADER.join()


def test_scratch_buffers_are_per_thread_and_reused(compiled):
    import threading

    rng = np.random.default_rng(3)
    cam = rng.random((6, 6)).astype(np.float32)
    big, small = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8), rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    first = fused.render(big, cam, 0.4, "jet", True, scratch=True)
    address = first[0].__array_interface__["data"][0]
    second = fused.render(small, cam, 0.4, "jet", True, scratch=True)  # fits in the same memory
    assert second[0].__array_interface__["data"][0] == address
    assert same_bits(second[0], reference_call(small, cam, 0.4, "jet", True)[0])
    other = []
    thread = threading.Thread(target=lambda: other.append(fused.render(big, cam, 0.4, "jet", False, scratch=True)))
    thread.start()
    thread.join()
    assert other[0][0].__array_interface__["data"][0] != address
    fresh = fused.render(big, cam, 0.4, "jet", False)
    assert fresh[0].__array_interface__["data"][0] != address and same_bits(fresh[0], other[0][0])


def test_numba_is_not_imported_for_help_import_or_an_up_to_date_rerun(tmp_path, tiny_model_file):
    from conftest import write_photo

    photo = write_photo(tmp_path / "photos" / "one.png", (64, 48))
    args = ["--model", str(tiny_model_file), str(photo), "-o", str(tmp_path / "out"), "--save-npy"]
    code = ("import sys, gradcam; assert 'numba' not in sys.modules, 'import'; from gradcam.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "print('RC', rc, 'NUMBA', 'numba' in sys.modules, 'TF', 'tensorflow' in sys.modules)")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run(*argv):
        done = subprocess.run([sys.executable, "-c", code, *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        return done.stdout + done.stderr

    assert "RC 0 NUMBA False TF False" in run("--help")
    assert "RC 0 NUMBA False TF True" in run(*args)  # one photo: the reference path, numba never loaded
    printed = run(*args)
    assert "RC 0 NUMBA False TF False" in printed and "every output is up to date" in printed


def test_the_kernel_is_cached_and_loaded_without_numba(tmp_path):
    """The first process compiles the kernel (numba) and caches its machine code in NUMBA_CACHE_DIR/gradcam;
    the next loads it with llvmlite alone (numba never imported) and draws the same pixels. A damaged cache file
    is compiled again and replaced; where no folder can take the cache the kernel is compiled uncached."""
    if not fused.available():
        pytest.skip("numba is not installed here")
    code = ("import sys; from gradcam.outputs import fused; import numpy as np; assert fused.prepare()\n"
            "p = np.arange(60, dtype=np.uint8).reshape(4, 5, 3); c = np.eye(2, dtype=np.float32)\n"
            "assert np.array_equal(fused.render(p, c, .4, 'jet', False)[0], fused.reference_render(p, c, .4, 'jet', "
            "False)[0])\nprint(fused.resample_fast.KERNEL.origin, 'numba' in sys.modules)")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def run() -> str:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run() == "compiled True"
    # three kernels loaded by the one loader: the render's, the resize's, the Huffman PNG encoder's block kernel
    cached = list((tmp_path / "cache" / "gradcam").iterdir())
    assert len(cached) == 3
    assert run() == "cache False"
    for path in cached:
        path.write_bytes(path.read_bytes()[:-100])  # cut short
    assert run() == "compiled True" and run() == "cache False"
    (tmp_path / "file").write_text("not a folder")
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "file" / "cache")
    assert run() == "compiled, not cached True"


def test_a_cache_file_that_does_not_link_alone_is_not_kept(tmp_path):
    from gradcam.inputs import kernel_cache

    damaged = tmp_path / "kernel.bin"
    damaged.write_bytes(b'{"symbol": "kernel"}\n' + b"\x7fELF not an object file")
    assert not kernel_cache.loads_alone(damaged)
    assert kernel_cache.key(fused.render) != kernel_cache.key(fused.reference_render)  # the source is in the key


def comparable(out: Path) -> list[dict]:
    """The manifest's input records without what differs from run to run (times, the run's id, mtimes)."""
    from gradcam.outputs.manifest import input_records, read_records

    records = []
    for record in input_records(read_records(out / "manifest.jsonl")):
        record = {key: value for key, value in record.items() if key not in ("run", "seq") and "time" not in key
                  and "seconds" not in key}
        record["files"] = {name: identity["size"] for name, identity in record.get("files", {}).items()}
        records.append(record)
    return records


@pytest.mark.parametrize("options", [["--save-npy", "--panel"], ["--max-size", "40", "--save-npy", "--alpha", "0.7"],
                                     ["--colormap", "twilight", "--save-npy"], ["--top-k", "2", "--colormap", "gray"]])
def test_a_run_is_the_same_with_the_compiled_path_on_and_off(tmp_path, tiny_model_file, counted, monkeypatch, options):
    """Issue 24, point 4: every output's pixels (.npy byte for byte), and the manifest, as before: the run with
    the fast paths (the fused render, the compiled resize, simplejpeg's JPEGs) and the run without any."""
    from conftest import assert_same_outputs, write_photo

    from gradcam.cli import main
    from gradcam.inputs import jpeg_fast, resize_fast

    photos = tmp_path / "photos"
    for i, size in enumerate([(64, 48), (33, 17), (1, 1), (101, 77), (640, 480)]):
        write_photo(photos / f"p{i}.png", size, seed=i)
    write_photo(photos / "grey.png", (45, 61), mode="L", seed=9)
    write_photo(photos / "photo.jpg", (123, 97), seed=10, quality=90)
    write_photo(photos / "grey.jpg", (64, 31), mode="L", seed=11, quality=75, progressive=True)
    resized = []
    resize_kernel = resize_fast.KERNEL.compiled
    assert resize_kernel is not None, resize_fast.KERNEL.error  # loaded with the render's kernel
    monkeypatch.setattr(resize_fast.KERNEL, "compiled", lambda *args: resized.append(1) or resize_kernel(*args))
    command = ["--model", str(tiny_model_file), str(photos), *options]
    assert main([*command, "-o", str(tmp_path / "on")]) == 0
    assert len(counted) >= (0 if "twilight" in options else 8)  # twilight has 510 colours: today's path
    assert len(resized) >= (8 if "--max-size" not in options else 2)  # the model inputs (photos, when not shrunk)
    assert jpeg_fast.decode_jpeg(photos / "photo.jpg", 10**6) is not None  # the fast decode takes the JPEGs
    assert jpeg_fast.decode_jpeg(photos / "grey.jpg", 10**6) is not None
    with monkeypatch.context() as off:
        off.setattr(resample_fast.KERNEL, "compiled", None)
        off.setattr(resize_fast.KERNEL, "compiled", None)
        off.setenv("GRADCAM_NO_JIT", "1")
        off.setenv(jpeg_fast.DISABLE_ENV, "1")
        assert main([*command, "-o", str(tmp_path / "off")]) == 0
    names = assert_same_outputs(tmp_path / "on", tmp_path / "off")
    assert len([name for name in names if name.endswith(".png")]) == 8 * (2 if "--top-k" in options else 1)
    for name in (name for name in names if name.endswith(".npy")):
        assert (tmp_path / "on" / name).read_bytes() == (tmp_path / "off" / name).read_bytes()
    assert comparable(tmp_path / "on") == comparable(tmp_path / "off")


def test_the_kernel_refuses_arrays_that_do_not_agree(compiled):
    """The caller checks every array's dtype, layout and shape (a blend table of 256 colours: [ch, c * 256 + p]),
    the machine code every table index before it reads through them: ValueError, and nothing written."""
    heat = np.random.default_rng(8).random((3, 4)).astype(np.float32)
    tables = resample_fast.weight_tables(heat.shape, (10, 12))
    photo, blend = np.zeros((10, 12, 3), np.uint8), np.zeros((3, 256 * 256), np.uint8)
    out, big = np.zeros((10, 12, 3), np.uint8), np.zeros((10, 12), np.float32)
    compiled(heat, *tables, photo, blend, out, big, True, True)  # agrees
    assert same_bits(big, oracle_heatmap(heat, (10, 12)))
    bad_index = list(tables)
    bad_index[4] = tables[4].copy()
    bad_index[4][-1] = 4  # column 4 of a 4-column map
    bad_row = list(tables)
    bad_row[1] = tables[1].copy()
    bad_row[1][0] = -1
    for arguments in [(heat, *tables, photo, blend, out[:, :11], big, False, True),
                      (heat, *tables, photo, blend, out, big[:9], True, False),
                      (heat.astype(np.float64), *tables, photo, blend, out, big, True, True),
                      (np.ones((3, 8), np.float32)[:, ::2], *tables, photo, blend, out, big, True, True),
                      (heat, *bad_index, photo, blend, out, big, True, True),
                      (heat, *bad_row, photo, blend, out, big, True, False),
                      (heat, *tables, photo, np.zeros((3, 100), np.uint8), out, big, False, True),
                      (heat, *tables, photo, np.zeros((3, 256), np.uint8), out, big, False, True)]:
        out[:], big[:] = 7, 7
        with pytest.raises(ValueError):
            compiled(*arguments)
        assert (out == 7).all() and (big == 7).all()


def test_the_caller_remembers_the_addresses_of_read_only_views_only(compiled):
    """weight_tables hands out read-only views, whose memory cannot move: the caller remembers their addresses.
    An array that owns its memory is asked every time: a resize (allowed even read-only) moves it."""
    tables = resample_fast.weight_tables((3, 4), (10, 12))
    assert all(not table.flags.writeable and not table.flags.owndata for table in tables)
    assert resample_fast._pointer(tables[0], np.int64, 1) == tables[0].ctypes.data
    assert resample_fast._ADDRESSES[id(tables[0])][0] is tables[0]
    own = np.arange(10, dtype=np.int64)
    own.flags.writeable = False
    big = np.zeros(10**5, np.int64).view()
    big.flags.writeable = False
    for array in (own, np.arange(10, dtype=np.int64).view(), big):
        assert resample_fast._pointer(array, np.int64, 1) == array.ctypes.data
        assert id(array) not in resample_fast._ADDRESSES
    own.resize(10**6, refcheck=False)
    assert resample_fast._pointer(own, np.int64, 1) == own.ctypes.data


def test_the_kernels_scratch_is_reused_and_grown_per_thread(compiled):
    """One thread's calls share its scratch arrays, grown for a wider map or photo; each call's values exact."""
    rng = np.random.default_rng(11)
    held = []
    for map_shape, shape in [((5, 40), (30, 700)), ((3, 3), (9, 9)), ((20, 64), (50, 1500)), ((2, 2), (4, 4))]:
        small = rng.random(map_shape).astype(np.float32)
        assert same_bits(resample_fast.upsample2d(small, shape), oracle_heatmap(small, shape))
        held.append(resample_fast._SCRATCH.held)
    assert held[0] is held[1] and held[2] is held[3] and held[1] is not held[2]
    assert held[2][:2] == (64, 1500)


@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_photos_of_every_width_mod_4_and_not_4_byte_aligned(counted, offset):
    """The kernel reads four pixels (three 4-byte words) at a time from each flat pixel index that is a multiple
    of 4 and the rest of a row byte by byte: widths 1-13 (rows starting at every index mod 4, rows narrower than a
    group) and photos at every offset mod 4 from an aligned address (copied to an aligned one first): the oracle's
    overlay, the photo untouched."""
    rng = np.random.default_rng(offset)
    for width in range(1, 14):
        for height in (1, 3, 6):
            cam = rng.random((2, 3)).astype(np.float32)
            buffer = np.zeros(height * width * 3 + 8, np.uint8)
            start = (-buffer.ctypes.data + offset) % 4
            photo = buffer[start : start + height * width * 3].reshape(height, width, 3)
            photo[:] = rng.integers(0, 256, photo.shape, dtype=np.uint8)
            before = buffer.copy()
            assert photo.ctypes.data % 4 == offset and photo.flags.c_contiguous
            image, heatmap, _ = fused.render(photo, cam, 0.6, "viridis", True)
            assert counted[-1] == photo.shape
            assert same_bits(image, oracle_overlay(photo, oracle_heatmap(normalize(cam)[0], (height, width)), 0.6,
                                                   "viridis"))
            assert same_bits(buffer, before)
