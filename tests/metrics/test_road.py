"""ROAD (Rong et al. 2022): the noisy linear imputation against values solved by hand, its defining
equations and pytorch-grad-cam's own code (tests/metrics/data/road_oracle.npz, made by
tools/make_road_oracle.py); the masks and scores against the same oracle."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradcam.errors import HeatmapError, UsageError
from gradcam.metrics.road import (
    DEFAULT_NOISE,
    DEFAULT_PERCENTILES,
    noisy_linear_impute,
    road_masks,
    road_scores,
    road_settings,
)

ORACLE = np.load(Path(__file__).parent / "data" / "road_oracle.npz")
#: ROAD's neighbour weights written out: 1/6 for the 4 edge neighbours, 1/12 for the 4 diagonal ones
EDGE, DIAGONAL = 1 / 6, 1 / 12


def cases(prefix: str) -> list[int]:
    return sorted(int(key.rsplit("_", 1)[1]) for key in ORACLE.files if key.startswith(prefix))


def one_channel(rows) -> np.ndarray:
    return np.asarray(rows, np.float32)[..., None]


def test_one_pixel_inside_at_an_edge_and_in_a_corner_by_hand():
    image = one_channel([[0, 12, 0], [6, 99, 0], [0, 0, 24]])
    centre = np.zeros((3, 3), bool)
    centre[1, 1] = True
    # edge neighbours 12, 6, 0, 0; diagonal ones 0, 0, 0, 24: 12/6 + 6/6 + 24/12 = 5
    assert noisy_linear_impute(image, centre)[1, 1, 0] == pytest.approx(5.0, abs=1e-5)
    corner = np.zeros((3, 3), bool)
    corner[0, 0] = True
    image = one_channel([[99, 10, 0], [20, 5, 0], [0, 0, 0]])
    # in-image neighbours 10 and 20 (1/6 each) and 5 (1/12): (10/6 + 20/6 + 5/12) / (5/12) = 13
    assert noisy_linear_impute(image, corner)[0, 0, 0] == pytest.approx(13.0, abs=1e-5)
    edge = np.zeros((3, 3), bool)
    edge[0, 1] = True
    image = one_channel([[8, 99, 4], [12, 6, 24], [0, 0, 0]])
    # neighbours 8, 4, 6 (1/6) and 12, 24 (1/12), weights summing to 2/3: (18/6 + 36/12) / (2/3) = 9
    assert noisy_linear_impute(image, edge)[0, 1, 0] == pytest.approx(9.0, abs=1e-5)


def test_two_coupled_pixels_by_hand():
    image = one_channel([[6, 0, 12, 0], [0, 99, 99, 6], [12, 0, 0, 24]])
    removed = np.zeros((3, 4), bool)
    removed[1, 1:3] = True
    # x1 = (6 + 12 + 12)/12 + x2/6 = 5/2 + x2/6 and x2 = 12/6 + 6/6 + 24/12 + x1/6 = 5 + x1/6:
    # x1 = 24/7, x2 = 39/7
    out = noisy_linear_impute(image, removed)
    np.testing.assert_allclose(out[1, 1:3, 0], [24 / 7, 39 / 7], rtol=1e-6)
    np.testing.assert_array_equal(out[~removed], image[~removed])


def neighbour_mean(image: np.ndarray, row: int, column: int) -> np.ndarray:
    """The weighted mean of a pixel's in-image neighbours, by a loop."""
    height, width = image.shape[:2]
    total, weight_sum = np.zeros(image.shape[2]), 0.0
    for down in (-1, 0, 1):
        for right in (-1, 0, 1):
            r, c = row + down, column + right
            if (down, right) != (0, 0) and 0 <= r < height and 0 <= c < width:
                weight = DIAGONAL if down and right else EDGE
                total += weight * image[r, c]
                weight_sum += weight
    return total / weight_sum


@pytest.mark.parametrize("share", [0.05, 0.5, 0.95])
def test_every_imputed_pixel_is_the_mean_of_its_neighbours(share):
    rng = np.random.default_rng(3)
    image = (rng.random((11, 9, 3)) * 255).astype(np.float32)
    removed = rng.random((11, 9)) < share
    image_before, removed_before = image.copy(), removed.copy()
    out = noisy_linear_impute(image, removed)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(out[~removed], image[~removed])
    for row, column in zip(*np.nonzero(removed)):
        np.testing.assert_allclose(out[row, column], neighbour_mean(out.astype(np.float64), row, column), atol=1e-3)
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(removed, removed_before)


def test_a_removed_block_of_a_linear_ramp_is_the_ramp_and_read_only_inputs_work():
    rows, columns = np.mgrid[0:20, 0:30]
    image = np.stack([2 * rows + 3 * columns, 100 - columns, np.full((20, 30), 7)], -1).astype(np.float32)
    removed = np.zeros((20, 30), bool)
    removed[4:15, 10:26] = True
    removed[0:3, 27:] = True  # touching two edges
    image.setflags(write=False)
    removed.setflags(write=False)
    # a linear function is the weighted mean of its neighbours wherever they are symmetric around it
    np.testing.assert_allclose(noisy_linear_impute(image, removed)[4:15, 10:26], image[4:15, 10:26], atol=1e-3)



def test_imputing_before_or_after_an_affine_preprocessing_is_the_same():
    """Why imputing [0, 255] pixels before the model's preprocessing (channel scales, offsets, RGB to BGR)
    gives pytorch-grad-cam's imputation of the preprocessed input, noise apart."""
    rng = np.random.default_rng(4)
    image = (rng.random((12, 10, 3)) * 255).astype(np.float32)
    removed = rng.random((12, 10)) < 0.6
    scale, offset = np.float32([1 / 58.4, 1 / 57.1, 1 / 57.4]), np.float32([-2.1, -2.0, -1.8])
    def preprocess(x):
        return (x * scale + offset)[..., ::-1]
    np.testing.assert_allclose(noisy_linear_impute(preprocess(image), removed),
                               preprocess(noisy_linear_impute(image, removed)), atol=1e-5)

def test_nothing_removed_everything_removed_and_noise():
    rng = np.random.default_rng(0)
    image = (rng.random((8, 8, 3)) * 255).astype(np.float32)
    nothing = noisy_linear_impute(image, np.zeros((8, 8), bool))
    np.testing.assert_array_equal(nothing, image)
    assert nothing is not image
    everything = np.ones((8, 8), bool)
    np.testing.assert_array_equal(noisy_linear_impute(image, everything), 0)
    np.testing.assert_array_equal(noisy_linear_impute(image, everything, fill=np.float32([1, 2, 3])),
                                  np.broadcast_to([1, 2, 3], image.shape))
    removed = rng.random((8, 8)) < 0.5
    exact = noisy_linear_impute(image, removed)
    noisy = noisy_linear_impute(image, removed, 2.0, np.random.default_rng(1))
    np.testing.assert_array_equal(noisy[~removed], image[~removed])
    step = (noisy - exact)[removed]
    assert abs(step.mean()) < 0.5 and 1.6 < step.std() < 2.4
    np.testing.assert_array_equal(noisy, noisy_linear_impute(image, removed, 2.0, np.random.default_rng(1)))
    with pytest.raises(UsageError, match="rng"):
        noisy_linear_impute(image, removed, 1.0)
    with pytest.raises(UsageError, match="noise"):
        noisy_linear_impute(image, removed, -1.0)
    with pytest.raises(UsageError, match="mask"):
        noisy_linear_impute(image, removed[:7])


@pytest.mark.parametrize("case", cases("impute_image_"))
def test_imputation_matches_pytorch_grad_cam(case):
    image, removed = ORACLE[f"impute_image_{case}"], ORACLE[f"impute_removed_{case}"]
    np.testing.assert_allclose(noisy_linear_impute(image, removed), ORACLE[f"impute_result_{case}"],
                               rtol=1e-6, atol=1e-4)


def test_masks_by_hand():
    heatmap = (np.arange(10, dtype=np.float32) / 9).reshape(2, 5)
    # the 50th percentile of 0/9 .. 9/9 is 4.5/9: MoRF removes 5/9 .. 9/9, LeRF 0/9 .. 4/9
    for ties in ("random", "threshold"):
        np.testing.assert_array_equal(road_masks(heatmap, [50], True, ties)[0], heatmap >= 5 / 9 - 1e-6)
        np.testing.assert_array_equal(road_masks(heatmap, [50], False, ties)[0], heatmap <= 4 / 9 + 1e-6)
    # pytorch-grad-cam orders LeRF by float32 1 - heatmap, where 0, 1e-9 and 2e-9 all become 1: at the 60th
    # percentile (virtual index 2.4 of 0, 0.5, 1, 1, 1) the three are tied at the threshold and removed
    tiny = np.float32([[0, 1e-9, 2e-9, 0.5, 1]])
    np.testing.assert_array_equal(road_masks(tiny, [60], False, "threshold")[0], [[1, 1, 1, 0, 0]])
    flat = np.zeros((2, 5), np.float32)
    assert road_masks(flat, [10, 50, 90], True, "threshold").all()  # pytorch-grad-cam: every tie removed
    # random ties: as many as without ties, N - ceil(p (N - 1) / 100) of N = 10: 9, 5, 1
    assert road_masks(flat, [10, 50, 90], True).sum(axis=(1, 2)).tolist() == [9, 5, 1]
    assert road_masks(flat, [10, 50, 90], False, rng=np.random.default_rng(5)).sum(axis=(1, 2)).tolist() == [9, 5, 1]
    # the tied pixels are drawn at random (as ROAD's own code jitters the map), not taken in reading order
    plateau = np.zeros((16, 16), np.float32)
    drawn = road_masks(plateau, [50], True, rng=np.random.default_rng(1))[0]
    assert drawn.sum() == 128 and 0.3 < drawn[:8].mean() < 0.7 and 0.3 < drawn[:, :8].mean() < 0.7
    np.testing.assert_array_equal(drawn, road_masks(plateau, [50], True, rng=np.random.default_rng(1))[0])
    assert not np.array_equal(drawn, road_masks(plateau, [50], True, rng=np.random.default_rng(2))[0])
    with pytest.raises(UsageError, match="percentiles"):
        road_masks(heatmap, [120])
    with pytest.raises(UsageError, match="ties"):
        road_masks(heatmap, [50], ties="first")
    with pytest.raises(HeatmapError):
        road_masks(np.float32([[0, np.nan]]), [50])


@pytest.mark.parametrize("case", cases("mask_heatmap_"))
@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_masks_match_pytorch_grad_cam(case, order):
    heatmap, percentiles = ORACLE[f"mask_heatmap_{case}"], ORACLE["mask_percentiles"]
    theirs = ORACLE[f"mask_{order}_{case}"]
    most = order == "morf"
    np.testing.assert_array_equal(road_masks(heatmap, percentiles, most, "threshold"), theirs)
    ours = road_masks(heatmap, percentiles, most, "random", np.random.default_rng(case))
    key = (heatmap if most else 1 - heatmap).ravel()
    if len(np.unique(key)) == key.size:
        np.testing.assert_array_equal(ours, theirs)
    else:  # ties: the count of a map without them; never a kept pixel above a removed one
        assert (theirs.sum(axis=(1, 2)) >= ours.sum(axis=(1, 2))).all()
        for mask in ours.reshape(len(percentiles), -1):
            if mask.any() and not mask.all():
                assert key[mask].min() >= key[~mask].max()
        counts = key.size - np.ceil(percentiles * (key.size - 1) / 100)
        np.testing.assert_array_equal(ours.sum(axis=(1, 2)), counts)


def linear_softmax(weights: np.ndarray, bias: np.ndarray, calls: list | None = None):
    """predict for the oracle's model: softmax(W x + b), x an image's (3, H, W) pixels flattened."""
    def predict(images):
        if calls is not None:
            calls.append(np.array(images))
        flat = np.asarray(images, np.float64).transpose(0, 3, 1, 2).reshape(len(images), -1)
        logits = flat @ weights.T.astype(np.float64) + bias
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)
    return predict


@pytest.mark.parametrize("case", cases("score_image_"))
def test_scores_match_pytorch_grad_cam(case):
    image, heatmap = ORACLE[f"score_image_{case}"], ORACLE[f"score_heatmap_{case}"]
    calls = []
    predict = linear_softmax(ORACLE[f"score_weights_{case}"], ORACLE[f"score_bias_{case}"], calls)
    road = road_scores(predict, image, heatmap, int(ORACLE[f"score_class_{case}"]), noise=0, ties="threshold")
    np.testing.assert_array_equal(road.percentiles, DEFAULT_PERCENTILES)
    np.testing.assert_allclose(road.morf - road.probability, ORACLE[f"score_morf_{case}"], atol=2e-6)
    np.testing.assert_allclose(road.lerf - road.probability, ORACLE[f"score_lerf_{case}"], atol=2e-6)
    assert road.morf_average == pytest.approx(float(ORACLE[f"score_morf_average_{case}"][0]), abs=2e-6)
    assert road.lerf_average == pytest.approx(float(ORACLE[f"score_lerf_average_{case}"][0]), abs=2e-6)
    assert road.combined == pytest.approx(float(ORACLE[f"score_combined_{case}"][0]), abs=2e-6)
    assert road.combined == pytest.approx((road.lerf_average - road.morf_average) / 2)
    (batch,) = calls  # one batch: MoRF at each percentile, LeRF at each, then the original
    assert batch.shape == (2 * len(DEFAULT_PERCENTILES) + 1, *image.shape)
    np.testing.assert_array_equal(batch[-1], image)
    masks = road_masks(heatmap, DEFAULT_PERCENTILES, False, "threshold")
    np.testing.assert_array_equal(batch[len(DEFAULT_PERCENTILES) + 2], noisy_linear_impute(image, masks[2]))


def test_random_ties_noise_and_seed():
    image, heatmap = ORACLE["score_image_0"], ORACLE["score_heatmap_0"]  # no ties
    predict = linear_softmax(ORACLE["score_weights_0"], ORACLE["score_bias_0"])
    exact = road_scores(predict, image, heatmap, 0, noise=0, ties="threshold")
    same = road_scores(predict, image, heatmap, 0, noise=0, seed=7)
    np.testing.assert_array_equal(same.morf, exact.morf)
    noisy = road_scores(predict, image, heatmap, 0)
    np.testing.assert_array_equal(noisy.lerf, road_scores(predict, image, heatmap, 0).lerf)
    assert not np.array_equal(noisy.lerf, road_scores(predict, image, heatmap, 0, seed=1).lerf)
    assert not np.array_equal(noisy.lerf, exact.lerf)


def quadrant_predict(images):
    """p(class 1) = sigmoid((m - 128) / 16), m the mean of the top-left quarter of each image."""
    half = images.shape[1] // 2
    logit = (np.asarray(images)[:, :half, :half].mean(axis=(1, 2, 3)) - 128) / 16
    return np.stack([1 / (1 + np.exp(logit)), 1 / (1 + np.exp(-logit))], 1)


def test_a_map_of_what_the_model_reads_beats_its_inverse():
    rows, columns = np.mgrid[0:24, 0:24]
    image = np.repeat((60 + 4 * np.abs(rows - columns))[..., None], 3, -1).astype(np.float32)
    image[2:10, 2:10] = 250
    good = np.exp(-((rows - 6) ** 2 + (columns - 6) ** 2) / 40).astype(np.float32)
    right = road_scores(quadrant_predict, image, good, 1)
    wrong = road_scores(quadrant_predict, image, 1 - good, 1)
    assert right.morf_average < 0 < right.combined
    assert wrong.combined < 0 < right.combined


def test_record_and_settings_are_json():
    predict = linear_softmax(ORACLE["score_weights_1"], ORACLE["score_bias_1"])
    road = road_scores(predict, ORACLE["score_image_1"], ORACLE["score_heatmap_1"], 2, percentiles=(25, 75))
    record = json.loads(json.dumps(road.as_record()))
    assert record["road_percentiles"] == [25.0, 75.0]
    assert len(record["road_morf"]) == len(record["road_lerf"]) == 2
    assert record["road_combined"] == pytest.approx(road.combined)
    settings = json.loads(json.dumps(road_settings()))
    assert settings["road_noise"] == DEFAULT_NOISE == pytest.approx(2.55)
    assert settings["road_ties"] == "random" and settings["road_percentiles"] == list(map(float, DEFAULT_PERCENTILES))
    with pytest.raises(UsageError, match="same size"):
        road_scores(predict, ORACLE["score_image_1"], ORACLE["score_heatmap_0"], 0)


def test_with_the_explainers_predict(tiny_model):
    from gradcam.explainers.explainer import Explainer

    explainer = Explainer(tiny_model, layer="last_conv")
    rng = np.random.default_rng(2)
    image = (rng.random((32, 32, 3)) * 255).astype(np.float32)
    heatmap = rng.random((32, 32)).astype(np.float32)
    road = road_scores(explainer.predict, image, heatmap, 1, percentiles=(30, 70))
    direct = road_scores(lambda batch: tiny_model(batch, training=False).numpy(), image, heatmap, 1,
                         percentiles=(30, 70))
    np.testing.assert_allclose(road.morf, direct.morf, rtol=1e-5)
    np.testing.assert_allclose(road.lerf, direct.lerf, rtol=1e-5)
    assert road.probability == pytest.approx(direct.probability, rel=1e-5)


# ---- the solvers (gradcam/metrics/road_solver.py): the fast path against LU -------------------------------

def solver_cases():
    """(name, image float32 (H, W, 3), removed bool (H, W)): random masks of every share up to 90 %, blobs,
    disconnected regions, regions touching only the border, strips one pixel wide and tiny images."""
    rng = np.random.default_rng(11)
    rows, columns = np.mgrid[0:48, 0:40]
    out = []
    for share in (0.1, 0.5, 0.9, 0.99):
        out.append((f"random {share}", rng.random((48, 40)) < share))
    blob = (rows - 20) ** 2 + (columns - 18) ** 2 < 15 ** 2
    out += [("blob", blob), ("all but a blob", ~blob), ("all but one pixel", ~((rows == 3) & (columns == 37)))]
    islands = np.zeros((48, 40), bool)
    islands[2:9, 2:9] = islands[30:46, 5:12] = islands[20:24, 30:40] = True
    islands[10, 20] = True
    out.append(("disconnected regions", islands))
    out.append(("all but the last column", columns < 39))
    out.append(("lines", (rows % 5 != 0) & (columns % 7 != 3)))
    cases = [(name, (rng.random((48, 40, 3)) * 255).astype(np.float32), removed) for name, removed in out]
    for channels in (1, 5):  # the fast path solves 4 channels at a time
        cases.append((f"{channels} channels", (rng.random((30, 20, channels)) * 255).astype(np.float32),
                      rng.random((30, 20)) < 0.8))
    for shape in ((1, 57), (41, 1), (2, 2), (3, 1), (1, 2)):
        removed = rng.random(shape) < 0.7
        removed.flat[0] = False
        removed.flat[-1] = True
        cases.append((f"{shape}", (rng.random((*shape, 3)) * 255).astype(np.float32), removed))
    return cases


@pytest.mark.parametrize("name, image, removed", solver_cases(), ids=[case[0] for case in solver_cases()])
def test_the_fast_path_gives_lus_values(name, image, removed):
    pytest.importorskip("numba")
    from gradcam.metrics import road_solver
    from gradcam.metrics.road import NEIGHBOUR_WEIGHTS

    stencil, rhs = road_solver.system(image, removed, NEIGHBOUR_WEIGHTS)
    reference = road_solver.solve_lu(stencil, rhs, removed)
    fast = road_solver.solve_multigrid(stencil, rhs, removed)
    assert fast is not None and fast.shape == reference.shape == (removed.sum(), image.shape[2])
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-6)  # in grey levels, 0-255
    # the stopping rule: every channel's residual at most RTOL of its right-hand side, checked with LU's matrix
    out = np.zeros(image.shape)
    out[removed] = fast
    padded = np.pad(out, ((1, 1), (1, 1), (0, 0)))
    product = sum(stencil[..., k, None] * padded[k // 3: k // 3 + image.shape[0], k % 3: k % 3 + image.shape[1]]
                  for k in range(9))
    residual = np.linalg.norm((rhs - product)[removed], axis=0)
    assert np.all(residual <= road_solver.RTOL * np.linalg.norm(rhs[removed], axis=0) * 1.01 + 1e-12)


@pytest.mark.parametrize("case", cases("impute_image_"))
def test_the_fast_path_matches_pytorch_grad_cam(case):
    """The oracle's images are small enough that noisy_linear_impute solves them by LU: here the fast path alone."""
    pytest.importorskip("numba")
    from gradcam.metrics import road_solver
    from gradcam.metrics.road import NEIGHBOUR_WEIGHTS

    image, removed = ORACLE[f"impute_image_{case}"], ORACLE[f"impute_removed_{case}"]
    fast = road_solver.solve_multigrid(*road_solver.system(image, removed, NEIGHBOUR_WEIGHTS), removed)
    np.testing.assert_allclose(fast, ORACLE[f"impute_result_{case}"][removed], rtol=1e-6, atol=1e-4)


def test_solve_takes_lu_without_numba_or_when_the_fast_path_gives_up(monkeypatch):
    from gradcam.metrics import road_solver
    from gradcam.metrics.road import NEIGHBOUR_WEIGHTS

    rng = np.random.default_rng(5)
    image = (rng.random((120, 100, 3)) * 255).astype(np.float32)
    removed = rng.random((120, 100)) < 0.9
    removed[60, :] = True
    monkeypatch.setattr(road_solver, "SMALL", 1000)  # so that this test does not follow the tuning
    assert removed.sum() > road_solver.SMALL
    stencil, rhs = road_solver.system(image, removed, NEIGHBOUR_WEIGHTS)
    reference = road_solver.solve_lu(stencil, rhs, removed)
    calls = []
    real = road_solver.solve_multigrid
    monkeypatch.setattr(road_solver, "solve_multigrid", lambda *args: calls.append(args) or real(*args))
    monkeypatch.setenv("GRADCAM_NO_JIT", "1")
    np.testing.assert_array_equal(road_solver.solve(stencil, rhs, removed), reference)
    assert not calls and not road_solver.available()
    monkeypatch.delenv("GRADCAM_NO_JIT")
    if not road_solver.available():
        pytest.skip("numba is not installed here: LU is the only path")
    np.testing.assert_allclose(road_solver.solve(stencil, rhs, removed), reference, atol=1e-6)
    assert len(calls) == 1
    monkeypatch.setattr(road_solver, "MAX_ITERATIONS", 1)  # too few: the fast path gives None, LU answers
    assert real(stencil, rhs, removed, road_solver.RTOL, 1) is None
    np.testing.assert_array_equal(road_solver.solve(stencil, rhs, removed), reference)
    small = np.zeros((120, 100), bool)
    small[10:20, 10:20] = True  # at most SMALL removed pixels: LU, which is cheaper there
    small_system = road_solver.system(image, small, NEIGHBOUR_WEIGHTS)
    np.testing.assert_array_equal(road_solver.solve(*small_system, small), road_solver.solve_lu(*small_system, small))
    assert len(calls) == 2


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (5, 7), (17, 16), (224, 224)])
def test_the_dissection_order_numbers_every_pixel_once_with_the_separators_last(shape):
    from gradcam.metrics.road_solver import dissection

    key = dissection(*shape)
    assert key.shape == shape and sorted(key.ravel().tolist()) == list(range(shape[0] * shape[1]))
    if shape == (17, 16):  # the middle row separates the halves, which come first
        assert key[8].min() > max(key[:8].max(), key[9:].max())
        assert key[:8, 8].min() > key[:8, :8].max()  # the top half's middle column after its left quarter


def test_lu_in_either_order_gives_the_same_values():
    from gradcam.metrics import road_solver
    from gradcam.metrics.road import NEIGHBOUR_WEIGHTS

    for name, image, removed in solver_cases():
        system = road_solver.system(image, removed, NEIGHBOUR_WEIGHTS)
        np.testing.assert_allclose(road_solver.solve_lu(*system, removed), road_solver.solve_lu(*system, removed, "mmd"),
                                   rtol=1e-12, atol=1e-9, err_msg=name)


def test_importing_road_imports_no_numba():
    import subprocess
    import sys

    code = ("import sys, gradcam, gradcam.metrics.road, gradcam.metrics.road_kernels; "
            "assert 'numba' not in sys.modules, 'numba imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_threads_compile_once_and_all_get_lus_values():
    """A fresh process whose first ROAD solves come from four threads at once (numba compiled or loaded once)."""
    pytest.importorskip("numba")
    import subprocess
    import sys

    code = """
import sys, threading
import numpy as np
from gradcam.metrics import road_solver
from gradcam.metrics.road import NEIGHBOUR_WEIGHTS
rng = np.random.default_rng(0)
image = (rng.random((40, 30, 3)) * 255).astype(np.float32)
removed = rng.random((40, 30)) < 0.8
system = road_solver.system(image, removed, NEIGHBOUR_WEIGHTS)
reference = road_solver.solve_lu(*system, removed)
answers = [None] * 4
def run(i):
    answers[i] = road_solver.solve_multigrid(*system, removed)
threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
[thread.start() for thread in threads]
[thread.join() for thread in threads]
assert all(a is not None and np.abs(a - reference).max() < 1e-6 for a in answers), answers
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
