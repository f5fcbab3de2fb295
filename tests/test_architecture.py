"""The house in rooms by stage (docs/architecture.md): packages in layers, inputs -> models -> explainers ->
outputs -> runs -> metrics, with imports only downwards (function-level imports counted), no import circle
between modules, no module over 300 lines, no class over 150, and the old module paths still importable
for one release, with a DeprecationWarning."""
from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import gradcam

PACKAGE = Path(gradcam.__file__).parent
#: the stages in order; a module may import from its own stage and the ones before it
STAGES = ("inputs", "models", "explainers", "outputs", "runs", "metrics")
#: light modules every stage may use (they import no stage)
BASE = ("errors", "names", "_tf", "_version")
#: the top: the command line, the Python API and the package itself, which may use every stage
TOP = ("cli", "arguments", "api", "__init__", "__main__", "_moved", "messages")  # messages: the CLI's text lines
MAX_MODULE_LINES, MAX_CLASS_LINES = 300, 150


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def level(module: str) -> int:
    """0 for the light base modules, 1-6 for the stages in order, 7 for the top."""
    head = module.split(".")[0]
    if head in STAGES:
        return 1 + STAGES.index(head)
    if head in BASE:
        return 0
    assert head in TOP, f"gradcam.{module} is in no stage: add it to a package (or to BASE/TOP with a reason)"
    return len(STAGES) + 1


def imports_of(path: Path) -> set[str]:
    """The package's modules that a file imports anywhere (functions included), as dotted names."""
    module = module_name(path)
    package = module.split(".")[:-1] if path.name != "__init__.py" and module != "__init__" else \
        ([] if module == "__init__" else module.split("."))
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                found.add(".".join(base + [node.module]))
            else:
                found.update(".".join(base + [alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gradcam."):
            found.add(node.module[len("gradcam."):])
        elif isinstance(node, ast.Import):
            found.update(alias.name[len("gradcam."):] for alias in node.names if alias.name.startswith("gradcam."))
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    # "from . import names" in a package names a module; "from .explainers import x" may name a package
    return {name for name in found if name in modules or name.split(".")[0] in modules} - {module}


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for other in sorted(edges.get(node, ())):
            if state.get(other) == 1:
                return stack[stack.index(other):] + [other]
            if other not in state:
                cycle = visit(other)
                if cycle:
                    return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_checks_see_what_they_check():
    """The walk finds relative, absolute and function-level imports; the level and cycle checks can fail."""
    edges = graph()
    assert "explainers.perturbation" in edges["explainers.explainer"]
    assert "models.preprocess" in edges["explainers.explainer"]  # imported inside a method
    assert "runs.pipeline" in edges["cli.explain"] or "api" in edges["cli.explain"]
    assert level("inputs.images") < level("models.loading") < level("explainers.methods") < \
        level("outputs.render") < level("runs.pipeline") < level("metrics.sanity") < level("cli")
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_imports_go_down_the_stages_only():
    upward = sorted(f"gradcam.{module} imports gradcam.{other}"
                    for module, others in graph().items() for other in others if level(other) > level(module))
    assert upward == []


def test_no_import_circle_even_inside_functions():
    cycle = find_cycle(graph())
    assert cycle is None, f"import circle: {' -> '.join(cycle)}"


def test_no_module_over_300_lines_and_no_class_over_150():
    long_modules, long_classes = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{module_name(path)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                long_classes.append(f"{module_name(path)}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long_modules == [] and long_classes == []


def test_every_stage_is_a_package_with_a_test_folder():
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file()
        assert any((Path(__file__).parent / stage).glob("test_*.py")), f"tests/{stage}/ has no tests"


def test_importing_the_package_and_its_stages_loads_no_tensorflow():
    code = ("import sys, gradcam, gradcam.inputs, gradcam.models, gradcam.explainers, gradcam.outputs, "
            "gradcam.runs, gradcam.metrics; gradcam.run; gradcam.Explainer; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("old, attribute", [
    ("gradcam.cam", "Explainer"), ("gradcam.pipeline", "run"), ("gradcam.images", "load_image"),
    ("gradcam.loading", "load_classifier"), ("gradcam.render", "overlay"), ("gradcam.manifest", "read_records"),
    ("gradcam.heatmap", "upsample"), ("gradcam.sanity", "sanity_check"), ("gradcam.outputs", "output_paths"),
])
def test_the_old_module_paths_still_work_for_one_release_with_a_warning(old, attribute):
    import importlib

    from gradcam._moved import MOVED

    name = old.split(".")[1]
    if name in MOVED:  # an alias, made afresh so that its import warns again (gradcam.outputs is a real package)
        sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="moved to gradcam"):
        module = importlib.import_module(old)
        value = getattr(module, attribute)
    new = importlib.import_module("gradcam." + (MOVED[name] if name in MOVED else "outputs.paths"))
    assert value is getattr(new, attribute)


def test_every_old_path_is_mapped_to_a_module_that_exists():
    import importlib

    from gradcam._moved import MOVED

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for old, new in MOVED.items():
            assert importlib.import_module(f"gradcam.{new}").__name__ == f"gradcam.{new}", old


def test_perturbation_uses_no_private_member_of_the_explainer():
    tree = ast.parse((PACKAGE / "explainers" / "perturbation.py").read_text(encoding="utf-8"))
    private = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
               and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert private == []
