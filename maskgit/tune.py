"""An Optuna study whose every trial is a real DVC experiment.

    python -m maskgit.tune --param train_transformer.lr --low 1e-4 --high 1e-2 --trials 10 \
        --objective val_loss                  # or fid:cosine (FID of that schedule)

Each trial runs `dvc exp run -S <param>=<value> [--set ...] --name <study>-<n>`, so it
is listed by `dvc exp show`, can be applied or pushed like any experiment, and
reruns only the stages the param reaches. The objective is read from the trial's
outputs; the trial table lands in reports/study.json and reports/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from maskgit.pipeline import paths
from maskgit.experiments import STUDY_FILE
from maskgit.experiments import main as build_experiments_page
from maskgit.pipeline.files import write_json
from maskgit.pipeline.params import SCHEMA

OBJECTIVES = "val_loss | fid:<schedule>"


def read_objective(objective: str) -> float:
    if objective == "val_loss":
        return float(json.loads((paths.LIVE_TRANSFORMER / "metrics.json").read_text())["val_loss"])
    if objective.startswith("fid:"):
        schedule = objective.split(":", 1)[1]
        fids = json.loads(paths.FID_SCHEDULES.read_text())
        if schedule not in fids:
            raise ValueError(f"--objective {objective}: no FID for schedule {schedule!r} (have {', '.join(fids)})")
        return float(fids[schedule]["fid"])
    raise ValueError(f"--objective {objective}: expected {OBJECTIVES}")


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
    args = parser.parse_args(argv)
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

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=args.seed))
    trials = []

    def objective(trial):
        value = trial.suggest_float(args.param, args.low, args.high, log=not args.linear)
        name = f"{args.study}-{trial.number}"
        run_trial(name, args.param, value, args.set)
        result = read_objective(args.objective)
        trials.append({"trial": trial.number, args.param: value, args.objective: result, "experiment": name})
        print(f"trial {trial.number}: {args.param} = {value:.4g} -> {args.objective} {result:.4f}", flush=True)
        return result

    try:
        study.optimize(objective, n_trials=args.trials)
    except (RuntimeError, ValueError) as e:
        print(f"error: tune: {e}", file=sys.stderr)
        sys.exit(2)
    best = min(trials, key=lambda t: t[args.objective])
    write_json(STUDY_FILE, {
        "param": args.param, "objective": args.objective, "trials": trials,
        "best": {"value": best[args.param], "objective": best[args.objective], "experiment": best["experiment"]},
    })
    build_experiments_page([])


if __name__ == "__main__":
    main()
