"""Outputs: rendering overlays and figures, output paths, the manifest, the gallery.

Importing this package imports nothing heavy; see docs/architecture.md for the map of the house."""


def __getattr__(name: str):
    """The functions of the 0.3 module ``gradcam.outputs``, now in :mod:`gradcam.outputs.paths`: found here
    for one release, with a DeprecationWarning."""
    import importlib
    import warnings

    paths = importlib.import_module(".paths", __name__)
    if name.startswith("__") or not hasattr(paths, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"gradcam.outputs.{name} moved to gradcam.outputs.paths.{name}; the old path goes in gradcam 0.5",
                  DeprecationWarning, stacklevel=2)
    return getattr(paths, name)
