"""The package's layers, checked: imports point down only.

    tools       maskgit/*.py (bench, compare, experiments, preset, prune, sweep, tune, verify): one floor
      |
    pages       maskgit/pages/      what a person reads: markdown, figures, runs at a revision, the experiments page
    sweeps      maskgit/sweeps/     experiments as jobs: submitting them, one job
      |
    pipeline    maskgit/pipeline/   what the stages compute with: numerics, runtime, runner, scoring, training
      |
    project     maskgit/project/    the project's files and formats: params, paths, the grid, files, checkpoints, git
      |
    algorithms  maskgit/algorithms/, maskgit/metrics/
      |
    models      maskgit/models/, maskgit/data/, maskgit/choices.py (the allowed values of choice params)

A module may import from its own layer or any layer below it, never above; pages and
sweeps share a floor and never import each other. The tools are the exception to "its
own layer": they sit side by side and never import each other; what two tools share
lives below them. A tool's private helper module (TOOL_HELPERS) counts as part of its
tool and serves no other.
`python tests/test_layers.py` prints the import graph with each module's layer.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RANK = {"choices": 0, "models": 0, "data": 0, "algorithms": 1, "metrics": 1, "project": 2, "pipeline": 3,
        "pages": 4, "sweeps": 4}
TOOLS = 5
NAMES = {0: "models", 1: "algorithms", 2: "project", 3: "pipeline", 4: "pages/sweeps", 5: "tools"}
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
    assert "maskgit.project.paths" in g["maskgit.tune"]  # from maskgit.pipeline import paths
    assert "maskgit.pages.experiments" in g["maskgit.experiments"]


@pytest.mark.parametrize("module", sorted(graph()))
def test_imports_point_down(module):
    upward = sorted(m for m in graph()[module] if layer(m) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports from a layer above it: {upward}"


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


@pytest.mark.parametrize("module", sorted(m for m in graph() if package(m) in ("pages", "sweeps")))
def test_pages_and_sweeps_share_a_floor_and_not_their_code(module):
    other = {"pages": "sweeps", "sweeps": "pages"}[package(module)]
    across = sorted(m for m in graph()[module] if package(m) == other)
    assert not across, f"{module} imports {across}: what both need belongs in maskgit/project/"


def tools() -> list[str]:
    return sorted(m for m in graph() if layer(m) == TOOLS and m != "maskgit")


def tool_of(module: str) -> str:
    return TOOL_HELPERS.get(module, module)


def test_the_tools_are_found():
    assert {"maskgit.sweep", "maskgit.tune", "maskgit.experiments", "maskgit.bench_lab_loop"} <= set(tools())


@pytest.mark.parametrize("module", tools())
def test_no_tool_imports_another_tool(module):
    others = sorted(m for m in graph()[module] if layer(m) == TOOLS and tool_of(m) != tool_of(module))
    assert not others, (f"{module} imports the tool(s) {others}: move what they share below the tools "
                        f"(as maskgit.sweeps.submit for sweep and tune)")


@pytest.mark.parametrize("helper, tool", sorted(TOOL_HELPERS.items()))
def test_a_tool_helper_serves_its_own_tool_only(helper, tool):
    users = {m for m, deps in graph().items() if helper in deps}
    assert users == {tool}, f"{helper} is {tool}'s helper; imported by {sorted(users)}"


if __name__ == "__main__":
    names = NAMES
    for module, deps in graph().items():
        for dep in sorted(deps):
            arrow = "UP" if layer(dep) > layer(module) else "down" if layer(dep) < layer(module) else "same"
            if arrow == "same" and layer(dep) == TOOLS:  # between tools: a tool's own helper, or wrong
                arrow = "helper" if tool_of(dep) == tool_of(module) else "TOOL TO TOOL"
            print(f"{module:36s} [{names[layer(module)]}] -> {dep} [{names[layer(dep)]}] {arrow}")
