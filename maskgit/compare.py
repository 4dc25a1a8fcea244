"""A review page for any two runs: what differs, and whether each difference is real.

    python -m maskgit.compare A B      # experiment names, git revisions, or `workspace`

Writes reports/compare/<A>_vs_<B>.md (and a figure beside it) and prints its path.
The page leads with what changed: the decided differences (B - A, with intervals) and
the smallest difference it could have called, then the params that differ, the code
revisions and the same test images under A and B beside the ground truth; folded
below, every metric of both runs per decoder and baseline with its verdict and the same
per bucket of mask area. All of it again per mask family both runs scored
(inpaint.mask_families).

Both runs are read through DVC's own API (dvc.api) at their revisions: the per-image
evidence the FID stages stored (maskgit.project.evidence), so nothing is recomputed
but the bootstrap. Paired: both runs must have scored the same test images, paired by name.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from maskgit.metrics import evaluation, registry
from maskgit.pages import figures
from maskgit.project import paths
from maskgit.project.errors import InputError
from maskgit.pages.markdown import (DECIDED, POWER, correction_line, detectable_by_metric, fmt_interval,
                                    markdown_table, signed, unit_value)
from maskgit.project.grid import BASELINES, MAIN, TestSet, label
from maskgit.project.files import atomic_write_bytes
from maskgit.project.params import flatten
from maskgit.pages.runs import Run
from maskgit.project.tool import run_tool

OUT = paths.REPORTS / "compare"
N_FIGURE = 6
# what the page shows before its folded parts, at most: it has to fit a pull request's
# first screen or two whatever the change (a preset's dozens of params, a change that moves every metric)
DECIDED_ROWS = 30
DECIDED_BINS = 8
PARAM_ROWS = 25


def params_diff(a: dict, b: dict) -> list[tuple[str, object, object]]:
    fa, fb = flatten(a), flatten(b)
    return [(k, fa.get(k, "—"), fb.get(k, "—")) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def verdict_cell(r: dict) -> str:
    """The corrected verdict; where the correction changed it, what the interval alone said."""
    changed = r["uncorrected"] != r["verdict"]
    return f"**{r['verdict']}**" + (f" ({r['uncorrected']} at {r['p']:.3f} alone)" if changed else "")


def fmt_diff(metric: str, diff: float, lo: float, hi: float) -> str:
    d, lo, hi = signed(metric, [diff, lo, hi])
    return f"{d} [{lo}, {hi}]"


def in_order(run_sets: dict, gt: np.ndarray, names: np.ndarray) -> tuple[dict, np.ndarray | None]:
    """A run's evidence and ground-truth features with their rows in the order of `names`:
    images are paired by name, and each run's rows follow its own ground truth's order.
    gt None when the run scored other images."""
    own = next(iter(run_sets.values()))["names"]
    if np.array_equal(own, names):
        return run_sets, gt
    row = {n: i for i, n in enumerate(own)}
    if len(row) != len(own) or len(own) != len(names) or set(row) != set(names):
        return run_sets, None
    order = np.array([row[n] for n in names])
    return {s: {k: v[order] for k, v in e.items()} for s, e in run_sets.items()}, gt[order]


def compare(a: Run, b: Run, settings: evaluation.Settings) -> dict:
    """Every paired metric of every set both runs scored, B against A, over the same
    resampled test images, and per bucket of mask area. The same again
    under each mask family both runs scored, each family's verdicts corrected apart."""
    pa, sa, ga = a.load()
    pb, sb, gb = b.load()
    result = {"params_a": pa, "params_b": pb, **compare_sets(a, b, sa, sb, ga, gb, settings), "families": {}}
    # runs from before inpaint.mask_families have none
    for f in (f for f in pa["inpaint"].get("mask_families", []) if f in pb["inpaint"].get("mask_families", [])):
        result["families"][f] = compare_sets(a, b, a.sets(pa, TestSet(f)), b.sets(pb, TestSet(f)), ga, gb, settings)
    return result


def compare_sets(a: Run, b: Run, sa: dict, sb: dict, ga: np.ndarray, gb: np.ndarray,
                 settings: evaluation.Settings) -> dict:
    """B against A on one test set's evidence (the main one, or a mask family's)."""
    names = next(iter(sa.values()))["names"]
    sb, gb = in_order(sb, gb, names)
    if gb is None or not np.allclose(ga, gb):
        raise InputError(f"{a.rev} and {b.rev} scored different test images: a paired comparison needs the same "
                         "test set (same prepare.* params and data)")
    common = [s for s in sa if s in sb]
    both = {**{f"A:{s}": sa[s] for s in common}, **{f"B:{s}": sb[s] for s in common}}
    pairs = [(f"B:{s}", f"A:{s}") for s in common]
    _, _, table, verdicts = evaluation.summarise(both, ga, settings, pairs=pairs)
    alpha = settings.alpha
    correction = evaluation.correct(verdicts, alpha, "holm")
    rows = [{"set": v["b"][2:], "metric": v["metric"], "a": table[v["b"]][v["metric"]],
             "b": table[v["a"]][v["metric"]], "diff": v["diff"], "interval": v["interval"], "p": v["p"],
             "uncorrected": v["uncorrected"], "verdict": v["verdict"]}
            for v in verdicts]
    # every paired metric per bucket ({metric: {set: verdict}}); FID is not one (Metric.by_area)
    buckets = []
    for x in evaluation.by_mask_area(both, ga, settings, pairs=pairs):
        metrics = {}
        for v in x["pairs"]:
            metrics.setdefault(v["metric"], {})[v["b"][2:]] = v
        buckets.append({"low": x["low"], "high": x["high"], "images": x["images"], "metrics": metrics})
    # the bins are many small, correlated looks at one question: the false discovery rate
    bucket_correction = evaluation.correct([v for x in buckets for m in x["metrics"].values() for v in m.values()],
                                           alpha, "bh")
    return {"common": common, "rows": rows, "buckets": buckets, "names": names,
            "correction": correction, "bucket_correction": bucket_correction}


def figure(a: Run, b: Run, result: dict, path: Path) -> None:
    names = [str(n) for n in result["names"]]
    picked = [names[i] for i in figures.spread_indices(len(names), N_FIGURE)]
    decoders = [s for s in result["common"] if s not in BASELINES]
    columns = [("masked input", [a.image(MAIN.masked_image / n) for n in picked])]
    for d in decoders:
        columns.append((f"A: {d}", [a.image(MAIN.images(d) / n) for n in picked]))
        columns.append((f"B: {d}", [b.image(MAIN.images(d) / n) for n in picked]))
    columns.append(("ground truth", [a.image(MAIN.gt / n) for n in picked]))
    figures.image_grid(columns, picked, path, title=f"A = {a.rev}, B = {b.rev}: the same test images")


def render(a: Run, b: Run, result: dict, settings: evaluation.Settings, figure_name: str | None) -> str:
    """The page: what changed first (the decided rows), then the params and the figure; every
    other row folded in <details>; the same per mask family."""
    lines = [f"# {a.rev} (A) vs {b.rev} (B)", "",
             f"Code: A at `{a.git_revision()}`, B at `{b.git_revision()}`. Paired over the same "
             f"{len(result['names'])} test images; {settings.confidence:.0%} bootstrap intervals "
             f"({settings.replicates} replicates, seed {settings.seed}). A verdict is B's against A: better or "
             "worse only when the interval of B - A excludes 0 and the verdict survives its family's correction.",
             "", "## What changed", "", *changed(result, "the table of every metric", settings)]
    lines += ["## What differs in params", "", *params_lines(params_diff(result["params_a"], result["params_b"]))]
    lines += [f"{note}.\n" for note in layout_notes(a, b)]
    if figure_name:
        lines += [f"![A and B on the same test images]({figure_name})", ""]
    lines += folded(result, "the bins")
    for f, r in result["families"].items():
        lines += [f"## Under {f} masks", "",
                  f"The same test images under the {f} mask family (`inpaint.mask_families`), "
                  f"{len(r['names'])} of them; its verdicts are corrected as a family of their own.", "",
                  *changed(r, f"the table on {f} masks", settings),
                  *folded(r, f"the bins on {f} masks", "###")]
    # a table's own line end and the blank after it make two blank lines: one is enough
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines) + "\n")


def params_lines(diff: list[tuple[str, object, object]]) -> list[str]:
    """The params that differ, the first PARAM_ROWS in a table, the rest folded."""
    if not diff:
        return ["Nothing: the params are the same (a difference can only come from code or data).", ""]
    rows = [[f"`{k}`", str(x), str(y)] for k, x, y in diff]
    lines = [markdown_table(["param", "A", "B"], rows[:PARAM_ROWS]), ""]
    if len(rows) > PARAM_ROWS:
        lines += [f"<details><summary>{len(rows) - PARAM_ROWS} more params differ</summary>", "",
                  markdown_table(["param", "A", "B"], rows[PARAM_ROWS:]), "</details>", ""]
    return lines


def metric_rows(rows: list[dict]) -> str:
    """B against A, a row per set and metric: both values, B - A and the verdict."""
    table = [[label(r["set"]), registry.label(r["metric"]), fmt_interval(r["metric"], r["a"]),
              fmt_interval(r["metric"], r["b"]), fmt_diff(r["metric"], r["diff"], *r["interval"]), verdict_cell(r)]
             for r in rows]
    return markdown_table(["set", "metric", "A", "B", "B - A", "verdict (B)"], table, "llrrrl")


def changed(result: dict, table_family: str, settings: evaluation.Settings) -> list[str]:
    """What a reviewer reads first, for one test set: the decided rows (B - A with its
    interval), the family's correction, the smallest difference it could have called,
    the headline verdict per decoder, and the decided mask-area bins."""
    decided = [r for r in result["rows"] if r["verdict"] in DECIDED]
    tested = [r for r in result["rows"] if r["verdict"] != "identical"]
    if decided:
        lines = [metric_rows(decided[:DECIDED_ROWS]), ""]
        if len(decided) > DECIDED_ROWS:
            lines += [f"{len(decided) - DECIDED_ROWS} more decided rows are in {table_family} below.", ""]
    elif tested:
        lines = [f"Nothing decided: all {len(tested)} comparisons are indistinguishable"
                 + (f" ({len(result['rows']) - len(tested)} identical, not tested)." if len(tested) < len(result["rows"])
                    else "."), ""]
    else:
        lines = ["Nothing to decide: every set is the same files in A and B (identical, not tested).", ""]
    lines += [correction_line(result["correction"], table_family), ""]
    seen = detectable_by_metric(tested, settings.confidence, result["correction"]["comparisons"])
    if seen:
        # what "indistinguishable" can hide here, so that no change reads as "the same"
        lines += [f"Smallest difference this page would call ({POWER:.0%} power, after the correction): "
                  + ", ".join(f"{registry.label(m)} {unit_value(m, v)}" for m, v in seen.items()) + ".", ""]
    head = [r for r in result["rows"] if r["metric"] == registry.HEADLINE and r["set"] not in BASELINES]
    lines += [f"Per decoder ({registry.METRICS[registry.HEADLINE].label}): "
              + "; ".join(f"{r['set']}: B {r['verdict']}" for r in head) + ".", ""]
    cells = [(x, m, s, c) for x in result["buckets"] for m, by_set in x["metrics"].items() for s, c in by_set.items()]
    called = [(x, m, s, c) for x, m, s, c in cells if c["verdict"] in DECIDED]
    said = [f"{label(s)}, {registry.label(m)}, {x['low'] * 100:.0f}-{x['high'] * 100:.0f}%: {c['verdict']} "
            f"{fmt_diff(m, c['diff'], *c['interval'])}" for x, m, s, c in called[:DECIDED_BINS]]
    if len(called) > DECIDED_BINS:
        said.append(f"{len(called) - DECIDED_BINS} more")
    tested_bins = sum(c["verdict"] != "identical" for *_, c in cells)
    if tested_bins:
        lines += [f"By mask area: {len(called)} of {tested_bins} bins decided"
                  + (f" ({'; '.join(said)})." if said else "."), ""]
    return lines


def folded(result: dict, bins_family: str, level: str = "##") -> list[str]:
    """Every row of one test set, and every metric by mask area, each in <details>."""
    lines = [f"<details><summary>Every metric, B - A ({len(result['rows'])} rows)</summary>", "",
             metric_rows(result["rows"]), "", "</details>", "",
             "<details><summary>Every metric by mask area, B - A</summary>", "", f"{level} By mask area (B - A)", ""]
    header = ["set"] + [f"{x['low'] * 100:.0f}-{x['high'] * 100:.0f}% ({x['images']} img)" for x in result["buckets"]]
    for m in registry.BY_AREA:
        if not any(m in x["metrics"] for x in result["buckets"]):
            continue  # KID where no bucket holds evaluate.kid_min_images
        rows = []
        for s in result["common"]:
            row = [label(s)]
            for x in result["buckets"]:
                c = x["metrics"].get(m, {}).get(s)
                row.append(f"{fmt_diff(m, c['diff'], *c['interval'])} {verdict_cell(c)}" if c else "—")
            rows.append(row)
        lines += [f"**{registry.label(m)}** by missing-pixel fraction", "",
                  markdown_table(header, rows, "l" + "r" * len(result["buckets"])), ""]
    return lines + [correction_line(result["bucket_correction"], bins_family), "", "</details>", ""]


def layout_notes(*runs: Run) -> list[str]:
    """What reading an older run took: the params it predates (read at today's defaults),
    the ones today's code no longer knows, the sets its evidence lacks."""
    notes = []
    for run in runs:
        if run.predates:
            notes.append(f"{run.rev} predates {', '.join(f'`{k}`' for k in run.predates)}: read at today's defaults "
                         "(its run was made before these params existed)")
        if run.unknown:
            notes.append(f"{run.rev} has {', '.join(f'`{k}`' for k in run.unknown)}, which this code no longer knows: "
                         "left out")
        if run.skipped:
            notes.append(f"{run.rev} scored no {', '.join(run.skipped)}: compared on the sets both runs scored")
    return notes


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def cli(argv=None) -> Path:
    parser = argparse.ArgumentParser(description="Compare two runs: experiment names, git revisions or `workspace`.")
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--repo", default=".")
    parser.add_argument("--out", type=Path, default=None, help=f"folder (default {OUT})")
    args = parser.parse_args(argv)
    a, b = Run(args.a, args.repo), Run(args.b, args.repo)
    settings = evaluation.Settings.from_params(Run("workspace", args.repo).params()["evaluate"])
    result = compare(a, b, settings)
    out = args.out or Path(args.repo) / OUT
    stem = f"{safe(args.a)}_vs_{safe(args.b)}"
    fig_name = f"{stem}.png"
    try:
        figure(a, b, result, out / fig_name)
    except (FileNotFoundError, InputError) as e:  # images not in the cache: the numbers still stand
        print(f"compare: no side-by-side figure ({e})", file=sys.stderr)
        fig_name = None
    for note in layout_notes(a, b):
        print(f"compare: {note}", file=sys.stderr)
    page = out / f"{stem}.md"
    atomic_write_bytes(page, render(a, b, result, settings, fig_name).encode())
    print(page)
    return page


def main(argv=None) -> None:
    run_tool(lambda: cli(argv), "compare")


if __name__ == "__main__":
    main()
