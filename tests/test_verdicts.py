"""Which way each metric points wherever the evaluate stage says best, tied, better or
worse (maskgit.metrics.evaluation), the mask-area bins at and outside their edges, and
the corrections of a family of verdicts, each against a value worked out by hand or
written out from the procedure's definition. The directions are the metrics' own
(higher PSNR and SSIM are better, lower FID and LPIPS), written here, not read from
the registry."""

import numpy as np
import pytest

from maskgit.metrics import evaluation as ev

N = 50


def settings(buckets=(0.0, 1.0), kid_min_images=4, replicates=300, confidence=0.95):
    return ev.Settings(replicates=replicates, confidence=confidence, seed=0, mask_buckets=buckets,
                       kid_min_images=kid_min_images)


def per_image(rng, psnr, ssim, lpips, spread=0.3):
    return {"hole_psnr": psnr + spread * rng.normal(size=N), "hole_ssim": ssim + 0.01 * rng.normal(size=N),
            "lpips": lpips + 0.01 * rng.normal(size=N)}


def three_sets():
    """top: the highest PSNR and SSIM and the lowest LPIPS; near: a hair from it; poor: clearly worse."""
    rng = np.random.default_rng(0)
    top = per_image(rng, 20.0, 0.80, 0.20)
    near = {}
    for m, (worse, scale) in {"hole_psnr": (-1, 0.1), "hole_ssim": (-1, 0.005), "lpips": (1, 0.005)}.items():
        noise = scale * rng.normal(size=N)
        # a hundredth of the noise worse on average, image by image: far inside any interval
        near[m] = top[m] + worse * 0.01 * scale + noise - noise.mean()
    poor = per_image(rng, 16.0, 0.60, 0.40)
    return {"poor": poor, "top": top, "near": near}


def test_each_metric_s_verdict_points_its_own_way():
    sets = three_sets()
    _, _, _, verdicts = ev.summarise(sets, np.zeros((N, 1)), settings(), fid=False, kid=False,
                                     pairs=[("top", "poor"), ("poor", "top")])
    got = {(v["a"], v["metric"]): v for v in verdicts}
    for metric in ("hole_psnr", "hole_ssim", "lpips"):
        assert got["top", metric]["verdict"] == "better", metric
        assert got["poor", metric]["verdict"] == "worse", metric
    # the difference is a - b whichever way the metric points
    assert got["top", "hole_psnr"]["diff"] == pytest.approx(sets["top"]["hole_psnr"].mean()
                                                            - sets["poor"]["hole_psnr"].mean())
    assert got["top", "lpips"]["diff"] < 0 and got["top", "hole_ssim"]["diff"] > 0


def test_the_best_of_a_higher_is_better_metric_is_the_highest_and_a_clearly_worse_set_is_not_tied():
    sets = three_sets()
    point, reps, _, _ = ev.summarise(sets, np.zeros((N, 1)), settings(), fid=False, kid=False)
    tied = ev.tied_for_best(point, reps, list(sets), settings())
    # hole PSNR and SSIM: the highest first; LPIPS: the lowest first; the near copy tied, the poor set not
    for metric in ("hole_psnr", "hole_ssim", "lpips"):
        assert tied[metric] == ["top", "near"], (metric, tied[metric])


def test_the_best_fid_is_the_lowest():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(N, 3))
    close = gt + 0.1 * rng.normal(size=gt.shape)
    sets = {"far": {"features": gt + 1.0 + rng.normal(size=gt.shape)}, "close": {"features": close}}
    point, reps, _, _ = ev.summarise(sets, gt, settings())
    assert ev.tied_for_best(point, reps, ["far", "close"], settings())["fid"] == ["close"]
    assert ev.decisive(point, reps, ["far", "close"], N, settings())["a"] == "close"


def test_an_image_on_an_edge_goes_to_the_bin_above_and_the_top_edge_belongs_to_the_last_bin():
    edges = (0.0, 0.25, 0.5, 1.0)
    fraction = np.array([0.0, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0, 0.4999])
    bins = ev.mask_area_bins(fraction, edges)
    assert [(lo, hi) for lo, hi, _ in bins] == [(0.0, 0.25), (0.25, 0.5), (0.5, 1.0)]
    assert [idx.tolist() for _, _, idx in bins] == [[0, 1], [2, 3, 7], [4, 5, 6]]


def test_images_outside_every_bin_are_in_none():
    fraction = np.array([0.05, 0.1, 0.3, 0.5, 0.6, 0.0])
    bins = ev.mask_area_bins(fraction, (0.1, 0.3, 0.5))
    assert [idx.tolist() for _, _, idx in bins] == [[1], [2, 3]]  # 0.05, 0.6 and 0.0 in none


def test_a_bucket_of_exactly_kid_min_images_gets_kid_and_its_cells_are_its_images_alone():
    rng = np.random.default_rng(2)
    n = 12
    gt = rng.normal(size=(n, 3))
    fraction = np.array([0.1] * 4 + [0.2] * 5 + [0.6] * 3)
    hole = np.arange(n, dtype=float)
    sets = {"a": {"features": gt + 0.2 * rng.normal(size=gt.shape), "hole_psnr": hole, "missing_fraction": fraction}}
    buckets = ev.by_mask_area(sets, gt, settings(buckets=(0.0, 0.15, 0.5, 1.0), kid_min_images=4, replicates=100))
    assert [b["images"] for b in buckets] == [4, 5, 3]
    assert [b["kid"] for b in buckets] == [True, True, False]
    assert "kid" in buckets[0]["sets"]["a"] and "kid" not in buckets[2]["sets"]["a"]
    assert [b["sets"]["a"]["hole_psnr"]["value"] for b in buckets] == pytest.approx([1.5, 6.0, 10.0])


def test_holm_at_its_thresholds_by_hand():
    # sorted p against alpha / 4, alpha / 3, alpha / 2, alpha: a p equal to its threshold is rejected
    assert ev.holm([0.0125, 0.05 / 3, 0.025, 0.05], 0.05) == [True, True, True, True]
    # the second smallest just above 0.05 / 3 stops the procedure there
    assert ev.holm([0.0125, 0.017, 0.03, 0.04], 0.05) == [True, False, False, False]
    # an untested hypothesis (nan) is not one of the family: two tests, 0.025 <= 0.05 / 2
    assert ev.holm([0.025, float("nan"), 0.05], 0.05) == [True, False, True]
    # a single test is held to alpha itself
    assert ev.holm([0.049], 0.05) == [True] and ev.holm([0.051], 0.05) == [False]


def bh_by_definition(p, alpha):
    """Benjamini and Hochberg (1995): reject the k smallest, k the largest with p_(k) <= k alpha / m."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    k = max([j + 1 for j in range(m) if p[order[j]] <= (j + 1) * alpha / m], default=0)
    reject = np.zeros(m, bool)
    reject[order[:k]] = True
    return reject.tolist()


def test_benjamini_hochberg_against_its_definition_and_at_its_line():
    assert ev.benjamini_hochberg([0.05], 0.05) == [True]  # on the line: rejected
    assert ev.benjamini_hochberg([0.026, 0.05], 0.05) == [True, True]
    assert ev.benjamini_hochberg([0.026, 0.051], 0.05) == [False, False]
    rng = np.random.default_rng(0)
    for _ in range(300):
        p = rng.uniform(0, 0.2, rng.integers(1, 15)) ** rng.uniform(1, 3)
        assert ev.benjamini_hochberg(p.tolist(), 0.05) == bh_by_definition(p, 0.05), p


def test_a_family_keeps_only_the_verdicts_its_correction_rejects():
    def family():
        return [{"p": p, "uncorrected": u, "verdict": u} for p, u in ((0.01, "better"), (0.03, "worse"),
                                                                     (0.04, "better"), (None, "indistinguishable"))]

    # Holm: 0.01 <= 0.05 / 3, then 0.03 > 0.05 / 2 stops it
    holm = family()
    summary = ev.correct(holm, 0.05, "holm")
    assert [v["verdict"] for v in holm] == ["better", "indistinguishable", "indistinguishable", "indistinguishable"]
    assert (summary["decided"], summary["decided_uncorrected"], summary["comparisons"]) == (1, 3, 4)
    # Benjamini-Hochberg: 0.04 <= 3 x 0.05 / 3 (the untested one not counted), so all three stand
    bh = family()
    ev.correct(bh, 0.05, "bh")
    assert [v["verdict"] for v in bh] == ["better", "worse", "better", "indistinguishable"]


def test_alpha_is_one_minus_the_confidence():
    assert ev.Settings(1000, 0.95, 0, (0.0, 1.0), 20).alpha == 0.05
    assert ev.Settings(1000, 0.9, 0, (0.0, 1.0), 20).alpha == 0.1
