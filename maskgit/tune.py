"""An Optuna study whose every trial is a real DVC experiment.

    python -m maskgit.tune --param train_transformer.lr --low 1e-4 --high 1e-2 --trials 10 \
        --objective val_loss                  # or fid:cosine (FID of that decoder)
    python -m maskgit.tune ... --executor local --jobs 4         # trials as sweep jobs
    python -m maskgit.tune ... --executor slurm --partition gpu --gpus 1 --jobs 8

Each trial runs `dvc exp run -S <param>=<value> [--set ...] --name <study>-<n>`, so it
is listed by `dvc exp show`, can be applied or pushed like any experiment, and
reruns only the stages the param reaches. The objective is read from the trial's
outputs; the trial table lands in reports/study.json and reports/experiments.md.

With `--executor local|slurm` the trials run as the jobs of maskgit.sweep: each in
its own clone, pushed through the shared Git and DVC remotes, `--jobs` at a time,
after the stages no tuned param reaches have run once. The study itself lives in an
Optuna journal file (`--storage`, default .sweep/optuna/<study>.journal): every
change is one appended line, written under a lock file that is created atomically
(a symbolic link), which NFS supports where SQLite's fcntl() locks are broken
(SQLite's own FAQ). Several `maskgit.tune --study NAME` processes, on one machine or
several that share the folder, work on one study, and a stopped study continues.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from maskgit.metrics.registry import HEADLINE
from maskgit.project import paths
from maskgit.project.errors import InputError, UserError
from maskgit.pages.experiments import build_page
from maskgit.project.files import atomic_write_bytes, write_json
from maskgit.project.gitrepo import git
from maskgit.project.params import check_overrides, defaults, get_param, read_params_file
from maskgit.sweeps.job import JobSpec
from maskgit.sweeps.submit import (add_executor_args, check_executor_args, prepare, project_root, run_all,
                                           run_common)
from maskgit.project.tool import run_tool
from maskgit.pipeline.workspace import params_bytes, refuse_concurrent_runs

OBJECTIVES = "val_loss | fid:<decoder>"
STORAGE_DIR = Path(".sweep/optuna")


def objective_path(objective: str) -> Path:
    return paths.LIVE_TRANSFORMER / "metrics.json" if objective == "val_loss" else paths.FID_DECODERS


def objective_value(objective: str, text: str) -> float:
    """The objective from the text of objective_path(objective)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        # written by a stage of the trial's experiment, not by this code: a truncated or
        # foreign file is a broken input, named, not a traceback of the study
        raise InputError(f"{objective_path(objective)}: not JSON ({e.msg} at line {e.lineno})") from None
    if objective == "val_loss":
        return float(data["val_loss"])
    if objective.startswith("fid:"):
        decoder = objective.split(":", 1)[1]
        if decoder not in data:
            raise UserError(f"--objective {objective}: no FID for decoder {decoder!r} (have {', '.join(data)})")
        return float(data[decoder][HEADLINE])
    # cli() refuses any other --objective before the first trial: reaching here is a bug
    raise ValueError(f"--objective {objective}: expected {OBJECTIVES}")


def read_objective(objective: str) -> float:
    return objective_value(objective, objective_path(objective).read_text())


def trial_override(param: str, value: float) -> str:
    """The `-S` a trial's `dvc exp run` gets, here or as a job: repr() writes the float
    back exactly (1e-05, 0.00123), and DVC's override grammar reads it as that float
    (tests/test_params.py checks the round trip against DVC's own parser)."""
    return f"{param}={value!r}"


def run_trial(name: str, param: str, value: float, extra: list[str]) -> None:
    cmd = ["dvc", "exp", "run", "--name", name, "-S", trial_override(param, value)]
    for s in extra:
        cmd += ["-S", s]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        # the trial's pipeline failed (a stage's own error, a diverged training): the
        # stage printed why; the study stops with the line that says so
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        raise UserError(f"trial {name}: `{' '.join(cmd)}` failed: {tail}")


def main(argv=None):
    run_tool(lambda: cli(argv), "tune")


def cli(argv=None):
    parser = argparse.ArgumentParser(description="Optuna search over one param; every trial a DVC experiment.")
    parser.add_argument("--param", default="train_transformer.lr")
    parser.add_argument("--low", type=float, default=1e-4)
    parser.add_argument("--high", type=float, default=1e-2)
    parser.add_argument("--linear", action="store_true", help="sample uniformly instead of log-uniformly")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--objective", default="val_loss", help=OBJECTIVES)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra params for every trial (e.g. smaller budgets)")
    parser.add_argument("--study", default=None,
                        help="study name, prefix of the experiment names (default: tune-<time>, unique)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", type=Path, default=None,
                        help="Optuna journal file shared by every process of the study (default with "
                             f"--executor: {STORAGE_DIR}/<study>.journal; without: in memory)")
    add_executor_args(parser, executors=("here", "local", "slurm"), default="here")
    args = parser.parse_args(argv)
    check_executor_args(args)
    if args.objective != "val_loss" and not args.objective.startswith("fid:"):
        raise UserError(f"--objective {args.objective}: expected {OBJECTIVES}")
    if not (0 < args.low < args.high and math.isfinite(args.high)):
        raise UserError(f"--low {args.low:g} --high {args.high:g}: need 0 < low < high")
    bad = [s for s in args.set if "=" not in s]
    if bad:
        raise UserError(f"--set {bad[0]}: expected KEY=VALUE")
    # every name checked before the first trial: a typo must not cost a finished experiment
    for name, flag in [(args.param, "--param"), *((s.partition("=")[0], "--set") for s in args.set)]:
        get_param(defaults(), name, flag)
    # and every value: the trials' params, at both ends of the range, checked as a whole
    # params.yaml (a scalar where a list belongs would otherwise be DVC's matrix error,
    # in the middle of the study)
    check_overrides(read_params_file(Path("params.yaml")),
                    [[trial_override(args.param, v), *args.set] for v in (args.low, args.high)])

    try:
        import optuna
    except ModuleNotFoundError:
        raise UserError("maskgit.tune needs optuna, an optional extra: pip install -e '.[tune]'") from None

    if args.study is None:
        args.study = time.strftime("tune-%m%d-%H%M%S")
    if args.storage is None and args.executor != "here":
        args.storage = STORAGE_DIR / f"{args.study}.journal"

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    if args.storage is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        args.storage.parent.mkdir(parents=True, exist_ok=True)
        check_journal(args.storage)
        storage = JournalStorage(JournalFileBackend(str(args.storage)))
    study = optuna.create_study(study_name=args.study, storage=storage, load_if_exists=True, direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=args.seed))

    def report(trial, value, result):
        print(f"trial {trial.number}: {args.param} = {value:.4g} -> {args.objective} {result:.4f} "
              f"({trial.user_attrs['experiment']})", flush=True)
        return result

    def suggest(trial):
        value = trial.suggest_float(args.param, args.low, args.high, log=not args.linear)
        trial.set_user_attr("experiment", f"{args.study}-{trial.number}")
        return value

    if args.executor == "here":
        refuse_concurrent_runs("tune")  # its trials are `dvc exp run`s in this workspace
        # each `dvc exp run` leaves its own params in the workspace: the user's file comes back
        params = Path("params.yaml")
        before, index = params_bytes(params), staged()
        try:
            run_here(args, study, suggest, report)
        finally:
            if before is not None and params_bytes(params) != before:
                atomic_write_bytes(params, before)
                print("params.yaml: put back as it was before the study (apply a trial with "
                      "`dvc exp apply NAME`)", file=sys.stderr)
            restored = restore_index(index)
            if restored:
                print(f"git index: {', '.join(restored)} put back as staged before the study (an interrupted "
                      f"`dvc exp run` had staged its trial's)", file=sys.stderr)
    else:
        run_on_executor(args, study, suggest, report)

    trials = [{"trial": t.number, args.param: t.params[args.param], args.objective: t.value,
               "experiment": t.user_attrs["experiment"]}
              for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        raise UserError("no trial completed")
    best = min(trials, key=lambda t: t[args.objective])
    write_json(paths.STUDY, {
        "param": args.param, "objective": args.objective, "study": args.study,
        "storage": str(args.storage) if args.storage else None, "trials": trials,
        "best": {"value": best[args.param], "objective": best[args.objective], "experiment": best["experiment"]},
    })
    # trials run as jobs are experiments on the remote: pull them before the page reads them
    build_page(pull=args.executor != "here", git_remote=args.git_remote)


def staged() -> dict[str, str] | None:
    """{path: index entry} of every path whose staged content differs from HEAD's, or
    None outside a git checkout."""
    if not git("rev-parse", "--git-dir", check=False):
        return None
    names = git("diff", "--cached", "--name-only", "-z", check=False).split("\0")
    entries = git("ls-files", "--stage", "-z", "--", *filter(None, names), check=False) if any(names) else ""
    return {e.split("\t", 1)[1]: e.split("\t", 1)[0] for e in entries.split("\0") if "\t" in e}


def restore_index(before: dict[str, str] | None) -> list[str]:
    """Put git's index back as `before` (staged()) had it: a `dvc exp run` interrupted
    by Ctrl-C leaves its trial's params.yaml and dvc.lock staged, which the user's next
    `git commit` would commit. The paths put back."""
    now = staged()
    if before is None or now is None or now == before:
        return []
    changed = sorted(p for p in set(now) | set(before) if now.get(p) != before.get(p))
    for path in changed:
        if path in before:  # the user's own staged version
            mode, sha, _ = before[path].split()
            git("update-index", "--cacheinfo", f"{mode},{sha},{path}", check=False)
        else:
            git("reset", "-q", "--", path, check=False)
    return changed


def check_journal(path: Path) -> None:
    """InputError naming the file when a line of an Optuna journal is not a JSON operation.
    Optuna takes a damaged last line for another process's write in progress and fails only
    once a trial is appended after it, in the middle of the study; a study's processes
    write whole lines, so at its start every line is whole."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                op = json.loads(line)
                if not (line.endswith(b"\n") and isinstance(op, dict) and isinstance(op.get("op_code"), int)):
                    raise ValueError
            except ValueError:
                raise InputError(f"{path}: line {number} is not an Optuna journal operation (a damaged or "
                                 f"foreign file); pass another --storage or move it away") from None


def run_here(args, study, suggest, report) -> None:
    """`--trials` trials one after another in this checkout: ask, run, tell. Not
    study.optimize, which logs a failed trial's traceback as a warning: a trial that
    fails on bad input must stop the study with one line."""
    import optuna

    for _ in range(args.trials):
        trial = study.ask()
        value = suggest(trial)
        try:
            run_trial(trial.user_attrs["experiment"], args.param, value, args.set)
            result = read_objective(args.objective)
        except BaseException:
            # told before the error goes on (bad input, a bug, Ctrl-C): no trial of a
            # journal-backed study stays "running" for the next process to wait on
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, report(trial, value, result))


def run_on_executor(args, study, suggest, report) -> None:
    """`--trials` trials as sweep jobs, `--jobs` at a time: ask that many, run them, tell
    their objectives, ask again (TPE sees every finished trial before the next batch)."""
    import optuna

    root = project_root()
    executor, base = prepare(args, root)
    run_common(args, executor, base, root, {args.param, *(s.partition("=")[0] for s in args.set)})
    path = str(objective_path(args.objective))
    done = 0
    while done < args.trials:
        batch = [study.ask() for _ in range(min(args.jobs, args.trials - done))]
        values = [suggest(t) for t in batch]
        specs = [JobSpec(**base, overrides=(trial_override(args.param, v), *args.set), name=t.user_attrs["experiment"],
                         read=(path,)) for t, v in zip(batch, values)]
        try:
            results = run_all(executor, specs, args.jobs, args.executor == "local")
        except UserError:
            for t in batch:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            raise
        # every trial of the batch is told before any error is raised: none stays "running"
        first_error = None
        for t, v, r in zip(batch, values, results):
            try:
                if path not in r.files:
                    raise InputError(f"trial {t.number}: its job left no {path}")
                result = objective_value(args.objective, r.files[path])
            except UserError as e:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
                first_error = first_error or e
                continue
            study.tell(t, report(t, v, result))
        if first_error is not None:
            raise first_error
        done += len(batch)


if __name__ == "__main__":
    main()
