"""A sweep across machines: one DVC experiment per grid point, each run in its own
clone and pushed through a shared Git remote and a shared DVC remote.

    python -m maskgit.sweep -S 'inpaint.total_iter=4,8,12' -S 'inpaint.sweet_spot=2,4' --jobs 2
    python -m maskgit.sweep -S 'inpaint.total_iter=4,8,12' --executor slurm --partition gpu \\
        --time 60 --cpus-per-task 8 --gpus 1 --mem 32 --sbatch account=mylab
    python -m maskgit.sweep collect        # = python -m maskgit.experiments --pull

`dvc queue` runs on one machine only; this is the path DVC supports across several
(docs/scale.md). The sweep checks everything it can before it submits anything (the
remotes, a committed workspace whose commit is on the Git remote, every override
against the params schema), then runs the stages that no swept param reaches once
(the training stages, for an inpainting sweep) and pushes their run cache, then the
points: each pulls that run cache, so the transformer is trained once per sweep, not
once per point. Jobs that find their experiment on the remote do nothing, so a
re-submitted sweep runs only what is missing.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


from maskgit.pipeline import paths
from maskgit.pipeline.errors import ParamError, UserError
from maskgit.pipeline.params import check_params, parse_yaml
from maskgit.pipeline.sweep_job import JobResult, JobSpec, exp_ref, experiment_name, run_job

SUBMITIT_DIR = Path(".sweep")  # submitit's job files and the job logs (gitignored; on the shared filesystem for Slurm)


def git(*args: str, cwd: Path = Path("."), check: bool = True, timeout: float | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if check and result.returncode != 0:
        raise UserError(f"git {' '.join(args)}: {(result.stderr.strip().splitlines() or ['failed'])[-1]}")
    return result.stdout.strip()


# --- the grid ---------------------------------------------------------------------

def split_values(text: str) -> list[str]:
    """`a,b,[1,2]` -> ['a', 'b', '[1,2]']: commas inside brackets belong to a value."""
    values, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += ch
    values.append(current)
    return [v.strip() for v in values]


def parse_grid(sets: list[str]) -> list[list[str]]:
    """The `-S key=v1,v2` of `dvc exp run --queue`: the product of every -S, as
    lists of `key=value` overrides, one list per point."""
    axes = []
    for s in sets:
        key, sep, values = s.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ParamError(f"-S {s!r}: expected KEY=VALUE[,VALUE...]")
        if ":" in key:
            raise ParamError(f"-S {s!r}: only params.yaml keys can be swept (no FILE:KEY)")
        axes.append([f"{key}={v}" for v in split_values(values)])
    return [list(point) for point in itertools.product(*axes)] if axes else []


def apply_overrides(params: dict, overrides: list[str]) -> dict:
    """params with the overrides set, as DVC sets them (values parsed as YAML 1.2, as
    DVC reads them: `1e-3` is a number, `on` a string); ParamError naming the key when
    it is not a param of params.yaml."""
    out = copy.deepcopy(params)
    for o in overrides:
        key, _, raw = o.partition("=")
        node, parts = out, key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ParamError(f"-S {o}: unknown param {key} (params.yaml has no {part!r} section there)")
            node = node[part]
        if parts[-1] not in node:
            raise ParamError(f"-S {o}: unknown param {key}; known in {'.'.join(parts[:-1]) or 'params.yaml'}: "
                             f"{', '.join(node)}")
        node[parts[-1]] = parse_yaml(raw)
    return out


def check_points(params: dict, points: list[list[str]]) -> None:
    for point in points:
        check_params(apply_overrides(params, point), f"params.yaml with {' '.join(point)}")


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


# --- what a sweep needs before it submits ------------------------------------------

def resolve_git_remote(given: str | None, root: Path) -> str:
    remotes = git("remote", cwd=root).split()
    if given is None:
        if not remotes:
            raise UserError("no git remote: pass --git-remote URL, or `git remote add origin URL` "
                            "(a bare repository every machine reaches)")
        given = "origin" if "origin" in remotes else remotes[0]
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
        last = (result.stderr.strip().splitlines() or ["unreachable"])[-1]
        raise UserError(f"git remote {url} is unreachable: {last}")
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
        while pending or running:
            running = [j for j in running if not j.done()]
            while pending and len(running) < jobs:
                job = executor.submit(run_job, pending.pop(0))
                submitted.append(job)
                running.append(job)
            time.sleep(0.5)
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


def summary(results: list[JobResult]) -> str:
    ran = [s for r in results for s in r.ran]
    trained = sum(s.startswith("train_") for s in ran)
    points = [r for r in results if r.name != "common-stages"]
    return (f"{sum(r.status == 'ran' for r in points)} experiments run, "
            f"{sum(r.status == 'exists' for r in points)} already on the remote; "
            f"stages run: {len(ran)} ({trained} training: "
            f"{', '.join(sorted(set(s for s in ran if s.startswith('train_')))) or 'none'})")


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


def submit(args) -> list[JobResult]:
    points = parse_grid(args.set)
    if not points:
        raise UserError("nothing to sweep: give at least one -S KEY=VALUE[,VALUE...]")
    root = project_root()
    check_points(parse_yaml((root / "params.yaml").read_text()), points)
    executor, base = prepare(args, root)
    git_url, commit = base["git_remote"], base["commit"]
    named = [(experiment_name(p), p) for p in points]
    todo = [(n, p) for n, p in named if not _on_remote(git_url, commit, n)]
    print(f"sweep of {len(points)} points at {commit[:7]}: {len(points) - len(todo)} already on {git_url}; "
          f"executor {args.executor}, {args.jobs} at a time", flush=True)
    for n, p in named:
        print(f"  {n}: {' '.join(p)}{'' if (n, p) in todo else '  (exists)'}", flush=True)
    results = [JobResult(n, "exists") for n, p in named if (n, p) not in todo]
    if todo:
        results += run_common(args, executor, base, root, {o.partition("=")[0] for p in points for o in p})
        results += run_all(executor, [JobSpec(**base, overrides=tuple(p), name=n) for n, p in todo],
                           args.jobs, args.executor == "local")
    print(summary(results), flush=True)
    return results


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


def check_executor_args(parser, args) -> None:
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    for kv in args.sbatch:
        if "=" not in kv:
            parser.error(f"--sbatch {kv}: expected KEY=VALUE")


def _on_remote(url: str, commit: str, name: str) -> bool:
    return bool(git("ls-remote", url, exp_ref(commit, name), check=False, timeout=120))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["collect"]:
        from maskgit.experiments import main as experiments_main
        return experiments_main(["--pull", *argv[1:]])
    parser = argparse.ArgumentParser(prog="python -m maskgit.sweep",
                                     description="Run a grid of DVC experiments as jobs, through shared remotes.")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=V1,V2",
                        help="a swept param and its values, as `dvc exp run --queue -S` (repeat for a grid)")
    add_executor_args(parser)
    args = parser.parse_args(argv)
    check_executor_args(parser, args)
    try:
        submit(args)
    except UserError as e:
        print(f"error: sweep: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
