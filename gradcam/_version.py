"""The installed version, from the package's metadata (pyproject.toml is the one source)."""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("gradcam")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
