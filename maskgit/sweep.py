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

This module is the grid; submitting it (the checks, the executors, the stages run once)
is maskgit/sweeps/submit.py, which maskgit.tune shares, and one job is
maskgit/sweeps/job.py.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from maskgit.project.errors import ParamError, UserError
from maskgit.project.params import check_overrides
from maskgit.project.yamlio import parse_yaml
from maskgit.sweeps.job import JobResult, JobSpec, exp_ref, experiment_name
from maskgit.project.gitrepo import git
from maskgit.sweeps.submit import (add_executor_args, check_executor_args, prepare, project_root,
                                           run_all, run_common)
from maskgit.project.tool import run_tool


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


def summary(results: list[JobResult]) -> str:
    ran = [s for r in results for s in r.ran]
    trained = sum(s.startswith("train_") for s in ran)
    points = [r for r in results if r.name != "common-stages"]
    return (f"{sum(r.status == 'ran' for r in points)} experiments run, "
            f"{sum(r.status == 'exists' for r in points)} already on the remote; "
            f"stages run: {len(ran)} ({trained} training: "
            f"{', '.join(sorted(set(s for s in ran if s.startswith('train_')))) or 'none'})")


def submit(args) -> list[JobResult]:
    points = parse_grid(args.set)
    if not points:
        raise UserError("nothing to sweep: give at least one -S KEY=VALUE[,VALUE...]")
    root = project_root()
    check_overrides(parse_yaml((root / "params.yaml").read_text()), points)
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


def _on_remote(url: str, commit: str, name: str) -> bool:
    return bool(git("ls-remote", url, exp_ref(commit, name), check=False, timeout=120))


def collect(argv: list[str]) -> None:
    """`sweep collect [FLAGS]`: `maskgit.experiments --pull [FLAGS]`, the page of the sweep's experiments."""
    from maskgit.pages.experiments import add_page_args, build_page

    parser = argparse.ArgumentParser(prog="python -m maskgit.sweep collect",
                                     description="Pull the sweep's experiments and build reports/experiments.md.")
    add_page_args(parser)
    args = parser.parse_args(["--pull", *argv])
    build_page(args.out, args.all_commits, args.pull, args.git_remote)


def main(argv=None):
    run_tool(lambda: cli(argv), "sweep", "its local jobs stopped and their clones removed (Slurm jobs run on: "
             "scancel them); experiments already pushed stay, and the same command runs the rest")


def cli(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["collect"]:
        return collect(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m maskgit.sweep",
                                     description="Run a grid of DVC experiments as jobs, through shared remotes.")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=V1,V2",
                        help="a swept param and its values, as `dvc exp run --queue -S` (repeat for a grid)")
    add_executor_args(parser)
    args = parser.parse_args(argv)
    check_executor_args(args)
    submit(args)


if __name__ == "__main__":
    main()
