"""The package's shape: modules import one another one way, with no circle, counting the imports
inside functions too."""
from __future__ import annotations

import ast
from pathlib import Path

import gradcam

PACKAGE = Path(gradcam.__file__).parent


def module_imports() -> dict[str, set[str]]:
    """module name -> the package's modules it imports anywhere in its source (relative or absolute)."""
    names = {path.stem for path in PACKAGE.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    found.add(node.module.split(".")[0])
                elif node.level == 1:
                    found.update(alias.name for alias in node.names)
                elif node.module and node.module.startswith("gradcam."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("gradcam."))
        graph[path.stem] = (found & names) - {path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == 1:
                return stack[stack.index(other):] + [other]
            if other not in state:
                cycle = visit(other)
                if cycle:
                    return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_hidden_circle():
    assert find_cycle({"cam": {"perturbation"}, "perturbation": {"cam"}}) == ["cam", "perturbation", "cam"]
    assert find_cycle({"cam": {"perturbation"}, "perturbation": {"methods"}}) is None


def test_no_import_circle_even_inside_functions():
    graph = module_imports()
    assert "perturbation" in graph["cam"]  # the walk sees the package's imports
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"


def test_perturbation_uses_no_private_member_of_the_explainer():
    source = (PACKAGE / "perturbation.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    private = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
               and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert private == []
