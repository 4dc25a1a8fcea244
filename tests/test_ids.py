"""P-IDS and U-IDS: the papers' definition (an SVM's score on its own training features),
split per image, and their place among the evaluate stage's metrics."""

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from maskgit.metrics import ids
from maskgit.metrics.evaluation import Settings, summarise


def features(n, d, shift, seed):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, d))
    return real, rng.normal(size=(n, d)) + shift


def test_a_filled_set_equal_to_the_real_one_scores_one_half_on_both():
    real, _ = features(300, 8, 0.0, 0)
    got = ids.per_image(real, real.copy())
    assert got["u_ids"].mean() == 0.5
    assert got["p_ids"].mean() == 0.5  # every pair tied: one half each


def test_sets_a_linear_svm_separates_score_zero():
    real, filled = features(200, 4, 10.0, 1)
    got = ids.per_image(real, filled)
    assert got["u_ids"].mean() == 0.0
    assert got["p_ids"].mean() == 0.0


def test_the_means_are_the_papers_error_rate_and_paired_share():
    """U-IDS = 1 - the SVM's accuracy on both sets; P-IDS = the share of images whose
    filled features score above their own real ones (Zhao et al., 2021)."""
    real, filled = features(400, 16, 0.15, 2)
    svm = LinearSVC(dual=False).fit(np.concatenate([real, filled]), np.r_[np.ones(400), np.zeros(400)])
    u_ids = 1 - svm.score(np.concatenate([real, filled]), np.r_[np.ones(400), np.zeros(400)])
    p_ids = np.mean(svm.decision_function(filled) > svm.decision_function(real))
    got = ids.per_image(real, filled)
    assert got["u_ids"].mean() == pytest.approx(u_ids, abs=1e-12)
    assert got["p_ids"].mean() == pytest.approx(p_ids, abs=1e-12)
    assert 0.0 < p_ids < 0.5 and 0.0 < u_ids < 0.5  # a small shift: partly told apart


def test_two_sets_from_one_distribution_score_near_one_half_with_many_images_per_dimension():
    real, filled = features(2000, 16, 0.0, 3)
    got = ids.per_image(real, filled)
    assert 0.42 < got["u_ids"].mean() <= 0.5
    assert 0.40 < got["p_ids"].mean() <= 0.6


def test_summarise_gives_intervals_and_paired_verdicts_only_from_ids_min_images_on():
    rng = np.random.default_rng(4)
    gt = rng.normal(size=(300, 6))
    sets = {"close": {"features": gt + 0.2 * rng.normal(size=gt.shape)},
            "far": {"features": gt + 0.3 + rng.normal(size=gt.shape)}}
    settings = Settings(replicates=200, confidence=0.95, seed=0, mask_buckets=(0.0, 1.0), kid_min_images=4,
                        ids_min_images=300)
    point, _, table, verdicts = summarise(sets, gt, settings, pairs=[("far", "close")])
    for name in sets:
        for m in ("u_ids", "p_ids"):
            lo, hi = table[name][m]["interval"]
            assert lo <= point[name][m] <= hi and lo < hi
    assert point["close"]["p_ids"] > point["far"]["p_ids"]
    p_ids = next(v for v in verdicts if v["metric"] == "p_ids")
    assert p_ids["verdict"] == "worse"  # higher is better: the far set loses
    fewer = Settings(**{**settings.__dict__, "ids_min_images": 301})
    _, _, table, verdicts = summarise(sets, gt, fewer, pairs=[("far", "close")])
    assert "u_ids" not in table["close"] and not any(v["metric"] == "p_ids" for v in verdicts)


def test_p_ids_and_u_ids_are_never_fitted_per_mask_area_bucket():
    # a linear SVM fitted on a bucket's few images would separate them by chance: the
    # buckets carry the per-image metrics and KID, never P-IDS or U-IDS
    from maskgit.metrics.evaluation import by_mask_area

    rng = np.random.default_rng(6)
    n = 300
    gt = rng.normal(size=(n, 6))
    sets = {name: {"features": gt + shift + rng.normal(size=gt.shape), "hole_psnr": rng.normal(15, 1, n),
                   "missing_fraction": np.r_[np.full(150, 0.1), np.full(150, 0.7)]}
            for name, shift in (("a", 0.0), ("b", 0.3))}
    settings = Settings(replicates=100, confidence=0.95, seed=0, mask_buckets=(0.0, 0.5, 1.0), kid_min_images=4,
                        ids_min_images=100)  # every bucket holds enough images for IDS, were it fitted there
    _, _, table, _ = summarise(sets, gt, settings)
    assert "p_ids" in table["a"] and "u_ids" in table["a"]  # the whole set gets them
    buckets = by_mask_area(sets, gt, settings, pairs=[("b", "a")])
    assert [b["images"] for b in buckets] == [150, 150]
    for b in buckets:
        assert "kid" in b["sets"]["a"] and not {"p_ids", "u_ids"} & set(b["sets"]["a"])
        assert not any(v["metric"] in ("p_ids", "u_ids") for v in b["pairs"])
