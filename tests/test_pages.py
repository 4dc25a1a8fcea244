"""The review page (maskgit.compare) and the experiments page's marks
(maskgit.pages.experiments) on runs made up here: which side is A and which B,
the sign of a difference and the word for it, sets paired by name and images by
identity, and the tie rule against a clearly worse experiment. Expected values are
means and FIDs of the made-up evidence (torch-fidelity's FID, maskgit.metrics.fid),
and the direction of each metric (higher hole PSNR is better, lower FID)."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import every_metric
import yaml

from maskgit import compare
from maskgit.metrics import evaluation as ev
from maskgit.metrics import registry
from maskgit.metrics.fid import fid_from_features
from maskgit.pages import experiments as page
from maskgit.project.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
N = 40
SETTINGS = ev.Settings(replicates=200, confidence=0.95, seed=0, mask_buckets=(0.0, 0.5, 1.0), kid_min_images=10)
# one image exactly on the 0.5 edge: it belongs to the upper bucket
FRACTION = np.r_[np.full(19, 0.25), [0.5], np.full(20, 0.75)]


class FakeRun:
    def __init__(self, rev, params, sets, gt, families=None):
        self.rev, self.params, self.main, self.gt = rev, params, sets, gt
        self.families = families or {}
        self.predates, self.unknown, self.skipped = [], [], []

    def load(self):
        return self.params, self.main, self.gt

    def sets(self, params, test_set):
        return self.families[test_set.family] if test_set.family else self.main

    def git_revision(self):
        return self.rev


def evidence(rng, gt, sigma, hole_psnr):
    return every_metric({"names": np.array([f"{i:03d}.png" for i in range(N)]),
                         "features": gt + sigma * rng.normal(size=gt.shape), "psnr": hole_psnr + 5.0,
                         "ssim": np.full(N, 0.8), "hole_psnr": hole_psnr,
                         "hole_ssim": 0.5 + 0.01 * rng.normal(size=N), "missing_fraction": FRACTION})


def two_runs():
    """A and B on the same test images: B's cosine fills the hole 3 dB better image by image but
    its features are farther from the ground truth; the baseline is the same file in both."""
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(N, 4))
    hole_a = rng.normal(15, 1, N)
    cos_a = evidence(rng, gt, 0.1, hole_a)
    cos_b = evidence(rng, gt, 1.0, hole_a + 3.0 + 0.2 * rng.normal(size=N))
    base = evidence(rng, gt, 0.5, rng.normal(12, 1, N))
    a = FakeRun("A-rev", {"inpaint": {"total_iter": 8}}, {"cosine": cos_a, "onestep": base}, gt)
    # B lists its sets in another order: they are paired by name
    b = FakeRun("B-rev", {"inpaint": {"total_iter": 12}},
                {"onestep": {k: v.copy() for k, v in base.items()}, "cosine": cos_b}, gt.copy())
    return a, b


def test_the_review_page_says_b_against_a_with_the_sign_of_b_minus_a():
    a, b = two_runs()
    result = compare.compare(a, b, SETTINGS)
    rows = {(r["set"], r["metric"]): r for r in result["rows"]}
    cos_a, cos_b = a.main["cosine"], b.main["cosine"]
    hole = rows["cosine", "hole_psnr"]
    assert hole["a"]["value"] == pytest.approx(cos_a["hole_psnr"].mean())
    assert hole["b"]["value"] == pytest.approx(cos_b["hole_psnr"].mean())
    assert hole["diff"] == pytest.approx(cos_b["hole_psnr"].mean() - cos_a["hole_psnr"].mean())
    assert hole["interval"][0] > 0 and hole["verdict"] == "better"  # higher hole PSNR: B is better
    fid = rows["cosine", "fid"]
    expected = fid_from_features(cos_b["features"], a.gt) - fid_from_features(cos_a["features"], a.gt)
    assert fid["diff"] == pytest.approx(expected, abs=1e-5) and expected > 0.1
    assert fid["a"]["value"] == pytest.approx(fid_from_features(cos_a["features"], a.gt), abs=1e-5)
    assert fid["interval"][0] > 0 and fid["verdict"] == "worse"  # lower FID is better: B is worse
    # the baseline, the same file on both sides, is paired with itself
    assert {r["verdict"] for (s, _), r in rows.items() if s == "onestep"} == {"identical"}
    assert result["correction"]["method"] == "holm" and result["bucket_correction"]["method"] == "bh"

    text = compare.render(a, b, result, SETTINGS, None)
    line = next(ln for ln in text.splitlines() if ln.startswith("| cosine") and "hole PSNR" in ln)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2].startswith(f"{cos_a['hole_psnr'].mean():.2f}") and cells[3].startswith(
        f"{cos_b['hole_psnr'].mean():.2f}")
    assert cells[4].startswith(f"+{hole['diff']:.2f}") and cells[5].startswith("**better**")
    assert "Per decoder (FID): cosine: B worse." in text
    param = next(ln for ln in text.splitlines() if "`inpaint.total_iter`" in ln)
    assert [c.strip() for c in param.strip("|").split("|")] == ["`inpaint.total_iter`", "8", "12"]


def test_the_review_page_s_buckets_are_b_minus_a_over_each_bucket_s_images():
    a, b = two_runs()
    result = compare.compare(a, b, SETTINGS)
    assert [(x["low"], x["high"], x["images"]) for x in result["buckets"]] == [(0.0, 0.5, 19), (0.5, 1.0, 21)]
    for x, idx in zip(result["buckets"], (slice(0, 19), slice(19, N))):
        c = x["metrics"]["hole_psnr"]["cosine"]
        assert c["metric"] == "hole_psnr"
        assert c["diff"] == pytest.approx(b.main["cosine"]["hole_psnr"][idx].mean()
                                          - a.main["cosine"]["hole_psnr"][idx].mean())
        assert c["verdict"] == "better"
        assert x["metrics"]["hole_psnr"]["onestep"]["verdict"] == "identical"
        # every metric the buckets hold is judged there, not hole PSNR alone
        assert {"hole_psnr", "hole_ssim"} <= set(x["metrics"]) <= set(registry.BY_AREA)


def test_each_mask_family_both_runs_scored_is_judged_apart_from_the_main_set():
    a, b = two_runs()
    # B is better on the main set's cosine; under "thick" masks it is A's very files
    a.params["inpaint"]["mask_families"], b.params["inpaint"]["mask_families"] = ["thick", "large"], ["thick"]
    a.families = {"thick": a.main, "large": a.main}
    b.families = {"thick": {s: {k: v.copy() for k, v in e.items()} for s, e in a.main.items()}}
    result = compare.compare(a, b, SETTINGS)
    assert list(result["families"]) == ["thick"]  # "large": A's alone, nothing to pair
    thick = result["families"]["thick"]
    assert {r["verdict"] for r in thick["rows"]} == {"identical"} and thick["correction"]["comparisons"] == 0
    assert any(r["verdict"] == "better" for r in result["rows"])  # the main set's verdicts stand apart
    text = compare.render(a, b, result, SETTINGS, None)
    section = text[text.index("## Under thick masks"):]
    assert "## Under large masks" not in text and "the table on thick masks" in section
    assert "### By mask area (B - A)" in section and "Per decoder (FID): cosine: B identical." in section


def test_the_same_images_in_another_order_are_paired_by_name():
    # evidence rows follow each run's own ground-truth order: B's rows are put in A's
    a, b = two_runs()
    order = np.random.default_rng(1).permutation(N)
    shuffled = FakeRun("B-rev", b.params, {s: {k: v[order] for k, v in e.items()} for s, e in b.main.items()},
                       b.gt[order])
    expected, result = compare.compare(a, b, SETTINGS), compare.compare(a, shuffled, SETTINGS)
    assert [(r["set"], r["metric"], r["diff"], r["interval"], r["verdict"]) for r in result["rows"]] == \
        [(r["set"], r["metric"], r["diff"], r["interval"], r["verdict"]) for r in expected["rows"]]
    assert list(result["names"]) == list(a.main["cosine"]["names"])
    assert compare.render(a, shuffled, result, SETTINGS, None) == compare.render(a, b, expected, SETTINGS, None)


@pytest.mark.parametrize("change", ["renamed", "other pixels", "one fewer"])
def test_other_test_images_are_refused(change):
    a, b = two_runs()
    names, gt = a.main["cosine"]["names"].copy(), b.gt.copy()
    keep = slice(None)
    if change == "renamed":
        names[0] = "new.png"
    elif change == "other pixels":
        gt[0] += 1.0
    else:
        keep = slice(1, None)
    sets = {s: {k: (names if k == "names" else v)[keep] for k, v in e.items()} for s, e in b.main.items()}
    with pytest.raises(InputError, match="scored different test images"):
        compare.compare(a, FakeRun("B-rev", b.params, sets, gt[keep]), SETTINGS)


def test_a_tiny_bin_difference_prints_like_every_other_cell():
    # B's cosine is A's plus 1e-5 dB on every image: a real difference that rounds to 0.00
    a, _ = two_runs()
    sets = {s: dict(e) for s, e in a.main.items()}
    sets["cosine"]["hole_psnr"] = sets["cosine"]["hole_psnr"] + 1e-5
    b = FakeRun("B-rev", a.params, sets, a.gt)
    text = compare.render(a, b, compare.compare(a, b, SETTINGS), SETTINGS, None)
    bins = text[text.index("**hole PSNR** by missing-pixel fraction"):]
    row = next(ln for ln in bins.splitlines() if ln.startswith("| cosine"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert cells == ["+0.00 [+0.00, +0.00] **better**"] * 2, row
    assert not re.search(r"\de[+-]\d", text), "no cell of the page in scientific notation"


# --- the experiments page's marks ----------------------------------------------------


class FakeExperiment:
    store: dict = {}

    def __init__(self, rev, repo="."):
        self.rev = rev

    def evidence(self, name, test_set=None):
        return {"features": self.store[self.rev][name]}

    def gt_features(self):
        return self.store[self.rev]["gt"]


@pytest.fixture
def experiments(tmp_path, monkeypatch):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"]["replicates"] = 200
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr("maskgit.pages.runs.Run", FakeExperiment)
    rng = np.random.default_rng(3)
    gt = rng.normal(size=(60, 4))

    def noisy(sigma):
        return gt + sigma * rng.normal(size=gt.shape)

    good = noisy(0.1)
    FakeExperiment.store = {
        # each experiment's best schedule (its lowest FID in the frame) is the one compared
        "r-good": {"gt": gt, "cosine": good, "linear": noisy(1.0)},
        "r-near": {"gt": gt, "cosine": good + 1e-3 * rng.normal(size=gt.shape), "linear": noisy(1.0)},
        "r-bad": {"gt": gt, "cosine": noisy(1.0), "linear": noisy(1.0)},
        "r-copy": {"gt": gt, "cosine": good.copy(), "linear": noisy(1.0)},
        "r-other": {"gt": gt + 1.0, "cosine": good + 1.0, "linear": noisy(1.0)},
    }
    frame = pd.DataFrame({"experiment": ["bad", "near", "good", "other"], page.REV: ["r-bad", "r-near", "r-good",
                                                                                    "r-other"],
                          "inpaint.total_iter": [4, 6, 8, 10],
                          f"{page.FID}cosine": [60.0, 10.05, 10.0, 12.0], f"{page.FID}linear": [85.0, 80.0, 80.0, 81.0]})
    return frame, tmp_path / "params.yaml"


def test_the_lowest_fid_is_best_a_near_copy_is_tied_and_a_clearly_worse_experiment_is_not(experiments):
    frame, params = experiments
    marks = page.paired_marks(frame, params_path=params)
    assert marks == {"good": "**best**", "near": "tied", "bad": "", "other": "other test set"}


def test_an_experiment_with_the_best_s_own_evidence_is_tied(experiments):
    # evaluation.summarise calls such a pair "identical" and tests nothing: the same FID, so a tie
    frame, params = experiments
    frame = pd.concat([frame, pd.DataFrame({"experiment": ["copy"], page.REV: ["r-copy"], "inpaint.total_iter": [12],
                                            f"{page.FID}cosine": [10.0], f"{page.FID}linear": [82.0]})],
                      ignore_index=True)
    marks = page.paired_marks(frame, params_path=params)
    assert marks["good"] == "**best**" and marks["copy"] == "tied"


def test_a_run_made_before_a_param_existed_is_compared_with_the_param_at_its_default(tmp_path):
    # `compare <an old revision> HEAD` once said `params.yaml: missing reproducibility`,
    # read as a broken file; a run that predates a param is read at today's default and
    # says so, and the sets it never scored (here the Halton decoders, which inpaint.orders
    # added) are left out by name, not a missing-file error
    from maskgit.project.evidence import write_evidence
    from maskgit.project.params import defaults
    from maskgit.pages.runs import Run
    from maskgit.project.grid import BASELINES, MAIN

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params["reproducibility"], params["inpaint"]["orders"]
    params["inpaint"]["old_knob"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(N, 4))
    np.save(tmp_path / "gt.npy", gt)
    (tmp_path / "outputs/fid").mkdir(parents=True)
    np.save(tmp_path / "outputs/fid/gt_features.npy", gt)
    for name in [*params["inpaint"]["schedules"], *BASELINES]:
        e = evidence(rng, gt, 0.5, rng.normal(15, 1, N))
        write_evidence(tmp_path / MAIN.evidence(name), **e)
    run = Run("workspace", str(tmp_path))
    read, sets, _ = run.load()
    assert read["reproducibility"] == defaults()["reproducibility"]
    assert run.predates == ["reproducibility", "inpaint.orders"] and run.unknown == ["inpaint.old_knob"]
    assert list(sets) == [*params["inpaint"]["schedules"], *BASELINES]
    assert run.skipped == [f"{s}-halton" for s in params["inpaint"]["schedules"]]
    notes = compare.layout_notes(run)
    assert notes[0].startswith("workspace predates `reproducibility`, `inpaint.orders`: read at today's defaults")
    assert "scored no cosine-halton, linear-halton, square-halton" in notes[2]
    # a run whose params lack nothing gets no such leniency: a missing file stays an error
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    with pytest.raises(InputError, match="per-image evidence"):
        Run("workspace", str(tmp_path)).load()


def test_compare_names_a_scalar_where_a_list_belongs_before_dvc_reads_the_params(tmp_path, capsys):
    text = (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text.replace("  schedules: [cosine, linear, square]", "  schedules: cosine"))
    with pytest.raises(SystemExit) as stop:
        compare.main(["HEAD", "workspace", "--repo", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "inpaint.schedules" in err, err
