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

STAGE = """from maskgit.pipeline.runtime import run_stage
import pathlib, sys, time

def main():
    name = sys.argv[1]
    pathlib.Path(f"{name}.started").touch()
    while name == "slow" and not pathlib.Path("go").exists():
        time.sleep(0.05)
    pathlib.Path(f"{name}.out").write_text("done")

run_stage(main, sys.argv[1], record_time=False)
"""


@pytest.fixture
def repo(tmp_path):
    env = stage_env(tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    (root / "stage.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        name: {"cmd": f"python stage.py {name}", "deps": ["stage.py"], "params": ["inpaint.sweet_spot"],
               "outs": [f"{name}.out"]} for name in ("slow", "other")}}))
    (root / ".gitignore").write_text("*.started\ngo\n")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "t"], ["git", "config", "user.email", "t@t"],
                ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return root, env


def start_slow(root, env):
    repro = subprocess.Popen(["dvc", "repro", "slow"], cwd=root, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (root / "slow.started").exists():
        assert repro.poll() is None and time.monotonic() < deadline, repro.communicate()
        time.sleep(0.05)
    return repro


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error: ")]


def test_a_stage_refuses_to_start_beside_another_dvc_run(repo):
    root, env = repo
    repro = start_slow(root, env)
    try:
        other = subprocess.run(["dvc", "repro", "other"], cwd=root, env=env, capture_output=True, text=True,
                               timeout=120)
    finally:
        (root / "go").touch()
        out, err = repro.communicate(timeout=120)
    assert repro.returncode == 0, err
    assert other.returncode != 0 and not (root / "other.out").exists()
    lines = error_lines(other.stderr + other.stdout)
    assert lines and lines[0].startswith(f"error: other: stage other: another DVC run is in progress in this "
                                         f"workspace (pid {repro.pid}: "), other.stderr
    assert "Traceback" not in other.stderr


def test_a_stage_whose_params_change_under_it_fails_unrecorded(repo):
    root, env = repo
    repro = start_slow(root, env)
    try:
        # what `dvc exp run -S` does first, before DVC's lock stops it
        subprocess.run(["dvc", "exp", "run", "-S", "inpaint.sweet_spot=4"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=120)
        assert yaml.safe_load((root / "params.yaml").read_text())["inpaint"]["sweet_spot"] == 4
    finally:
        (root / "go").touch()
        out, err = repro.communicate(timeout=120)
    assert repro.returncode != 0
    assert error_lines(err) == ["error: slow: params.yaml changed while stage slow ran (a `dvc exp run` or an "
                                "editor in this workspace?): its outputs are not recorded; see `git diff "
                                "params.yaml`, then `dvc repro`"], err
    assert not (root / "dvc.lock").exists() or "slow" not in yaml.safe_load((root / "dvc.lock").read_text())["stages"]


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
        with pytest.raises(SystemExit) as stop:  # tune's trials would be `dvc exp run`s beside it
            tune.main(["--trials", "1"])
        assert stop.value.code == 2
        assert capsys.readouterr().err.splitlines() == [
            f"error: tune: tune: another DVC run is in progress in this workspace (pid {dvc_like.pid}: dvc repro); "
            "wait for it to end, or queue this one (`dvc exp run --queue`)"]
    finally:
        dvc_like.kill()
        not_dvc.kill()
