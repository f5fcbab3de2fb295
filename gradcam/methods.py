"""The CAM methods as small pure functions of (activations, gradients).

Shapes: ``activations`` and ``gradients`` are (batch, h, w, channels) float32, the
gradients being d y^c / d A of each image's own class score y^c before the softmax;
every method returns class activation maps (batch, h, w), >= 0, not yet normalised.
"""
from __future__ import annotations

from typing import Callable

from ._tf import import_tf


def _weighted_sum(activations, weights):
    """ReLU(sum_k weights_k A^k): (B, h, w, K) x (B, K) -> (B, h, w)."""
    tf, _ = import_tf()
    return tf.nn.relu(tf.einsum("bhwk,bk->bhw", activations, weights))


def gradcam_map(activations, gradients):
    """Grad-CAM (Selvaraju et al., 2017): alpha_k = mean_ij dy/dA^k_ij; ReLU(sum_k alpha_k A^k)."""
    tf, _ = import_tf()
    return _weighted_sum(activations, tf.reduce_mean(gradients, axis=(1, 2)))


def counterfactual_map(activations, gradients):
    """Counterfactual Grad-CAM (Selvaraju et al., 2017): Grad-CAM with negated gradients."""
    return gradcam_map(activations, -gradients)


def gradcam_plus_plus_map(activations, gradients):
    """Grad-CAM++ (Chattopadhay et al., 2018), closed form for an exponential score.

    The paper's alpha_ij^k = g^2 / (2 g^2 + sum_ab A^k_ab g^3) with g = dy/dA^k_ij equals
    1 / (2 + sum_ab A^k_ab g) wherever g != 0, and only ReLU(g) > 0 positions count, so
    w_k = sum_ij ReLU(g_ij^k) / (2 + S_k g_ij^k), S_k = sum_ab A^k_ab; map = ReLU(sum_k w_k A^k).

    No epsilon on squares: gradients of 1e-4 (global-average-pooling heads) keep their
    weights, and scaling the logits scales nothing away. A term whose denominator is
    exactly 0 counts 0. This is the paper's variant, without normalising alpha over
    positions (as pytorch-grad-cam; the authors' code and tf-keras-vis also normalise).
    """
    tf, _ = import_tf()
    sum_a = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
    terms = tf.math.divide_no_nan(tf.nn.relu(gradients), 2.0 + sum_a * gradients)
    return _weighted_sum(activations, tf.reduce_sum(terms, axis=(1, 2)))


def hirescam_map(activations, gradients):
    """HiResCAM (Draelos & Carin, 2020): ReLU(sum_k dy/dA^k (element-wise) A^k), no averaging."""
    tf, _ = import_tf()
    return tf.nn.relu(tf.reduce_sum(gradients * activations, axis=-1))


def layercam_map(activations, gradients):
    """LayerCAM (Jiang et al., 2021): ReLU(sum_k ReLU(dy/dA^k) (element-wise) A^k)."""
    tf, _ = import_tf()
    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1))


def xgradcam_map(activations, gradients):
    """XGrad-CAM (Fu et al., 2020): w_k = sum_ij (A^k_ij / sum_ab A^k_ab) dy/dA^k_ij."""
    tf, _ = import_tf()
    total = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
    share = tf.math.divide_no_nan(activations, total)
    return _weighted_sum(activations, tf.reduce_sum(share * gradients, axis=(1, 2)))


#: ``--method`` name -> map function.
METHODS: dict[str, Callable] = {
    "gradcam": gradcam_map,
    "gradcam++": gradcam_plus_plus_map,
    "hirescam": hirescam_map,
    "layercam": layercam_map,
    "xgradcam": xgradcam_map,
    "counterfactual": counterfactual_map,
    "guided-gradcam": gradcam_map,  # times guided backpropagation, at input resolution (Explainer)
}


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
