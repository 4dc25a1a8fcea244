"""How a run is judged, in one place: the paired summary, the mask-area bins and the
settings that decide every interval, over the metrics of maskgit.metrics.registry.

    Settings      evaluate.* of params.yaml, frozen, built once (Settings.from_params)
    summarise     point values, bootstrap replicates, every set's intervals, and the
                  paired verdicts of the pairs asked for, each with its p-value
    correct       a family of verdicts under Holm's or Benjamini-Hochberg's correction
                  (holm, benjamini_hochberg: which of its p-values are rejected)
    tied_for_best, decisive   the decoders tied for best; the best against the runner-up
    by_mask_area  the same per bucket of missing-pixel fraction (mask_area_bins)

The evaluate stage, `python -m maskgit.compare` and `python -m maskgit.experiments`
call these and only format what comes back. Pure numpy on arrays handed in: the
per-image evidence is read and written by maskgit.project.evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskgit.metrics import bootstrap as bs
from maskgit.metrics import ids
from maskgit.metrics.registry import FEATURES, GROUPS, HEADLINE, METRICS, PAIRED, STORED

# The function of each FEATURES group of the registry (fitted per set, here only)
FITTED = {"ids": ids.per_image}


@dataclass(frozen=True)
class Settings:
    """evaluate.* of params.yaml: what every interval and verdict of a run depends on."""
    replicates: int
    confidence: float
    seed: int
    mask_buckets: tuple[float, ...]
    kid_min_images: int
    # FID and KID resampled exactly up to this many test images, to first order above
    # (bootstrap.resample); None: always exactly, as runs before the param did
    exact_up_to: int | None = None
    # P-IDS and U-IDS from this many test images on (maskgit.metrics.ids); None: never
    ids_min_images: int | None = None

    @property
    def alpha(self) -> float:
        """The error rate a family of verdicts is held to: 1 - confidence, without 1 - 0.95's
        float residue (it is printed and stored)."""
        return round(1.0 - self.confidence, 12)

    @classmethod
    def from_params(cls, evaluate: dict) -> "Settings":
        return cls(evaluate["replicates"], evaluate["confidence"], evaluate["seed"],
                   tuple(evaluate["mask_buckets"]), evaluate["kid_min_images"], evaluate.get("exact_up_to"),
                   evaluate.get("ids_min_images"))


def cell(value: float, interval: tuple[float, float]) -> dict:
    # low and high also as scalars: `dvc exp show` and `dvc metrics diff` drop lists
    return {"value": value, "interval": list(interval), "low": interval[0], "high": interval[1]}


def p_value(samples: np.ndarray, point: float | None = None) -> float:
    """Two-sided bootstrap p-value of "no difference", read off the same replicates as
    `bs.interval` (shifted to `point` when given): twice the share on the far side of 0.
    It is below 1 - c exactly when the percentile interval at level c excludes 0 (up to
    the quantiles' interpolation), so a step of Holm's procedure is that interval at its
    own level. Its resolution is 2 / replicates: 0 means no replicate crossed 0."""
    s = np.asarray(samples, np.float64)
    s = s[np.isfinite(s)]
    if not len(s) or (point is not None and not np.isfinite(point)):
        return float("nan")
    if point is not None:
        s = s - s.mean() + point
    return float(min(1.0, 2 * min(np.mean(s <= 0), np.mean(s >= 0))))


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected with the family-wise
    error rate at most alpha, under any dependence between them. nan: not tested."""
    p = np.asarray(p_values, np.float64)
    tested = np.flatnonzero(np.isfinite(p))
    reject = np.zeros(len(p), bool)
    for k, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        if p[i] > alpha / (len(tested) - k):
            break
        reject[i] = True
    return reject.tolist()


def benjamini_hochberg(p_values: list[float], alpha: float) -> list[bool]:
    """Benjamini-Hochberg (scipy's): rejected with the false discovery rate at most alpha.
    nan: not tested."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, np.float64)
    tested = np.isfinite(p)
    reject = np.zeros(len(p), bool)
    if tested.any():
        reject[tested] = false_discovery_control(p[tested], method="bh") <= alpha
    return reject.tolist()


def identical(a: dict, b: dict) -> bool:
    """Two sets' evidence is the same arrays: nothing to test (the same files on both sides)."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a if k != "names")


def paired(point: dict, reps: dict, a: str, b: str, metric: str, confidence: float) -> dict:
    """a against b on one metric, paired over the same resampled images: the difference
    a - b, its interval and p-value, and a's verdict before any correction (better or
    worse only when the interval excludes 0)."""
    diff = point[a][metric] - point[b][metric]
    samples = reps[a][metric] - reps[b][metric]
    lo, hi = bs.interval(samples, confidence, bs.centre(metric, diff))
    p = p_value(samples, bs.centre(metric, diff))
    verdict = bs.verdict(lo, hi, lower_is_better=not METRICS[metric].higher_is_better)
    return {"a": a, "b": b, "metric": metric, "diff": diff, "interval": [lo, hi],
            "p": p if np.isfinite(p) else None, "uncorrected": verdict, "verdict": verdict}


def correct(verdicts: list[dict], alpha: float, method: str = "holm") -> dict:
    """Correct a family of verdicts in place: a verdict stays better or worse only when
    `method` rejects its hypothesis too (so never without its interval excluding 0).
    Returns what a page says of the family."""
    family = [v for v in verdicts if v["verdict"] != "identical"]
    p = [v["p"] if v["p"] is not None else float("nan") for v in family]
    reject = (holm if method == "holm" else benjamini_hochberg)(p, alpha)
    for v, r in zip(family, reject):
        v["verdict"] = v["uncorrected"] if r else "indistinguishable"
    decided = ("better", "worse")
    return {"method": method, "alpha": alpha, "comparisons": len(family),
            "identical": len(verdicts) - len(family),
            "decided": sum(v["verdict"] in decided for v in family),
            "decided_uncorrected": sum(v["uncorrected"] in decided for v in family)}


def fits(settings: Settings, n: int) -> bool:
    """Whether a run of n test images gets the FEATURES groups fitted per set (P-IDS and
    U-IDS: maskgit.metrics.ids), each from its own evaluate.* minimum on."""
    return all(getattr(settings, g.min_images) is not None and n >= getattr(settings, g.min_images)
               for g in GROUPS.values() if g.source == FEATURES and g.min_images)


def computed_groups(sets: dict[str, dict], settings: Settings, n: int) -> dict[str, bool]:
    """{group: whether this run has its metrics}, for evaluation.json and the pages: a
    fitted group from its minimum image count on, a network's where every set's
    evidence holds its metrics (the FID stages had the weights)."""
    return {name: fits(settings, n) if g.source == FEATURES else
            all(m in e for e in sets.values() for m, spec in METRICS.items() if spec.group == name)
            for name, g in GROUPS.items()}


def summarise(sets: dict[str, dict], gt: np.ndarray, settings: Settings, fid: bool = True, kid: bool = True,
              pairs=(), fitted: bool = True) -> tuple[dict, dict, dict, list[dict]]:
    """sets: name -> evidence ("features" and the per-image metrics it holds), rows in gt's order.
    Returns point values, replicates, {set: {metric: cell}} and the verdicts of `pairs` on
    every paired metric, uncorrected (`correct` makes them a family). Two sets whose
    evidence is identical are "identical", not tested. fid False leaves FID out; kid
    False reads no features at all (per-image metrics only); the fitted groups (P-IDS and
    U-IDS) when `fitted` and the run fits them (each set's model fitted here, its per-image
    scores resampled)."""
    features = {name: ev["features"] for name, ev in sets.items()} if kid else {}
    per_image = {name: {m: ev[m] for m in STORED if m in ev} for name, ev in sets.items()}
    if kid and fitted and fits(settings, len(gt)):
        for name, f in features.items():
            for group in FITTED.values():
                per_image[name].update(group(gt, f))
    gt = gt if kid else np.zeros((len(gt), 1))
    point, reps = bs.resample(features, gt, per_image, settings.replicates, settings.seed, fid=fid,
                              exact_up_to=settings.exact_up_to)
    table = {name: {m: cell(v, bs.interval(reps[name][m], settings.confidence, bs.centre(m, v)))
                    for m, v in point[name].items()} for name in sets}
    verdicts = []
    for a, b in pairs:
        same = identical(sets[a], sets[b])
        for m in (m for m in PAIRED if m in point[a] and m in point[b]):
            v = paired(point, reps, a, b, m, settings.confidence)
            if same:
                v.update(diff=0.0, interval=[0.0, 0.0], p=None, uncorrected="identical", verdict="identical")
            verdicts.append(v)
    return point, reps, table, verdicts


def tied_for_best(point: dict, reps: dict, names: list[str], settings: Settings) -> dict[str, list[str]]:
    """metric -> the best of `names` by point value and every other that is not worse
    than it, each metric's comparisons with the best Holm-corrected as one family."""
    out = {}
    for m in (m for m in PAIRED if all(m in point[s] for s in names)):
        lower = not METRICS[m].higher_is_better
        best = (min if lower else max)(names, key=lambda s: point[s][m])
        others = [s for s in names if s != best]
        verdicts = [paired(point, reps, s, best, m, settings.confidence) for s in others]
        correct(verdicts, settings.alpha)
        out[m] = [best] + [s for s, v in zip(others, verdicts) if v["verdict"] == "indistinguishable"]
    return out


def decisive(point: dict, reps: dict, decoders: list[str], n: int, settings: Settings) -> dict | None:
    """The best decoder by FID against the runner-up: how wide their FID-difference interval
    is, and how many test images would make it 1 FID wide."""
    if len(decoders) < 2:
        return None
    a, b = sorted(decoders, key=lambda s: point[s][HEADLINE])[:2]
    samples = reps[a][HEADLINE] - reps[b][HEADLINE]
    lo, hi = bs.interval(samples, settings.confidence, point[a][HEADLINE] - point[b][HEADLINE])
    return {"a": a, "b": b, "width": hi - lo,
            "images_for_1_fid": bs.images_for_width(samples, n, 1.0, settings.confidence)}


def mask_area_bins(fraction: np.ndarray, edges) -> list[tuple[float, float, np.ndarray]]:
    """(low, high, image indices) per bucket of missing-pixel fraction; the last bucket
    includes its upper edge."""
    out = []
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        last = i == len(edges) - 2
        out.append((lo, hi, np.flatnonzero((fraction >= lo) & ((fraction <= hi) if last else (fraction < hi)))))
    return out


def by_mask_area(sets: dict[str, dict], gt: np.ndarray, settings: Settings, pairs=()) -> list[dict]:
    """Per bucket of mask area: its images, whether KID is computed there (enough images),
    every set's cells and the verdicts of `pairs`. FID is left out (see Metric.by_area)."""
    fraction = next(iter(sets.values()))["missing_fraction"]
    buckets = []
    for lo, hi, idx in mask_area_bins(fraction, settings.mask_buckets):
        entry = {"low": lo, "high": hi, "images": int(len(idx)), "kid": len(idx) >= settings.kid_min_images,
                 "sets": {}, **({"pairs": []} if pairs else {})}
        if len(idx) >= 2:
            sub = {name: {k: v[idx] for k, v in e.items()} for name, e in sets.items()}
            # never fitted on a bucket's few images, which a linear SVM separates by chance
            _, _, entry["sets"], verdicts = summarise(sub, gt[idx], settings, fid=False, kid=entry["kid"], pairs=pairs,
                                                      fitted=False)
            if pairs:
                entry["pairs"] = verdicts
        buckets.append(entry)
    return buckets
