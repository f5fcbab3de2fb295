"""The installed version, from the package's metadata (pyproject.toml is the one source)."""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("gradcam")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"


def library_versions() -> dict[str, str | None]:
    """The installed TensorFlow and Keras versions, read from their metadata (neither is imported)."""
    return {"tensorflow": _installed_version("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
            "keras": _installed_version("keras", "keras-nightly")}


def _installed_version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return _metadata.version(name)
        except _metadata.PackageNotFoundError:
            continue
    return None
