"""The sweep's lookup of a point already on the Git remote (maskgit.sweep,
maskgit.sweeps.job), on a local bare repository: where DVC keeps an
experiment's ref is taken from DVC's own ExpRefInfo, not from the code under test."""

import argparse
import subprocess
from pathlib import Path

import pytest
import yaml
from dvc.repo.experiments.refs import ExpRefInfo

from conftest import ROOT
from maskgit import sweep
from maskgit.sweeps import job
from maskgit.sweeps.job import JobResult, JobSpec


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def remote(tmp_path):
    """A bare remote holding one experiment, `sw-x`, of baseline commit `base`; `other` is a second commit."""
    bare, work = tmp_path / "remote.git", tmp_path / "work"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    work.mkdir()
    git("init", "-q", cwd=work)
    for cmd in (("config", "user.name", "t"), ("config", "user.email", "t@t"),
                ("commit", "-q", "--allow-empty", "-m", "base")):
        git(*cmd, cwd=work)
    base = git("rev-parse", "HEAD", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "the experiment", cwd=work)
    other = git("rev-parse", "HEAD", cwd=work)
    ref = str(ExpRefInfo(baseline_sha=base, name="sw-x"))
    git("push", "-q", str(bare), f"{other}:{ref}", cwd=work)
    return str(bare), base, other


def test_the_experiment_ref_is_where_dvc_keeps_it():
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert job.exp_ref(commit, "sw-a-1") == str(ExpRefInfo(baseline_sha=commit, name="sw-a-1"))


def test_the_same_overrides_in_any_order_name_the_same_experiment():
    # a re-submitted sweep may list its -S flags in another order: it must find its points
    one = job.experiment_name(["inpaint.total_iter=4", "inpaint.sweet_spot=2"])
    assert one == job.experiment_name(["inpaint.sweet_spot=2", "inpaint.total_iter=4"])
    assert one != job.experiment_name(["inpaint.sweet_spot=4", "inpaint.total_iter=2"])


def test_a_point_is_on_the_remote_only_under_its_own_commit_and_name(remote):
    url, base, other = remote
    assert sweep._on_remote(url, base, "sw-x")
    assert not sweep._on_remote(url, base, "sw-y")
    assert not sweep._on_remote(url, base, "x")  # a name that ends another's is not it
    assert not sweep._on_remote(url, other, "sw-x")  # the same point swept from another commit
    assert job.remote_has(url, job.exp_ref(base, "sw-x"))
    assert not job.remote_has(url, job.exp_ref(base, "sw-y"))
    assert not job.remote_has(url, job.exp_ref(other, "sw-x"))


def test_a_job_whose_point_is_on_the_remote_does_nothing(remote, tmp_path):
    url, base, _ = remote
    result = job.run_job(JobSpec(git_remote=url, dvc_remote=str(tmp_path / "none"), commit=base, name="sw-x",
                                       scratch=str(tmp_path / "scratch")))
    assert result.status == "exists" and result.ran == []
    assert not (tmp_path / "scratch").exists()  # nothing cloned
    with pytest.raises(job.JobFailed, match="ls-remote"):
        job.remote_has(str(tmp_path / "nowhere.git"), "refs/exps/x")


def test_a_resubmitted_sweep_submits_only_the_points_not_on_the_remote(remote, tmp_path, monkeypatch, capsys):
    url, base, other = remote
    # the point inpaint.sweet_spot=2 is already there, under the name the sweep gives it
    done = job.experiment_name(["inpaint.sweet_spot=2"])
    git("push", "-q", url, f"{other}:{ExpRefInfo(baseline_sha=base, name=done)}", cwd=Path(tmp_path / "work"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(yaml.safe_load((ROOT / "params.yaml").read_text())))
    submitted = []
    monkeypatch.setattr(sweep, "project_root", lambda: project)
    monkeypatch.setattr(sweep, "prepare", lambda args, root: (None, {"git_remote": url, "dvc_remote": "store",
                                                                      "commit": base}))
    monkeypatch.setattr(sweep, "run_common", lambda *a: [])
    monkeypatch.setattr(sweep, "run_all", lambda executor, specs, jobs, local: submitted.extend(specs) or [
        JobResult(s.name, "ran") for s in specs])
    results = sweep.submit(argparse.Namespace(set=["inpaint.sweet_spot=2,3,4"], executor="local", jobs=1))
    assert sorted(s.overrides for s in submitted) == [("inpaint.sweet_spot=3",), ("inpaint.sweet_spot=4",)]
    assert [r.status for r in results].count("exists") == 1
    assert "1 already on" in capsys.readouterr().out
