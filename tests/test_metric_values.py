"""FID and KID against values derived here, independently of torch-fidelity's code:
the closed-form Frechet distance of two Gaussians, and the unbiased MMD of KID's
polynomial kernel written out as the double sums of its definition."""

import itertools

import numpy as np
import pytest

from maskgit.metrics import fid


def frechet_by_hand(mu1, s1, mu2, s2):
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), square roots of
    symmetric matrices by their eigendecomposition."""
    def sqrt_sym(a):
        w, v = np.linalg.eigh(a)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r = sqrt_sym(s1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * sqrt_sym(r @ s2 @ r)))


def test_fid_of_two_gaussians_with_diagonal_covariances_is_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    # |dmu|^2 = 1 + 0 + 4; commuting covariances: sum (sqrt v1 - sqrt v2)^2 = 1 + 1 + 0
    value = fid.fid_from_statistics({"mu": mu1, "sigma": np.diag(var1)}, {"mu": mu2, "sigma": np.diag(var2)})
    assert value == pytest.approx(7.0, abs=1e-6)


def test_fid_of_two_gaussians_with_rotated_covariances_is_the_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)  # do not commute
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    expected = frechet_by_hand(mu1, s1, mu2, s2)
    assert fid.fid_from_statistics({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}) == pytest.approx(expected,
                                                                                                       rel=1e-6)
    # a 2-D case small enough to check the hand formula itself: S1 = I, S2 = diag(4, 9)
    assert frechet_by_hand(np.zeros(2), np.eye(2), np.ones(2), np.diag([4.0, 9.0])) == pytest.approx(2 + 1 + 4)


def test_fid_from_features_uses_their_mean_and_unbiased_covariance():
    rng = np.random.default_rng(1)
    f1 = rng.multivariate_normal([0, 0, 0], [[2, 0.5, 0], [0.5, 1, 0.2], [0, 0.2, 0.5]], size=30)
    f2 = rng.multivariate_normal([1, -1, 0], np.eye(3), size=25)

    def stats(f):
        centred = f - f.sum(0) / len(f)
        return f.sum(0) / len(f), centred.T @ centred / (len(f) - 1)

    expected = frechet_by_hand(*stats(f1), *stats(f2))
    assert fid.fid_from_features(f1, f2) == pytest.approx(expected, rel=1e-6)
    mu, sigma = stats(f1)
    got = fid.statistics(f1)
    np.testing.assert_allclose(got["mu"], mu, rtol=1e-12)
    np.testing.assert_allclose(got["sigma"], sigma, rtol=1e-12)


def test_fid_from_many_samples_approaches_the_population_value():
    rng = np.random.default_rng(2)
    s1, s2 = np.diag([1.0, 4.0]), np.array([[2.0, 0.8], [0.8, 1.0]])
    mu1, mu2 = np.array([0.0, 0.0]), np.array([0.5, -0.5])
    population = frechet_by_hand(mu1, s1, mu2, s2)
    f1, f2 = rng.multivariate_normal(mu1, s1, 20000), rng.multivariate_normal(mu2, s2, 20000)
    # the sampling error of this estimate is about 0.02 at 20,000 samples
    assert fid.fid_from_features(f1, f2) == pytest.approx(population, abs=0.08)


def poly_kernel(x, y):
    """KID's kernel: (x . y / d + 1)^3."""
    return (np.dot(x, y) / len(x) + 1) ** 3


def mmd_by_hand(x, y):
    """Unbiased MMD^2: mean k over pairs i != j within each set, minus twice the mean over all cross pairs."""
    m = len(x)
    within = sum(poly_kernel(x[i], x[j]) + poly_kernel(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    across = sum(poly_kernel(a, b) for a in x for b in y)
    return within / (m * (m - 1)) - 2 * across / m**2


X = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, -1.0], [0.5, 0.5], [-1.0, 2.0]])
Y = np.array([[1.0, 1.0], [2.0, 2.0], [0.0, -1.0], [1.5, 0.0], [3.0, 1.0]])


def test_kid_on_the_whole_set_is_the_unbiased_mmd_by_hand():
    # a subset as large as the set is the set (in some order), for every subset: the spread is 0
    mean, std = fid.kid_from_features(X, Y, subset_size=5, subsets=3)
    assert mean == pytest.approx(mmd_by_hand(X, Y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)
    # a set against itself: the unbiased estimate is below zero, not zero
    assert fid.kid_from_features(X, X, subset_size=5, subsets=1)[0] == pytest.approx(mmd_by_hand(X, X), rel=1e-10)
    assert mmd_by_hand(X, X) < 0


def test_kid_mean_and_spread_over_subsets_by_hand():
    # subsets drawn as torch-fidelity documents: a RandomState(seed), per subset a choice
    # without replacement from set 1 then from set 2; mean and (population) std of the MMDs
    rng = np.random.RandomState(fid.KID_SEED)
    mmds = []
    for _ in range(4):
        mmds.append(mmd_by_hand(X[rng.choice(5, 3, replace=False)], Y[rng.choice(5, 3, replace=False)]))
    mean, std = fid.kid_from_features(X, Y, subset_size=3, subsets=4)
    assert mean == pytest.approx(np.mean(mmds), rel=1e-10)
    assert std == pytest.approx(np.std(mmds), rel=1e-10) and std > 0


def test_kid_subset_size_defaults_to_half_the_smaller_set():
    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=(40, 2)), rng.normal(0.3, 1.0, size=(44, 2))
    default = fid.kid_from_features(f1, f2, subsets=5)
    assert default == fid.kid_from_features(f1, f2, subset_size=20, subsets=5)
    assert default != fid.kid_from_features(f1, f2, subset_size=21, subsets=5)
    assert default != fid.kid_from_features(f1, f2, subset_size=40, subsets=5)
    assert default[1] > 0  # half-size subsets differ from one another


def test_kid_subset_size_is_capped_at_1000():
    rng = np.random.default_rng(4)
    f1, f2 = rng.normal(size=(2004, 2)), rng.normal(0.1, 1.0, size=(2010, 2))
    default = fid.kid_from_features(f1, f2, subsets=2)
    assert default == fid.kid_from_features(f1, f2, subset_size=1000, subsets=2)
    assert default != fid.kid_from_features(f1, f2, subset_size=1002, subsets=2)


def test_kid_subset_count_is_the_number_of_mmds_averaged():
    rng = np.random.default_rng(5)
    f1, f2 = rng.normal(size=(12, 2)), rng.normal(0.5, 1.0, size=(12, 2))
    default = fid.kid_from_features(f1, f2)
    assert default == fid.kid_from_features(f1, f2, subsets=100)
    assert default != fid.kid_from_features(f1, f2, subsets=99)
    assert fid.kid_from_features(f1, f2, subsets=1)[1] == 0.0  # one subset: no spread


def test_kid_needs_subsets_of_two():
    with pytest.raises(ValueError, match="at least 2"):
        fid.kid_from_features(X[:3], Y[:3])  # half of 3 is 1
    assert np.isfinite(fid.kid_from_features(X[:4], Y[:4])[0])  # half of 4 is 2: the smallest that works


def test_fid_statistics_need_two_vectors():
    # one vector has no covariance: refused with a message, not a NaN FID later
    with pytest.raises(ValueError, match="at least 2"):
        fid.statistics(X[:1])
    assert fid.statistics(X[:2])["sigma"].shape == (2, 2)
