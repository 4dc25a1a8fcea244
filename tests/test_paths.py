"""maskgit/project/paths.py and dvc.yaml name the same files: a path renamed in one
and not the other would make a stage write where DVC does not look."""

from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from maskgit.project import paths

# written by the tools or kept outside DVC on purpose, so dvc.yaml does not name them
NOT_IN_DVC = {"CHECKPOINTS", "CONFIGS", "STUDY", "EXPERIMENTS_PAGE", "EXPERIMENTS_FIGURES"}


def dvc_paths() -> set[str]:
    found = set()
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for key in ("deps", "outs", "metrics"):
            for entry in stage.get(key, []):
                found.add(entry if isinstance(entry, str) else next(iter(entry)))
    return found


@pytest.mark.parametrize("name", sorted(n for n, v in vars(paths).items() if isinstance(v, Path) and n not in NOT_IN_DVC))
def test_every_pipeline_path_is_named_in_dvc_yaml(name):
    path = getattr(paths, name).as_posix()
    named = dvc_paths()
    assert any(p == path or p.startswith(path + "/") or path.startswith(p + "/") for p in named), \
        f"paths.{name} = {path} is not a dep or out of any stage in dvc.yaml"
