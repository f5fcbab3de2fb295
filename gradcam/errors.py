"""The tool's own error types. Importing this module imports nothing heavy."""
from __future__ import annotations


class GradcamError(Exception):
    """A problem the user can fix; the CLI prints it as one line.

    ``exit_code`` is the process status the CLI returns for it.
    """

    exit_code = 1


class UsageError(GradcamError):
    """A wrong argument: unknown layer, class index out of range, missing path (exit 2)."""

    exit_code = 2


class ImageError(GradcamError):
    """A file that cannot be turned into an RGB image (unreadable, corrupt, too large)."""


class WeightsError(GradcamError):
    """Model weights that cannot be downloaded or loaded."""


class OutputError(GradcamError):
    """An output folder or file that cannot be written."""


class HeatmapError(GradcamError):
    """A class activation map with NaN or infinite values: reported as an error, never drawn."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when empty), at most ``limit`` characters."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
