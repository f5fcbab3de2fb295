"""The module paths of release 0.3 (``gradcam.cam``, ``gradcam.pipeline``...), kept for one release: an
import by the old path warns (DeprecationWarning) and gives the module at its new place, so
``gradcam.cam.Explainer`` still works (the old ``gradcam.outputs`` module is now a package: its
functions are found there too, see ``gradcam/outputs/__init__.py``). Removed in 0.5."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: old module (``gradcam.NAME``) -> its new place under ``gradcam``
MOVED: dict[str, str] = {
    "images": "inputs.images",
    "medical": "inputs.medical",
    "dicom_voi": "inputs.dicom_voi",
    "identity": "inputs.identity",
    "precheck": "inputs.precheck",
    "loading": "models.loading",
    "efficientnet_lite": "models.efficientnet_lite",
    "torch_pickle": "models.torch_pickle",
    "torch_state_dict": "models.torch_state_dict",
    "classes": "models.classes",
    "layers": "models.layers",
    "graph": "models.graph",
    "guided": "models.guided",
    "model_config": "models.model_config",
    "cam": "explainers.explainer",
    "methods": "explainers.methods",
    "perturbation": "explainers.perturbation",
    "heatmap": "explainers.heatmap",
    "results": "explainers.results",
    "render": "outputs.render",
    "manifest": "outputs.manifest",
    "gallery": "outputs.gallery",
    "pipeline": "runs.pipeline",
    "status": "runs.status",
    "distributed": "runs.distributed",
    "faithfulness": "metrics.faithfulness",
    "sanity": "metrics.sanity",
    "sanity_stats": "metrics.sanity_stats",
    "sanity_report": "metrics.sanity_report",
}


class _Alias(types.ModuleType):
    """The old path: attributes read from (and written to) the module at the new place."""

    def __init__(self, name: str, target: str):
        super().__init__(name, f"moved to {target}")
        object.__setattr__(self, "_target", target)

    def _module(self):
        return importlib.import_module(object.__getattribute__(self, "_target"))

    def __getattr__(self, name: str):
        return getattr(self._module(), name)

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("__"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._module(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._module(), name)

    def __dir__(self):
        return dir(self._module())


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``gradcam.OLD`` for each old name in :data:`MOVED`; no other name."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != "gradcam" or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        name = spec.name.rpartition(".")[2]
        new = f"gradcam.{MOVED[name]}"
        warnings.warn(f"{spec.name} moved to {new}; the old path goes in gradcam 0.5", DeprecationWarning,
                      stacklevel=3)
        return _Alias(spec.name, new)

    def exec_module(self, module) -> None:
        module._module()  # the new module is imported now: an error shows at the import


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (after the regular finders: a real module always wins)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
