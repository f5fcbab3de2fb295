"""What a model is, read without TensorFlow: a saved model's configuration (a ``.keras`` zip's
config.json, an HDF5 file's model_config) and the shipped layer lists of the built-in models, so that
wrong names are refused in one line before a model loads.

Imports only the standard library (and h5py for an HDF5 file, when asked).
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..names import closest

_MODEL_CLASSES = ("Functional", "Sequential", "Model")


def read_config(path: str | Path) -> dict | None:
    """A saved model's configuration, or None when the file has none that can be read (the model is
    then loaded to find out what it is). Nothing in it is run."""
    import os
    import zipfile

    if not os.path.isfile(path):  # a FIFO or a device: never opened (it could block or never end)
        return None
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo("config.json")
                if info.file_size > 64 * 2**20:  # a configuration is kilobytes: refuse to inflate more
                    return None
                config = json.loads(archive.read(info))
        else:
            import h5py

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
                config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except Exception:  # any other layout: unknown
        return None
    return config if isinstance(config, dict) else None


def _layers_of(config: dict) -> list | None:
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else None
    return layers if isinstance(layers, list) else None


def input_rank(config: dict | None) -> int | None:
    """The rank of the model's first input (4 for image batches, 5 for volume batches), or None."""
    try:
        for layer in _layers_of(config) or ():
            if layer.get("class_name") == "InputLayer":
                shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
                return len(shape)
    except Exception:
        return None
    return None


def config_layer_names(config: dict | None) -> list[str] | None:
    """The names a layer can be given by (paths through nested models, ``outer/inner``, and the plain
    names of nested layers), input layers left out as the layer search leaves them out; None when
    the configuration does not list the layers (a subclassed model: only loading it tells)."""
    def walk(layers: list, prefix: str) -> list[str] | None:
        names = []
        for layer in layers:
            if not isinstance(layer, dict):
                return None
            name = layer.get("name") or (layer.get("config") or {}).get("name")
            if not isinstance(name, str):
                return None
            if layer.get("class_name") == "InputLayer":
                continue
            names.append(prefix + name)
            if layer.get("class_name") in _MODEL_CLASSES:
                inner = _layers_of(layer)
                if inner is None:
                    return None
                nested = walk(inner, f"{prefix}{name}/")
                if nested is None:
                    return None
                names += nested
        return names

    layers = _layers_of(config) if isinstance(config, dict) else None
    if layers is None:
        return None
    paths = walk(layers, "")
    if paths is None:
        return None
    return paths + [path.rsplit("/", 1)[1] for path in paths if "/" in path]


@lru_cache(maxsize=1)
def _builtin_layers() -> dict[str, list[str]]:
    text = resources.files("gradcam").joinpath("data/layers.json").read_text(encoding="utf-8")
    return json.loads(text)["layers"]


def builtin_layer_names(model_name: str) -> list[str] | None:
    """The layer names of a built-in ``--model`` (shipped with the package), or None for another name."""
    return _builtin_layers().get(model_name.lower())


def unknown_layer_error(layer_name: str, names: list[str]) -> UsageError:
    """The one-line error for a layer name that is not among ``names``, with the closest ones."""
    close = closest(layer_name, names, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return UsageError(f"no layer named {layer_name!r} in the model{hint} (see --list-layers)")


def check_layer_name(layer_name: str | None, names: list[str] | None) -> None:
    """Raise the unknown-layer UsageError when ``names`` are known and ``layer_name`` is not among them."""
    if layer_name is not None and names is not None and layer_name not in names:
        raise unknown_layer_error(layer_name, names)
