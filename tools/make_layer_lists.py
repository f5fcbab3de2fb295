"""Write gradcam/data/layers.json: the layer names of every built-in --model, so an unknown --layer is
refused before the model (and TensorFlow) loads. Run again when Keras or the list of models changes:

    python tools/make_layer_lists.py
"""
from __future__ import annotations

import json
from pathlib import Path

from gradcam._tf import import_tf
from gradcam.models.layers import iter_layers
from gradcam.names import ARCHITECTURES, MODEL_NAMES

OUTPUT = Path(__file__).resolve().parents[1] / "gradcam" / "data" / "layers.json"


def build(name: str):
    _, keras = import_tf()
    if name == "efficientnet-lite0":
        from gradcam.models.efficientnet_lite import build_model

        return build_model()
    return getattr(keras.applications, ARCHITECTURES[name].constructor)(weights=None)


def main() -> None:
    _, keras = import_tf()
    lists = {}
    for name in MODEL_NAMES:
        lists[name] = [info.path for info in iter_layers(build(name))]
        keras.backend.clear_session()
    OUTPUT.write_text(json.dumps({"keras": keras.__version__, "layers": lists}, separators=(",", ":")) + "\n",
                      encoding="utf-8")
    print(f"{OUTPUT}: {sum(map(len, lists.values()))} layer names of {len(lists)} models")


if __name__ == "__main__":
    main()
