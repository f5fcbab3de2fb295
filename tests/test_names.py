"""The one list of names: models, methods, files; and the "did you mean" hint."""
from __future__ import annotations

from gradcam import names
from gradcam.arguments import build_parser
from gradcam.explainers.methods import GUIDED_METHOD, METHODS, PERTURBATION_METHODS


def test_method_names_are_the_methods():
    assert set(names.METHOD_NAMES) == set(METHODS) | set(PERTURBATION_METHODS) | {GUIDED_METHOD}
    assert len(names.METHOD_NAMES) == len(METHODS) + len(PERTURBATION_METHODS) + 1
    assert GUIDED_METHOD not in METHODS  # its map is not one of (activations, gradients) alone


def test_cli_offers_exactly_the_known_names():
    parser = build_parser()
    method = next(a for a in parser._actions if a.dest == "method")
    assert tuple(method.choices) == names.METHOD_NAMES
    model = next(a for a in parser._actions if a.dest == "model")
    assert all(name in model.help for name in names.ARCHITECTURES)


def test_did_you_mean():
    assert names.did_you_mean("vgg91", names.ARCHITECTURES) == "; did you mean vgg19, vgg16?"
    assert names.did_you_mean("tabyy", ["tabby", "tiger"], quote=True) == "; did you mean 'tabby'?"
    assert names.did_you_mean("zzz", ["a", "b"]) == ""
    assert names.did_you_mean("zzz", ["a", "b"], list_all=True) == "; choose from a, b"
