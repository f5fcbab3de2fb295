"""The CAM methods as small pure functions of (activations, gradients).

Shapes: ``activations`` and ``gradients`` are (batch, h, w, channels) float32 -- or (batch, d, h, w,
channels) for a 3-D (volumetric) layer: every reduction runs over all spatial axes --, the
gradients being d y^c / d A of each image's own class score y^c before the softmax.
Each method gives *weighted activations* (batch, h, w, channels); the map (batch, h, w),
>= 0 and not yet normalised, is ReLU of their sum over channels, or of their first
principal component (eigen-smooth; always for Eigen-CAM).
"""
from __future__ import annotations

from typing import Callable

from .._tf import import_tf
from ..names import PERTURBATION_METHOD_NAMES


def combine(weighted, eigen: bool = False):
    """The map from weighted activations (B, h, w, K): ReLU(sum_k), or with ``eigen`` (eigen-smooth)
    ReLU(first principal component) -- see :func:`first_component`. Returns (B, h, w)."""
    tf, _ = import_tf()
    return tf.nn.relu(first_component(weighted) if eigen else tf.reduce_sum(weighted, axis=-1))


def first_component(values):
    """Projection of each position's K values on their first principal component: (B, h, w, K) -> (B, h, w).

    As pytorch-grad-cam's ``get_2d_projection``: the (h w, K) matrix is centred over positions and
    projected on its first right singular vector. The sign of a component is arbitrary; it is chosen
    so that the projection agrees (correlates positively) with the channel mean of ``values``.
    """
    tf, _ = import_tf()
    shape = tf.shape(values)
    flat = tf.reshape(values, (shape[0], -1, shape[-1]))  # (B, positions, K), any number of spatial axes
    centred = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
    _, _, v = tf.linalg.svd(centred, full_matrices=False)  # v: (B, K, min(hw, K))
    projection = tf.einsum("bpk,bk->bp", centred, v[:, :, 0])
    mean = tf.reduce_mean(centred, axis=-1)  # the centred channel mean
    sign = tf.where(tf.reduce_sum(projection * mean, axis=1, keepdims=True) < 0, -1.0, 1.0)
    return tf.reshape(projection * sign, shape[:-1])


def spatial_axes(values) -> tuple[int, ...]:
    """The spatial axes of (B, ..., K) values: (1, 2) for a 2-D map, (1, 2, 3) for a volume."""
    return tuple(range(1, len(values.shape) - 1))


def _scaled(activations, weights):
    """w_k A^k for channel weights (B, K): (B, h, w, K) (or (B, d, h, w, K))."""
    return activations * weights[(slice(None),) + (None,) * len(spatial_axes(activations)) + (slice(None),)]


def gradcam_weighted(activations, gradients):
    """Grad-CAM (Selvaraju et al., 2017): alpha_k A^k with alpha_k = mean_ij dy/dA^k_ij."""
    tf, _ = import_tf()
    return _scaled(activations, tf.reduce_mean(gradients, axis=spatial_axes(gradients)))


def counterfactual_weighted(activations, gradients):
    """Counterfactual Grad-CAM (Selvaraju et al., 2017): Grad-CAM with negated gradients."""
    return gradcam_weighted(activations, -gradients)


def gradcam_plus_plus_weighted(activations, gradients):
    """Grad-CAM++ (Chattopadhay et al., 2018), closed form for an exponential score.

    The paper's alpha_ij^k = g^2 / (2 g^2 + sum_ab A^k_ab g^3) with g = dy/dA^k_ij equals
    1 / (2 + S_k g) wherever g != 0, S_k = sum_ab A^k_ab, and only ReLU(g) > 0 positions count:
    w_k = sum_ij ReLU(g_ij^k) / (2 + max(S_k g_ij^k, 0)); map = ReLU(sum_k w_k A^k).

    The paper assumes post-ReLU activations (A >= 0), so that S_k g >= 0 wherever g > 0 and
    alpha lies in (0, 1/2]; there the max changes nothing. On signed activations (a ConvNeXt
    or LayerNorm layer) S_k g can pass through -2 and the paper's alpha through a pole (weights
    of +-50 for a tiny change of g); the max keeps alpha in (0, 1/2], its range under the
    paper's assumption, so the weights stay bounded (|w_k| <= sum ReLU(g) / 2) and continuous.

    No epsilon on squares: gradients of 1e-4 (global-average-pooling heads) keep their
    weights, and scaling the logits scales nothing away. This is the paper's variant, without
    normalising alpha over positions (as pytorch-grad-cam; the authors' code and tf-keras-vis
    also normalise).
    """
    tf, _ = import_tf()
    axes = spatial_axes(activations)
    sum_a = tf.reduce_sum(activations, axis=axes, keepdims=True)
    terms = tf.nn.relu(gradients) / (2.0 + tf.nn.relu(sum_a * gradients))
    return _scaled(activations, tf.reduce_sum(terms, axis=axes))


def hirescam_weighted(activations, gradients):
    """HiResCAM (Draelos & Carin, 2020): dy/dA^k (element-wise) A^k, no averaging."""
    return gradients * activations


def layercam_weighted(activations, gradients):
    """LayerCAM (Jiang et al., 2021): ReLU(dy/dA^k) (element-wise) A^k."""
    tf, _ = import_tf()
    return tf.nn.relu(gradients) * activations


def xgradcam_weighted(activations, gradients):
    """XGrad-CAM (Fu et al., 2020): w_k A^k with w_k = sum_ij (A^k_ij / sum_ab |A^k_ab|) dy/dA^k_ij.

    The paper divides by sum_ab A^k_ab, for post-ReLU activations (A >= 0), where that equals
    sum |A|. On signed activations sum A can pass through zero and the weight through a pole;
    sum |A| keeps |w_k| <= max |g| (0 for an all-zero channel).
    """
    tf, _ = import_tf()
    axes = spatial_axes(activations)
    share = tf.math.divide_no_nan(activations, tf.reduce_sum(tf.abs(activations), axis=axes, keepdims=True))
    return _scaled(activations, tf.reduce_sum(share * gradients, axis=axes))


def eigencam_weighted(activations, gradients):
    """Eigen-CAM (Muhammad & Yeasin, 2020): the activations themselves, always projected on their
    first principal component (gradient-free)."""
    return activations


def eigengradcam_weighted(activations, gradients):
    """Eigen-Grad-CAM: activations times gradients, projected on their first principal component."""
    return gradients * activations


#: ``--method`` name -> weighted activations (B, h, w, K) of (activations, gradients).
WEIGHTED: dict[str, Callable] = {
    "gradcam": gradcam_weighted,
    "gradcam++": gradcam_plus_plus_weighted,
    "hirescam": hirescam_weighted,
    "layercam": layercam_weighted,
    "xgradcam": xgradcam_weighted,
    "counterfactual": counterfactual_weighted,
    "eigencam": eigencam_weighted,
    "eigengradcam": eigengradcam_weighted,
}

#: methods whose formulas assume non-negative (post-ReLU) activations: see their docstrings.
ASSUME_NON_NEGATIVE = frozenset({"gradcam++", "xgradcam"})

#: methods whose map is always the first principal component.
ALWAYS_EIGEN = frozenset({"eigencam", "eigengradcam"})

#: methods that weight channels by the class score of perturbed inputs (run by the Explainer).
PERTURBATION_METHODS = PERTURBATION_METHOD_NAMES

#: the method whose Grad-CAM map is multiplied by guided backpropagation (:func:`guided_gradcam_map`).
GUIDED_METHOD = "guided-gradcam"


def method_map(name: str, eigen: bool = False) -> Callable:
    """The map function (activations, gradients) -> (B, h, w) of a :data:`WEIGHTED` method."""
    weighted, eigen = WEIGHTED[name], eigen or name in ALWAYS_EIGEN

    def cam(activations, gradients):
        return combine(weighted(activations, gradients), eigen)

    cam.__name__ = f"{name}_map"
    return cam


#: ``--method`` name -> map function (activations, gradients) -> (B, h, w), >= 0.
METHODS: dict[str, Callable] = {name: method_map(name) for name in WEIGHTED}
gradcam_map, gradcam_plus_plus_map, hirescam_map, layercam_map, xgradcam_map, counterfactual_map = (
    METHODS[name] for name in ("gradcam", "gradcam++", "hirescam", "layercam", "xgradcam", "counterfactual"))
eigencam_map, eigengradcam_map = METHODS["eigencam"], METHODS["eigengradcam"]


def channel_weighted_map(activations, weights, eigen: bool = False):
    """Score-CAM and Ablation-CAM: ReLU(sum_k w_k A^k) (or its first component) for weights (B, K)."""
    return combine(_scaled(activations, weights), eigen)


def guided_gradcam_map(guided_gradients, cams):
    """Guided Grad-CAM (Selvaraju et al., 2017): guided backpropagation times Grad-CAM.

    Args:
        guided_gradients: (B, H, W, 3) guided gradients of the score w.r.t. the input image.
        cams: (B, h, w) Grad-CAM maps, upsampled bilinearly to (H, W) here.

    Returns:
        (B, H, W): max over colour channels of |guided gradient| x upsampled Grad-CAM.
    """
    tf, _ = import_tf()
    size = tf.shape(guided_gradients)[1:3]
    upsampled = tf.image.resize(cams[..., None], size, method="bilinear")
    return tf.reduce_max(tf.abs(guided_gradients * upsampled), axis=-1)
