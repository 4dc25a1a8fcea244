"""Every module of the package that a stage script runs is a DVC dependency of that
stage: otherwise editing it (a model's forward, the token-mask rule, the PNG
conversion) would leave `dvc repro` reporting stale results as up to date."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def package_imports(path: Path) -> set[str]:
    """maskgit/<module>.py files imported by one file, absolute or relative, at any depth of the code."""
    found = set()
    in_package = path.parent.name == "maskgit"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level and in_package:
                parts = (node.module or "").split(".")
            elif node.module and node.module.split(".")[0] == "maskgit":
                parts = node.module.split(".")[1:]
            else:
                continue
            names = [parts[0]] if parts and parts[0] else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("maskgit.")]
        else:
            continue
        found |= {f"maskgit/{n}.py" for n in names if (ROOT / "maskgit" / f"{n}.py").exists()}
    return found


def closure(script: str) -> set[str]:
    seen, todo = set(), [script]
    while todo:
        for module in package_imports(ROOT / todo.pop()) - seen:
            seen.add(module)
            todo.append(module)
    return seen


def test_the_import_scan_sees_relative_and_absolute_imports():
    assert "maskgit/vqgan.py" in closure("stages/tokenize_images.py")  # via `from maskgit.vqgan import`
    assert "maskgit/schedules.py" in closure("stages/prepare.py")  # via params.py's `from .schedules`


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_module_a_stage_runs_is_a_dependency(name):
    stage = STAGES[name]
    script = stage["cmd"].split()[1]
    deps = {d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]}
    assert script in deps, f"dvc.yaml stage {name}: its script {script} is not a dependency"
    missing = sorted(closure(script) - deps)
    assert not missing, f"dvc.yaml stage {name}: add to deps {missing} (imported when {script} runs)"
