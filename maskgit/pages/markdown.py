"""metrics/evaluation.json (stage evaluate) said in markdown: the results table with
intervals, the verdicts, the tied-for-best sets, the mask-area buckets. Shared by
the report stage and `python -m maskgit.compare`."""

from __future__ import annotations

import math

from maskgit.metrics.registry import BY_AREA, GROUPS, HEADLINE, METRICS, PAIRED, SHOWN_FIRST
from maskgit.metrics.registry import label as metric_header
from maskgit.project.grid import Decoder, label


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


def tied_lines(ev: dict) -> list[str]:
    lines = []
    for metric, names in ev["tied_for_best"].items():
        if len(names) > 1:
            lines.append(f"- Best {METRICS[metric].label}: tied between **{', '.join(map(label, names))}** "
                         f"(each paired interval against {label(names[0])} includes 0).")
        else:
            lines.append(f"- Best {METRICS[metric].label}: **{label(names[0])}**, better than every other "
                         f"schedule (paired intervals exclude 0).")
    return lines


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
    conf = f"{ev['confidence']:.0%}"
    lines = [f"Every interval is a {conf} bootstrap interval over the {ev['images']} test images "
             f"({ev['replicates']} replicates, seed {ev['seed']}; paired: both sides of a difference are "
             f"computed on the same resampled images{_route(ev)}). A difference is called better or worse only when "
             "its interval excludes 0 and it survives the correction below. The bootstrap does not see the "
             "decoder's own noise: repeat with other `inpaint.seed` values for that (docs/evaluation.md)."]
    small = ev["images"] < 2048
    lines += ["", f"Every FID here is at {ev['images']} images: FID is biased upward by a term that shrinks as "
              "1/n, so FIDs at other image counts (a paper's 10,000 or 30,000) are not comparable with these"
              + ("; at this count lean on KID, whose estimate depends far less on the count." if small else ".")]
    for name, group in GROUPS.items():  # each group a run may lack, as evaluation.json flags them
        if ev.get(name) is False:
            lines += ["", group.absent.format(**ev)]
    if ev.get("correction"):
        lines += ["", correction_line(ev["correction"], "the verdicts above")]
    d = ev.get("decisive")
    if d:
        head = (f"How sure is this: the decisive comparison, the best schedule against the runner-up "
                f"({label(d['a'])} vs {label(d['b'])}), has an FID-difference interval {d['width']:.2f} wide at "
                f"{ev['images']} images")
        if d["width"] > 1:
            lines += ["", f"{head}; about **{d['images_for_1_fid']:,}** test images would make it 1 FID wide "
                          "(width ~ 1/sqrt(n), from the measured variance)."]
        else:
            lines += ["", f"{head}: already under 1 FID wide."]
    return lines


def buckets_table(ev: dict, metrics=BY_AREA) -> list[str]:
    buckets = ev["mask_buckets"]
    sets = list(ev["sets"])
    header = ["set"] + [f"{b['low'] * 100:.0f}-{b['high'] * 100:.0f}% ({b['images']} img)" for b in buckets]
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
        out += [f"**{metric_header(m)}** by missing-pixel fraction", "",
                markdown_table(header, rows, "l" + "r" * len(buckets)), ""]
    without = [f"{b['low'] * 100:.0f}-{b['high'] * 100:.0f}%" for b in buckets if not b["kid"]]
    if without:
        out.append(f"KID only where a bucket holds enough images; none for {', '.join(without)}.")
    if ev.get("images_outside_buckets"):
        out.append(f"{ev['images_outside_buckets']} images fall outside the bucket edges.")
    return out + [""]


FLIPPED = {"better": "worse", "worse": "better"}


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
                *tied_lines(v), "", correction_line(v["correction"], f"the verdicts on {f} masks"), "",
                "<details><summary>Every verdict</summary>", "", *verdict_lines(v), "", "</details>", "",
                *buckets_table(v)]
    return out
