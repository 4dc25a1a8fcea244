"""metrics/evaluation.json (stage evaluate) said in markdown: the verdicts at a glance,
the results table with intervals, every verdict, the tied-for-best sets with the
smallest difference the run could have detected, the mask-area buckets. Shared by
the report stage and `python -m maskgit.compare`."""

from __future__ import annotations

import math
from statistics import NormalDist, median

from maskgit.metrics.registry import BY_AREA, GROUPS, HEADLINE, METRICS, PAIRED, SHOWN_FIRST
from maskgit.metrics.registry import label as metric_header
from maskgit.project.grid import JUDGED_AGAINST, Decoder, label


def markdown_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A GitHub markdown table; written here because pandas' to_markdown needs the
    optional `tabulate` package. Cells are padded so the raw text lines up too."""
    align = align or "l" * len(header)
    cells = [[str(c).replace("|", "\\|") for c in r] for r in [header, *rows]]
    widths = [max(3, *(len(r[i]) for r in cells)) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align)) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if a == "r" else "-" * w for w, a in zip(widths, align)) + " |"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])]) + "\n"


def fmt_value(metric: str, value: float) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value * METRICS[metric].scale:.{METRICS[metric].digits}f}"


def fmt_interval(metric: str, cell: dict) -> str:
    lo, hi = cell["interval"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt_value(metric, cell["value"])
    return f"{fmt_value(metric, cell['value'])} [{fmt_value(metric, lo)}, {fmt_value(metric, hi)}]"


def signed(metric: str, values: list[float]) -> list[str]:
    """Signed values at the metric's digits, fixed-point like every other cell: a difference
    too small for them prints as +0.00 (or -0.00), and its verdict says whether it is real."""
    scale, digits = METRICS[metric].scale, METRICS[metric].digits
    return [f"{v * scale:+.{digits}f}" for v in values]


def fmt_diff(pair: dict) -> str:
    diff, lo, hi = signed(pair["metric"], [pair["diff"], *pair["interval"]])
    return f"d{METRICS[pair['metric']].label} {diff} [{lo}, {hi}]"


def results_table(ev: dict, decoders: list[str], columns=PAIRED) -> str:
    # a metric no set has (P-IDS/U-IDS below evaluate.ids_min_images) gets no column
    columns = [m for m in columns if any(m in cells for cells in ev["sets"].values())]
    tied = set(ev["tied_for_best"].get(HEADLINE, []))
    rows = []
    for name, cells in ev["sets"].items():
        kind = "decoder" if name in decoders else "baseline"
        shown = f"**{label(name)}** ({'tied for best' if len(tied) > 1 else 'best'})" if name in tied else label(name)
        rows.append([shown, kind] + [fmt_interval(m, cells[m]) if m in cells else "—"
                                                       for m in columns])
    header = ["set", "kind"] + [metric_header(m) for m in columns]
    return markdown_table(header, rows, "ll" + "r" * len(columns))


def verdict_lines(ev: dict) -> list[str]:
    """One line per compared pair: the headline metric's verdict first, then the other metrics'."""
    by_pair: dict[tuple[str, str], list[dict]] = {}
    for p in ev["pairs"]:
        by_pair.setdefault((p["a"], p["b"]), []).append(p)
    lines = []
    for (a, b), rows in by_pair.items():
        head = next((r for r in rows if r["metric"] == HEADLINE), rows[0])
        rest = "; ".join(f"{r['verdict']}, {fmt_diff(r)}" for r in rows if r is not head)
        lines.append(f"- {label(a)} vs {label(b)}: **{head['verdict']}**, {fmt_diff(head)}"
                     + (f" ({rest})" if rest else "") + ".")
    return lines


# ---------------------------------------------------------------- how small a difference a run sees

POWER = 0.8  # the chance of calling a real difference of the stated size: the usual 80%
DECIDED = ("better", "worse")
FLIPPED = {"better": "worse", "worse": "better"}  # a verdict read from the other side of its pair


def detectable(half_width: float, confidence: float, comparisons: int = 1, power: float = POWER) -> float:
    """The smallest paired difference a comparison calls with probability `power`, from the
    half-width h of its interval at `confidence` (docs/evaluation.md).

    h is z(1 - alpha/2) standard errors. Under Holm's correction over m comparisons a
    difference is surely called once it is z(1 - alpha/(2m)) standard errors from 0 (Holm's
    strictest step, Bonferroni's); a true difference of that plus z(power) standard errors
    gets there in `power` of the runs. One comparison at 95% and 80% power:
    (1.96 + 0.84) / 1.96 h = 1.43 h."""
    z = NormalDist().inv_cdf
    alpha = 1.0 - confidence
    standard_error = half_width / z(1.0 - alpha / 2)
    return standard_error * (z(1.0 - alpha / (2 * max(1, comparisons))) + z(power))


def images_to_detect(difference: float, detectable_now: float, n: int) -> int:
    """Test images at which `difference` becomes detectable, from what is detectable at n:
    an interval's width, and so the detectable difference, goes as 1/sqrt(n)."""
    return math.ceil(n * (detectable_now / abs(difference)) ** 2)


def detectable_by_metric(rows: list[dict], confidence: float, comparisons: int) -> dict[str, float]:
    """metric -> the difference `detectable` at the median half-width of the rows' intervals
    (verdicts of one metric vary in width; the median is the typical pair's). Identical
    pairs, infinite ends and intervals of no width (a metric that did not move in any
    replicate: nothing there to detect) are left out."""
    widths: dict[str, list[float]] = {}
    for r in rows:
        lo, hi = r["interval"]
        if r["verdict"] != "identical" and math.isfinite(lo) and math.isfinite(hi) and hi > lo:
            widths.setdefault(r["metric"], []).append((hi - lo) / 2)
    return {m: detectable(median(w), confidence, comparisons) for m, w in widths.items()}


def decoder_detectable(ev: dict, decoders: list[str]) -> dict[str, float]:
    """What a tie for best could hide, per metric: from the intervals of the decoder pairs
    evaluation.json holds, under the tie's own family (the best against each other
    decoder: len(decoders) - 1 comparisons, Holm-corrected per metric)."""
    rows = [p for p in ev["pairs"] if p["a"] in decoders and p["b"] in decoders]
    return detectable_by_metric(rows, ev["confidence"], len(decoders) - 1)


def unit_value(metric: str, value: float) -> str:
    """A value with its unit as printed: '4.05', '0.35 dB', '1.2 points'."""
    unit = {"%": " points", "": ""}.get(METRICS[metric].unit, f" {METRICS[metric].unit}")
    return fmt_value(metric, value) + unit


def tie_note(ev: dict, metric: str, tied: list[str], detectable_now: float | None) -> str:
    """Beside a tie: the smallest difference the run detects, and how many test images the
    tied sets' spread (best to last tied) would need to be detected. "Tied" then reads as
    "closer than this run can tell", not "equal". Empty without a tie or an interval."""
    if detectable_now is None or len(tied) < 2:
        return ""
    note = unit_value(metric, detectable_now)
    values = [ev["sets"][s][metric]["value"] for s in tied]
    spread = max(values) - min(values)
    if spread > 0 and math.isfinite(spread):
        n = images_to_detect(spread, detectable_now, ev["images"])
        # a spread already past what is detectable here is tied on its own wider interval: no count
        if n > ev["images"]:
            note += f" (their spread of {unit_value(metric, spread)} would need about {n:,} images)"
    return note


def tied_lines(ev: dict, decoders: list[str] | None = None) -> list[str]:
    seen = decoder_detectable(ev, decoders) if decoders else {}
    lines = []
    for metric, names in ev["tied_for_best"].items():
        if len(names) > 1:
            note = tie_note(ev, metric, names, seen.get(metric))
            lines.append(f"- Best {METRICS[metric].label}: tied between **{', '.join(map(label, names))}** "
                         f"(each paired interval against {label(names[0])} includes 0"
                         + (f"; smallest detectable difference {note}" if note else "") + ").")
        else:
            lines.append(f"- Best {METRICS[metric].label}: **{label(names[0])}**, better than every other "
                         f"schedule (paired intervals exclude 0).")
    return lines


# ---------------------------------------------------------------- the first screen

VERDICT_ORDER = ("better", "worse", "indistinguishable", "identical")
ONE_STEP = "onestep"  # the baseline that is MaskGIT decoding in one step: iterative against one-step
LISTED = 4  # decided comparisons between decoders named on a line; the rest are counted


def _from_decoder(p: dict, decoders: list[str]) -> dict:
    """A pair read from its decoder's side (a decoder first, its verdict turned round if needed)."""
    if p["a"] in decoders:
        return p
    lo, hi = p["interval"]
    return {**p, "a": p["b"], "b": p["a"], "diff": -p["diff"], "interval": [-hi, -lo],
            "verdict": FLIPPED.get(p["verdict"], p["verdict"])}


def _tally(rows: list[dict], named: bool) -> str:
    """The verdicts of the decoders against one set: 'better (all 6)', or the counts
    ('4 better, 2 indistinguishable'), or with `named` the decoders of every group but the
    largest ('better: square; indistinguishable: the other 5')."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r["verdict"], []).append(r["a"])
    ordered = sorted(groups.items(), key=lambda kv: VERDICT_ORDER.index(kv[0]) if kv[0] in VERDICT_ORDER else 9)
    if len(ordered) == 1:
        verdict, names = ordered[0]
        return f"{verdict} ({label(names[0])})" if len(names) == 1 else f"{verdict} (all {len(names)})"
    if not named:
        return ", ".join(f"{len(names)} {verdict}" for verdict, names in ordered)
    largest = max(groups, key=lambda v: len(groups[v]))
    return "; ".join(f"{verdict}: the other {len(names)}" if verdict == largest else
                     f"{verdict}: {', '.join(map(label, names))}" for verdict, names in ordered)


def answer_table(ev: dict, decoders: list[str]) -> str:
    """The report's first screen: a row per metric, from evaluation.json's verdicts: which
    decoders are tied for best and what a tie could hide, each decided comparison between
    decoders, iterative against one-step, the decoders against the other baselines."""
    seen = decoder_detectable(ev, decoders)
    rows = []
    for metric, tied in ev["tied_for_best"].items():
        spec = METRICS[metric]
        pairs = [_from_decoder(p, decoders) for p in ev["pairs"] if p["metric"] == metric
                 and (p["a"] in decoders or p["b"] in decoders)]
        others = "the other decoder" if len(decoders) == 2 else f"the other {len(decoders) - 1}"
        if len(tied) == len(decoders) > 1:
            best = "both decoders" if len(decoders) == 2 else f"all {len(decoders)} decoders"
        elif len(tied) > 1:
            best = f"{', '.join(map(label, tied))} (of {len(decoders)})"
        else:
            best = f"**{label(tied[0])}**" + (f", better than {others}" if len(decoders) > 1 else "")
        between = [r for r in pairs if r["b"] in decoders]
        decided = [r for r in between if r["verdict"] in DECIDED]
        said = [f"{label(r['a'])} {r['verdict']} than {label(r['b'])}, {fmt_diff(r)}" for r in decided[:LISTED]]
        if len(decided) > LISTED:
            said.append(f"{len(decided) - LISTED} more in the matrix")
        between_cell = "; ".join(said) if decided else f"nothing decided ({len(between)} compared)" if between else "—"
        one_step = [r for r in pairs if r["b"] == ONE_STEP]
        against = [f"{label(b)}: {_tally(chosen, named=False)}" for b in JUDGED_AGAINST if b != ONE_STEP
                   if (chosen := [r for r in pairs if r["b"] == b])]
        rows.append([f"**{metric_header(metric)}** ({'higher' if spec.higher_is_better else 'lower'} is better)",
                     best, tie_note(ev, metric, tied, seen.get(metric)) or "—", between_cell,
                     _tally(one_step, named=True) if one_step else "—", "; ".join(against) or "—"])
    header = ["metric", "tied for best", "smallest detectable difference", "between decoders",
              f"iterative vs {label(ONE_STEP)}", "vs the other baselines"]
    return markdown_table(header, rows)


def glance_line(ev: dict, decoders: list[str], baselines: int) -> str:
    """What the verdicts below are: how many images, sets and comparisons, and the rule."""
    c = ev.get("correction")
    rule = (f"A verdict is a paired {ev['confidence']:.0%} bootstrap interval that excludes 0 and survives "
            f"{METHODS[c['method']][0]} over the report's {c['comparisons']} comparisons "
            f"({c['decided']} decided)" if c else
            f"A verdict is a paired {ev['confidence']:.0%} bootstrap interval that excludes 0")
    return (f"{ev['images']} test images; {len(decoders)} decoders against {baselines} baselines. {rule}. "
            f"A tie is not equality: beside it, the smallest difference this run calls {POWER:.0%} of the time "
            "(docs/evaluation.md).")


METHODS = {"holm": ("Holm's correction", "family-wise error rate"),
           "bh": ("the Benjamini-Hochberg correction", "false discovery rate")}


def correction_line(c: dict, family: str) -> str:
    """What a page says of one family of verdicts: its size, its correction, and what the
    correction changed."""
    name, rate = METHODS[c["method"]]
    line = (f"**{c['comparisons']} comparisons** make one family ({family}), under {name} (the {rate} at most "
            f"{c['alpha']:.0%}): {c['decided']} called better or worse")
    if c["decided_uncorrected"] != c["decided"]:
        line += f", {c['decided_uncorrected'] - c['decided']} fewer than at {1 - c['alpha']:.0%} each"
    if c.get("identical"):
        line += f"; {c['identical']} pairs of identical files marked identical, not tested"
    return line + "."


def _route(ev: dict) -> str:
    if ev.get("resampling") == "linear":
        return ("; FID and KID resampled to first order through their influence functions, as at more "
                f"than {ev['exact_up_to']} images the exact route costs more than the FID stages")
    return ""


def how_sure(ev: dict) -> list[str]:
    """What every interval and verdict of the page rests on, a bullet each."""
    conf = f"{ev['confidence']:.0%}"
    lines = [f"- Every interval is a {conf} bootstrap interval over the {ev['images']} test images "
             f"({ev['replicates']} replicates, seed {ev['seed']}; paired: both sides of a difference are "
             f"computed on the same resampled images{_route(ev)}). A difference is called better or worse only when "
             "its interval excludes 0 and it survives the correction below. The bootstrap does not see the "
             "decoder's own noise: repeat with other `inpaint.seed` values for that (docs/evaluation.md)."]
    small = ev["images"] < 2048
    lines += [f"- Every FID here is at {ev['images']} images: FID is biased upward by a term that shrinks as "
              "1/n, so FIDs at other image counts (a paper's 10,000 or 30,000) are not comparable with these"
              + ("; at this count lean on KID, whose estimate depends far less on the count." if small else ".")]
    for name, group in GROUPS.items():  # each group a run may lack, as evaluation.json flags them
        if ev.get(name) is False:
            lines += ["- " + group.absent.format(**ev)]
    if ev.get("correction"):
        lines += ["- " + correction_line(ev["correction"], "the verdicts above")]
    d = ev.get("decisive")
    if d:
        head = (f"How sure is this: the decisive comparison, the best schedule against the runner-up "
                f"({label(d['a'])} vs {label(d['b'])}), has an FID-difference interval {d['width']:.2f} wide at "
                f"{ev['images']} images")
        if d["width"] > 1:
            lines += [f"- {head}; about **{d['images_for_1_fid']:,}** test images would make it 1 FID wide "
                      "(width ~ 1/sqrt(n), from the measured variance)."]
        else:
            lines += [f"- {head}: already under 1 FID wide."]
    return lines


def buckets_table(ev: dict, metrics=BY_AREA) -> list[str]:
    buckets = ev["mask_buckets"]
    sets = list(ev["sets"])
    columns = [f"{b['low'] * 100:.0f}-{b['high'] * 100:.0f}% ({b['images']} img)" for b in buckets]
    out = []
    for m in metrics:
        if not any(m in cells for b in buckets for cells in b["sets"].values()):
            continue  # e.g. KID: no bucket holds enough images
        rows = []
        for name in sets:
            row = [label(name)]
            for b in buckets:
                cell = b["sets"].get(name, {}).get(m)
                row.append(fmt_interval(m, cell) if cell else "—")
            rows.append(row)
        # the metric heads the column of set names: a table, not a title and a table, per metric
        out += [markdown_table([f"**{metric_header(m)}**", *columns], rows, "l" + "r" * len(buckets)), ""]
    without = [f"{b['low'] * 100:.0f}-{b['high'] * 100:.0f}%" for b in buckets if not b["kid"]]
    if without:
        out.append(f"KID only where a bucket holds enough images; none for {', '.join(without)}.")
    if ev.get("images_outside_buckets"):
        out.append(f"{ev['images_outside_buckets']} images fall outside the bucket edges.")
    return out + [""]


def order_table(ev: dict, schedules: list[str], orders: list[str], metrics=SHOWN_FIRST) -> list[str]:
    """The decoders as a grid: a row per schedule, each order's FID with its interval, and
    each later order's paired verdicts against the first (confidence, as shipped) on the
    same schedule. Empty with one order."""
    if len(orders) < 2:
        return []
    pairs = {(p["a"], p["b"], p["metric"]): p for p in ev["pairs"]}
    first, rest = orders[0], orders[1:]
    header = ["schedule"] + [f"{o}: {metric_header(HEADLINE)}" for o in orders]
    header += [f"{o} vs {first}: d{METRICS[m].label}" for o in rest for m in metrics]
    rows = []
    for s in schedules:
        cells = ev["sets"]
        row = [s] + [fmt_interval(HEADLINE, cells[Decoder(s, o).name][HEADLINE]) for o in orders]
        for o in rest:
            for m in metrics:
                # stored as (first order's set) - (this order's set): turned round to read "o vs first"
                p = pairs.get((Decoder(s, first).name, Decoder(s, o).name, m))
                if p is None:
                    row.append("—")
                    continue
                diff, lo, hi = signed(m, [-p["diff"], -p["interval"][1], -p["interval"][0]])
                row.append(f"{FLIPPED.get(p['verdict'], p['verdict'])}, {diff} [{lo}, {hi}]")
        rows.append(row)
    return [markdown_table(header, rows, "l" + "r" * (len(header) - 1)), "",
            f"A verdict reads as the column's order against {first} on the row's schedule, after the page's "
            "correction; better or worse only where the interval excludes 0.", ""]


FAMILY_SOURCE = {"thin": "LaMa", "medium": "LaMa", "thick": "LaMa", "small": "MAT", "large": "MAT"}
# what evaluation.json holds once for every test set it judges
SHARED = ("replicates", "confidence", "seed", "exact_up_to", "ids_min_images")


def family_view(ev: dict, family: str) -> dict:
    """One mask family's part of evaluation.json, read like the whole file."""
    return {**{k: ev[k] for k in SHARED if k in ev}, **ev["mask_families"][family]}


def _summary_row(name: str, e: dict) -> list[str]:
    """One test set's row of the families' summary: images, missing area, tied, verdicts."""
    m = e.get("missing_fraction")
    return [name, str(e["images"]), f"{m['mean']:.0%} ({m['min']:.0%}-{m['max']:.0%})" if m else "—",
            ", ".join(map(label, e["tied_for_best"][HEADLINE])),
            f"{e['correction']['decided']} of {e['correction']['comparisons']}"]


def families_section(ev: dict, decoders: list[str]) -> list[str]:
    """Every metric per mask family (inpaint.mask_families) and per mask-area bucket, each
    family's verdicts corrected as a family of their own; empty without families."""
    families = ev.get("mask_families") or {}
    if not families:
        return []
    main = ev.get("test_masks", "builtin")
    rows = [_summary_row(f"{main} (main test set)", ev)]
    rows += [_summary_row(f"{f} ({FAMILY_SOURCE.get(f, '?')})", e) for f, e in families.items()]
    out = ["The same ground-truth test images under each standard mask family of `inpaint.mask_families` "
           "(generated per image, seeded; docs/masks.md), filled by every decoder and baseline. Each family's "
           "verdicts are a family of comparisons of their own, under Holm's correction; FIDs compare only "
           "within a row's image count.", "",
           markdown_table(["test masks", "images", "missing: mean (range)", "tied for best FID", "verdicts decided"],
                          rows, "lrrll"), ""]
    for f in families:
        v = family_view(ev, f)
        out += [f"### {f} masks ({FAMILY_SOURCE.get(f, '?')})", "", results_table(v, decoders), "",
                *tied_lines(v, decoders), "", correction_line(v["correction"], f"the verdicts on {f} masks"), "",
                "<details><summary>Every verdict</summary>", "", *verdict_lines(v), "", "</details>", "",
                *buckets_table(v)]
    return out
