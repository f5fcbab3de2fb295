"""Signed activations: what to tell the user when the explained layer has negative activations and the
method's formula assumes non-negative (post-ReLU) ones (Grad-CAM++, XGrad-CAM)."""
from __future__ import annotations

from .methods import ASSUME_NON_NEGATIVE


def signed_note(layer_name: str, method: str) -> str | None:
    """The note for a layer seen with negative activations, explained by ``method``; None when the
    method's formula does not assume non-negative activations."""
    if method not in ASSUME_NON_NEGATIVE:
        return None
    return (f"layer {layer_name} has negative activations; {method}'s formula assumes "
            "non-negative (post-ReLU) ones, so its weights are bounded as described in docs/methods.md "
            "(a layer after a ReLU, or --method gradcam, avoids this)")
