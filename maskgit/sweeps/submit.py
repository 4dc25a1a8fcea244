"""Experiments submitted as jobs, from the submitting machine: what maskgit.sweep and
maskgit.tune (`--executor local|slurm`) share. Each job itself is maskgit.sweeps.job.

Before anything is submitted (prepare): the workspace is committed, its commit is on
the Git remote every job clones from, and the DVC remote is a place every machine
reaches. Then the stages that no swept or tuned param reaches run once, in one job,
and push their run cache (run_common), so that every later job takes them from it;
then the jobs themselves, at most `--jobs` at a time (run_all), as local processes or
as a Slurm array through submitit. The command-line flags for all this are
add_executor_args's, the same in both tools.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from maskgit.project import paths
from maskgit.project.errors import UserError
from maskgit.project.gitrepo import default_remote, git, git_error
from maskgit.sweeps.job import JobResult, JobSpec, scratch_root, run_job

SUBMITIT_DIR = Path(".sweep")  # submitit's job files and the job logs (gitignored; on the shared filesystem for Slurm)


# --- the stages run once ------------------------------------------------------------

def _touches(stage_params: list[str], keys: set[str]) -> bool:
    if not stage_params:  # `params.yaml:` with no keys: the whole file
        return True
    return any(p == k or k.startswith(p + ".") or p.startswith(k + ".") for p in stage_params for k in keys)


def common_stages(root: Path, keys: set[str]) -> list[str]:
    """The stages that no swept key reaches, directly or through an upstream stage:
    the same for every point, run once before the points."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges: stage -> the stages it depends on
        touched = {s for s in graph.nodes
                   if any(_touches(list(d.params), keys) for d in s.deps if hasattr(d, "params"))}

        def upstream(stage, seen):
            for dep in graph.successors(stage):
                if dep not in seen:
                    seen.add(dep)
                    upstream(dep, seen)
            return seen

        affected = {s for s in graph.nodes if s in touched or touched & upstream(s, set())}
        return [s.addressing for s in graph.nodes if s not in affected]



# --- what a sweep or a study needs before it submits ------------------------------

def resolve_git_remote(given: str | None, root: Path) -> str:
    remotes = git("remote", cwd=root).split()
    if given is None:
        given = default_remote(root)
        if given is None:
            raise UserError("no git remote: pass --git-remote URL, or `git remote add origin URL` "
                            "(a bare repository every machine reaches)")
    url = git("remote", "get-url", given, cwd=root) if given in remotes else given
    if "://" not in url and not re.match(r"^[^/]+@[^:]+:", url) and Path(url).expanduser().exists():
        url = str((root / Path(url).expanduser()).resolve())
    return url


def check_git_remote(url: str, commit: str, root: Path) -> None:
    try:
        result = subprocess.run(["git", "ls-remote", url], cwd=root, capture_output=True, text=True,
                                timeout=60, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except subprocess.TimeoutExpired:
        raise UserError(f"git remote {url}: no answer within 60 s") from None
    if result.returncode != 0:
        raise UserError(f"git remote {url} is unreachable: {git_error(result.stderr)}")
    for line in result.stdout.splitlines():
        tip = line.split()[0]
        if tip == commit or subprocess.run(["git", "merge-base", "--is-ancestor", commit, tip], cwd=root,
                                           capture_output=True).returncode == 0:
            return
    raise UserError(f"commit {commit[:7]} is not on git remote {url}: `git push` it first (every job clones it)")


def resolve_dvc_remote(given: str | None, root: Path) -> str:
    def dvc(*args):
        r = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    remotes = dict(line.split(None, 1) for line in dvc("remote", "list").splitlines() if len(line.split(None, 1)) == 2)
    if given is None:
        given = dvc("remote", "default")
        if not given:
            raise UserError("no DVC remote configured: pass --dvc-remote URL, or `dvc remote add -d NAME URL` "
                            "(a shared directory, ssh:// or an object store every machine reaches)")
    url = remotes.get(given, given).split()[0]
    if "://" not in url:  # a local directory: DVC reads a relative one from .dvc/
        base = root / ".dvc" if given in remotes else Path.cwd()
        path = (base / Path(url).expanduser()).resolve()
        if not path.is_dir():
            raise UserError(f"DVC remote {given}: {path} is not a directory (create it, shared by every machine)")
        url = str(path)
    return url


def check_committed(root: Path) -> str:
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root,
                            capture_output=True, text=True, check=True).stdout
    # what the sweep's and the study's own pages write in the submitting checkout is no input of a job
    own = tuple(str(p) for p in (paths.STUDY, paths.EXPERIMENTS_PAGE, paths.EXPERIMENTS_FIGURES))
    changed = [line[3:] for line in status.splitlines()
               if line.strip() and not (line.startswith("??") and line[3:].startswith(own))]
    if changed:
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        raise UserError(f"uncommitted changes, which the jobs (cloning commit {git('rev-parse', '--short', 'HEAD', cwd=root)}) "
                        f"would not see: {shown}; commit them (and push) first")
    return git("rev-parse", "HEAD", cwd=root)



# --- executors ---------------------------------------------------------------------

def make_executor(args, folder: Path):
    import submitit

    if args.executor == "slurm":
        missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]  # submitit needs both
        if missing:
            raise UserError(f"--executor slurm: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                            "not on PATH on this machine (submit from the cluster's login node, or use "
                            "--executor local)")
        ex = submitit.SlurmExecutor(folder=folder)
        extra = dict(kv.split("=", 1) for kv in args.sbatch)
        ex.update_parameters(partition=args.partition, time=args.time, cpus_per_task=args.cpus_per_task,
                             gpus_per_node=args.gpus, mem=f"{args.mem}G" if args.mem else None,
                             array_parallelism=args.jobs, additional_parameters=extra, job_name="maskgit-sweep")
        return ex
    ex = submitit.LocalExecutor(folder=folder)
    ex.update_parameters(timeout_min=args.time)
    return ex


def run_all(executor, specs: list[JobSpec], jobs: int, local: bool) -> list[JobResult]:
    """Submit every spec; at most `jobs` at a time (Slurm: an array with that
    parallelism; local: a pool of that many processes). Every job finishes (or
    fails) before this returns; the first failure is raised after."""
    if not specs:
        return []
    if not local:
        submitted = executor.map_array(run_job, specs)
    else:
        submitted, pending, running = [], list(specs), []
        try:
            while pending or running:
                running = [j for j in running if not j.done()]
                while pending and len(running) < jobs:
                    with _sigint_ignored():
                        job = executor.submit(run_job, pending.pop(0))
                    submitted.append(job)
                    running.append(job)
                time.sleep(0.5)
        except KeyboardInterrupt:
            stop_local_jobs([j for j in submitted if not j.done()], specs[0])
            raise
    results, errors = [], []
    for job in submitted:
        try:
            results.append(job.result())
        except Exception as e:  # noqa: BLE001 - submitit wraps the job's exception with its traceback
            errors.append(str(e).strip().splitlines())
    if errors:
        lines = [next((ln for ln in reversed(err) if "JobFailed" in ln), err[-1] if err else "failed") for err in errors]
        raise UserError(f"{len(errors)} of {len(specs)} jobs failed; first: {lines[0].split('JobFailed: ')[-1]}")
    return results



@contextlib.contextmanager
def _sigint_ignored():
    """A local job started in here ignores SIGINT, it and every process it starts (an
    ignored signal stays ignored across fork and exec, and Python keeps it so). Ctrl-C
    reaches the whole terminal's process group: this way only the submitting process
    sees it, and stops the jobs itself (stop_local_jobs) instead of each job process
    printing its own traceback."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_local_jobs(jobs: list, spec: JobSpec) -> None:
    """Stop running local jobs, and everything they started, and remove their scratch
    clones: a job's clone is the working folder of its git and DVC processes."""
    import psutil

    scratch = scratch_root(spec).resolve()
    tree, clones = [], set()
    for job in jobs:
        try:
            root = psutil.Process(job._process.pid)  # submitit's LocalJob keeps its Popen there
            tree += [root, *root.children(recursive=True)]
        except (AttributeError, psutil.Error):
            continue
    for process in tree:
        try:
            cwd = Path(process.cwd()).resolve()
        except (psutil.Error, OSError):
            continue
        if scratch in cwd.parents:
            clones.add(scratch / cwd.relative_to(scratch).parts[0])
    for process in tree:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(tree, timeout=10)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)
    for clone in clones:
        shutil.rmtree(clone, ignore_errors=True)


def project_root() -> Path:
    return Path(git("rev-parse", "--show-toplevel"))


def prepare(args, root: Path):
    """Check the workspace and the remotes and make the executor. Returns (the
    executor, the JobSpec fields every job shares)."""
    commit = check_committed(root)
    git_url = resolve_git_remote(args.git_remote, root)
    check_git_remote(git_url, commit, root)
    dvc_url = resolve_dvc_remote(args.dvc_remote, root)
    folder = (root / SUBMITIT_DIR / commit[:12]).resolve()
    executor = make_executor(args, folder)
    base = dict(git_remote=git_url, dvc_remote=dvc_url, commit=commit, log_dir=str(folder / "logs"),
                scratch=args.scratch)
    return executor, base


def run_common(args, executor, base, root: Path, keys: set[str]) -> list[JobResult]:
    """Run the stages that no key in `keys` reaches once and push their run cache, so
    that every later job takes them from it."""
    stages = common_stages(root, keys)
    if not stages:
        return []
    print(f"common stages, run once: {', '.join(stages)}", flush=True)
    return run_all(executor, [JobSpec(**base, stages=tuple(stages))], 1, args.executor == "local")



# --- the flags ----------------------------------------------------------------------

EXECUTORS = {
    "here": "here: `dvc exp run` in this checkout, one after another",
    "local": "local: jobs as processes on this machine, each in its own clone",
    "slurm": "slurm: jobs submitted to Slurm through submitit, each in a clone on its node",
}


def add_executor_args(parser, executors=("local", "slurm"), default="local") -> None:
    """The remotes and the executor: shared by the sweep and by `maskgit.tune --executor`."""
    parser.add_argument("--git-remote", help="name or URL (default: origin, or the only git remote)")
    parser.add_argument("--dvc-remote", help="name or URL (default: `dvc remote default`)")
    parser.add_argument("--executor", choices=list(executors), default=default,
                        help="; ".join(EXECUTORS[e] for e in executors))
    parser.add_argument("--jobs", type=int, default=1, help="jobs running at once")
    parser.add_argument("--scratch", help="node-local folder for the jobs' clones "
                                          "(default: $SLURM_TMPDIR, $TMPDIR or /tmp on the node)")
    slurm = parser.add_argument_group("slurm")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", type=int, default=60, help="minutes per job")
    slurm.add_argument("--cpus-per-task", type=int, default=4)
    slurm.add_argument("--gpus", type=int, default=0, help="GPUs per job")
    slurm.add_argument("--mem", type=int, help="GB per job")
    slurm.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. account=mylab, qos=short")


def check_executor_args(args) -> None:
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be >= 1")
    for kv in args.sbatch:
        if "=" not in kv:
            raise UserError(f"--sbatch {kv}: expected KEY=VALUE")

