"""maskgit.sweep across "machines": a bare Git remote and a local-directory DVC remote in
a temporary folder, two clones of the project standing for two machines. The sweep
runs from the first with the local executor (submitit processes, the code a Slurm
job runs), the results are collected on the second. Loopback only."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import FID_WEIGHTS, ROOT, copy_project, stage_env
from maskgit.sweeps.job import experiment_name

SWEEP = ["-S", "inpaint.sweet_spot=1,2,3"]
POINTS = [[f"inpaint.sweet_spot={v}"] for v in (1, 2, 3)]


def sh(cmd, cwd, env, check=True, timeout=1800):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{' '.join(map(str, cmd))}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def sweep(cwd, env, *args, check=True):
    return sh([sys.executable, "-m", "maskgit.sweep", *args], cwd, env, check=check)


def exp_refs(remote, env):
    out = sh(["git", "ls-remote", str(remote), "refs/exps/*"], remote, env).stdout
    return sorted(line.split()[1].rsplit("/", 1)[1] for line in out.splitlines())


def store_files(store: Path):
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())


def make_world(tmp: Path):
    """remote.git (bare), dvc-store/ (DVC remote), machine1 (the project on the tiny
    preset, one decoder, committed and pushed) and machine2 (a clone of the remote)."""
    if not FID_WEIGHTS.is_file():
        pytest.skip("../shared/fid is absent: no offline Inception weights for the FID stages")
    env = stage_env(tmp)
    env.pop("PYTHONPATH", None)
    env["PYTHONPATH"] = "."  # each clone imports its own maskgit
    project = copy_project(tmp / "machine1")
    (project / "configs/sweep-test.yaml").write_text(yaml.safe_dump(
        # one decoder (schedule and order) and 8 test images: FID on CPU is most of a
        # point's cost, and these tests check the mechanics, not the numbers
        {"fid": {"inception_weights": str(FID_WEIGHTS)}, "inpaint": {"schedules": ["cosine"], "orders": ["confidence"]},
         "prepare": {"n_test": 8}}))
    sh([sys.executable, "-m", "maskgit.preset", "tiny", "sweep-test"], project, env)
    for old in (project / "metrics").glob("*.json"):  # the checkout's default-run metrics: not this sweep's
        old.unlink()
    remote, store = tmp / "remote.git", tmp / "dvc-store"
    store.mkdir()
    sh(["git", "init", "-q", "--bare", str(remote)], tmp, env)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.name", "test"],
                ["git", "config", "user.email", "test@example.com"],
                ["dvc", "remote", "add", "-d", "shared", str(store)],
                ["git", "add", "-A"], ["git", "commit", "-qm", "tiny"],
                ["git", "remote", "add", "origin", str(remote)], ["git", "push", "-q", "origin", "main"]):
        sh(cmd, project, env)
    other = tmp / "machine2"
    sh(["git", "clone", "-q", "-b", "main", str(remote), str(other)], tmp, env)
    return project, other, remote, store, env


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    project, other, remote, store, env = make_world(tmp)
    first = sweep(project, env, *SWEEP, "--jobs", "2", "--scratch", str(tmp / "scratch"))
    return project, other, remote, store, env, first, tmp


def logs(project):
    return [p.read_text() for p in (project / ".sweep").rglob("logs/*.log")]


@pytest.mark.pipeline
def test_a_sweep_trains_once_and_is_collected_on_another_machine(world):
    project, other, remote, store, env, first, _ = world
    names = [experiment_name(p) for p in POINTS]
    assert "3 experiments run, 0 already on the remote" in first.stdout, first.stdout
    assert exp_refs(remote, env) == sorted(names)
    # counted from the stage logs of every job: the common stages ran once, in one job,
    # and every point took the transformer (and the rest) from the pushed run cache
    runs = [line for text in logs(project) for line in text.splitlines() if "Running stage 'train_transformer'" in line]
    assert len(runs) == 1, runs
    point_logs = [t for t in logs(project) if "dvc exp run" in t]
    assert len(point_logs) == 3
    assert all("Stage 'train_transformer' is cached - skipping run" in t for t in point_logs)
    assert all("Running stage 'inpaint@cosine-confidence'" in t for t in point_logs)

    out = sh([sys.executable, "-m", "maskgit.experiments", "--pull"], other, env).stdout
    assert "3 experiments" in out
    page = (other / "reports/experiments.md").read_text()
    for name in names:
        assert name in page
    assert "inpaint.sweet_spot" in page  # the swept param has its table


@pytest.mark.pipeline
def test_resubmitting_runs_nothing_and_pushes_nothing(world):
    project, _, remote, store, env, _, tmp = world
    refs, files = exp_refs(remote, env), store_files(store)
    before = sh(["git", "for-each-ref"], remote, env).stdout
    again = sweep(project, env, *SWEEP, "--jobs", "2", "--scratch", str(tmp / "scratch"))
    assert "0 experiments run, 3 already on the remote; stages run: 0" in again.stdout, again.stdout
    assert exp_refs(remote, env) == refs and store_files(store) == files
    assert sh(["git", "for-each-ref"], remote, env).stdout == before


@pytest.mark.pipeline
def test_an_optuna_study_runs_its_trials_as_jobs_and_continues_from_its_journal(world):
    project, other, remote, store, env, _, tmp = world
    tune = [sys.executable, "-m", "maskgit.tune", "--executor", "local", "--param", "inpaint.choice_temperature",
            "--low", "0.5", "--high", "4.5", "--linear", "--objective", "val_loss", "--study", "temp",
            "--scratch", str(tmp / "scratch-tune")]
    first = sh([*tune, "--trials", "2", "--jobs", "2"], project, env)
    assert first.stdout.count("trial ") == 2, first.stdout
    journal = project / ".sweep/optuna/temp.journal"
    assert journal.is_file()
    # a second process on the same study continues it: trial numbers go on, TPE sees all three
    again = sh([*tune, "--trials", "1"], project, env)
    assert "trial 2:" in again.stdout, again.stdout
    study = json.loads((project / "reports/study.json").read_text())
    assert [t["trial"] for t in study["trials"]] == [0, 1, 2]
    assert {t["experiment"] for t in study["trials"]} <= set(exp_refs(remote, env))
    # the objective each job handed back is the val_loss its experiment pushed: read here
    # from the remote on the other machine, and no trial retrained (the param is inpainting's)
    name = study["trials"][1]["experiment"]
    commit = sh(["git", "rev-parse", "HEAD"], project, env).stdout.strip()
    ref = f"refs/exps/{commit[:2]}/{commit[2:]}/{name}"
    sh(["git", "fetch", "-q", str(remote), f"{ref}:{ref}"], other, env)
    sh(["git", "checkout", "-q", "--detach", ref], other, env)
    sh(["dvc", "pull", "-q", "dvclive/transformer"], other, env)
    pushed = json.loads((other / "dvclive/transformer/metrics.json").read_text())["val_loss"]
    assert all(t["val_loss"] == pytest.approx(pushed, rel=1e-12) for t in study["trials"])
    assert not any("Running stage 'train_transformer'" in t for t in logs(project) if "temp-" in t)
    # a trial's job run twice (a Slurm requeue): the second finds the experiment on the
    # remote and hands back the pushed objective instead of running it again
    from maskgit.sweeps.job import JobSpec, run_job

    path = "dvclive/transformer/metrics.json"
    duplicate = run_job(JobSpec(git_remote=str(remote), dvc_remote=str(store), commit=commit, name=name,
                                read=(path,), scratch=str(tmp / "scratch-duplicate")))
    assert duplicate.status == "exists" and not duplicate.ran
    assert json.loads(duplicate.files[path])["val_loss"] == pushed
    sh(["git", "checkout", "-q", "main"], other, env)


@pytest.mark.pipeline
def test_an_interrupted_sweep_stops_cleanly_and_resubmitted_completes(world):
    project, _, remote, _, env, _, tmp = world
    scratch = tmp / "scratch-kill"
    grid = ["-S", "inpaint.choice_temperature=1.0"]  # one point, interrupted while it runs
    # SIGINT at its default in the sweep, as in a terminal's foreground job: pytest itself
    # may have been started in the background, where the shell ignores SIGINT (inherited)
    proc = subprocess.Popen([sys.executable, "-m", "maskgit.sweep", *grid, "--scratch", str(scratch)],
                            cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Ctrl-C as a terminal sends it, to the sweep's whole process group, once a point's
    # clone is inpainting
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        if any(scratch.glob("maskgit-sweep/sw-*/repo/outputs/inpaint/confidence/cosine")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("sweep: interrupted; its local jobs stopped and their clones "
                                                   "removed"), err
    assert not list((scratch / "maskgit-sweep").iterdir()), "a job's scratch clone was left behind"
    again = sweep(project, env, *grid, "--scratch", str(scratch))
    assert "1 experiments run, 0 already" in again.stdout, again.stdout
    refs = exp_refs(remote, env)
    assert refs.count(experiment_name(["inpaint.choice_temperature=1.0"])) == 1 and len(refs) == len(set(refs)), refs


def test_only_the_cheap_end_of_the_dag_keeps_outputs_out_of_the_cache():
    # DVC restores an output that is not cached from the run cache only where the workspace
    # copy already matches, never in a sweep job's fresh clone: a stage with one re-runs in
    # every sweep point even when no swept param reaches it. Only the stages that read the
    # stored evidence and write pages (seconds) may keep outputs in git.
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    uncached = {name for name, stage in stages.items() for kind in ("outs", "metrics", "plots")
                for out in stage.get(kind) or [] if isinstance(out, dict)
                and any((options or {}).get("cache") is False for options in out.values())}
    assert uncached == {"evaluate", "plots", "report"}


def test_bad_input_stops_with_one_line_before_submitting(tmp_path, monkeypatch, capsys):
    from maskgit import sweep as sweep_module

    env = stage_env(tmp_path)
    project = copy_project(tmp_path / "p")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "t"], ["git", "config", "user.email", "t@e"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "p"]):
        sh(cmd, project, env)
    monkeypatch.chdir(project)
    monkeypatch.setenv("PATH", env["PATH"])

    def error(*args):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            sweep_module.main(list(args))
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "Traceback" not in err, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: sweep: ") and not (project / ".sweep").exists(), err
        return lines[0]

    ok = ["-S", "inpaint.sweet_spot=2,3"]
    assert "unknown param inpaint.sweet_spots" in error("-S", "inpaint.sweet_spots=2,3")
    assert "inpaint.sampling" in error("-S", "inpaint.sampling=argmax,greedy")  # not an allowed value
    assert "no git remote" in error(*ok)
    missing = tmp_path / "nowhere.git"
    # git's own cause, not its closing advice ("... and the repository exists."), which reads as the opposite
    assert error(*ok, "--git-remote", str(missing)).endswith(
        f"git remote {missing} is unreachable: fatal: '{missing}' does not appear to be a git repository")
    remote = tmp_path / "remote.git"
    sh(["git", "init", "-q", "--bare", str(remote)], tmp_path, env)
    sh(["git", "remote", "add", "origin", str(remote)], project, env)
    assert "is not on git remote" in error(*ok)
    sh(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], project, env)
    assert "no DVC remote configured" in error(*ok)
    store = tmp_path / "store"
    assert f"{store} is not a directory" in error(*ok, "--dvc-remote", str(store))
    store.mkdir()
    if any(Path(d, "sbatch").exists() for d in env["PATH"].split(os.pathsep)):
        pytest.skip("this machine has sbatch")
    line = error(*ok, "--dvc-remote", str(store), "--executor", "slurm")
    assert "sbatch and srun are not on PATH" in line and "--executor local" in line
    (project / "params.yaml").write_text((project / "params.yaml").read_text() + "\n")
    (project / "notes.txt").write_text("x")
    line = error(*ok, "--dvc-remote", str(store))
    assert "uncommitted changes" in line and "params.yaml, notes.txt" in line


def test_the_slurm_flags_reach_the_sbatch_script(tmp_path, monkeypatch):
    # no cluster here: stand-ins for `sbatch` and `srun` on PATH pass the check, and the script
    # submitit would submit is read back, #SBATCH line by line
    import argparse

    from maskgit.sweeps import submit

    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("sbatch", "srun"):
        (bin_ / tool).write_text("#!/bin/sh\nexit 1\n")
        (bin_ / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    parser = argparse.ArgumentParser()
    submit.add_executor_args(parser)
    args = parser.parse_args(["--executor", "slurm", "--partition", "gpu", "--time", "90", "--cpus-per-task", "8",
                              "--gpus", "2", "--mem", "32", "--jobs", "3", "--sbatch", "account=mylab",
                              "--sbatch", "qos=short"])
    executor = submit.make_executor(args, tmp_path / "jobs")
    script = executor._make_submission_file_text("python -c pass", "uid").splitlines()
    for line in ("--partition=gpu", "--time=90", "--cpus-per-task=8", "--gpus-per-node=2", "--mem=32G",
                 "--account=mylab", "--qos=short", "--job-name=maskgit-sweep"):
        assert f"#SBATCH {line}" in script, (line, script)
    assert executor.parameters["array_parallelism"] == 3  # --jobs: array tasks running at once
