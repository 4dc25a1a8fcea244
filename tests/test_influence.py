"""The first-order (influence-function) route of the intervals, against quantities
computed here another way: finite differences of FID and KID written out with
weights, torch-fidelity's FID, and the exact bootstrap."""

import numpy as np
import pytest

from maskgit.metrics import bootstrap as bs
from maskgit.metrics import influence
from maskgit.metrics.fid import fid_from_features


def weighted_fid(x, y, w):
    """FID of the image weights w (sum 1), covariances normalised by the weights,
    tr sqrt(Sx Sy) as the nuclear norm of the weighted centred cross product."""
    mx, my = w @ x, w @ y
    a, b = (x - mx) * np.sqrt(w)[:, None], (y - my) * np.sqrt(w)[:, None]
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    return float((mx - my) @ (mx - my) + (a * a).sum() + (b * b).sum() - 2 * nuclear)


def weighted_kid(x, y, w):
    """bootstrap.py's KID with weights w (sum 1): within each set over distinct pairs,
    across the sets over all pairs, kernel (x.y / d + 1)^3."""
    d = x.shape[1]
    kxx, kyy, kxy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))

    def within(k):
        return (w @ k @ w - (w * w) @ np.diag(k)) / (1 - w @ w)

    return float(within(kxx) + within(kyy) - 2 * w @ kxy @ w)


def pair(n, d, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, d))
    return y + 0.7 * rng.normal(size=(n, d)) + 0.3, y


def finite_difference(stat, x, y, eps=1e-5):
    """d/de stat((1 - e) w0 + e e_i) at e = 0 for every image i, central."""
    n = len(x)
    w0 = np.full(n, 1 / n)
    out = np.empty(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1
        out[i] = (stat(x, y, (1 - eps) * w0 + eps * e) - stat(x, y, (1 + eps) * w0 - eps * e)) / (2 * eps)
    return out


@pytest.mark.parametrize("n,d", [(40, 6), (15, 30)])  # more images than dimensions, and fewer
def test_fid_influence_is_the_derivative_of_weighted_fid(n, d):
    x, y = pair(n, d)
    _, got = influence.fid(x, y)
    want = finite_difference(weighted_fid, x, y)
    np.testing.assert_allclose(got, want - want.mean(), atol=1e-5 * np.abs(want).max())


def test_kid_influence_is_the_derivative_of_weighted_kid():
    x, y = pair(30, 5)
    _, got = influence.kid(x, y)
    want = finite_difference(weighted_kid, x, y)
    np.testing.assert_allclose(got, want - want.mean(), atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("n,d", [(60, 8), (20, 50)])
def test_point_values_match_the_exact_route_and_torch_fidelity(n, d):
    x, y = pair(n, d, seed=1)
    fid_value, _ = influence.fid(x, y)
    kid_value, _ = influence.kid(x, y)
    exact = bs.point_values({"a": x}, y, {})["a"]
    assert fid_value == pytest.approx(fid_from_features(x, y), rel=1e-6)
    assert fid_value == pytest.approx(exact["fid"], rel=1e-6)
    assert kid_value == pytest.approx(exact["kid"], rel=1e-10)


def test_kernel_sums_in_blocks_equal_the_whole_matrix(monkeypatch):
    x, y = pair(23, 4, seed=2)
    monkeypatch.setattr(influence, "BLOCK_ROWS", 5)  # five blocks, the last one short
    rows, cols, diag = influence.kernel_sums(x, y)
    k = (x @ y.T / 4 + 1) ** 3
    np.testing.assert_allclose(rows, k.sum(1))
    np.testing.assert_allclose(cols, k.sum(0))
    np.testing.assert_allclose(diag, np.diag(k))


def test_resample_takes_the_exact_route_up_to_the_threshold_and_the_linear_one_above():
    x, y = pair(50, 6, seed=3)
    metric = {"a": {"hole_psnr": np.random.default_rng(4).normal(20, 2, 50)}}
    exact_point, exact = bs.resample({"a": x}, y, metric, 200, seed=5, exact_up_to=50)
    np.testing.assert_array_equal(exact["a"]["fid"], bs.bootstrap({"a": x}, y, metric, 200, seed=5)["a"]["fid"])
    lin_point, lin = bs.resample({"a": x}, y, metric, 200, seed=5, exact_up_to=49)
    fid_value, fid_if = influence.fid(x, y)
    assert lin_point["a"]["fid"] == fid_value
    # the same counts drive both routes: per-image means identical, FID first order of them
    np.testing.assert_array_equal(lin["a"]["hole_psnr"], exact["a"]["hole_psnr"])
    counts = np.concatenate([c for _, c in bs.replicate_blocks(50, 200, 5)])
    np.testing.assert_allclose(lin["a"]["fid"], fid_value + counts @ fid_if / 50)
    assert not np.allclose(lin["a"]["fid"], exact["a"]["fid"])
    assert lin_point["a"]["hole_psnr"] == exact_point["a"]["hole_psnr"]


def test_linear_intervals_agree_with_the_exact_bootstrap_when_images_outnumber_dimensions():
    """Where n >> d FID is close to linear in the resampling weights: the two routes'
    interval widths, for one set and for a paired difference, agree within the
    replicates' own noise (about 7% at 500 replicates)."""
    rng = np.random.default_rng(6)
    y = rng.normal(size=(200, 4))
    sets = {"a": y + 0.5 * rng.normal(size=y.shape) + 0.2, "b": y + 0.6 * rng.normal(size=y.shape)}
    pe, exact = bs.resample(sets, y, {}, 500, seed=7)
    pl, lin = bs.resample(sets, y, {}, 500, seed=7, exact_up_to=0)

    def width(reps, point):
        lo, hi = bs.interval(reps, 0.95, point)
        return hi - lo

    # the exact route's n x n eigenproblem rounds n - d zero singular values to ~1e-8 each
    assert pl["a"]["fid"] == pytest.approx(fid_from_features(sets["a"], y), rel=1e-8)
    assert pl["a"]["kid"] == pytest.approx(pe["a"]["kid"], rel=1e-10)
    for stat in ("fid", "kid"):
        ratio = width(lin["a"][stat], pl["a"][stat]) / width(exact["a"][stat], pe["a"][stat])
        assert 0.85 < ratio < 1.15, (stat, ratio)
        diff_ratio = (width(lin["a"][stat] - lin["b"][stat], 0.0)
                      / width(exact["a"][stat] - exact["b"][stat], 0.0))
        assert 0.85 < diff_ratio < 1.15, (stat, diff_ratio)
