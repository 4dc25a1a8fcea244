"""Two DVC runs in one workspace. DVC releases its repository lock while a stage's
command runs, so a second `dvc repro` or `dvc exp run` gets as far as starting another
stage, or rewriting params.yaml under the running one (maskgit.pipeline.workspace)."""

import shutil
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, stage_env

# a guard against a hang, not a deadline: on a loaded 2-core machine each DVC and stage
# process takes tens of seconds to import torch, and the test must pass there too
HANG = 600

STAGE = """from maskgit.pipeline.numerics import pin_numerics
pin_numerics()
from maskgit.pipeline.runtime import run_stage
import pathlib, sys, time

def main():
    name = sys.argv[1]
    pathlib.Path(f"{name}.started").touch()
    while name == "slow" and not pathlib.Path("go").exists():
        time.sleep(0.05)
    pathlib.Path(f"{name}.out").write_text("done")

run_stage(main, sys.argv[1], record_time=False)
"""

# a stage that is not the project's (no run_stage): it holds `dvc repro` while another
# command rewrites params.yaml, before the project's stage after it starts
GATE = """import pathlib, time
pathlib.Path("gate.started").touch()
while not pathlib.Path("go").exists():
    time.sleep(0.05)
pathlib.Path("gate.out").write_text("done")
"""


@pytest.fixture
def repo(tmp_path):
    env = stage_env(tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    (root / "stage.py").write_text(STAGE)
    (root / "gate.py").write_text(GATE)
    stages = {name: {"cmd": f"python stage.py {name}", "deps": ["stage.py"], "params": ["inpaint.sweet_spot"],
                     "outs": [f"{name}.out"]} for name in ("slow", "other")}
    stages["gate"] = {"cmd": "python gate.py", "deps": ["gate.py"], "outs": ["gate.out"]}
    stages["after"] = {"cmd": "python stage.py after", "deps": ["stage.py", "gate.out"],
                       "params": ["inpaint.sweet_spot"], "outs": ["after.out"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (root / ".gitignore").write_text("*.started\ngo\n")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "t"], ["git", "config", "user.email", "t@t"],
                ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return root, env


def start(root, env, stage="slow", waits_in="slow"):
    """`dvc repro <stage>`, returned once the stage `waits_in` is running (it waits for `go`)."""
    repro = subprocess.Popen(["dvc", "repro", stage], cwd=root, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    while not (root / f"{waits_in}.started").exists():
        # no deadline: a loaded machine is slow, not wrong; a repro that fails says so here
        assert repro.poll() is None, repro.communicate(timeout=HANG)
        time.sleep(0.05)
    return repro


def sweet_spot(root):
    return yaml.safe_load((root / "params.yaml").read_text())["inpaint"]["sweet_spot"]


def locked_sweet_spot(root, stage):
    lock = root / "dvc.lock"
    stages = yaml.safe_load(lock.read_text())["stages"] if lock.exists() else {}
    return stages.get(stage, {}).get("params", {}).get("params.yaml", {}).get("inpaint.sweet_spot")


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error: ")]


def test_a_stage_refuses_to_start_beside_another_dvc_run(repo):
    root, env = repo
    repro = start(root, env)
    try:
        other = subprocess.run(["dvc", "repro", "other"], cwd=root, env=env, capture_output=True, text=True,
                               timeout=HANG)
    finally:
        (root / "go").touch()
        out, err = repro.communicate(timeout=HANG)
    assert repro.returncode == 0, err
    assert other.returncode != 0 and not (root / "other.out").exists()
    lines = error_lines(other.stderr + other.stdout)
    assert lines and lines[0].startswith(f"error: other: stage other: another DVC run is in progress in this "
                                         f"workspace (pid {repro.pid}: "), other.stderr
    assert "Traceback" not in other.stderr


def test_a_stage_whose_params_change_under_it_fails_and_keeps_nothing(repo):
    root, env = repo
    repro = start(root, env)
    try:
        # what `dvc exp run -S` does first, before DVC's lock stops it
        exp = subprocess.run(["dvc", "exp", "run", "-S", "inpaint.sweet_spot=4", "slow"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=HANG)
        assert exp.returncode != 0 and sweet_spot(root) == 4, exp.stderr
    finally:
        (root / "go").touch()
        out, err = repro.communicate(timeout=HANG)
    assert repro.returncode != 0
    assert error_lines(err) == ["error: slow: params.yaml changed while stage slow ran (a `dvc exp run` or an "
                                "editor in this workspace?): inpaint.sweet_spot is 4 now, 8 when the stage "
                                "started: nothing of it is kept; put params.yaml back as you want it "
                                "(`git diff params.yaml`), then `dvc repro`"], err
    assert locked_sweet_spot(root, "slow") is None and not (root / "slow.out").exists()


def test_a_stage_never_runs_under_params_rewritten_after_its_repro_began(repo):
    # the interleaving: `dvc repro` is under way (here in a stage before the
    # project's), a `dvc exp run -S` rewrites params.yaml and is refused by DVC's lock;
    # the project's stage that starts next must not run under the rewritten params
    root, env = repo
    repro = start(root, env, stage="after", waits_in="gate")
    try:
        exp = subprocess.run(["dvc", "exp", "run", "-S", "inpaint.sweet_spot=4", "after"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=HANG)
        assert exp.returncode != 0 and "is busy" in exp.stderr + exp.stdout and sweet_spot(root) == 4
    finally:
        (root / "go").touch()
        out, err = repro.communicate(timeout=HANG)
    assert repro.returncode != 0
    [line] = error_lines(err)
    assert line.startswith("error: after: params.yaml was rewritten "), err
    assert "s after this `dvc repro` began (another command in this workspace: a `dvc exp run` writes its -S " \
           "values there before DVC refuses it): inpaint.sweet_spot is 4 now, 8 at HEAD: stage after does not " \
           "run under params its `dvc repro` was not given; put params.yaml back" in line, line
    assert not (root / "after.started").exists() and not (root / "after.out").exists()
    assert locked_sweet_spot(root, "after") is None  # never recorded under 4
    (root / "params.yaml").write_text(subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=root, text=True,
                                                     capture_output=True, check=True).stdout)
    subprocess.run(["dvc", "repro", "after"], cwd=root, env=env, check=True, capture_output=True, timeout=HANG)
    assert locked_sweet_spot(root, "after") == 8


def test_a_dvc_exp_run_alone_and_params_written_just_before_a_repro_run(repo):
    # neither is another command's rewrite: `dvc exp run` writes its own -S values, and a
    # preset written the instant before `dvc repro` starts is the params it was given
    root, env = repo
    (root / "go").touch()
    exp = subprocess.run(["dvc", "exp", "run", "-S", "inpaint.sweet_spot=4", "other"], cwd=root, env=env,
                         capture_output=True, text=True)
    assert exp.returncode == 0, exp.stderr
    assert locked_sweet_spot(root, "other") == 4
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("sweet_spot: 4", "sweet_spot: 5"))
    repro = subprocess.run(["dvc", "repro", "other"], cwd=root, env=env, capture_output=True, text=True, timeout=HANG)
    assert repro.returncode == 0, repro.stderr
    assert locked_sweet_spot(root, "other") == 5


def test_only_live_dvc_processes_other_than_ones_own_count(tmp_path, monkeypatch, capsys):
    import json
    import os

    from maskgit import tune
    from maskgit.pipeline.workspace import other_runs

    # a live process named like DVC, a live one that is not DVC (a reused pid), this
    # process itself (a stage's own DVC run is its ancestor) and a pid that is gone
    dvc_like = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "dvc", "repro"])
    not_dvc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        (tmp_path / ".dvc/tmp").mkdir(parents=True)
        (tmp_path / ".dvc/tmp/rwlock").write_text(json.dumps({
            "write": {"a": {"pid": dvc_like.pid, "cmd": "dvc repro"}, "b": {"pid": not_dvc.pid, "cmd": "dvc x"}},
            "read": {"c": [{"pid": os.getpid(), "cmd": "dvc mine"}, {"pid": gone.pid, "cmd": "dvc gone"}]}}))
        assert other_runs(tmp_path) == [f"pid {dvc_like.pid}: dvc repro"]
        monkeypatch.chdir(tmp_path)
        shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
        with pytest.raises(SystemExit) as stop:  # tune's trials would be `dvc exp run`s beside it
            tune.main(["--trials", "1"])
        assert stop.value.code == 2
        assert capsys.readouterr().err.splitlines() == [
            f"error: tune: tune: another DVC run is in progress in this workspace (pid {dvc_like.pid}: dvc repro); "
            "wait for it to end, or queue this one (`dvc exp run --queue`)"]
    finally:
        dvc_like.kill()
        not_dvc.kill()
