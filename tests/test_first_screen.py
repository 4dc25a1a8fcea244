"""Issue 43, review at a glance: the report and the review page answer first.

The report's first screen (before its first <details>, at most its first 60 lines) is
the verdicts per metric and the results table; the verdict matrix says what
evaluation.json says, cell by cell; beside a tie stands the smallest difference the run
detects, by the rule of docs/evaluation.md; the report stays within 250 lines and the
review page within 120 before its first <details>. On made-up evaluations whose every
verdict is chosen here, a run of the default grid's size (3 schedules x 2 orders)."""

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import load_stage
from maskgit import compare
from maskgit.pages import figures, markdown
from maskgit.project import grid
from maskgit.project.errors import InputError
from test_pages import SETTINGS, two_runs

REPO = Path(__file__).resolve().parents[1]
SCHEDULES, ORDERS = ["cosine", "linear", "square"], ["confidence", "halton"]
DECODERS = [d.name for d in grid.decoders({"schedules": SCHEDULES, "orders": ORDERS})]
SETS = DECODERS + ["masked_input", "onestep", "recon", "harmonic"]
N = 150
# point values per metric; lower FID and KID are better, higher hole PSNR and SSIM
VALUES = {
    "fid": dict(zip(SETS, [63.5, 60.0, 60.5, 61.0, 60.2, 60.8, 100.0, 61.0, 28.0, 77.0])),
    "kid": dict(zip(SETS, [0.0070, 0.0071, 0.0072, 0.0069, 0.0070, 0.0071, 0.024, 0.0083, -0.001, 0.015])),
    "hole_psnr": dict(zip(SETS, [17.6, 19.5, 17.7, 17.6, 17.7, 17.8, 12.6, 17.4, 30.7, 19.0])),
    "hole_ssim": dict(zip(SETS, [0.625, 0.630, 0.629, 0.626, 0.623, 0.627, 0.362, 0.600, 0.926, 0.662])),
}
HALF = {"fid": 2.0, "kid": 0.001, "hole_psnr": 0.3, "hole_ssim": 0.01}  # every paired interval's half-width
HIGHER = {"fid": False, "kid": False, "hole_psnr": True, "hole_ssim": True}
TIED = {"fid": ["linear", "linear-halton", "square", "square-halton", "cosine-halton"],  # cosine: 3.5 worse
        "kid": ["cosine-halton", "cosine", "linear", "square", "linear-halton", "square-halton"],
        "hole_psnr": ["linear"], "hole_ssim": ["linear", "cosine", "square", "cosine-halton", "linear-halton",
                                                "square-halton"]}


def made_up_evaluation() -> dict:
    """evaluation.json as the evaluate stage writes it: every pair the stage compares
    (maskgit.project.grid.pairs_to_compare), the difference of the point values with an
    interval HALF wide each side, the verdict that interval gives."""
    def cell(v, h):
        return {"value": v, "interval": [v - h, v + h], "low": v - h, "high": v + h}

    pairs = []
    for a, b in grid.pairs_to_compare(DECODERS):
        for m, values in VALUES.items():
            diff = values[a] - values[b]
            lo, hi = diff - HALF[m], diff + HALF[m]
            good, bad = (lo > 0, hi < 0) if HIGHER[m] else (hi < 0, lo > 0)
            verdict = "better" if good else "worse" if bad else "indistinguishable"
            pairs.append({"a": a, "b": b, "metric": m, "diff": diff, "interval": [lo, hi], "p": 0.0 if good or bad
                          else 0.5, "uncorrected": verdict, "verdict": verdict})
    decided = sum(p["verdict"] in ("better", "worse") for p in pairs)
    buckets = [{"low": lo, "high": hi, "images": 30, "kid": lo > 0,
                "sets": {s: {"hole_psnr": cell(VALUES["hole_psnr"][s], 1.0),
                             "hole_ssim": cell(VALUES["hole_ssim"][s], 0.03),
                             **({"kid": cell(VALUES["kid"][s], 0.005)} if lo > 0 else {})} for s in SETS}}
               for lo, hi in [(0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 1.0)]]
    return {"replicates": 1000, "confidence": 0.95, "seed": 0, "exact_up_to": 500, "ids_min_images": 4096,
            "test_masks": "builtin", "images": N, "resampling": "exact", "ids": False, "lpips": False,
            "sets": {s: {m: cell(VALUES[m][s], 4 * HALF[m]) for m in VALUES} for s in SETS},
            "pairs": pairs, "tied_for_best": TIED,
            "correction": {"method": "holm", "alpha": 0.05, "comparisons": len(pairs), "identical": 0,
                           "decided": decided, "decided_uncorrected": decided},
            "decisive": {"a": "linear", "b": "linear-halton", "width": 4.0, "images_for_1_fid": 2400},
            "mask_buckets": buckets, "images_outside_buckets": 0, "mask_families": {}}


@pytest.fixture
def run(tmp_path, monkeypatch):
    """What the report stage reads, for a run of six decoders: params, evaluation, training
    summaries, timings, and the plots stage's figures (present as files: the report links them)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["inpaint"].update(schedules=SCHEDULES, orders=ORDERS, mask_families=[])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    files = {"metrics/evaluation.json": made_up_evaluation(),
             "dvclive/vqgan/metrics.json": {"train": {k: 0.5 for k in ("loss", "q_loss", "l1", "l2", "edge", "lr")},
                                            "val_psnr": 28.3, "codes_used": 128, "dead_codes": 0},
             "dvclive/transformer/metrics.json": {"train": {"loss": 3.7, "accuracy": 0.2},
                                                  "val": {"loss": 3.7, "accuracy": 0.2}, "params": 892416},
             **{f"timings/inpaint-{d}.json": {"stage": f"inpaint-{d}", "seconds": 8.0}
                for d in [grid.Decoder.parse(n).key for n in DECODERS]}}
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(json.dumps(content))
    plots = tmp_path / "reports/figures"
    plots.mkdir(parents=True)
    for name in ["fid", "gamma", "comparison", "training", *(f"grid_{d}" for d in DECODERS),
                 *(f"steps_{d}" for d in DECODERS)]:
        (plots / f"{name}.png").touch()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def first_screen(page: str) -> list[str]:
    """What a reader sees before scrolling or unfolding: the lines before the first
    <details>, and no more than the first 60."""
    lines = page.splitlines()
    folded = next((i for i, line in enumerate(lines) if line.startswith("<details>")), len(lines))
    return lines[:min(folded, 60)]


def table_rows(lines: list[str], first_header: str) -> dict[str, list[str]]:
    """The rows of the markdown table whose header starts with `first_header`, by first cell."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} "))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


# ---------------------------------------------------------------- the report


def test_the_report_s_first_screen_is_the_verdicts_and_the_results_table(run):
    load_stage("report").main()
    report = (run / "reports/report.md").read_text()
    screen = first_screen(report)
    assert len(report.splitlines()) <= 250, len(report.splitlines())
    assert screen[0] == "# MaskGIT inpainting: report"

    answer = table_rows(screen, "metric")
    assert list(answer) == [f"**{m}** ({better} is better)" for m, better in
                            [("FID", "lower"), ("KID x 1000", "lower"), ("hole PSNR", "higher"), ("hole SSIM", "higher")]]
    fid, kid, psnr, ssim = answer.values()
    # columns: tied for best, smallest detectable difference, between decoders, vs one-step, vs the other baselines
    assert fid[0] == "linear, linear-halton, square, square-halton, cosine-halton (of 6)"
    assert kid[0] == "all 6 decoders" and ssim[0] == "all 6 decoders"
    assert psnr[0] == "**linear**, better than the other 5" and psnr[1] == "—"
    # FID: cosine (63.5) is 2.5 or more above linear, square and cosine-halton, the pairs it is
    # compared in (interval +-2.0): three decided pairs between decoders, each with its interval
    assert fid[2] == ("cosine worse than linear, dFID +3.50 [+1.50, +5.50]; cosine worse than square, dFID +3.00 "
                      "[+1.00, +5.00]; cosine worse than cosine-halton, dFID +2.50 [+0.50, +4.50]")
    assert kid[2] == "nothing decided (9 compared)"
    # hole PSNR: linear is 1.9 dB above cosine, 1.8 above square and linear-halton: 3 of 9 pairs decided
    assert psnr[2].count(" than ") == 3 and "linear better than square" in psnr[2]
    # one-step's FID is 61.0: only cosine is 2.0 or more away; hole SSIM: every decoder 0.023 or
    # more above one-step's 0.600
    assert fid[3] == "worse: cosine; indistinguishable: the other 5"
    assert ssim[3] == "better (all 6)"
    assert fid[4] == "harmonic fill: better (all 6); masked input: better (all 6)"
    assert psnr[4] == "harmonic fill: 1 better, 5 worse; masked input: better (all 6)"

    # the results table follows on the same screen, a row per set with its intervals
    results = table_rows(screen, "set")
    assert list(results)[:2] == ["cosine", "**linear** (tied for best)"]
    assert len(results) == len(SETS) and results["masked input"][1] == "100.00 [92.00, 108.00]"
    assert "![Every paired verdict" in "\n".join(screen) and "](verdicts.png)" in "\n".join(screen)
    # the wall of verdicts in words is folded, not gone
    assert not any(line.startswith("- cosine vs linear:") for line in screen)
    assert "- cosine vs linear: **worse**, dFID +3.50 [+1.50, +5.50]" in report
    with Image.open(run / "reports/verdicts.png") as im:
        assert im.format == "PNG" and im.width > 600 and im.height > 600


def test_the_smallest_detectable_difference_beside_a_tie_follows_its_rule(run):
    load_stage("report").main()
    answer = table_rows(first_screen((run / "reports/report.md").read_text()), "metric")
    # every decoder pair's FID interval is +-2.0: under Holm's correction over the tie's 5
    # comparisons a difference of (z(1 - 0.05/10) + z(0.8)) standard errors of 2.0 / 1.96 each
    z = NormalDist().inv_cdf
    detectable = 2.0 / z(0.975) * (z(1 - 0.05 / 10) + z(0.8))
    assert f"{detectable:.2f}" == "3.49"
    # the tied FIDs span 61.0 - 60.0 = 1.0: detected at 150 * (3.487 / 1.0)^2 test images
    images = math.ceil(N * (detectable / 1.0) ** 2)
    assert 1820 < images < 1830
    assert answer["**FID** (lower is better)"][1] == f"3.49 (their spread of 1.00 would need about {images:,} images)"


def test_the_report_with_few_sets_is_short_too(run):
    # two decoders and one order: no order table, the same first screen
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["inpaint"].update(schedules=["cosine", "linear"], orders=["confidence"])
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ev = made_up_evaluation()
    keep = {"cosine", "linear", "masked_input", "onestep", "recon", "harmonic"}
    ev["sets"] = {s: c for s, c in ev["sets"].items() if s in keep}
    ev["pairs"] = [p for p in ev["pairs"] if p["a"] in keep and p["b"] in keep]
    ev["tied_for_best"] = {"fid": ["linear"], "kid": ["cosine", "linear"]}
    for b in ev["mask_buckets"]:
        b["sets"] = {s: c for s, c in b["sets"].items() if s in keep}
    Path("metrics/evaluation.json").write_text(json.dumps(ev))
    load_stage("report").main()
    report = Path("reports/report.md").read_text()
    answer = table_rows(first_screen(report), "metric")
    assert answer["**KID x 1000** (lower is better)"][0] == "both decoders"
    assert answer["**FID** (lower is better)"][0] == "**linear**, better than the other decoder"
    assert "### Decoding order" not in report and len(report.splitlines()) <= 250


# ---------------------------------------------------------------- the verdict matrix


def test_the_matrix_says_what_evaluation_json_says_cell_by_cell():
    ev = made_up_evaluation()
    # one pair of the same files on both sides, as a review of a run against itself has
    ev["pairs"].append({"a": "recon", "b": "harmonic", "metric": "fid", "diff": 0.0, "interval": [0.0, 0.0],
                        "p": None, "uncorrected": "identical", "verdict": "identical"})
    names, matrices = figures.verdict_matrix(ev)
    assert names == SETS and list(matrices) == ["fid", "kid", "hole_psnr", "hole_ssim"]
    turned = {"better": "worse", "worse": "better", "indistinguishable": "indistinguishable", "identical": "identical"}
    for p in ev["pairs"]:
        i, j = names.index(p["a"]), names.index(p["b"])
        assert matrices[p["metric"]][i][j] == p["verdict"]
        assert matrices[p["metric"]][j][i] == turned[p["verdict"]]
    fid = matrices["fid"]
    assert fid[names.index("cosine")][names.index("linear")] == "worse"
    assert fid[names.index("linear")][names.index("cosine")] == "better"
    assert fid[names.index("harmonic")][names.index("recon")] == "identical"
    # pairs the stage never compares (linear against cosine-halton, a decoder against the
    # reconstruction) and the diagonal stay empty
    for a, b in [("linear", "cosine-halton"), ("cosine", "recon"), ("square", "square")]:
        assert fid[names.index(a)][names.index(b)] is None
    compared = {(p["a"], p["b"]) for p in ev["pairs"] if p["metric"] == "kid"}
    assert sum(v is not None for line in matrices["kid"] for v in line) == 2 * len(compared)


def test_the_matrix_figure_is_drawn_and_refused_without_verdicts(tmp_path):
    ev = made_up_evaluation()
    path = tmp_path / "verdicts.png"
    figures.verdict_figure(ev, path)
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    # a better and a worse cell in their colours (cosine worse than linear on FID, and back)
    for colour in ("better", "worse"):
        rgb = tuple(int(figures.VERDICT_STYLE[colour][0][k:k + 2], 16) for k in (1, 3, 5))
        assert (np.abs(pixels.astype(int) - rgb).sum(axis=-1) < 6).sum() > 100, colour
    with pytest.raises(InputError, match="no paired verdicts"):
        figures.verdict_figure({**ev, "pairs": []}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


# ---------------------------------------------------------------- the smallest detectable difference


def test_the_detectable_difference_of_one_comparison_is_1_43_half_widths():
    # 95% interval: h = 1.96 standard errors; 80% power: 1.96 + 0.84 standard errors
    assert markdown.detectable(1.0, 0.95) == pytest.approx((1.959964 + 0.841621) / 1.959964, abs=1e-5)
    assert markdown.detectable(1.0, 0.95) == pytest.approx(1.4294, abs=1e-4)
    # a family of 5 under Holm's correction: its strictest step, z(1 - 0.05 / 10) = 2.5758
    assert markdown.detectable(1.959964, 0.95, comparisons=5) == pytest.approx(2.575829 + 0.841621, abs=1e-5)
    # 90% intervals: h = 1.645 standard errors, a call at 1.645, power 80%
    assert markdown.detectable(1.644854, 0.90) == pytest.approx(1.644854 + 0.841621, abs=1e-5)


def test_images_to_detect_a_difference_scale_as_one_over_root_n():
    assert markdown.images_to_detect(1.0, 2.0, 150) == 600  # half the detectable difference: 4x the images
    assert markdown.images_to_detect(-1.0, 2.0, 150) == 600  # a difference either way
    assert markdown.images_to_detect(2.0, 2.0, 150) == 150
    assert markdown.images_to_detect(3.0, 1.0, 90) == 10


def test_a_tie_s_detectable_difference_is_the_median_decoder_pair_s_and_ignores_the_rest():
    def pair(a, b, half, verdict="indistinguishable", metric="fid"):
        return {"a": a, "b": b, "metric": metric, "diff": 0.5, "interval": [0.5 - half, 0.5 + half],
                "verdict": verdict}

    ev = {"confidence": 0.95, "images": 100,
          "sets": {"cosine": {"fid": {"value": 10.0}}, "linear": {"fid": {"value": 11.0}},
                   "square": {"fid": {"value": 10.5}}, "onestep": {"fid": {"value": 12.0}}},
          "pairs": [pair("cosine", "linear", 1.0), pair("cosine", "square", 2.0), pair("linear", "square", 4.0),
                    pair("cosine", "onestep", 100.0),  # against a baseline: not a tie's
                    {**pair("linear", "cosine", 0.0), "verdict": "identical"},  # no interval to read
                    pair("square", "cosine", 0.0),  # no width: the metric never moved, nothing to detect
                    pair("cosine", "linear", 9.0, metric="kid")]}
    seen = markdown.decoder_detectable(ev, ["cosine", "linear", "square"])
    # median half-width 2.0, the tie's family: the best against the 2 others
    assert seen["fid"] == pytest.approx(markdown.detectable(2.0, 0.95, comparisons=2))
    assert seen["kid"] == pytest.approx(markdown.detectable(9.0, 0.95, comparisons=2))
    note = markdown.tie_note(ev, "fid", ["cosine", "linear", "square"], 2.0)
    # spread 11.0 - 10.0 = 1.0 at half of 2.0: 4x the 100 images
    assert note == "2.00 (their spread of 1.00 would need about 400 images)"
    # a spread the run would detect gets no count (the tie rests on a wider interval than the median)
    assert markdown.tie_note(ev, "fid", ["cosine", "linear"], 0.5) == "0.50"
    assert markdown.tie_note(ev, "fid", ["cosine"], 2.0) == ""


# ---------------------------------------------------------------- the review page


def before_details(page: str) -> list[str]:
    lines = page.splitlines()
    return lines[:next((i for i, line in enumerate(lines) if line.startswith("<details>")), len(lines))]


def test_the_review_page_leads_with_the_decided_rows():
    a, b = two_runs()
    result = compare.compare(a, b, SETTINGS)
    page = compare.render(a, b, result, SETTINGS, "figure.png")
    head = before_details(page)
    assert len(head) <= 120
    text = "\n".join(head)
    # B's cosine: worse on FID, better inside the hole; both rows, with their intervals, before any fold
    decided = [r for r in result["rows"] if r["verdict"] in ("better", "worse")]
    assert {(r["set"], r["metric"]) for r in decided} == {("cosine", "fid"), ("cosine", "hole_psnr")}
    for r in decided:
        diff = compare.fmt_diff(r["metric"], r["diff"], *r["interval"])
        assert f"{diff} | **{r['verdict']}**" in text
    # what was not decided is folded: no indistinguishable or identical row above the first <details>
    assert "**indistinguishable**" not in text and "**identical**" not in text
    assert "**indistinguishable**" in page and "**identical**" in page
    assert "Smallest difference this page would call (80% power, after the correction): FID " in text
    assert "![A and B on the same test images](figure.png)" in text and "`inpaint.total_iter`" in text


def test_a_review_of_a_large_change_still_fits_before_its_folds():
    a, b = two_runs()
    result = compare.compare(a, b, SETTINGS)
    # a preset's worth of params and a change that moves 80 rows
    a.params["inpaint"].update({f"knob_{i}": i for i in range(60)})
    b.params["inpaint"].update({f"knob_{i}": i + 1 for i in range(60)})
    row = next(r for r in result["rows"] if r["verdict"] == "better")
    result["rows"] = [{**row, "set": f"set_{i:02d}"} for i in range(80)] + result["rows"]
    page = compare.render(a, b, result, SETTINGS, None)
    head = before_details(page)
    assert len(head) <= 120, len(head)
    decided = sum(r["verdict"] in ("better", "worse") for r in result["rows"])
    assert decided == 82 and f"{decided - compare.DECIDED_ROWS} more decided rows" in "\n".join(head)
    # nothing is lost: every row and every param is on the page, folded
    assert all(f"| set_{i:02d} " in page for i in range(80))
    assert all(f"`inpaint.knob_{i}`" in page for i in range(60))
