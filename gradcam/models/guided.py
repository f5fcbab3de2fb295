"""The guided-backpropagation graph (Springenberg et al., 2015) over the caller's own layers.

Guided backpropagation is defined for the ReLU family: activations that are 0 below a threshold
and pass their input (up to an optional cap) above it. Each of them is followed by a gate
(:func:`guided_gate`) whose gradient passes only where the incoming gradient is positive; with the
activation's own derivative (1 on (0, inf) for ReLU, on (0, 6) for ReLU6), that is the guided ReLU:
grad_in = grad_out * f'(x) * (grad_out > 0).
"""
from __future__ import annotations

from .._tf import import_tf
from ..errors import UsageError
from .graph import ScoreHead, _rebuild, call_layer

#: activation functions (by ``__name__``) gated by guided backpropagation: the ReLU family, whose
#: derivative is 0 or 1. Leaky ones (LeakyReLU, PReLU, ELU, a ReLU with a negative slope) and smooth
#: ones (swish, GELU) are not: the guided rule is defined for a zero-or-pass gradient.
GATED_ACTIVATIONS = ("relu", "relu6")


def is_gated(layer) -> bool:
    """True for a layer whose output is a ReLU-family activation: a ``keras.layers.ReLU`` without a
    negative slope (any ``max_value``/``threshold``: ReLU6 included), or a layer whose ``activation``
    is ``relu`` or ``relu6`` (an ``Activation`` layer, or a Conv/Dense with a built-in activation)."""
    _, keras = import_tf()
    if isinstance(layer, keras.layers.ReLU):
        return not layer.get_config().get("negative_slope")
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) in GATED_ACTIVATIONS


def build_guided_model(model, head: ScoreHead):
    """A new Keras model: images -> class scores, in which every ReLU-family activation is guided.

    The scores are taken before the final softmax/sigmoid exactly as in
    :func:`~gradcam.graph.build_explainer_model` (``head``), so the guided gradient is
    d y^c / d x of the pre-softmax score, not of the probability. Every layer :func:`is_gated`
    is followed by a ``GuidedGate`` layer (:func:`guided_gate`). The caller's model is not
    changed; its layers (and weights) are shared.

    Raises:
        UsageError: the model has no ReLU-family activation: guided backpropagation would be the
            plain gradient.
    """
    _, keras = import_tf()
    gates = []

    class GuidedGate(keras.layers.Layer):
        def call(self, inputs):
            return guided_gate(inputs)

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.Model):
            return _rebuild(layer, args[0], call)
        if layer is head.layer and head.kind.startswith("pre-"):
            return call_layer(layer, True, *args, **kwargs)
        out = call_layer(layer, False, *args, **kwargs)
        if is_gated(layer):
            # the layer's own activation passes the gradient where its derivative is 1; the gate
            # after it, where the incoming gradient is positive: together, the guided ReLU
            gates.append(GuidedGate(name=f"gradcam_guided_gate_{len(gates)}", autocast=False))
            out = gates[-1](out)
        return out

    inputs = keras.Input(batch_shape=tuple(model.inputs[0].shape), name="images")
    guided = keras.Model(inputs, _rebuild(model, inputs, call), name="gradcam_guided")
    if not gates:
        raise UsageError("guided-gradcam: the model has no ReLU or ReLU6 activation, so guided backpropagation "
                         "has nothing to guide (use --method gradcam)")
    return guided


def guided_gate(x):
    """The identity, whose gradient passes only where the incoming gradient is positive. After a ReLU
    (whose gradient passes where its input is positive) this makes the guided ReLU of guided
    backpropagation (Springenberg et al., 2015)."""
    tf, _ = import_tf()

    @tf.custom_gradient
    def _gate(inputs):
        def grad(upstream):
            return upstream * tf.cast(upstream > 0, upstream.dtype)

        return tf.identity(inputs), grad

    return _gate(x)
