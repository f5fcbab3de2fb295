"""The CAM methods as pure functions, against numbers worked out by hand at gradient scales 1 and 1e-4."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcam.explainers import methods
from gradcam.explainers.methods import guided_gradcam_map

# One image, a 2x2 map, 2 channels.  A[i, j, k] and G[i, j, k]:
A = np.array([[[1.0, 0.0], [2.0, 1.0]],
              [[0.0, 3.0], [1.0, 1.0]]], dtype=np.float32)[None]


G = np.array([[[1.0, -1.0], [3.0, 1.0]],
              [[-2.0, 2.0], [2.0, 2.0]]], dtype=np.float32)[None]


def run(method, a=A, g=G):
    tf = pytest.importorskip("tensorflow")
    return method(tf.constant(a), tf.constant(g)).numpy()[0]


# Realistic scales: dy/dA is about 1 for a dense head on a small map, and about 1e-4 behind a
# global-average-pooling head (W / (h w), e.g. 0.02 / 196). Linear methods scale with it.
SCALES = [1.0, 1e-4]


@pytest.mark.parametrize("s", SCALES)
def test_gradcam_by_hand(s):
    # alpha_0 = (1 + 3 - 2 + 2) / 4 = 1,  alpha_1 = (-1 + 1 + 2 + 2) / 4 = 1
    # map = ReLU(1*A0 + 1*A1) = [[1, 3], [3, 2]]
    np.testing.assert_allclose(run(methods.gradcam_map, g=s * G), s * np.array([[1, 3], [3, 2]]), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_gradcam_relu_and_unequal_weights(s):
    g = G.copy()
    g[..., 1] *= -3  # alpha_1 = -3
    # map = ReLU(A0 - 3 A1) = ReLU([[1, -1], [-9, -2]]) = [[1, 0], [0, 0]]
    np.testing.assert_allclose(run(methods.gradcam_map, g=s * g), s * np.array([[1, 0], [0, 0]]), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_counterfactual_by_hand(s):
    g = G.copy()
    g[..., 1] *= -3  # alphas with negated gradients: -1 and +3
    # map = ReLU(-A0 + 3 A1) = ReLU([[-1, 1], [9, 2]]) = [[0, 1], [9, 2]]
    np.testing.assert_allclose(run(methods.counterfactual_map, g=s * g), s * np.array([[0, 1], [9, 2]]), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_hirescam_by_hand(s):
    # sum_k G*A: (1*1 + -1*0, 3*2 + 1*1; -2*0 + 2*3, 2*1 + 2*1) = [[1, 7], [6, 4]]
    g = G.copy()
    g[0, 0, 0, 1] = -9.0  # channel 1 at (0, 0) has A = 0: still 1; and a negative sum is cut:
    g[0, 1, 1] = [-3.0, -3.0]  # (1, 1): -3*1 - 3*1 = -6 -> ReLU -> 0
    np.testing.assert_allclose(run(methods.hirescam_map, g=s * g), s * np.array([[1, 7], [6, 0]]), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_layercam_by_hand(s):
    # sum_k ReLU(G)*A: (1, 6 + 1; 0 + 6, 2 + 2) = [[1, 7], [6, 4]] -- and with the negative kept out:
    g = G.copy()
    g[0, 0, 1, 0] = -3.0  # channel 0 at (0, 1): ReLU(-3) * 2 = 0 instead of 6
    np.testing.assert_allclose(run(methods.layercam_map, g=s * g), s * np.array([[1, 1], [6, 4]]), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_xgradcam_by_hand(s):
    # channel 0: sum A = 4, w0 = (1*1 + 2*3 + 0*-2 + 1*2)/4 = 9/4
    # channel 1: sum A = 5, w1 = (0*-1 + 1*1 + 3*2 + 1*2)/5 = 9/5
    expected = [[9 / 4 * 1 + 9 / 5 * 0, 9 / 4 * 2 + 9 / 5 * 1], [9 / 4 * 0 + 9 / 5 * 3, 9 / 4 * 1 + 9 / 5 * 1]]
    np.testing.assert_allclose(run(methods.xgradcam_map, g=s * G), s * np.array(expected), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_gradcam_plus_plus_by_hand(s):
    # alpha = g^2 / (2 g^2 + sum(A) g^3) = 1 / (2 + sum(A) g), w = sum alpha * ReLU(g)
    # channel 0 (sum A = 4), g = s * [1, 3, -2, 2]: ReLU drops -2
    w0 = s / (2 + 4 * s) + 3 * s / (2 + 12 * s) + 2 * s / (2 + 8 * s)
    # channel 1 (sum A = 5), g = s * [-1, 1, 2, 2]
    w1 = s / (2 + 5 * s) + 2 * (2 * s / (2 + 10 * s))
    if s == 1.0:
        assert (w0, w1) == pytest.approx((1 / 6 + 3 / 14 + 2 / 10, 1 / 7 + 4 / 12))
    expected = np.maximum(w0 * A[0, ..., 0] + w1 * A[0, ..., 1], 0)
    np.testing.assert_allclose(run(methods.gradcam_plus_plus_map, g=s * G), expected, rtol=1e-5)


def test_gradcam_plus_plus_zero_denominator_is_zero_not_nan():
    out = run(methods.gradcam_plus_plus_map, a=np.zeros_like(A), g=np.zeros_like(G))
    assert np.all(out == 0)


def paper_gradcam_plus_plus(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Grad-CAM++ exactly as the paper writes it, in float64: (h, w, K), (h, w, K) -> (h, w)."""
    a, g = a.astype(np.float64), g.astype(np.float64)
    denominator = 2 * g**2 + a.sum(axis=(0, 1)) * g**3
    alpha = np.divide(g**2, denominator, out=np.zeros_like(g), where=denominator != 0)
    weights = (alpha * np.maximum(g, 0)).sum(axis=(0, 1))
    return np.maximum((a * weights).sum(axis=-1), 0)


@settings(max_examples=60, deadline=None)
@given(log_scale=st.floats(-6, 3), seed=st.integers(0, 10_000), h=st.integers(1, 7), channels=st.integers(1, 12))
def test_gradcam_plus_plus_equals_the_paper_at_every_scale(log_scale, seed, h, channels):
    rng = np.random.default_rng(seed)
    a = np.maximum(rng.normal(0.5, 1.0, (1, h, h, channels)), 0).astype(np.float32)  # post-ReLU activations
    g = (10.0**log_scale * rng.normal(0, 1, (1, h, h, channels))).astype(np.float32)
    expected = paper_gradcam_plus_plus(a[0], g[0])
    out = run(methods.gradcam_plus_plus_map, a=a, g=g)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * expected.max() + 1e-30)


def test_gradcam_plus_plus_keeps_small_global_average_pooling_gradients():
    # Behind a GAP head over a 14x14 map, g = W / 196: W = 0.02 gives g ~ 1e-4 at every position.
    a = np.random.default_rng(4).uniform(0, 2, (1, 14, 14, 2)).astype(np.float32)
    g = np.empty_like(a)
    g[..., 0], g[..., 1] = 0.02 / 196, 0.5 / 196
    out = run(methods.gradcam_plus_plus_map, a=a, g=g)
    expected = paper_gradcam_plus_plus(a[0], g[0])
    assert expected.max() > 0
    np.testing.assert_allclose(out, expected, rtol=1e-4)


def test_guided_gradcam_map_by_hand():
    tf = pytest.importorskip("tensorflow")
    guided = np.zeros((1, 2, 2, 3), np.float32)
    guided[0, 0, 0] = [1.0, -3.0, 2.0]  # max |.| = 3
    guided[0, 1, 1] = [0.5, 0.5, 0.5]
    cams = np.array([[[2.0, 2.0], [2.0, 4.0]]], np.float32)  # same size: no resampling
    out = guided_gradcam_map(tf.constant(guided), tf.constant(cams)).numpy()
    np.testing.assert_allclose(out[0], [[6.0, 0.0], [0.0, 2.0]], rtol=1e-6)


def rank_one(pattern, loadings):
    """A^k_ij = p_ij c_k: (1, h, w, K) float32."""
    return (np.asarray(pattern, np.float64)[..., None] * np.asarray(loadings, np.float64)).astype(np.float32)[None]


@pytest.mark.parametrize("s", SCALES)
def test_eigencam_by_hand(s):
    p = [[1.0, 2.0], [3.0, 6.0]]  # mean 3
    # centred: (p - 3) c^T, whose first principal direction is c / |c|: projection (p - 3)|c|;
    # c = (1, 2): the channel mean 1.5 p rises with p, so the sign is +: ReLU([-2, -1, 0, 3] sqrt 5)
    a = rank_one(p, [s * 1.0, s * 2.0])
    np.testing.assert_allclose(run(methods.eigencam_map, a=a, g=np.zeros_like(a)),
                               s * np.sqrt(5) * np.array([[0, 0], [0, 3]]), rtol=1e-4, atol=1e-6 * s)
    # c = (-1, -2): the channel mean falls as p rises, so the sign flips: ReLU(-(p - 3) sqrt 5)
    a = rank_one(p, [-s, -2.0 * s])
    np.testing.assert_allclose(run(methods.eigencam_map, a=a, g=np.zeros_like(a)),
                               s * np.sqrt(5) * np.array([[2, 1], [0, 0]]), rtol=1e-4, atol=1e-6 * s)


@pytest.mark.parametrize("s", SCALES)
def test_eigengradcam_by_hand(s):
    # g * A = p c^T with p = [[1, 2], [3, 6]] * s and c = (1, 2): as Eigen-CAM of that product
    a = rank_one([[1.0, 2.0], [3.0, 6.0]], [1.0, 1.0])
    g = np.ones_like(a) * np.array([1.0, 2.0], np.float32) * s
    np.testing.assert_allclose(run(methods.eigengradcam_map, a=a, g=g),
                               s * np.sqrt(5) * np.array([[0, 0], [0, 3]]), rtol=1e-4, atol=1e-6 * s)


@pytest.mark.parametrize("s", SCALES)
def test_eigen_smooth_projects_the_weighted_activations(s):
    # Grad-CAM's weighted activations alpha_k A^k = (1 A0, 1 A1) for G (alphas 1, 1): with eigen-smooth
    # the map is the first component of that (h w, 2) matrix, not its sum
    tf = pytest.importorskip("tensorflow")
    smooth = methods.method_map("gradcam", eigen=True)
    out = smooth(tf.constant(A), tf.constant(s * G)).numpy()[0]
    weighted = (s * A[0]).reshape(4, 2).astype(np.float64)
    centred = weighted - weighted.mean(axis=0)
    _, _, vt = np.linalg.svd(centred)
    projection = centred @ vt[0]
    if (projection * centred.mean(axis=1)).sum() < 0:
        projection = -projection
    np.testing.assert_allclose(out, np.maximum(projection, 0).reshape(2, 2), rtol=1e-4, atol=1e-6 * s)
    plain = methods.METHODS["gradcam"](tf.constant(A), tf.constant(s * G)).numpy()[0]
    assert not np.allclose(out, plain)


@settings(max_examples=80, deadline=None)
@given(log_scale=st.floats(-6, 3), seed=st.integers(0, 10_000), h=st.integers(1, 7), channels=st.integers(1, 12))
def test_signed_activations_give_bounded_continuous_weights(log_scale, seed, h, channels):
    """Activations of both signs (ConvNeXt, LayerNorm layers): Grad-CAM++'s and XGrad-CAM's weights
    stay finite and bounded (|w_k| <= sum ReLU(g) / 2 and <= max |g|), and a change of g by one part in
    a million moves no weight by more than a few parts in a hundred thousand of that bound."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, (1, h, h, channels)).astype(np.float32)
    g = (10.0**log_scale * rng.normal(0, 1, (1, h, h, channels))).astype(np.float32)
    nudged = (g * (1 + 1e-6 * rng.normal(0, 1, g.shape))).astype(np.float32)
    tf = pytest.importorskip("tensorflow")
    for weighted, bound in ((methods.gradcam_plus_plus_weighted, np.maximum(g, 0).sum(axis=(0, 1, 2)) / 2),
                            (methods.xgradcam_weighted, np.abs(g).max(axis=(0, 1, 2)))):
        safe = np.where(a == 0, 1, a)
        weights = (weighted(tf.constant(a), tf.constant(g)).numpy() / safe)[0, 0, 0]  # w_k A^k / A^k
        moved = (weighted(tf.constant(a), tf.constant(nudged)).numpy() / safe)[0, 0, 0]
        assert np.all(np.isfinite(weights))
        assert np.all(np.abs(weights) <= bound * (1 + 1e-5) + 1e-30)
        assert np.all(np.abs(moved - weights) <= 1e-4 * bound + 1e-30)


def test_gradcam_plus_plus_near_the_papers_pole_by_hand():
    # one channel, A = (1, -2): S = -1; g = (1.999, 0): the paper's alpha = 1 / (2 + S g) = 1 / 0.001
    a = np.array([[[[1.0], [-2.0]]]], np.float32)
    g = np.array([[[[1.999], [0.0]]]], np.float32)
    out = run(methods.gradcam_plus_plus_map, a=a, g=g)
    # held: alpha = 1 / (2 + max(-1.999, 0)) = 1/2, w = 1.999 / 2; map = ReLU(w A) = (0.9995, 0)
    np.testing.assert_allclose(out, [[0.9995, 0.0]], rtol=1e-5)


def test_xgradcam_on_a_channel_that_sums_to_zero_by_hand():
    # A = (1, -1): sum A = 0 (the paper's pole); sum |A| = 2: w = (1 * 3 + -1 * 1) / 2 = 1
    a = np.array([[[[1.0], [-1.0]]]], np.float32)
    g = np.array([[[[3.0], [1.0]]]], np.float32)
    np.testing.assert_allclose(run(methods.xgradcam_map, a=a, g=g), [[1.0, 0.0]], rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), depth=st.integers(1, 4), h=st.integers(1, 5), channels=st.integers(1, 6),
       name=st.sampled_from(["gradcam", "gradcam++", "hirescam", "layercam", "xgradcam", "counterfactual",
                             "eigencam", "eigengradcam"]))
def test_every_method_on_a_volume_equals_the_method_on_its_positions_laid_flat(seed, depth, h, channels, name):
    """3-D layers (B, d, h, w, K): every reduction runs over all spatial axes, so a volume's map is the
    map of the same positions laid out as one 2-D (d * h, w) grid, reshaped back."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(seed)
    a = rng.normal(0.3, 1.0, (2, depth, h, 3, channels)).astype(np.float32)
    g = rng.normal(0.0, 1e-3, a.shape).astype(np.float32)
    method = methods.METHODS[name]
    volume = method(tf.constant(a), tf.constant(g)).numpy()
    flat = method(tf.constant(a.reshape(2, depth * h, 3, channels)), tf.constant(g.reshape(2, depth * h, 3, channels)))
    assert volume.shape == (2, depth, h, 3)
    np.testing.assert_allclose(volume, flat.numpy().reshape(volume.shape), rtol=1e-4, atol=1e-6 * np.abs(volume).max())
    if name.startswith("eigen"):
        return  # an SVD's vectors are not unique where singular values tie: the flat layout is the check
    from reference import reference  # and the NumPy reference, written for 2-D maps, on the flat layout

    expected = reference(name)(a.reshape(2, depth * h, 3, channels), g.reshape(2, depth * h, 3, channels))
    np.testing.assert_allclose(volume, expected.reshape(volume.shape), rtol=1e-3, atol=1e-5 * np.abs(expected).max())
