"""Error types and their one-line messages."""
from __future__ import annotations

from gradcam.errors import (
    GradcamError,
    HeatmapError,
    ImageError,
    OutputError,
    UsageError,
    WeightsError,
    first_line,
)


def test_exit_codes():
    assert UsageError.exit_code == 2
    assert all(cls.exit_code == 1 for cls in (ImageError, WeightsError, OutputError, HeatmapError))
    assert all(issubclass(cls, GradcamError) for cls in (UsageError, ImageError, HeatmapError))


def test_first_line():
    assert first_line(ValueError("first\nsecond")) == "first"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError("x" * 500), limit=10) == "x" * 10
