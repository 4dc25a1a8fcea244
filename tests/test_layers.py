"""The package's layers, checked: imports point down only.

    tools       maskgit/*.py (bench, compare, experiments, preset, sweep, tune, verify): one floor
      |
    pipeline    maskgit/pipeline/   what the DVC stages and the tools share (params, files, the
      |                             runner, the tools' run_tool, the sweep's submitting, the experiments page)
    algorithms  maskgit/algorithms/, maskgit/metrics/
      |
    models      maskgit/models/, maskgit/data/, maskgit/choices.py (the allowed values of choice params)

A module may import from its own layer or any layer below it, never above. The tools
are the exception to "its own layer": they sit side by side and never import each
other; what two tools share lives in the pipeline. A tool's private helper module
(TOOL_HELPERS) counts as part of its tool and serves no other.
`python tests/test_layers.py` prints the import graph with each module's layer.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RANK = {"choices": 0, "models": 0, "data": 0, "algorithms": 1, "metrics": 1, "pipeline": 2}
TOOLS = 3
# bench_lab_loop is the lab's loop written apart from this project's decoder, for the
# benchmark to race against: no stage or other tool has a use for it, and in the
# pipeline (shared code) or the algorithms (this project's decoding) it would invite
# the very reuse that would make "tokens identical" a comparison of the decoder with itself
TOOL_HELPERS = {"maskgit.bench_lab_loop": "maskgit.bench"}


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
    assert "maskgit.pipeline.paths" in g["maskgit.tune"]  # from maskgit.pipeline import paths
    assert "maskgit.pipeline.experiments_page" in g["maskgit.experiments"]


@pytest.mark.parametrize("module", sorted(graph()))
def test_imports_point_down(module):
    upward = sorted(m for m in graph()[module] if layer(m) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports from a layer above it: {upward}"


def tools() -> list[str]:
    return sorted(m for m in graph() if layer(m) == TOOLS and m != "maskgit")


def tool_of(module: str) -> str:
    return TOOL_HELPERS.get(module, module)


def test_the_tools_are_found():
    assert {"maskgit.sweep", "maskgit.tune", "maskgit.experiments", "maskgit.bench_lab_loop"} <= set(tools())


@pytest.mark.parametrize("module", tools())
def test_no_tool_imports_another_tool(module):
    others = sorted(m for m in graph()[module] if layer(m) == TOOLS and tool_of(m) != tool_of(module))
    assert not others, (f"{module} imports the tool(s) {others}: move what they share into maskgit/pipeline/ "
                        f"(as maskgit.pipeline.sweep_submit for sweep and tune)")


@pytest.mark.parametrize("helper, tool", sorted(TOOL_HELPERS.items()))
def test_a_tool_helper_serves_its_own_tool_only(helper, tool):
    users = {m for m, deps in graph().items() if helper in deps}
    assert users == {tool}, f"{helper} is {tool}'s helper; imported by {sorted(users)}"


if __name__ == "__main__":
    names = {0: "models", 1: "algorithms", 2: "pipeline", 3: "tools"}
    for module, deps in graph().items():
        for dep in sorted(deps):
            arrow = "UP" if layer(dep) > layer(module) else "down" if layer(dep) < layer(module) else "same"
            if arrow == "same" and layer(dep) == TOOLS:  # between tools: a tool's own helper, or wrong
                arrow = "helper" if tool_of(dep) == tool_of(module) else "TOOL TO TOOL"
            print(f"{module:36s} [{names[layer(module)]}] -> {dep} [{names[layer(dep)]}] {arrow}")
