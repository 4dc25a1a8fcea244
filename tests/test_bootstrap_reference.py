"""Intervals pinned to a bootstrap written out again here: the resampling drawn with numpy
by the convention maskgit.metrics.bootstrap documents (one numpy Generator seeded with
evaluate.seed; replicate after replicate, n image indices drawn with replacement by
`integers(0, n, n)`, the same draw for every set), its percentile interval by the
linear interpolation of order statistics, FID of the resampled rows by torch-fidelity
(maskgit.metrics.fid, itself pinned to closed forms), and the "images for a 1-wide
interval" formula by hand."""

import math

import numpy as np
import pytest

from maskgit.metrics import bootstrap as bs
from maskgit.metrics import evaluation as ev


def draws(n, replicates, seed):
    """The image indices of every replicate, as the bootstrap documents its draw."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(replicates)]


def percentile(values, q):
    """The q-quantile of `values` by linear interpolation between order statistics (Hyndman and Fan's type 7)."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    i = math.floor(pos)
    j = min(i + 1, len(s) - 1)
    return s[i] + (s[j] - s[i]) * (pos - i)


def percentile_interval(values, confidence):
    a = (1 - confidence) / 2
    return percentile(values, a), percentile(values, 1 - a)


def settings(replicates, seed=0, confidence=0.95, buckets=(0.0, 1.0)):
    return ev.Settings(replicates=replicates, confidence=confidence, seed=seed, mask_buckets=buckets,
                       kid_min_images=4)


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_a_per_image_mean_gets_the_percentile_interval_of_its_hand_drawn_resamples(confidence):
    # 300 replicates: more than one block of the bootstrap, so the draw must carry on across blocks
    values = np.array([12.0, 15.5, 9.25, 20.0, 17.0, 11.0, 14.5])
    expected = percentile_interval([values[idx].mean() for idx in draws(len(values), 300, seed=7)], confidence)
    point, _, table, _ = ev.summarise({"a": {"hole_psnr": values}}, np.zeros((len(values), 1)),
                                      settings(300, seed=7, confidence=confidence), fid=False, kid=False)
    cell = table["a"]["hole_psnr"]
    assert point["a"]["hole_psnr"] == pytest.approx(values.mean(), rel=1e-12)
    assert cell["interval"] == pytest.approx(list(expected), rel=1e-12)
    assert (cell["low"], cell["high"]) == tuple(cell["interval"])
    # a mean of per-image values is left where its replicates put it, not centred on the point
    assert (cell["low"] + cell["high"]) / 2 != pytest.approx(values.mean(), rel=1e-9)


def test_a_paired_difference_gets_the_interval_and_p_value_of_the_same_hand_drawn_images():
    rng = np.random.default_rng(3)
    a = rng.normal(20, 2, 9)
    b = a - 0.4 + rng.normal(0, 0.5, 9)  # a little worse than a, image by image
    diffs = [a[idx].mean() - b[idx].mean() for idx in draws(9, 250, seed=11)]
    lo, hi = percentile_interval(diffs, 0.9)
    p = min(1.0, 2 * min(np.mean(np.array(diffs) <= 0), np.mean(np.array(diffs) >= 0)))
    _, _, _, verdicts = ev.summarise({"a": {"hole_psnr": a}, "b": {"hole_psnr": b}}, np.zeros((9, 1)),
                                     settings(250, seed=11, confidence=0.9), fid=False, kid=False,
                                     pairs=[("a", "b")])
    v = next(v for v in verdicts if v["metric"] == "hole_psnr")
    assert (v["a"], v["b"]) == ("a", "b")
    assert v["diff"] == pytest.approx(a.mean() - b.mean(), rel=1e-12)
    assert v["interval"] == pytest.approx([lo, hi], rel=1e-12)
    assert v["p"] == pytest.approx(p, abs=1e-12) and 0 < p < 1
    # higher hole PSNR is better: a's verdict follows the interval's side of 0
    expected = "better" if lo > 0 else "worse" if hi < 0 else "indistinguishable"
    assert v["uncorrected"] == expected


def test_the_images_for_a_1_wide_fid_interval_are_n_times_the_squared_width():
    rng = np.random.default_rng(8)
    point = {"x": {"fid": 50.0}, "y": {"fid": 40.0}, "z": {"fid": 45.0}}
    reps = {s: {"fid": rng.normal(point[s]["fid"], sd, 400)} for s, sd in (("x", 1.0), ("y", 2.0), ("z", 3.0))}
    got = ev.decisive(point, reps, ["x", "y", "z"], 37, settings(400))
    # the best (lowest FID) against the runner-up
    assert (got["a"], got["b"]) == ("y", "z")
    samples = reps["y"]["fid"] - reps["z"]["fid"]
    lo, hi = percentile_interval(samples, 0.95)
    assert got["width"] == pytest.approx(hi - lo, rel=1e-9)
    # the width shrinks as 1/sqrt(n): 1 FID wide at n (width / 1)^2 images, rounded up
    assert got["images_for_1_fid"] == math.ceil(37 * (hi - lo) ** 2)
    assert got["images_for_1_fid"] > 37


def test_images_for_width_by_hand_and_at_its_degenerate_spread():
    samples = np.arange(401) / 100  # 0, 0.01, ..., 4: its 2.5% and 97.5% points are 0.1 and 3.9
    assert bs.images_for_width(samples, 37, 1.0, 0.95) == math.ceil(37 * 3.8**2)  # 534.28 -> 535
    assert bs.images_for_width(samples, 37, 2.0, 0.95) == math.ceil(37 * 1.9**2)  # 133.57 -> 134
    assert bs.images_for_width(np.full(50, 3.0), 37, 1.0, 0.95) == 37  # no spread: nothing to say


def test_a_verdict_needs_an_interval_that_excludes_zero_on_the_metric_s_better_side():
    # lower is better (FID, KID, LPIPS)
    assert bs.verdict(-2.0, -0.5) == "better" and bs.verdict(0.5, 2.0) == "worse"
    # higher is better (PSNR, SSIM, IDS): the same intervals read the other way
    assert bs.verdict(-2.0, -0.5, lower_is_better=False) == "worse"
    assert bs.verdict(0.5, 2.0, lower_is_better=False) == "better"
    # an interval that reaches 0 does not exclude it
    for lo, hi in ((-1.0, 0.0), (0.0, 1.0), (0.0, 0.0)):
        assert bs.verdict(lo, hi) == bs.verdict(lo, hi, lower_is_better=False) == "indistinguishable"
    assert bs.verdict(float("nan"), 1.0) == "indistinguishable"


def test_the_p_value_is_twice_the_share_on_the_far_side_of_zero():
    assert ev.p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == 0.5  # 1 of 4 at or below 0
    assert ev.p_value(np.array([-1.0, 0.0, 2.0, 3.0, 4.0])) == pytest.approx(0.8)  # 0 counts on both sides
    assert ev.p_value(np.array([1.0, 2.0])) == 0.0
    assert ev.p_value(np.array([-3.0, 1.0, -2.0, -1.0])) == 0.5
    # centred on a point: the replicates are moved so their mean is the point
    assert ev.p_value(np.array([0.0, 1.0, 2.0, 3.0]), point=0.5) == 1.0  # -1, 0, 1, 2


# the two below load torch (torch-fidelity, torchmetrics): last, so that a mutant the tests above
# kill is killed before it is loaded


def test_fid_gets_the_percentile_interval_of_resampled_rows_centred_on_the_full_set_value():
    from maskgit.metrics.fid import fid_from_features  # torch-fidelity: loaded by the tests that need it

    rng = np.random.default_rng(5)
    gt = rng.normal(size=(12, 3))
    f = gt + 0.5 * rng.normal(size=(12, 3)) + 0.3
    point = fid_from_features(f, gt)
    reps = np.array([fid_from_features(f[idx], gt[idx]) for idx in draws(12, 150, seed=2)])
    # resampling repeats images, which alone raises FID: the replicates are moved to centre on the full-set value
    expected = percentile_interval(reps - reps.mean() + point, 0.95)
    values, _, table, _ = ev.summarise({"a": {"features": f}}, gt, settings(150, seed=2))
    assert values["a"]["fid"] == pytest.approx(point, abs=1e-6)
    assert table["a"]["fid"]["interval"] == pytest.approx(list(expected), abs=1e-6)
    assert not reps.mean() == pytest.approx(point, rel=1e-3)  # the centring is not a no-op on this set


def test_a_perfect_hole_has_infinite_psnr_and_the_mean_and_interval_leave_it_out():
    from maskgit.metrics.registry import per_image_metrics

    gt = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)).astype(np.uint8)
    images = gt.copy()
    known = np.ones((4, 8, 8), bool)
    known[:3, 2:6, 2:6] = False  # images 0-2 have a 16-pixel hole, image 3 none
    images[1, 2:6, 2:6] = np.clip(gt[1, 2:6, 2:6].astype(int) + 20, 0, 255)  # the hole off by ~20
    images[2, 3, 3, 0] = gt[2, 3, 3, 0] ^ 1  # one value (of 48) off by 1 in the hole
    hole = per_image_metrics(images, gt, known)["hole_psnr"]
    assert hole[0] == math.inf  # reproduced exactly: no finite cap
    assert np.isnan(hole[3])
    diff1 = (images[1, 2:6, 2:6].astype(float) - gt[1, 2:6, 2:6]) ** 2
    assert hole[1] == pytest.approx(10 * np.log10(255**2 / diff1.mean()))
    assert hole[2] == pytest.approx(10 * np.log10(255**2 / (1 / 48)))
    # the mean over images with a finite value; each replicate the mean over its finite draws
    means = []
    for idx in draws(4, 200, seed=4):
        finite = [hole[i] for i in idx if i in (1, 2)]
        if finite:
            means.append(np.mean(finite))
    point, _, table, _ = ev.summarise({"a": {"hole_psnr": hole}}, np.zeros((4, 1)), settings(200, seed=4),
                                      fid=False, kid=False)
    assert point["a"]["hole_psnr"] == pytest.approx((hole[1] + hole[2]) / 2)
    assert table["a"]["hole_psnr"]["interval"] == pytest.approx(list(percentile_interval(means, 0.95)), rel=1e-12)
