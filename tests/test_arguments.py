"""Argument parsing: --shard values and the checks argparse cannot make."""
from __future__ import annotations

import argparse

import pytest

from gradcam.arguments import build_parser, check_options, parse_shard
from gradcam.cli import main
from gradcam.errors import UsageError


def test_parse_shard():
    assert parse_shard("0/1") == (0, 1) and parse_shard("3/4") == (3, 4)
    for bad in ("3/3", "-1/2", "a/b", "1", "1/0", "1/2/3", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_shard(bad)


@pytest.mark.parametrize("value", ["3/3", "-1/2", "a/b"])
def test_bad_shard_is_a_usage_error(tmp_path, capsys, value):
    assert main([str(tmp_path), "--shard", value, "-o", str(tmp_path / "o")]) == 2
    assert "--shard" in capsys.readouterr().err


def test_check_options():
    args = build_parser().parse_args(["x.jpg", "--alpha", "2"])
    with pytest.raises(UsageError, match="--alpha"):
        check_options(args)
    check_options(build_parser().parse_args(["x.jpg"]))


def test_batch_size_has_one_meaning_and_one_default():
    """Model inputs per forward pass, 8, for the command line, the folder run, the API and the Explainer."""
    import inspect

    from gradcam.api import explain
    from gradcam.explainers.explainer import Explainer
    from gradcam.names import DEFAULT_BATCH_SIZE
    from gradcam.runs.pipeline import RunOptions

    assert build_parser().parse_args(["x.jpg"]).batch_size == DEFAULT_BATCH_SIZE == 8
    assert RunOptions(output_dir=".").batch_size == DEFAULT_BATCH_SIZE
    assert inspect.signature(explain).parameters["batch_size"].default == DEFAULT_BATCH_SIZE
    assert inspect.signature(Explainer).parameters["batch_size"].default == DEFAULT_BATCH_SIZE


@pytest.mark.parametrize("steps", ["0", "1001"])
def test_steps_out_of_range_are_one_line_before_any_model_loads(tmp_path, capsys, steps):
    photo = tmp_path / "a.png"
    photo.write_bytes(b"not read")
    assert main([str(photo), "--evaluate", "--steps", steps, "--model", "no_such.keras", "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"gradcam: error: --steps must be from 1 to 1000, not {steps}"
