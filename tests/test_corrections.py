"""Verdicts that control their error rate: p-values read off the bootstrap, Holm's and
Benjamini-Hochberg's corrections, identical sets left untested, and what a page says of
its family (maskgit.metrics.evaluation, maskgit.pages.markdown)."""

import numpy as np
import pytest

from maskgit.metrics import bootstrap as bs
from maskgit.metrics import evaluation as ev
from maskgit.pages.markdown import correction_line


def holm_by_definition(p, alpha):
    """Adjusted p-values as Holm (1979) defines them: the running maximum of (m - j + 1) p_(j)."""
    order = np.argsort(p, kind="stable")
    m, adjusted, running = len(p), np.empty(len(p)), 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[i]))
        adjusted[i] = running
    return (adjusted <= alpha).tolist()


def test_holm_on_a_worked_example_and_against_its_definition():
    # sorted 0.005 <= 0.05/4 and 0.01 <= 0.05/3, then 0.03 > 0.05/2 stops the procedure
    assert ev.holm([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.uniform(0, 0.1, rng.integers(1, 12)) ** rng.uniform(1, 3)
        assert ev.holm(p.tolist(), 0.05) == holm_by_definition(p, 0.05)


def test_benjamini_hochberg_rejects_up_to_the_largest_p_under_its_line():
    # k alpha / m = 0.01, 0.02, 0.03, 0.04, 0.05: the 4th is the last under the line
    assert ev.benjamini_hochberg([0.04, 0.01, 0.2, 0.03, 0.02], 0.05) == [True, True, False, True, True]
    # a p above its own line is still rejected when a larger one is under its own (step-up)
    assert ev.benjamini_hochberg([0.02, 0.04], 0.05) == [True, True]
    assert ev.holm([0.02, 0.04], 0.05) == [True, True] and ev.holm([0.03, 0.04], 0.05) == [False, False]


def test_untested_hypotheses_do_not_count_in_the_family():
    nan = float("nan")
    # with the nan counted, m = 3 and 0.02 > 0.05 / 3 would stop Holm
    assert ev.holm([0.02, nan, 0.04], 0.05) == [True, False, True]
    assert ev.benjamini_hochberg([nan, nan], 0.05) == [False, False]


@pytest.mark.parametrize("shift", [-3.0, -1.9, -1.0, 0.0, 0.5, 1.5, 2.2, 4.0])
def test_the_p_value_says_what_the_interval_says(shift):
    samples = np.random.default_rng(1).normal(shift, 1.0, 2000)
    for confidence in (0.9, 0.95, 0.99):
        lo, hi = bs.interval(samples, confidence)
        p = ev.p_value(samples)
        share = min(np.mean(samples <= 0), np.mean(samples >= 0))
        if abs(share - (1 - confidence) / 2) < 2 / len(samples):
            continue  # on the quantiles' interpolation edge
        assert (p < 1 - confidence) == (lo > 0 or hi < 0), (confidence, p, lo, hi)
    # centred on a point, the p-value moves with the interval
    assert ev.p_value(samples, point=samples.mean() + 10) == 0.0


def verdict(p, uncorrected):
    return {"p": p, "uncorrected": uncorrected, "verdict": uncorrected}


def test_correction_turns_chance_verdicts_indistinguishable_and_says_how_many():
    family = [verdict(0.0, "better"), verdict(0.03, "worse")] + [verdict(0.5, "indistinguishable")] * 8
    summary = ev.correct(family, 0.05, "holm")
    assert [v["verdict"] for v in family[:2]] == ["better", "indistinguishable"]
    assert summary == {"method": "holm", "alpha": 0.05, "comparisons": 10, "identical": 0,
                       "decided": 1, "decided_uncorrected": 2}
    line = correction_line(summary, "the table above")
    assert "10 comparisons" in line and "1 called better or worse" in line and "1 fewer than at 95% each" in line


def test_a_correction_never_calls_a_difference_its_interval_does_not_show():
    # a p-value that would be rejected cannot overrule an interval that covers 0
    family = [verdict(0.0, "indistinguishable"), verdict(0.0, "better")]
    ev.correct(family, 0.05)
    assert [v["verdict"] for v in family] == ["indistinguishable", "better"]


def evidence(rng, n=40, d=8, shift=0.0):
    return {"names": np.array([f"{i}.png" for i in range(n)]), "features": rng.normal(shift, 1, (n, d)),
            "psnr": rng.normal(20 + shift, 1, n), "ssim": rng.uniform(0, 1, n),
            "hole_psnr": rng.normal(15 + shift, 1, n), "hole_ssim": rng.uniform(0, 1, n),
            "missing_fraction": rng.uniform(0, 0.5, n)}


def test_identical_sets_are_marked_identical_and_left_out_of_the_family():
    rng = np.random.default_rng(2)
    a = evidence(rng)
    sets = {"a": a, "a_again": {k: v.copy() for k, v in a.items()}, "other": evidence(rng, shift=3.0)}
    settings = ev.Settings(replicates=200, confidence=0.95, seed=0, mask_buckets=(0.0, 0.5), kid_min_images=4)
    _, _, _, verdicts = ev.summarise(sets, rng.normal(0, 1, (40, 8)), settings,
                                     pairs=[("a", "a_again"), ("other", "a")])
    same = [v for v in verdicts if v["b"] == "a_again"]
    assert same and all(v["verdict"] == "identical" and v["p"] is None and v["diff"] == 0.0 for v in same)
    summary = ev.correct(verdicts, 0.05)
    assert summary["comparisons"] == len(verdicts) - len(same) and summary["identical"] == len(same)
    # the far-off set is told apart on the hole metrics even after the correction
    assert next(v for v in verdicts if v["a"] == "other" and v["metric"] == "hole_psnr")["verdict"] == "better"


def test_tied_for_best_corrects_its_comparisons_with_the_best():
    # five sets a hair apart (this draw: two of the four comparisons with the best fall
    # outside 95% on their own); corrected as one family of four, all five are tied
    rng = np.random.default_rng(22)
    base = rng.normal(15, 1, 60)
    sets = {f"s{i}": {"hole_psnr": base + rng.normal(0.0, 0.3, 60) + 0.05 * i, "hole_ssim": rng.uniform(0, 1, 60)}
            for i in range(5)}
    settings = ev.Settings(replicates=400, confidence=0.95, seed=0, mask_buckets=(0.0, 1.0), kid_min_images=4)
    point, reps, _, _ = ev.summarise(sets, np.zeros((60, 1)), settings, fid=False, kid=False)
    names = list(sets)
    uncorrected = {s for s in names if s != max(names, key=lambda s: point[s]["hole_psnr"])
                   and ev.paired(point, reps, s, max(names, key=lambda s: point[s]["hole_psnr"]), "hole_psnr",
                                 0.95)["uncorrected"] == "indistinguishable"}
    tied = ev.tied_for_best(point, reps, names, settings)["hole_psnr"]
    assert set(tied[1:]) > uncorrected  # the correction adds to the tie, and only adds
    assert sorted(tied) == names
