"""Every module of the package that a stage script runs is a DVC dependency of that
stage: otherwise editing it (a model's forward, the token-mask rule, the PNG
conversion) would leave `dvc repro` reporting stale results as up to date."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(dotted: str) -> Path | None:
    """maskgit.a.b -> maskgit/a/b.py (or the package's __init__.py); None outside the package."""
    if dotted.split(".")[0] != "maskgit":
        return None
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def package_imports(path: Path) -> set[str]:
    """Package modules imported by one file (absolute or relative, at any depth of the
    code). The packages' __init__.py files hold a docstring only (tested below), so
    running them changes nothing and they are not dependencies."""
    found = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                f = module_file(".".join(parts[:i]))
                if f is not None and f.name != "__init__.py":
                    found.add(f.relative_to(ROOT).as_posix())
    return found


def closure(script: str) -> set[str]:
    seen, todo = set(), [script]
    while todo:
        for module in package_imports(ROOT / todo.pop()) - seen:
            seen.add(module)
            todo.append(module)
    return seen


def test_the_import_scan_sees_relative_and_absolute_imports():
    deps = closure("stages/tokenize_images.py")
    assert "maskgit/models/vqgan.py" in deps  # checkpoints.py's `from maskgit.models.vqgan import`
    assert "maskgit/data/procedural.py" in closure("stages/prepare.py")  # `from maskgit.data import procedural`


@pytest.mark.parametrize("init", sorted(ROOT.glob("maskgit/**/__init__.py")), ids=str)
def test_package_init_files_hold_no_code(init):
    body = ast.parse(init.read_text()).body
    code = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
            and not (isinstance(n, ast.Assign) and [t.id for t in n.targets] == ["__version__"])]
    assert not code, f"{init.relative_to(ROOT)} runs code: stages would not declare it as a dependency"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_module_a_stage_runs_is_a_dependency(name):
    stage = STAGES[name]
    script = stage["cmd"].split()[1]
    deps = {d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]}
    assert script in deps, f"dvc.yaml stage {name}: its script {script} is not a dependency"
    missing = sorted(closure(script) - deps)
    assert not missing, (f"dvc.yaml stage {name}: add to deps {missing} (imported when {script} runs; "
                         "`python tools/stage_deps.py` rewrites them)")
    # a module the stage does not run would re-run it for nothing; one that is gone stops `dvc repro`
    extra = sorted(d for d in deps if d.startswith("maskgit/") and d not in closure(script))
    assert not extra, f"dvc.yaml stage {name}: remove from deps {extra} (`python tools/stage_deps.py` rewrites them)"
