"""One job of a sweep (maskgit.sweep) or of a study (maskgit.tune --executor), as
maskgit.sweeps.submit submits it: everything it does happens in its own clone.

The path DVC supports across machines is a shared Git remote plus a shared DVC
remote: a job clones the submitted commit into node-local scratch (never a shared
checkout: DVC's repository lock and NFS do not mix), points DVC at the shared
remote, runs `dvc exp run` with its overrides under a name derived from them, and
pushes the experiment. Jobs are safe to run twice (Slurm requeues, submitit array
tasks can be duplicated, a user re-submits): a job whose experiment ref is already on
the Git remote does nothing, and a killed job leaves only its own scratch clone,
which no later job reads. Outputs and run cache reach the DVC remote before the
experiment ref reaches the Git remote, so a ref on the remote always has its data.

Jobs are plain picklable functions of a `JobSpec`: submitit runs them as local
processes or as Slurm jobs alike.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from maskgit.project.gitrepo import git_error

RAN = re.compile(r"Running stage '([^']+)'")
RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run")


def experiment_name(overrides: list[str]) -> str:
    """The same overrides give the same name, in any order: `sw-<readable>-<hash>`.
    Git ref rules and DVC's name check allow [A-Za-z0-9_.-]; the hash keeps names
    unique when the readable part is cut or two values read alike."""
    ordered = sorted(overrides)
    digest = hashlib.sha1("\n".join(ordered).encode()).hexdigest()[:8]
    readable = "-".join(o.partition("=")[0].split(".")[-1] + "=" + o.partition("=")[2] for o in ordered)
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", readable).replace("..", "_").strip("._-")[:60]
    return f"sw-{readable}-{digest}" if readable else f"sw-{digest}"


def exp_ref(commit: str, name: str) -> str:
    """Where DVC keeps an experiment of baseline `commit` (refs/exps/ab/cdef.../name)."""
    return f"refs/exps/{commit[:2]}/{commit[2:]}/{name}"


@dataclass(frozen=True)
class JobSpec:
    git_remote: str
    dvc_remote: str
    commit: str
    overrides: tuple[str, ...] = ()
    name: str = ""              # experiment name; empty for the job that runs the common stages
    stages: tuple[str, ...] = ()  # the common stages (name empty)
    log_dir: str = ""
    scratch: str | None = None  # node-local folder for the clone; None: $SLURM_TMPDIR, $TMPDIR or /tmp
    env: dict = field(default_factory=dict)
    read: tuple[str, ...] = ()  # workspace files whose text the job hands back (an Optuna trial's objective)


@dataclass
class JobResult:
    name: str
    status: str                 # ran | exists
    ran: list[str] = field(default_factory=list)        # stages run
    restored: list[str] = field(default_factory=list)   # stages taken from the run cache
    log: str = ""
    files: dict = field(default_factory=dict)           # path -> text, for JobSpec.read


class JobFailed(RuntimeError):
    pass


def _env(spec: JobSpec) -> dict:
    env = dict(os.environ)
    env.update(spec.env)
    # the stage commands call `python`: this interpreter's, with DVC beside it
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.pop("PYTHONPATH", None)  # the clone's own maskgit, not the submitter's checkout
    env["PYTHONPATH"] = "."
    return env


def remote_has(git_remote: str, ref: str, env: dict | None = None) -> bool:
    out = subprocess.run(["git", "ls-remote", git_remote, ref], capture_output=True, text=True, env=env,
                         timeout=120)
    if out.returncode != 0:
        raise JobFailed(f"git ls-remote {git_remote}: {git_error(out.stderr)}")
    return bool(out.stdout.strip())


def scratch_root(spec: JobSpec) -> Path:
    root = spec.scratch or os.environ.get("SLURM_TMPDIR") or tempfile.gettempdir()
    path = Path(root) / "maskgit-sweep"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read(clone: Path, paths: tuple[str, ...]) -> dict:
    return {p: (clone / p).read_text() for p in paths if (clone / p).is_file()}


def run_job(spec: JobSpec) -> JobResult:
    """Run one sweep point (or, with no name, the common stages) and push it."""
    label = spec.name or "common-stages"
    env = _env(spec)
    exists = bool(spec.name) and remote_has(spec.git_remote, exp_ref(spec.commit, spec.name), env)
    if exists and not spec.read:
        print(f"{label}: already on {spec.git_remote}, nothing to do", flush=True)
        return JobResult(label, "exists")
    log_path = Path(spec.log_dir) / f"{label}.log" if spec.log_dir else None
    # a fresh folder per attempt: a duplicate of this job may be running next to it,
    # and a killed attempt's clone is simply never read again
    workdir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=scratch_root(spec)))
    clone = workdir / "repo"
    transcript: list[str] = []

    def sh(*cmd: str, cwd: Path | None = clone) -> str:
        transcript.append("$ " + " ".join(cmd))
        result = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
        transcript.append(result.stdout + result.stderr + f"[exit {result.returncode}]")
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text("\n".join(transcript))
        if result.returncode != 0:
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise JobFailed(f"{label}: `{' '.join(cmd)}` failed (exit {result.returncode}): {tail[0]}"
                            + (f" (log: {log_path})" if log_path else ""))
        return result.stdout + result.stderr

    try:
        sh("git", "clone", "--quiet", "--no-checkout", spec.git_remote, str(clone), cwd=workdir)
        sh("git", "checkout", "--quiet", "--detach", spec.commit)
        sh("dvc", "remote", "add", "--local", "--default", "--force", "sweep", spec.dvc_remote)
        # the commit's dvc.lock names the data of the run made where it was committed,
        # which need not be on the shared remote; DVC resolves the stages' inputs
        # through it and stops on the missing objects. Without it every stage is
        # looked up in the run cache by its actual inputs (and the experiment commits
        # a dvc.lock of its own).
        transcript.append("$ rm dvc.lock")
        (clone / "dvc.lock").unlink(missing_ok=True)
        if exists:  # run before (a duplicated or requeued job): read what it pushed
            ref = exp_ref(spec.commit, spec.name)
            sh("git", "fetch", "--quiet", spec.git_remote, f"{ref}:{ref}")
            sh("git", "checkout", "--quiet", "--force", "--detach", ref)
            sh("dvc", "pull", "--allow-missing")
            print(f"{label}: already on {spec.git_remote}, read back", flush=True)
            return JobResult(label, "exists", files=_read(clone, spec.read))
        if spec.name:
            sets = [a for o in spec.overrides for a in ("-S", o)]
            out = sh("dvc", "exp", "run", "--pull", "--name", spec.name, *sets)
            # data and run cache first, then the ref: a ref on the remote has its data
            sh("dvc", "push", "--run-cache")
            sh("dvc", "exp", "push", "--no-cache", spec.git_remote, spec.name)
        else:
            out = sh("dvc", "repro", "--pull", *spec.stages)
            sh("dvc", "push", "--run-cache", *spec.stages)
        print(f"{label}: done", flush=True)
        return JobResult(label, "ran", RAN.findall(out), RESTORED.findall(out), str(log_path or ""),
                         _read(clone, spec.read))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
