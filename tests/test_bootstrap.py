"""Bootstrap intervals, paired verdicts and per-image hole metrics (maskgit.metrics.bootstrap,
maskgit.metrics.image), and the evaluate stage on fake evidence."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import yaml

from conftest import load_stage, every_metric
from maskgit.metrics import bootstrap as bs
from maskgit.metrics.evaluation import Settings, tied_for_best
from maskgit.metrics.fid import fid_from_features
from maskgit.metrics.registry import per_image_metrics
from maskgit.metrics.image import missing_fraction
from maskgit.project.errors import ParamError
from maskgit.project.evidence import write_evidence
from maskgit.project.params import check_params
from maskgit.project.grid import MAIN

REPO = Path(__file__).resolve().parents[1]


def features(seed, n=40, d=128, shift=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d) + shift


def test_the_n_by_n_identity_equals_scipy_sqrtm():
    f1, f2 = features(1), features(2, shift=0.3)
    n = len(f1)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    direct = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    # the product's nuclear-norm term over the full set (every image once), read off
    # the Gram matrix as fid_weighted reads it
    grams = bs.pair_grams(f1, f2)
    m1, m2 = f1.mean(0), f2.mean(0)
    nuclear = bs._nuclear(grams.g12, np.arange(n), np.ones(n), f1 @ m2, f2 @ m1, float(m1 @ m2))
    assert nuclear / (n - 1) == pytest.approx(direct, rel=1e-6)
    # and the whole FID the stages report equals torch-fidelity's d x d formula
    assert bs.point_values({"a": f1}, f2, {})["a"]["fid"] == pytest.approx(fid_from_features(f1, f2), rel=1e-6)


def test_a_replicate_equals_the_statistics_of_the_resampled_rows():
    f1, f2 = features(3), features(4, shift=0.1)
    idx = np.random.default_rng(0).integers(0, len(f1), len(f1))
    counts = np.bincount(idx, minlength=len(f1))
    u = np.flatnonzero(counts)
    grams = bs.pair_grams(f1, f2)
    assert bs.fid_weighted(grams, u, counts[u].astype(float)) == pytest.approx(
        fid_from_features(f1[idx], f2[idx]), rel=1e-6)

    def kid(x, y, same):  # unbiased MMD^2, polynomial kernel, within a set over pairs of distinct images
        k = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3  # noqa: E731
        return k(x, x)[~same].mean() + k(y, y)[~same].mean() - 2 * k(x, y).mean()

    same = idx[:, None] == idx[None, :]
    assert bs.kid_weighted(grams, u, counts[u].astype(float)) == pytest.approx(kid(f1[idx], f2[idx], same), rel=1e-9)
    n = len(f1)
    assert bs.kid_weighted(grams, np.arange(n), np.ones(n)) == pytest.approx(kid(f1, f2, np.eye(n, dtype=bool)))


def test_a_set_against_itself_is_zero_and_the_same_seed_gives_the_same_interval():
    gt, a = features(5), features(6, shift=0.2)
    per_image = {"a": {"hole_psnr": np.linspace(20, 30, len(gt))}}
    reps = bs.bootstrap({"a": a, "b": a.copy()}, gt, per_image, 100, seed=7)
    point = bs.point_values({"a": a}, gt, {})["a"]["fid"]
    assert bs.interval(reps["a"]["fid"] - reps["b"]["fid"], 0.95, 0.0) == (0.0, 0.0)
    again = bs.bootstrap({"a": a}, gt, per_image, 100, seed=7)
    assert np.array_equal(reps["a"]["fid"], again["a"]["fid"])
    assert np.array_equal(reps["a"]["hole_psnr"], again["a"]["hole_psnr"])
    other = bs.bootstrap({"a": a}, gt, {}, 100, seed=8)
    assert not np.array_equal(reps["a"]["fid"], other["a"]["fid"])
    lo, hi = bs.interval(reps["a"]["fid"], 0.95, point)
    assert lo < point < hi  # centred on the full-set value


def test_a_clearly_worse_set_is_worse_and_a_copy_is_indistinguishable():
    gt = features(9, n=60)
    rng = np.random.default_rng(0)
    close = gt + 0.1 * rng.normal(size=gt.shape)
    far = gt + 1.5 * rng.normal(size=gt.shape)
    feats = {"close": close, "far": far, "close2": close + 1e-3 * rng.normal(size=gt.shape)}
    reps = bs.bootstrap(feats, gt, {}, 200, seed=0)
    point = bs.point_values(feats, gt, {})
    for m in ("fid", "kid"):
        diff = point["far"][m] - point["close"][m]
        lo, hi = bs.interval(reps["far"][m] - reps["close"][m], 0.95, diff)
        assert lo > 0 and bs.verdict(lo, hi) == "worse", m
        assert bs.verdict(-hi, -lo) == "better"
    settings = Settings(replicates=200, confidence=0.95, seed=0, mask_buckets=(0.0, 1.0), kid_min_images=4)
    tied = tied_for_best(point, reps, list(feats), settings)
    assert set(tied["fid"]) == set(tied["kid"]) == {"close", "close2"}
    assert bs.verdict(-1.0, 2.0) == "indistinguishable"
    assert bs.verdict(1.0, 2.0, lower_is_better=False) == "better"


def test_hole_psnr_of_a_toy_image_is_the_hand_computation():
    gt = np.zeros((2, 8, 8, 3), np.uint8)
    image = gt.copy()
    known = np.ones((2, 8, 8), bool)
    known[0, :2, :4] = False  # 8 hole pixels
    image[0, 0, :4] = 10      # 4 of them off by 10 in every channel; the known pixels are exact
    image[0, 5, 5] = 200      # a known pixel: counts in the whole-image PSNR only
    out = per_image_metrics(image, gt, known)
    mse = (4 * 3 * 10**2) / (8 * 3)
    assert out["hole_psnr"][0] == pytest.approx(10 * np.log10(255**2 / mse))
    assert out["psnr"][0] < out["hole_psnr"][0]
    assert np.isnan(out["hole_psnr"][1]) and np.isnan(out["hole_ssim"][1])  # no hole
    assert out["hole_ssim"][0] < 1
    assert missing_fraction(known).tolist() == [8 / 64, 0.0]


@pytest.mark.parametrize("key,value,match", [
    ("mask_buckets", [0.0, 0.3, 0.2, 1.0], "evaluate.mask_buckets must be strictly increasing"),
    ("mask_buckets", [0.0, 1.5], "evaluate.mask_buckets item 1"),
    ("confidence", 1.0, "evaluate.confidence must be in"),
    ("confidence", 0.0, "evaluate.confidence must be >"),
    ("replicates", 99, "evaluate.replicates must be an integer >= 100"),
])
def test_bad_evaluate_params_are_one_line(key, value, match):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["evaluate"][key] = value
    with pytest.raises(ParamError, match=match):
        check_params(params)


def test_evaluate_stage_on_fake_evidence(tmp_path, monkeypatch):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["inpaint"].update(schedules=["cosine", "linear"], orders=["confidence", "halton"])
    params["evaluate"].update(replicates=100, kid_min_images=10)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    n, rng = 40, np.random.default_rng(1)
    gt = features(11, n=n)
    (tmp_path / "outputs/fid").mkdir(parents=True)
    np.save(tmp_path / "outputs/fid/gt_features.npy", gt)
    fraction = np.linspace(0.05, 0.6, n)
    noise = {"cosine": 0.2, "linear": 0.2, "cosine-halton": 0.05, "linear-halton": 0.2, "onestep": 0.3,
             "harmonic": 0.6, "masked_input": 2.0, "recon": 0.05}
    for name, sigma in noise.items():
        write_evidence(tmp_path / MAIN.evidence(name), **every_metric(dict(
            names=np.array([f"{i}.png" for i in range(n)]), features=gt + sigma * rng.normal(size=gt.shape),
            missing_fraction=fraction, psnr=30 - 5 * sigma + rng.normal(size=n), ssim=np.full(n, 0.9 - sigma / 4),
            hole_psnr=25 - 5 * sigma + rng.normal(size=n), hole_ssim=0.8 - sigma / 4 + 0.01 * rng.normal(size=n))))
    monkeypatch.chdir(tmp_path)
    load_stage("evaluate").main()
    ev = json.loads((tmp_path / "metrics/evaluation.json").read_text())
    assert ev["images"] == n and list(ev["sets"]) == ["cosine", "linear", "cosine-halton", "linear-halton",
                                                      "masked_input", "onestep", "recon", "harmonic"]
    pairs = {(p["a"], p["b"], p["metric"]): p for p in ev["pairs"]}
    # the decoders along the grid's axes, never across both: no cosine against linear Halton
    assert ("cosine", "linear-halton", "fid") not in pairs and ("linear", "cosine-halton", "fid") not in pairs
    assert pairs[("cosine", "cosine-halton", "fid")]["verdict"] == "worse"  # the less noisy fill wins
    assert pairs[("linear", "linear-halton", "fid")]["verdict"] == "indistinguishable"
    assert pairs[("masked_input", "recon", "fid")]["verdict"] == "worse"
    assert pairs[("masked_input", "recon", "fid")]["interval"][0] > 0
    assert pairs[("cosine", "masked_input", "hole_psnr")]["verdict"] == "better"
    assert ev["tied_for_best"]["fid"] == ["cosine-halton"]
    buckets = ev["mask_buckets"]
    assert [b["images"] for b in buckets] == [int(((fraction >= lo) & (fraction < hi)).sum())
                                              for lo, hi in zip([0, .1, .2, .3, .4], [.1, .2, .3, .4, 1.01])]
    assert buckets[-1]["kid"] and "kid" in buckets[-1]["sets"]["cosine"]
    assert not buckets[0]["kid"] and "kid" not in buckets[0]["sets"]["cosine"]
    assert (tmp_path / "reports/evaluation/mask_area.png").is_file()


def test_a_block_of_replicates_equals_each_replicate_alone():
    # the block form (matrix products over all replicates, eigenproblems on threads)
    # against the one-replicate formulas, which the tests above tie to resampled rows
    gt = features(21, n=50)
    sets = {"a": features(22, n=50, shift=0.2), "b": features(23, n=50)}
    values = np.linspace(10, 20, 50)
    values[[3, 7]] = [np.inf, np.nan]  # a perfect hole and an image without one are left out
    reps = bs.bootstrap(sets, gt, {"a": {"hole_psnr": values}}, 150, seed=3, workers=2)
    grams = {name: bs.pair_grams(f, gt) for name, f in sets.items()}
    rng = np.random.default_rng(3)  # the bootstrap's own draw, replicate by replicate
    for r in range(150):
        counts = np.bincount(rng.integers(0, 50, 50), minlength=50)
        u = np.flatnonzero(counts)
        c = counts[u].astype(float)
        for name in sets:
            assert reps[name]["fid"][r] == pytest.approx(bs.fid_weighted(grams[name], u, c), rel=1e-9)
            assert reps[name]["kid"][r] == pytest.approx(bs.kid_weighted(grams[name], u, c), rel=1e-9, abs=1e-15)
        ok = np.isfinite(values)
        assert reps["a"]["hole_psnr"][r] == pytest.approx((counts[ok] @ values[ok]) / counts[ok].sum())


@pytest.mark.parametrize("field, value, expected", [
    ("features", np.nan, "features hold non-finite values"),
    ("missing_fraction", np.nan, "missing_fraction holds values outside [0, 1]"),
    ("missing_fraction", 1.5, "missing_fraction holds values outside [0, 1]"),
    ("hole_psnr", np.nan, "hole_psnr holds nan or -inf (first at image 3)"),
    ("ssim", -np.inf, "ssim holds nan or -inf (first at image 3)"),
])
def test_damaged_evidence_stops_at_its_file_name(tmp_path, field, value, expected):
    # a nan would otherwise reach an eigensolver (LinAlgError, no file named) or drop an
    # image silently out of every mask-area bin
    from maskgit.project.errors import InputError
    from maskgit.project.evidence import read_evidence, write_evidence

    n, rng = 8, np.random.default_rng(0)
    good = every_metric(dict(names=np.array([f"{i}.png" for i in range(n)]), features=rng.normal(size=(n, 4)),
                             psnr=np.full(n, 20.0), ssim=np.full(n, 0.5), hole_psnr=np.full(n, 18.0),
                             hole_ssim=np.full(n, 0.4), missing_fraction=np.full(n, 0.25)))
    # legitimate non-finite values: a perfect hole's PSNR, no hole at all
    good["hole_psnr"][1], good["missing_fraction"][2], good["hole_psnr"][2] = np.inf, 0.0, np.nan
    write_evidence(tmp_path / "good.npz", **good)
    assert read_evidence("good.npz", tmp_path)["hole_psnr"][1] == np.inf
    bad = {k: v.copy() for k, v in good.items()}
    bad[field][3] = value
    write_evidence(tmp_path / "bad.npz", **bad)
    with pytest.raises(InputError) as err:
        read_evidence("bad.npz", tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'bad.npz'}: {expected} (a damaged file: ")
