"""The whole DAG on the tiny preset in a temporary git repo, then an experiment that
changes only the sweet spot. Never touches the developer's checkout."""

import json
import math
import subprocess

import pytest

from conftest import FID_WEIGHTS, copy_project, stage_env

pytestmark = pytest.mark.pipeline

TRAINING_STAGES = ["prepare", "train_vqgan", "tokenize", "train_transformer"]


def run(cmd, cwd, env, timeout=900):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    if not FID_WEIGHTS.is_file():
        pytest.skip("../shared/fid is absent: no offline Inception weights for the FID stages")
    tmp = tmp_path_factory.mktemp("pipeline")
    project = copy_project(tmp / "project")
    env = stage_env(tmp)
    run(["python", "-m", "maskgit.preset", "tiny"], project, env)
    (project / "configs/shared-fid.yaml").write_text(f"fid:\n  inception_weights: {FID_WEIGHTS}\n")
    run(["python", "-m", "maskgit.preset", "shared-fid"], project, env)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "test"],
                ["git", "config", "user.email", "test@example.com"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "tiny"]):
        run(cmd, project, env)
    out = run(["dvc", "repro"], project, env)
    return project, env, out


def read_json(path):
    return json.loads(path.read_text())


def test_repro_runs_every_stage_and_writes_the_report(tiny_project):
    project, env, out = tiny_project
    for stage in TRAINING_STAGES + ["inpaint@cosine", "inpaint@linear", "inpaint@square", "baselines",
                                    "fid_reference", "fid_baselines", "fid", "plots", "report"]:
        assert f"Running stage '{stage}'" in out
    fid = read_json(project / "metrics/fid_schedules.json")
    assert list(fid) == ["cosine", "linear", "square"]
    baselines = read_json(project / "metrics/fid_baselines.json")
    assert set(baselines) == {"masked_input", "onestep", "recon"}
    for entry in [*fid.values(), *baselines.values()]:
        assert math.isfinite(entry["fid"]) and entry["fid"] >= 0
    report = (project / "reports/report.md").read_text()
    for schedule in fid:
        assert schedule in report
    assert (project / "reports/figures").is_dir() and any((project / "reports/figures").glob("*.png"))
    # images in, images out, one per test image
    n_test = len(list((project / "data/prepared/test/gt").glob("*.png")))
    assert len(list((project / "outputs/inpaint/cosine/images").glob("*.png"))) == n_test
    assert "up to date" in run(["dvc", "status"], project, env).lower()


def test_sweet_spot_experiment_reruns_only_inpainting(tiny_project):
    project, env, _ = tiny_project
    out = run(["dvc", "exp", "run", "-S", "inpaint.sweet_spot=2"], project, env)
    for stage in TRAINING_STAGES + ["baselines", "fid_reference", "fid_baselines"]:
        assert f"Running stage '{stage}'" not in out, f"{stage} re-ran"
    for stage in ["inpaint@cosine", "inpaint@linear", "inpaint@square", "fid", "plots", "report"]:
        assert f"Running stage '{stage}'" in out
    info = read_json(project / "outputs/inpaint/cosine/info.json")
    assert info["sweet_spot"] == 2
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=project, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    text = json.dumps(json.loads(shown.stdout))
    # every schedule's FID is listed per experiment
    assert "fid_schedules.json" in text and '"cosine"' in text and '"square"' in text
