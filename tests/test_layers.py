"""The package's layers, checked: imports point down only.

    tools       maskgit/*.py (bench, compare, experiments, preset, sweep, tune, verify)
      |
    pipeline    maskgit/pipeline/   what the DVC stages share (params, files, the runner)
      |
    algorithms  maskgit/algorithms/, maskgit/metrics/
      |
    models      maskgit/models/, maskgit/data/, maskgit/choices.py (the allowed values of choice params)

A module may import from its own layer or any layer below it, never above.
`python tests/test_layers.py` prints the import graph with each module's layer.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RANK = {"choices": 0, "models": 0, "data": 0, "algorithms": 1, "metrics": 1, "pipeline": 2}
TOOLS = 3


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def layer(module: str) -> int:
    parts = module.split(".")
    return RANK.get(parts[1], TOOLS) if len(parts) > 1 else TOOLS


def imports(path: Path) -> set[str]:
    """The maskgit modules one file imports, resolved to module names."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            if module.startswith("maskgit"):
                subs = [f"{module}.{a.name}" for a in node.names]
                found |= {s for s in subs if (ROOT / (s.replace(".", "/") + ".py")).exists()} or {module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("maskgit")}
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted((ROOT / "maskgit").rglob("*.py"))}


def test_the_scan_resolves_absolute_relative_and_module_imports():
    g = graph()
    assert "maskgit.models.vqgan" in g["maskgit.algorithms.guidance"]
    assert "maskgit.pipeline.plotting" in g["maskgit.experiments"] or "maskgit.pipeline.files" in g["maskgit.experiments"]


@pytest.mark.parametrize("module", sorted(graph()))
def test_imports_point_down(module):
    upward = sorted(m for m in graph()[module] if layer(m) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports from a layer above it: {upward}"


if __name__ == "__main__":
    names = {0: "models", 1: "algorithms", 2: "pipeline", 3: "tools"}
    for module, deps in graph().items():
        for dep in sorted(deps):
            arrow = "UP" if layer(dep) > layer(module) else "down" if layer(dep) < layer(module) else "same"
            print(f"{module:36s} [{names[layer(module)]}] -> {dep} [{names[layer(dep)]}] {arrow}")
