"""Dense layers whose input gradient TensorFlow computes fast on a CPU.

TensorFlow differentiates ``y = x @ W`` with respect to ``x`` as ``dy @ W^T`` (a MatMul with ``transpose_b``).
On a CPU that product is 4-7x slower than the same numbers computed as ``(W @ dy^T)^T`` once the batch has a
few rows: VGG19's first dense layer (W 25088 x 4096, 8 photos) 183 ms instead of 31, its second 30 instead
of 4.3; the two made the Grad-CAM step 10 % slower than the bare forward pass. :func:`fast_backward_dense`
calls a plain ``keras.layers.Dense`` with the same forward operations on the same (caller's) variables and
only that gradient taken the other way round: equal to TensorFlow's up to the summation order (relative
differences ~1e-7).
"""
from __future__ import annotations

import itertools

from .._tf import import_tf

_CLASS: list = []
_NUMBERS = itertools.count()


def wrapper_options(layer, role: str) -> dict:
    """The ``keras.layers.Layer`` options of a layer that calls the caller's ``layer`` in a graph built here: a
    name unique in the process (a shared layer is wrapped once per call; one name twice, Keras refuses the
    graph) and ``layer``'s own dtype policy and autocast, not the global policy's (a float32 model explained while
    mixed_float16 or float64 is the global policy computes in float32, as the caller's model does)."""
    return {"name": f"gradcam_{role}_{next(_NUMBERS)}_{layer.name}", "dtype": layer.dtype_policy,
            "autocast": layer.autocast}


def plain_dense(layer, inputs) -> bool:
    """Whether ``layer`` is a ``keras.layers.Dense`` itself (no subclass: its ``call`` is Keras's) computing in
    float32 on float32 variables, not quantized, called on a rank-2 float32 tensor (a batch of vectors)."""
    _, keras = import_tf()
    return (type(layer) is keras.layers.Dense and getattr(layer, "quantization_mode", None) is None
            and layer.compute_dtype == "float32" and layer.variable_dtype == "float32"
            and len(getattr(inputs, "shape", ())) == 2
            and getattr(inputs, "dtype", None) is not None
            and keras.backend.standardize_dtype(inputs.dtype) == "float32")


def fast_backward_dense(layer, linear: bool):
    """A new Keras layer that computes ``layer`` (a :func:`plain_dense` one) on its own variables (nothing
    copied: later weight changes count), without its activation when ``linear``; its gradient with respect to
    the input taken as ``(W @ dy^T)^T``."""
    return _layer_class()(layer, linear)


def matmul_fast_backward(inputs, kernel):
    """``keras.ops.matmul(inputs, kernel)`` for float32 (B, N) @ (N, M), differentiated as
    d inputs = (kernel @ dy^T)^T and d kernel = inputs^T @ dy."""
    tf, keras = import_tf()

    @tf.custom_gradient
    def product(a, b):
        def gradient(dy):
            return tf.transpose(tf.matmul(b, dy, transpose_b=True)), tf.matmul(a, dy, transpose_a=True)

        return keras.ops.matmul(a, b), gradient

    return product(inputs, tf.convert_to_tensor(kernel))


def _layer_class():
    """The Keras layer class of :func:`fast_backward_dense` (made once, lazily)."""
    if not _CLASS:
        tf, keras = import_tf()

        class FastBackwardDense(keras.layers.Layer):
            """Keras's ``Dense.call`` (matmul, add the bias, the activation) on another layer's variables."""

            def __init__(self, layer, linear: bool, **kwargs):
                super().__init__(**wrapper_options(layer, "fast_backward"), **kwargs)
                self._wrapped = [layer]  # the caller's variables, used not copied
                self._linear = linear

            @tf.autograph.experimental.do_not_convert
            def call(self, inputs):
                layer = self._wrapped[0]
                values = matmul_fast_backward(inputs, layer.kernel)
                if layer.bias is not None:
                    values = keras.ops.add(values, layer.bias)
                if layer.activation is not None and not self._linear:
                    values = layer.activation(values)
                return values

            def compute_output_shape(self, input_shape):
                return self._wrapped[0].compute_output_shape(input_shape)

        _CLASS.append(FastBackwardDense)
    return _CLASS[0]
