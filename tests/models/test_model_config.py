"""Layer names read without TensorFlow (a saved model's configuration, the built-in models' shipped lists)
must be exactly the names the layer search accepts once the model is loaded."""
from __future__ import annotations

import json
import zipfile

import pytest
from conftest import build_tiny_model, keras

from gradcam.cli import main
from gradcam.errors import UsageError
from gradcam.models.layers import iter_layers, resolve_layer
from gradcam.models.model_config import builtin_layer_names, check_layer_name, config_layer_names, read_config


def accepted_names(model) -> set[str]:
    """What resolve_layer finds a layer by: its path, or the plain name of a nested layer."""
    layers = list(iter_layers(model))
    return {info.path for info in layers} | {info.name for info in layers if info.depth}


def nested_model():
    """Sequential[Functional base (conv, last_conv), pooling, Dense]: layers reached through a nested model."""
    k = keras()
    k.utils.set_random_seed(3)
    base_input = k.Input((24, 24, 3))
    x = k.layers.Conv2D(4, 3, activation="relu", name="conv")(base_input)
    base = k.Model(base_input, k.layers.Conv2D(6, 3, activation="relu", name="last_conv")(x), name="base")
    return k.Sequential([k.Input((24, 24, 3)), base, k.layers.GlobalAveragePooling2D(name="gap"),
                         k.layers.Dense(2, activation="softmax", name="head")], name="outer")


@pytest.mark.parametrize("build", [build_tiny_model, nested_model])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_saved_models_configuration_names_the_layers_the_search_accepts(tmp_path, build, suffix):
    model = build()
    path = tmp_path / f"model{suffix}"
    model.save(path)
    names = config_layer_names(read_config(path))
    assert names is not None and set(names) == accepted_names(model)


@pytest.mark.parametrize("name", ["vgg19", "efficientnet-lite0", "mobilenetv2"])
def test_the_shipped_layer_lists_are_the_built_models_layers(name):
    """As a fresh process builds it (the CLI's): Keras numbers auto-named layers per session."""
    k = keras()
    k.backend.clear_session()
    if name == "efficientnet-lite0":
        from gradcam.models.efficientnet_lite import build_model

        model = build_model()
    else:
        from gradcam.names import ARCHITECTURES

        model = getattr(k.applications, ARCHITECTURES[name].constructor)(weights=None)
    assert builtin_layer_names(name) == [info.path for info in iter_layers(model)]


def test_an_unknown_layer_is_refused_from_the_configuration_with_the_words_of_the_loaded_search(tmp_path, capsys):
    model = nested_model()
    path = tmp_path / "nested.keras"
    model.save(path)
    names = config_layer_names(read_config(path))
    for wrong in ("last_cnv", "base/nope", "outer"):
        with pytest.raises(UsageError) as from_config:
            check_layer_name(wrong, names)
        with pytest.raises(UsageError) as from_model:
            resolve_layer(model, wrong)
        assert str(from_config.value) == str(from_model.value)
    for right in ("last_conv", "base/last_conv", "base", "gap"):
        check_layer_name(right, names)


def test_a_configuration_that_lists_no_layers_checks_nothing(tmp_path):
    """A subclassed model's configuration (no layer list), junk, or a zip bomb's config: unknown, so no refusal."""
    path = tmp_path / "sub.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "MyModel", "config": {"units": 3}}))
    assert config_layer_names(read_config(path)) is None
    check_layer_name("anything", config_layer_names(read_config(path)))
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    assert read_config(junk) is None
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b" " * (65 * 2**20))
    assert read_config(bomb) is None
    bad_layers = tmp_path / "bad.keras"
    with zipfile.ZipFile(bad_layers, "w") as archive:
        archive.writestr("config.json", json.dumps({"config": {"layers": [{"name": 3}, "x"]}}))
    assert config_layer_names(read_config(bad_layers)) is None


def test_cli_refuses_an_unknown_layer_of_a_model_file_before_loading_it(tmp_path, tiny_model_file, capsys,
                                                                       monkeypatch):
    import gradcam.models.loading

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(gradcam.models.loading, "load_model_file", no_load)
    photo = tmp_path / "p.png"
    from conftest import write_photo

    write_photo(photo)
    assert main(["--model", str(tiny_model_file), str(photo), "--layer", "last_cnv", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gradcam: error: no layer named 'last_cnv' in the model; closest: last_conv (see --list-layers)"]
