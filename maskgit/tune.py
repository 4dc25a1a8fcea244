"""An Optuna study whose every trial is a real DVC experiment.

    python -m maskgit.tune --param train_transformer.lr --low 1e-4 --high 1e-2 --trials 10 \
        --objective val_loss                  # or fid:cosine (FID of that schedule)
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
import subprocess
import sys
import time
from pathlib import Path

from maskgit.pipeline import paths
from maskgit.experiments import STUDY_FILE
from maskgit.experiments import main as build_experiments_page
from maskgit.pipeline.errors import UserError
from maskgit.pipeline.files import write_json
from maskgit.pipeline.params import SCHEMA
from maskgit.pipeline.sweep_job import JobSpec
from maskgit.sweep import add_executor_args, check_executor_args, prepare, project_root, run_all, run_common

OBJECTIVES = "val_loss | fid:<schedule>"
STORAGE_DIR = Path(".sweep/optuna")


def objective_path(objective: str) -> Path:
    return paths.LIVE_TRANSFORMER / "metrics.json" if objective == "val_loss" else paths.FID_SCHEDULES


def objective_value(objective: str, text: str) -> float:
    """The objective from the text of objective_path(objective)."""
    data = json.loads(text)
    if objective == "val_loss":
        return float(data["val_loss"])
    if objective.startswith("fid:"):
        schedule = objective.split(":", 1)[1]
        if schedule not in data:
            raise ValueError(f"--objective {objective}: no FID for schedule {schedule!r} (have {', '.join(data)})")
        return float(data[schedule]["fid"])
    raise ValueError(f"--objective {objective}: expected {OBJECTIVES}")


def read_objective(objective: str) -> float:
    return objective_value(objective, objective_path(objective).read_text())


def run_trial(name: str, param: str, value: float, extra: list[str]) -> None:
    cmd = ["dvc", "exp", "run", "--name", name, "-S", f"{param}={value!r}"]
    for s in extra:
        cmd += ["-S", s]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        raise RuntimeError(f"trial {name}: `{' '.join(cmd)}` failed: {tail}")


def unknown_param(name: str) -> str | None:
    """What is wrong with a dotted param name (section.key), or None."""
    section, _, key = name.partition(".")
    if section not in SCHEMA:
        return f"unknown section {section!r}; known: {', '.join(SCHEMA)}"
    if key and (callable(SCHEMA[section]) or key not in SCHEMA[section]):
        known = "" if callable(SCHEMA[section]) else f"; known: {', '.join(SCHEMA[section])}"
        return f"unknown key {key!r} in {section}{known}"
    return None


def main(argv=None):
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
    check_executor_args(parser, args)
    if args.objective != "val_loss" and not args.objective.startswith("fid:"):
        parser.error(f"--objective: expected {OBJECTIVES}")
    if not 0 < args.low < args.high:
        parser.error("--low and --high: need 0 < low < high")
    # every name checked before the first trial: a typo must not cost a finished experiment
    for name, flag in [(args.param, "--param"), *((s.partition("=")[0], "--set") for s in args.set)]:
        problem = unknown_param(name)
        if problem:
            parser.error(f"{flag} {name}: {problem}")
    if any("=" not in s for s in args.set):
        parser.error("--set: expected KEY=VALUE")

    import optuna

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

    try:
        if args.executor == "here":
            def objective(trial):
                value = suggest(trial)
                run_trial(trial.user_attrs["experiment"], args.param, value, args.set)
                return report(trial, value, read_objective(args.objective))

            study.optimize(objective, n_trials=args.trials)
        else:
            run_on_executor(args, study, suggest, report)
    except (RuntimeError, ValueError, UserError) as e:
        print(f"error: tune: {e}", file=sys.stderr)
        sys.exit(2)

    trials = [{"trial": t.number, args.param: t.params[args.param], args.objective: t.value,
               "experiment": t.user_attrs["experiment"]}
              for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        print("error: tune: no trial completed", file=sys.stderr)
        sys.exit(2)
    best = min(trials, key=lambda t: t[args.objective])
    write_json(STUDY_FILE, {
        "param": args.param, "objective": args.objective, "study": args.study,
        "storage": str(args.storage) if args.storage else None, "trials": trials,
        "best": {"value": best[args.param], "objective": best[args.objective], "experiment": best["experiment"]},
    })
    # trials run as jobs are experiments on the remote: pull them before the page reads them
    pull = ["--pull"] + (["--git-remote", args.git_remote] if args.git_remote else [])
    build_experiments_page([] if args.executor == "here" else pull)


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
        specs = [JobSpec(**base, overrides=(f"{args.param}={v!r}", *args.set), name=t.user_attrs["experiment"],
                         read=(path,)) for t, v in zip(batch, values)]
        try:
            results = run_all(executor, specs, args.jobs, args.executor == "local")
        except UserError:
            for t in batch:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            raise
        # every trial of the batch is told before any error is raised: none stays "running"
        missing = []
        for t, v, r in zip(batch, values, results):
            if path in r.files:
                study.tell(t, report(t, v, objective_value(args.objective, r.files[path])))
            else:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
                missing.append(t.number)
        if missing:
            raise UserError(f"trial {missing[0]}: its job left no {path}")
        done += len(batch)


if __name__ == "__main__":
    main()
