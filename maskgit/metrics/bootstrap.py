"""Bootstrap intervals over test images for FID, KID and per-image metrics, and
paired verdicts between two settings scored on the same test images.

Pure numpy, no file I/O: the stages hand in per-image Inception features and
per-image metrics (stored once by the FID stages) and get numbers back.

Resampling: each replicate draws n image indices with replacement, the same draw
for every set (an inpainted set and the ground truth, two settings against each
other), so a difference is paired image by image. A replicate is kept only as the
count of times each image was drawn, `c` (n,), and every statistic is written in
terms of `c` and n x n Gram matrices computed once. Replicates go in blocks: a
block's counts C (b, n) turn every mean, KID and all of FID but one term into a few
matrix products for the whole block; what is left per replicate is one symmetric
eigenproblem per set (of the distinct drawn images, about 0.63 n), run on a thread
pool (LAPACK releases the GIL). Memory is the Gram matrices and one block, whatever
the number of replicates.

FID on n < d images. With centred features X1, X2 (n x d) and S = X^T X / (n - 1),
the non-zero eigenvalues of S1 S2 = A1^T A1 A2^T A2 (A = X / sqrt(n - 1)) are those
of A1 A2^T A2 A1^T = M M^T with M = A1 A2^T (n x n), so

    tr sqrt(S1 S2) = sum of the singular values of M = ||X1 X2^T||_* / (n - 1),

an n x n SVD instead of the square root of a d x d (2048 x 2048) matrix. A
resampled set is the unique drawn rows weighted by their counts: its centred
feature matrix is diag(sqrt c_u) (X_u - 1 m^T), so M stays |u| x |u| and is read
off the full-set Gram matrix X1 X2^T (tests/test_bootstrap.py checks both against
scipy's sqrtm and torch-fidelity's FID).

Past a few thousand images those eigenproblems cost more than the FID stages, and
`resample` takes the first-order route of maskgit.metrics.influence instead: FID and
KID of a replicate are their value plus the counts times their influence functions,
with the same counts (docs/evaluation.md measures where the two routes agree).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from maskgit.algorithms.devices import usable_cores
from maskgit.metrics import influence
from maskgit.metrics.influence import KID_DEGREE
# statistics whose replicates are biased by the repeats of resampling: their intervals are
# centred on the full-set value (means of per-image metrics are not, and are left as drawn)
BIASED = ("fid", "kid")


# ---------------------------------------------------------------------------
# Gram matrices of one set against the ground truth, computed once
# ---------------------------------------------------------------------------


@dataclass
class PairGrams:
    """The n x n products every replicate of FID(set, gt) and KID(set, gt) reads."""
    g11: np.ndarray  # set . set
    g22: np.ndarray  # gt . gt
    g12: np.ndarray  # set . gt
    k11: np.ndarray  # KID kernels
    k22: np.ndarray
    k12: np.ndarray


def pair_grams(f_set: np.ndarray, f_gt: np.ndarray, g22: np.ndarray | None = None,
               k22: np.ndarray | None = None) -> PairGrams:
    f1, f2 = np.asarray(f_set, np.float64), np.asarray(f_gt, np.float64)
    if f1.shape != f2.shape or f1.ndim != 2:
        raise ValueError(f"features must be two (n, d) arrays of one shape, got {f1.shape} and {f2.shape}")
    d = f1.shape[1]
    g11, g12 = f1 @ f1.T, f1 @ f2.T
    g22 = f2 @ f2.T if g22 is None else g22
    k22 = (g22 / d + 1) ** KID_DEGREE if k22 is None else k22
    return PairGrams(g11, g22, g12, (g11 / d + 1) ** KID_DEGREE, k22, (g12 / d + 1) ** KID_DEGREE)


def fid_weighted(grams: PairGrams, u: np.ndarray, c: np.ndarray) -> float:
    """FID(set, gt) of the resampled sets holding image u[i] c[i] times (n = c.sum())."""
    n = int(c.sum())
    g11, g22, g12 = (g[np.ix_(u, u)] for g in (grams.g11, grams.g22, grams.g12))
    mean_sq = float(c @ (g11 + g22 - g12 - g12.T) @ c) / n**2  # |m1 - m2|^2
    tr1 = (float(c @ np.diag(g11)) - float(c @ g11 @ c) / n) / (n - 1)
    tr2 = (float(c @ np.diag(g22)) - float(c @ g22 @ c) / n) / (n - 1)
    r1 = g12 @ c / n  # X1_u . m2
    r2 = c @ g12 / n  # m1 . X2_u
    m12 = float(c @ g12 @ c) / n**2
    return mean_sq + tr1 + tr2 - 2 * _nuclear(grams.g12, u, c, r1, r2, m12) / (n - 1)


def _nuclear(g12: np.ndarray, u: np.ndarray, c: np.ndarray, r1: np.ndarray, r2: np.ndarray, m12: float) -> float:
    """||diag(sqrt c) (X1_u - 1 m1^T)(X2_u - 1 m2^T)^T diag(sqrt c)||_*, the centred cross
    product read off the Gram matrix g12 = X1 X2^T (r1 = X1_u m2, r2 = X2_u m1, m12 = m1 . m2)."""
    cross = g12[np.ix_(u, u)] - r1[:, None] - r2[None, :] + m12
    s = np.sqrt(c)
    w = s[:, None] * cross * s[None, :]
    # the singular values of w are the square roots of the eigenvalues of the symmetric
    # w w^T: a symmetric eigensolver is faster than an SVD, and the eigenvalues it rounds
    # below 0 are the zero ones
    eig = np.linalg.eigvalsh(w @ w.T)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def kid_weighted(grams: PairGrams, u: np.ndarray, c: np.ndarray) -> float:
    """Unbiased MMD^2 (KID) over the whole resampled sets: mean kernel over pairs of
    distinct images within a set, minus twice the mean across sets. A drawn image
    paired with its own repeat is left out like the diagonal: k(x, x) is far above
    the kernel between two images and would bias each set by its own norms."""
    n = float(c.sum())
    distinct_pairs = n * n - float(c @ c)

    def within(k):
        ku = k[np.ix_(u, u)]
        return (c @ ku @ c - (c * c) @ np.diag(ku)) / distinct_pairs

    return float(within(grams.k11) + within(grams.k22) - 2 * (c @ grams.k12[np.ix_(u, u)] @ c) / n**2)


# ---------------------------------------------------------------------------
# The bootstrap
# ---------------------------------------------------------------------------


BLOCK = 128  # replicates whose counts are held at once: memory BLOCK x n, whatever the replicates


def replicate_blocks(n: int, replicates: int, seed: int, block: int = BLOCK):
    """Yields (start, C): C[i] (n,) holds how often replicate start + i drew each image."""
    rng = np.random.default_rng(seed)
    for start in range(0, replicates, block):
        counts = np.empty((min(block, replicates - start), n))
        for i in range(len(counts)):
            counts[i] = np.bincount(rng.integers(0, n, n), minlength=n)
        yield start, counts


def _quad(C: np.ndarray, G: np.ndarray) -> np.ndarray:
    """c^T G c for every row c of C."""
    return np.einsum("ij,ij->i", C @ G, C)


def kid_block(grams: PairGrams, C: np.ndarray) -> np.ndarray:
    """kid_weighted for every row of the counts C (b, n)."""
    n = C[0].sum()
    sq = C * C
    distinct_pairs = n * n - sq.sum(1)

    def within(k):
        return (_quad(C, k) - sq @ np.diag(k)) / distinct_pairs

    return within(grams.k11) + within(grams.k22) - 2 * _quad(C, grams.k12) / n**2


def fid_block(grams: PairGrams, C: np.ndarray, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """fid_weighted for every row of the counts C (b, n): every term but the nuclear norm
    as products of the whole block, the nuclear norms on `pool`."""
    n = C[0].sum()
    q11, q22 = _quad(C, grams.g11), _quad(C, grams.g22)
    P = C @ grams.g12  # rows: c^T X1 X2^T
    q12 = np.einsum("ij,ij->i", P, C)
    mean_sq = (q11 + q22 - 2 * q12) / n**2
    tr1 = (C @ np.diag(grams.g11) - q11 / n) / (n - 1)
    tr2 = (C @ np.diag(grams.g22) - q22 / n) / (n - 1)
    R1 = C @ grams.g12.T / n  # X1 . m2 per replicate
    R2 = P / n                # X2 . m1

    def nuclear(i):
        u = np.flatnonzero(C[i])
        return _nuclear(grams.g12, u, C[i, u], R1[i, u], R2[i, u], q12[i] / n**2)

    nuc = np.array(list((pool.map if pool else map)(nuclear, range(len(C)))))
    return mean_sq + tr1 + tr2 - 2 * nuc / (n - 1)


def bootstrap(features: dict[str, np.ndarray], gt: np.ndarray, per_image: dict[str, dict[str, np.ndarray]],
              replicates: int, seed: int, fid: bool = True, workers: int | None = None,
              linear: dict[str, dict[str, tuple[float, np.ndarray]]] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Replicates of every statistic of every set: {set: {"fid": (R,), "kid": (R,), metric: (R,)}}.

    features: set name -> (n, d) Inception features, rows in test-image order, as gt.
    per_image: set name -> metric name -> (n,) per-image values (their mean is resampled).
    fid: False leaves FID out (KID only), for subsets too small for it to mean anything.
    workers: threads for FID's eigenproblems (None: one per usable core).
    linear: `linear_terms(features, gt, fid)`: FID and KID are then resampled to first
    order (value + c . influence / n, maskgit.metrics.influence) instead of exactly;
    per-image means are exact either way, and the counts c are the same.
    Every set, every replicate, draws the same images. Memory: the exact route holds the
    Gram matrices (a few n x n per set), the linear one n floats per statistic; both one
    block of counts and R floats per statistic, whatever R is.
    """
    n = len(gt)
    grams = {}
    if linear is None:
        gt = np.asarray(gt, np.float64)
        g22 = gt @ gt.T
        k22 = (g22 / gt.shape[1] + 1) ** KID_DEGREE
        grams = {name: pair_grams(f, gt, g22, k22) for name, f in features.items()}
    names = list(dict.fromkeys([*features, *per_image]))
    out = {name: {} for name in names}
    for name in names:
        if name in features:
            out[name].update({"fid": np.empty(replicates)} if fid else {})
            out[name]["kid"] = np.empty(replicates)
        for metric, values in per_image.get(name, {}).items():
            if len(values) != n:
                raise ValueError(f"{name}.{metric}: {len(values)} values for {n} images")
            out[name][metric] = np.empty(replicates)
    # a perfect hole (PSNR inf) or an image without hole (nan) leaves the mean
    finite = {(name, metric): np.isfinite(np.asarray(values, np.float64))
              for name in names for metric, values in per_image.get(name, {}).items()}
    with ThreadPoolExecutor(workers or usable_cores()) as pool:
        for start, C in replicate_blocks(n, replicates, seed):
            rows = slice(start, start + len(C))
            for name in names:
                if name in grams:
                    if fid:
                        out[name]["fid"][rows] = fid_block(grams[name], C, pool)
                    out[name]["kid"][rows] = kid_block(grams[name], C)
                elif name in features:
                    for stat, (value, effect) in linear[name].items():
                        out[name][stat][rows] = value + C @ effect / n
                for metric, values in per_image.get(name, {}).items():
                    v, ok = np.asarray(values, np.float64), finite[name, metric]
                    drawn = C[:, ok].sum(1)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        out[name][metric][rows] = np.where(drawn > 0, C[:, ok] @ v[ok] / drawn, np.nan)
    return out


def _means(per_image: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for metric, values in per_image.items():
        v = np.asarray(values, np.float64)
        v = v[np.isfinite(v)]
        out[metric] = float(v.mean()) if len(v) else float("nan")
    return out


def point_values(features: dict[str, np.ndarray], gt: np.ndarray,
                 per_image: dict[str, dict[str, np.ndarray]], fid: bool = True) -> dict[str, dict[str, float]]:
    """The statistics of the full sets (every image once), as `bootstrap` computes each replicate."""
    n = len(gt)
    u, c = np.arange(n), np.ones(n)
    out = {}
    for name in dict.fromkeys([*features, *per_image]):
        out[name] = {}
        if name in features:
            grams = pair_grams(features[name], gt)
            out[name].update({"fid": fid_weighted(grams, u, c)} if fid else {})
            out[name]["kid"] = kid_weighted(grams, u, c)
        out[name].update(_means(per_image.get(name, {})))
    return out


def linear_terms(features: dict[str, np.ndarray], gt: np.ndarray, fid: bool = True) -> dict[str, dict[str, tuple]]:
    """{set: {"fid": (value, influence), "kid": (value, influence)}}, without an n x n matrix."""
    gt_sums = influence.kernel_sums(gt, gt)
    return {name: {**({"fid": influence.fid(f, gt)} if fid else {}), "kid": influence.kid(f, gt, gt_sums)}
            for name, f in features.items()}


def resample(features: dict[str, np.ndarray], gt: np.ndarray, per_image: dict[str, dict[str, np.ndarray]],
             replicates: int, seed: int, fid: bool = True, exact_up_to: int | None = None,
             workers: int | None = None) -> tuple[dict, dict]:
    """(point values, replicates) of every statistic of every set: FID and KID resampled
    exactly up to `exact_up_to` test images (None: always), to first order above it,
    where the exact route's n x n eigenproblems would cost more than the FID stages."""
    if exact_up_to is None or len(gt) <= exact_up_to:
        return (point_values(features, gt, per_image, fid),
                bootstrap(features, gt, per_image, replicates, seed, fid, workers))
    linear = linear_terms(features, gt, fid)
    point = {name: {**{stat: value for stat, (value, _) in linear.get(name, {}).items()},
                    **_means(per_image.get(name, {}))} for name in dict.fromkeys([*features, *per_image])}
    return point, bootstrap(features, gt, per_image, replicates, seed, fid, workers, linear)


def interval(samples: np.ndarray, confidence: float, point: float | None = None) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates; given the full-set value `point`,
    the replicates are first shifted to centre on it. Resampling with replacement
    repeats images, and repeats alone raise FID (fewer distinct images, a poorer
    covariance): without the shift a set's interval can miss its own FID."""
    s = np.asarray(samples, np.float64)
    s = s[np.isfinite(s)]
    if not len(s) or (point is not None and not np.isfinite(point)):
        return float("nan"), float("nan")
    if point is not None:
        s = s - s.mean() + point
    a = (1 - confidence) / 2
    lo, hi = np.quantile(s, [a, 1 - a])
    return float(lo), float(hi)


def verdict(diff_lo: float, diff_hi: float, lower_is_better: bool = True) -> str:
    """A's verdict against B from the interval of A - B: better / worse only when it excludes 0."""
    if not (np.isfinite(diff_lo) and np.isfinite(diff_hi)):
        return "indistinguishable"
    if diff_hi < 0:
        return "better" if lower_is_better else "worse"
    if diff_lo > 0:
        return "worse" if lower_is_better else "better"
    return "indistinguishable"


def centre(metric: str, point: float) -> float | None:
    """The `point` argument of `interval` for this metric: the value for FID and KID, else None."""
    return point if metric in BIASED else None


def images_for_width(samples: np.ndarray, n: int, width: float, confidence: float) -> int:
    """Test images for an interval `width` wide, from the spread at n images (width ~ 1/sqrt(n))."""
    lo, hi = interval(samples, confidence)
    now = hi - lo
    if not np.isfinite(now) or now <= 0:
        return n
    return int(np.ceil(n * (now / width) ** 2))
