"""The experiments page, reports/experiments.md: the ablation tables of the lab reports
from the finished DVC experiments. FID per decoder (schedule, order) for every experiment, and for
every swept param a table and a plot of FID against it (the other swept params held
at their most common value), best row marked. Built by maskgit.experiments, by
`maskgit.sweep collect` and, with its trial table, at the end of a maskgit.tune study.

Each FID carries its bootstrap interval (metrics/evaluation.json of that experiment), and
every experiment indistinguishable from the best is marked, not just one: the best FID
of each is compared with the best experiment's, paired over the same test images, from
the per-image evidence both stored, read at each experiment's revision through dvc.api.
Experiments that differ only in inpaint.seed are grouped (mean and spread over seeds:
the decoder's own noise, which the bootstrap over images does not see).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from maskgit.metrics.registry import HEADLINE
from maskgit.project import paths
from maskgit.project.errors import InputError, UserError
from maskgit.project.files import atomic_write_bytes
from maskgit.project.gitrepo import default_remote
from maskgit.project.params import flatten
from maskgit.project.grid import BASELINES

# as dvc exp show names them; before 2026-12-07 the decoders' file was fid_schedules.json
FID_FILES = (paths.FID_DECODERS.as_posix(), "metrics/fid_schedules.json")
# column prefixes of the metrics; params are dotted keys (and include fid.* settings)
FID, BASE, INTERVAL = "FID ", "baseline FID ", "interval "
BASELINE_FILE = paths.FID_BASELINES.as_posix()
EVALUATION_FILE = paths.EVALUATION.as_posix()
IMAGES = "images"  # scored test images, from the experiment's metrics/evaluation.json
REV = "_rev"  # the experiment's git revision, for reading its evidence; never shown
NOT_PARAMS = ("experiment", REV, IMAGES)
SEED = "inpaint.seed"
FIGURES_DIR = paths.EXPERIMENTS_FIGURES.name  # reports/experiments/, beside reports/experiments.md


def dvc_exp_show(all_commits: bool = False) -> list:
    """`dvc exp show --json`: the last commit and the experiments run from it. With
    all_commits, every commit of the repository and their experiments: in a clone of
    this project that is also the project's own history of default runs, whose params
    then count as swept."""
    cmd = ["dvc", "exp", "show", "--json"] + (["--all-commits"] if all_commits else [])
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError("dvc is not on PATH (activate the project's virtual environment)") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"dvc exp show failed: {last}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as e:
        # this page reads what dvc prints: output that is not JSON is dvc's (or a
        # plugin's warning on stdout), not this code's, so it is reported, not traced
        raise InputError(f"`{' '.join(cmd)}` printed no JSON ({e.msg} at line {e.lineno}): "
                         f"{(result.stdout.strip().splitlines() or ['nothing'])[0][:120]}") from None


def pull_experiments(git_remote: str | None, all_commits: bool = False) -> str:
    """`dvc exp pull`: every experiment of HEAD (or of every commit) on the Git remote,
    refs only: their params and metrics/evaluation.json are in Git (`cache: false`),
    which is all this page reads; `dvc exp apply NAME && dvc pull` fetches one's data."""
    if git_remote is None:
        git_remote = default_remote()
        if git_remote is None:
            raise UserError("--pull: no git remote (pass --git-remote URL, or `git remote add origin URL`)")
    cmd = ["dvc", "exp", "pull", "--no-cache", "--force", git_remote] + (["--all-commits"] if all_commits else [])
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"dvc exp pull {git_remote} failed: {last}")
    return git_remote


UNSCORED = "_unscored"  # frame.attrs key: (experiment, why) of the entries left off the page


def _entries(node, state=None, unscored=None):
    """Every (name, data) of a finished experiment or baseline in a `dvc exp show --json`
    tree. A failed, queued or running experiment is listed in `unscored` with its state
    instead: DVC collects it at its stash commit, whose metrics files are still the
    baseline's, so scoring it would give the baseline's FID under the experiment's params."""
    if isinstance(node, list):
        for item in node:
            yield from _entries(item, state, unscored)
    elif isinstance(node, dict):
        # an experiment range carries its executor's state ("success", "queued",
        # "running", "failed"); its revs inherit it
        state = ((node.get("executor") or {}).get("state")) or state
        data = node.get("data")
        if node.get("rev") != "workspace" and (isinstance(data, dict) or node.get("error")):
            name = node.get("name") or str(node.get("rev", ""))[:7]
            error = (node.get("error") or {}).get("msg") if isinstance(node.get("error"), dict) else node.get("error")
            if state in ("failed", "queued", "running") or error:
                if unscored is not None:
                    unscored.append((name, state if state in ("failed", "queued", "running") else f"error: {error}"))
            elif "params" in data or "metrics" in data:
                yield name, {**data, REV: node.get("rev")}
        for key in ("experiments", "revs"):
            if node.get(key):
                yield from _entries(node[key], state, unscored)


def experiments_frame(exp_show: list) -> pd.DataFrame:
    """One row per experiment: its params (dotted keys) and FID per decoder set."""
    rows, unscored = [], []
    for name, data in _entries(exp_show, unscored=unscored):
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        metrics = data.get("metrics") or {}
        scored = (metrics.get(EVALUATION_FILE) or {}).get("data") or {}
        evaluation = {k: m[HEADLINE] for k, m in (scored.get("sets") or {}).items()
                      if isinstance((m or {}).get(HEADLINE), dict) and "value" in m[HEADLINE]}
        # FIDs come from the evaluation, which git keeps for every experiment; the FID
        # stages' own files are in the DVC cache (so that a sweep point takes an unchanged
        # FID stage from the run cache), and only commits from before the evaluation
        # existed are read from there
        fids = {k: v for k, v in evaluation.items() if k not in BASELINES} or {
            k: {"value": m[HEADLINE]} for file in FID_FILES
            for k, m in ((metrics.get(file) or {}).get("data") or {}).items()}
        if not fids:
            continue  # a failed or unfinished experiment
        flat = {k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(params).items()}
        row = {"experiment": name, REV: data.get(REV), **flat}
        if scored.get("images"):
            row[IMAGES] = int(scored["images"])  # FID's bias depends on it: FIDs compare only at equal counts
        for decoder, cell in fids.items():
            row[f"{FID}{decoder}"] = cell["value"]
            if "low" in cell and "high" in cell:  # dvc exp show keeps scalars only, not the interval list
                row[f"{INTERVAL}{decoder}"] = f"[{cell['low']:.2f}, {cell['high']:.2f}]"
        base = {k: v["value"] for k, v in evaluation.items() if k in BASELINES} or {
            k: m[HEADLINE] for k, m in ((metrics.get(BASELINE_FILE) or {}).get("data") or {}).items()}
        for key, value in base.items():
            row[f"{BASE}{key}"] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        # one row per distinct experiment (a baseline commit may show up under several branches)
        keys = [c for c in frame.columns if c not in ("experiment", REV)]
        frame = frame.drop_duplicates(subset=keys).reset_index(drop=True)
    frame.attrs[UNSCORED] = list(dict.fromkeys(unscored))
    return frame


def swept_params(frame: pd.DataFrame) -> list[str]:
    params = [c for c in frame.columns if not c.startswith((FID, BASE, INTERVAL)) and c not in NOT_PARAMS]
    return [c for c in params if frame[c].astype(str).nunique() > 1]


def paired_marks(frame: pd.DataFrame, repo: str = ".", params_path: Path = Path("params.yaml")) -> dict[str, str]:
    """experiment -> "**best**" | "tied" | "" | "no evidence": each experiment's best FID
    against the best experiment's, paired over images from both experiments' stored evidence."""
    from maskgit.metrics import evaluation
    from maskgit.project.params import load_params
    from maskgit.pages.runs import Run

    fid_cols = [c for c in frame.columns if c.startswith(FID)]
    if frame.empty or REV not in frame or frame[REV].isna().any():
        return {}
    try:
        settings = evaluation.Settings.from_params(load_params(params_path)["evaluate"])
    except UserError:
        return {}
    best_decoder = frame[fid_cols].idxmin(axis=1).str.removeprefix(FID)
    best_fid = frame[fid_cols].min(axis=1)
    top = int(best_fid.idxmin())

    def evidence(i):
        run = Run(str(frame.loc[i, REV]), repo)
        return run.evidence(best_decoder[i])["features"], run.gt_features()

    try:
        f_top, gt = evidence(top)
    except UserError:
        return {}
    marks = {frame.loc[top, "experiment"]: "**best**"}
    for i in frame.index:
        if i == top:
            continue
        name = frame.loc[i, "experiment"]
        try:
            f, gt_i = evidence(i)
        except UserError:
            marks[name] = "no evidence"
            continue
        if f.shape != f_top.shape or not np.allclose(gt_i, gt):
            marks[name] = "other test set"
            continue
        # the evaluate stage's own paired summary, on the two sets' features alone
        _, _, _, verdicts = evaluation.summarise({"x": {"features": f}, "top": {"features": f_top}}, gt, settings,
                                                 pairs=[("x", "top")])
        fid = next(v for v in verdicts if v["metric"] == HEADLINE)
        # identical evidence is not tested (evaluation.summarise): the same FID, so tied
        marks[name] = "tied" if fid["verdict"] in ("indistinguishable", "identical") else ""
    return marks


def _mark_best(table: pd.DataFrame, fid_cols: list[str], marks: dict[str, str] | None = None) -> pd.DataFrame:
    best_value = table[fid_cols].min(axis=1)
    out = table.copy()
    out["best FID"] = best_value.round(2)
    if marks:
        out.insert(0, "", [marks.get(e, "") for e in out["experiment"]])
    else:
        # no per-image evidence: every row tied at the printed precision is marked, so
        # that two tables that order the same experiments differently never name
        # different winners
        tied = out["best FID"] == out["best FID"].min()
        out.insert(0, "", ["**best**" if t else "" for t in tied])
    for c in fid_cols:
        out[c] = out[c].round(2)
    return out


def seed_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """Experiments equal in every param but inpaint.seed, grouped: FID mean and spread over seeds."""
    if SEED not in frame:
        return pd.DataFrame()
    fid_cols = [c for c in frame.columns if c.startswith(FID)]
    keys = [c for c in frame.columns if not c.startswith((FID, BASE, INTERVAL)) and c not in (*NOT_PARAMS, SEED)]
    rows = []
    key = frame[keys].apply(lambda r: "|".join(map(str, r)), axis=1) if keys else pd.Series("", index=frame.index)
    for _, group in frame.groupby(key, sort=False):
        if group[SEED].nunique() < 2:
            continue
        row = {"experiments": ", ".join(group["experiment"]), "seeds": ", ".join(map(str, sorted(group[SEED])))}
        for c in fid_cols:
            row[f"{c} mean ± sd"] = f"{group[c].mean():.2f} ± {group[c].std(ddof=1):.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _sort_key(values: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    return numeric if numeric.notna().all() else values.astype(str)


def sweep_table(frame: pd.DataFrame, param: str, others: list[str], marks: dict | None = None) -> pd.DataFrame:
    """FID against `param`, the other swept params held at their most common value."""
    sub = frame
    for o in others:
        sub = sub[sub[o].astype(str) == str(frame[o].astype(str).mode().iloc[0])]
    fid_cols = [c for c in frame.columns if c.startswith(FID)]
    columns = [param]
    for c in fid_cols:  # each FID followed by its interval, where the experiments have one
        columns += [c] + [i for i in [c.replace(FID, INTERVAL, 1)] if i in frame.columns]
    table = sub[[*columns, "experiment"]].sort_values(param, key=_sort_key)
    return _mark_best(table.reset_index(drop=True), fid_cols, marks)


def plot_sweep(table: pd.DataFrame, param: str, path: Path) -> None:
    from maskgit.pages.figures import new_figure, save

    fig = new_figure(5, 3.4)
    ax = fig.add_subplot()
    x = pd.to_numeric(table[param], errors="coerce")
    numeric = x.notna().all()
    for c in [c for c in table.columns if c.startswith(FID)]:
        fid = pd.to_numeric(table[c])
        interval = table.get(c.replace(FID, INTERVAL, 1))
        err = None
        if interval is not None and interval.notna().all():
            bounds = interval.astype(str).str.extract(r"\[([-0-9.]+), ([-0-9.]+)\]").astype(float)
            err = [fid - bounds[0], bounds[1] - fid]
        ax.errorbar(x if numeric else table[param].astype(str), fid, yerr=err, marker="o", capsize=3,
                    label=c.removeprefix(FID))
    ax.set_xlabel(param)
    ax.set_ylabel("FID (lower is better)")
    ax.set_title(f"FID against {param}, with 95% intervals")
    ax.grid(alpha=0.3)
    ax.legend(title="decoder")
    save(fig, path, dpi=120)


def render(frame: pd.DataFrame, out: Path, study: dict | None = None, marks: dict | None = None) -> str:
    lines = ["# Experiments", "", "Built by `python -m maskgit.experiments` from `dvc exp show --json`.", ""]
    unscored = frame.attrs.get(UNSCORED) or []
    if unscored:
        lines += [f"Not scored ({len(unscored)}): " + ", ".join(f"{name} ({why})" for name, why in unscored)
                  + ". A failed experiment's log: `dvc queue logs NAME`.", ""]
    if frame.empty:
        lines += ["No finished experiments with FID yet: run `dvc exp run` or `dvc queue start` first.", ""]
    else:
        fid_cols = [c for c in frame.columns if c.startswith(FID)]
        swept = swept_params(frame)
        lines += [f"{len(frame)} experiments; swept: {', '.join(swept) or 'nothing'}.", "",
                  "## FID per decoder (schedule, or schedule-order)", ""]
        if marks:
            lines += ["**best**: the lowest FID; *tied*: its best FID is indistinguishable from the best one's "
                      "(paired bootstrap over the same test images, interval of the difference includes 0). "
                      "Intervals: each FID's own bootstrap interval (metrics/evaluation.json).", ""]
        else:
            lines += ["No per-image evidence to compare experiments with (older runs or a cleared cache): "
                      "the mark best goes to the lowest FID at the printed precision, which says nothing about noise.", ""]
        counts = sorted(frame[IMAGES].dropna().astype(int).unique()) if IMAGES in frame else []
        if len(counts) > 1:
            lines += [f"**These experiments scored different numbers of test images ({', '.join(map(str, counts))}).** "
                      "FID is biased by the count: compare FIDs only between rows with the same `images`.", ""]
        columns = ["experiment", *swept, *([IMAGES] if IMAGES in frame else [])]
        for c in fid_cols:  # each FID followed by its interval, where the experiment has one
            columns += [c] + [i for i in [c.replace(FID, INTERVAL, 1)] if i in frame.columns]
        lines += [_mark_best(frame[columns], fid_cols, marks).to_markdown(index=False), ""]
        groups = seed_groups(frame)
        if not groups.empty:
            lines += ["## Seeds", "", "Experiments that differ only in `inpaint.seed`: the spread over seeds is the "
                      "decoder's own noise, which the intervals over images do not include "
                      "(`dvc exp run --queue -S 'inpaint.seed=0,1,2'`).", "", groups.to_markdown(index=False), ""]
        for param in swept:
            others = [p for p in swept if p != param]
            table = sweep_table(frame, param, others, marks)
            held = ", ".join(f"{o} = {frame[o].astype(str).mode().iloc[0]}" for o in others)
            # beside the page, never in reports/figures: the plots stage owns that folder
            # (DVC would call the pipeline changed and delete the figure on the next repro)
            fig = out.parent / FIGURES_DIR / f"{param.replace('.', '_')}.png"
            plot_sweep(table, param, fig)
            lines += [f"## FID against {param}", "", f"Other swept params held at: {held}." if held else "", "",
                      table.to_markdown(index=False), "", f"![FID against {param}]({FIGURES_DIR}/{fig.name})", ""]
    if study:
        lines += [f"## Optuna study: {study['param']} ({len(study['trials'])} trials)", "",
                  f"Objective: {study['objective']} (minimised). Each trial is a DVC experiment.", "",
                  pd.DataFrame(study["trials"]).to_markdown(index=False), "",
                  f"Best: {study['param']} = {study['best']['value']:.4g} "
                  f"({study['objective']} {study['best']['objective']:.4f}, experiment {study['best']['experiment']}).", ""]
    return "\n".join(lines)



def add_page_args(parser) -> None:
    """The page's flags: maskgit.experiments's, and `maskgit.sweep collect`'s."""
    parser.add_argument("--out", default=paths.EXPERIMENTS_PAGE, type=Path)
    parser.add_argument("--all-commits", action="store_true",
                        help="experiments of every commit, not only of the last one (HEAD)")
    parser.add_argument("--pull", action="store_true",
                        help="first pull the experiments from the git remote (those a sweep pushed)")
    parser.add_argument("--git-remote", default=None, help="with --pull: name or URL (default: origin)")


def build_page(out: Path = paths.EXPERIMENTS_PAGE, all_commits: bool = False, pull: bool = False,
               git_remote: str | None = None) -> Path:
    """Write the page (with maskgit.tune's trial table, if reports/study.json exists);
    with `pull`, first pull the experiments from the git remote."""
    if pull:
        print(f"pulled the experiments of {pull_experiments(git_remote, all_commits)}")
    frame = experiments_frame(dvc_exp_show(all_commits))
    marks = paired_marks(frame)
    study = json.loads(paths.STUDY.read_text()) if paths.STUDY.is_file() else None
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, render(frame, out, study, marks).encode())
    print(f"wrote {out}: {len(frame)} experiments")
    return out
