"""maskgit.prune on a DVC project whose matrix stage lost an entry: DVC keeps the entry's
dvc.lock record and output folder, and `dvc status` is silent about both."""

import subprocess

import pytest
import yaml

from conftest import ROOT, stage_env


def run(cmd, cwd, env, check=True):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert not check or result.returncode == 0, f"{cmd}: {result.stdout}{result.stderr}"
    return result


def set_families(root, families):
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["inpaint"]["mask_families"] = families
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def project(tmp_path):
    env = stage_env(tmp_path)
    root = tmp_path / "repo"
    root.mkdir()
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"family": {
        "matrix": {"family": "${inpaint.mask_families}"},
        "cmd": "mkdir -p outputs/families/${item.family} && echo x > outputs/families/${item.family}/evidence.npz",
        "outs": ["outputs/families/${item.family}"]}}}))
    set_families(root, ["thin", "thick"])
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "t"], ["git", "config", "user.email", "t@t"],
                ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        run(cmd, root, env)
    set_families(root, ["thin"])
    run(["dvc", "repro", "-q"], root, env)
    return root, env


def test_a_dropped_family_is_listed_then_removed_with_its_lock_entry_and_gitignore_line(project):
    root, env = project
    assert "family@thick" in yaml.safe_load((root / "dvc.lock").read_text())["stages"]  # what DVC leaves
    assert (root / "outputs/families/thick").is_dir()
    listed = run(["python", "-m", "maskgit.prune"], root, env).stdout.splitlines()
    assert listed == ["family@thick: no longer a stage of dvc.yaml; its outputs: outputs/families/thick",
                      "`python -m maskgit.prune --remove` removes them"]
    assert (root / "outputs/families/thick").is_dir()  # listing removes nothing
    run(["python", "-m", "maskgit.prune", "--remove"], root, env)
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert list(stages) == ["family@thin"] and (root / "outputs/families/thin/evidence.npz").is_file()
    assert not (root / "outputs/families/thick").exists()
    assert "/thick" not in (root / "outputs/families/.gitignore").read_text()
    assert "up to date" in run(["dvc", "status"], root, env).stdout.lower()
    assert run(["python", "-m", "maskgit.prune"], root, env).stdout.startswith("nothing stale")


def test_a_scalar_where_dvc_expects_a_list_is_one_line_before_dvc_reads_it(project):
    # DVC's own matrix error is `'Value' object is not iterable`, with no param named
    root, env = project
    set_families(root, "thin")
    result = run(["python", "-m", "maskgit.prune"], root, env, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: prune: ") and "inpaint.mask_families" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
