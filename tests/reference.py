"""Every gradient method written again in NumPy float64, from the papers, without gradcam's code:
the oracle that the explainer's maps are checked against. (B, h, w, K) activations and gradients
in, (B, h, w) maps out."""
from __future__ import annotations

import numpy as np


def _weighted_sum(activations, weights):
    return np.maximum(np.einsum("bhwk,bk->bhw", activations, weights), 0)


def gradcam(a, g):
    return _weighted_sum(a, g.mean(axis=(1, 2)))


def counterfactual(a, g):
    return gradcam(a, -g)


def gradcam_plus_plus(a, g):
    """alpha = g^2 / (2 g^2 + S g^3), S = sum A, over positions with g > 0; for A >= 0 (the paper's
    setting) 2 + S g >= 2; with signed A it is held at >= 2 (alpha in (0, 1/2])."""
    total = a.sum(axis=(1, 2), keepdims=True)
    positive = g > 0
    denominator = 2 * g**2 + np.maximum(total * g, 0) * g**2
    alpha = np.divide(g**2, denominator, out=np.zeros_like(g), where=positive)
    return _weighted_sum(a, (alpha * np.maximum(g, 0)).sum(axis=(1, 2)))


def hirescam(a, g):
    return np.maximum((a * g).sum(axis=-1), 0)


def layercam(a, g):
    return np.maximum((a * np.maximum(g, 0)).sum(axis=-1), 0)


def xgradcam(a, g):
    """w_k = sum A g / sum |A| (sum A for the paper's A >= 0)."""
    norm = np.abs(a).sum(axis=(1, 2))
    weights = np.divide((a * g).sum(axis=(1, 2)), norm, out=np.zeros_like(norm), where=norm > 0)
    return _weighted_sum(a, weights)


def _first_component(values):
    maps = []
    for image in values:
        h, w, k = image.shape
        flat = image.reshape(h * w, k)
        centred = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ vt[0]
        if (projection * centred.mean(axis=1)).sum() < 0:
            projection = -projection
        maps.append(np.maximum(projection, 0).reshape(h, w))
    return np.stack(maps)


def eigencam(a, g):
    return _first_component(a)


def eigengradcam(a, g):
    return _first_component(a * g)


#: method name -> reference map function of NumPy arrays (float64 inside)
REFERENCE = {
    "gradcam": gradcam, "gradcam++": gradcam_plus_plus, "hirescam": hirescam, "layercam": layercam,
    "xgradcam": xgradcam, "counterfactual": counterfactual, "eigencam": eigencam, "eigengradcam": eigengradcam,
}


def reference(name: str):
    """The reference map of ``name`` taking arrays or tensors."""
    method = REFERENCE[name]

    def cam(activations, gradients):
        return method(np.asarray(activations, np.float64), np.asarray(gradients, np.float64))

    return cam
