"""Stage evaluate: how sure the results are, from the per-image evidence the FID stages stored.

    metrics/evaluation.json        every set's FID, KID, PSNR and SSIM (whole image and
                                   hole) with a bootstrap interval; the paired differences
                                   a reader compares, with interval and verdict; the sets
                                   tied for best; the same per bucket of mask area
    reports/evaluation/mask_area.png   hole PSNR / SSIM against mask area per set

Bootstrap over test images (maskgit.metrics.bootstrap), the same resampled images for
every set, seeded by evaluate.seed. Never runs Inception: a change of evaluate.* re-runs
this stage alone.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import sys

import numpy as np

from maskgit.metrics import bootstrap as bs
from maskgit.pipeline import paths, plotting
from maskgit.pipeline.errors import InputError
from maskgit.pipeline.evidence import PER_IMAGE, read_run
from maskgit.pipeline.files import write_json
from maskgit.pipeline.params import load_params
from maskgit.pipeline.runtime import run_stage

# higher is better for these; lower for FID and KID
HIGHER_IS_BETTER = {"psnr", "ssim", "hole_psnr", "hole_ssim"}
PAIR_METRICS = ("fid", "kid", "hole_psnr", "hole_ssim")
FIGURE = paths.EVALUATION_FIGURES / "mask_area.png"


def pairs_to_compare(schedules: list[str]) -> list[tuple[str, str]]:
    """Each schedule against each other, and against one-step, the harmonic fill and the
    masked input; and the masked input against the VQGAN reconstruction (the span the
    schedules sit in)."""
    out = [(a, b) for i, a in enumerate(schedules) for b in schedules[i + 1:]]
    out += [(s, b) for s in schedules for b in ("onestep", "harmonic", "masked_input")]
    return out + [("masked_input", "recon")]


def cell(value: float, interval: tuple[float, float]) -> dict:
    # low and high also as scalars: `dvc exp show` and `dvc metrics diff` drop lists
    return {"value": value, "interval": list(interval), "low": interval[0], "high": interval[1]}


def summarise(sets, gt, replicates, confidence, seed, fid=True, kid=True, pairs=()):
    """Point values, replicates, {set: {metric: value, interval}} and the verdicts of `pairs`.
    kid False: per-image metrics only (no features read)."""
    features = {name: ev["features"] for name, ev in sets.items()} if kid else {}
    gt = gt if kid else np.zeros((len(next(iter(sets.values()))["psnr"]), 1))
    per_image = {name: {m: ev[m] for m in PER_IMAGE} for name, ev in sets.items()}
    point = bs.point_values(features, gt, per_image, fid=fid)
    reps = bs.bootstrap(features, gt, per_image, replicates, seed, fid=fid)
    table = {}
    for name in sets:
        table[name] = {m: cell(v, bs.interval(reps[name][m], confidence, bs.centre(m, v)))
                       for m, v in point[name].items()}
    verdicts = []
    for a, b in pairs:
        for m in PAIR_METRICS:
            if m not in point[a]:
                continue
            diff = point[a][m] - point[b][m]
            lo, hi = bs.interval(reps[a][m] - reps[b][m], confidence, bs.centre(m, diff))
            verdicts.append({"a": a, "b": b, "metric": m, "diff": diff, "interval": [lo, hi],
                             "verdict": bs.verdict(lo, hi, lower_is_better=m not in HIGHER_IS_BETTER)})
    return point, reps, table, verdicts


def main():
    params = load_params()
    ev, schedules = params["evaluate"], params["inpaint"]["schedules"]
    gt = np.load(paths.GT_FEATURES)
    sets = read_run(schedules)
    n = len(gt)
    for name, e in sets.items():
        if len(e["features"]) != n:
            raise InputError(f"{name}: {len(e['features'])} scored images but {paths.GT_FEATURES} holds {n} "
                             "(re-run the FID stages)")
    conf, R, seed = ev["confidence"], ev["replicates"], ev["seed"]
    point, reps, table, verdicts = summarise(sets, gt, R, conf, seed, pairs=pairs_to_compare(schedules))
    tied = {m: bs.tied_for_best({s: point[s][m] for s in schedules}, {s: reps[s][m] for s in schedules}, conf,
                                lower_is_better=m not in HIGHER_IS_BETTER, centred=m in bs.BIASED)
            for m in PAIR_METRICS}
    # the decisive comparison, the best schedule against the runner-up: how many test
    # images would make its interval 1 FID wide
    decisive = None
    if len(schedules) > 1:
        a, b = sorted(schedules, key=lambda s: point[s]["fid"])[:2]
        samples = reps[a]["fid"] - reps[b]["fid"]
        lo, hi = bs.interval(samples, conf, point[a]["fid"] - point[b]["fid"])
        decisive = {"a": a, "b": b, "width": hi - lo, "images_for_1_fid": bs.images_for_width(samples, n, 1.0, conf)}

    fraction = next(iter(sets.values()))["missing_fraction"]
    edges = ev["mask_buckets"]
    buckets = []
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        last = i == len(edges) - 2
        idx = np.flatnonzero((fraction >= lo) & ((fraction <= hi) if last else (fraction < hi)))
        entry = {"low": lo, "high": hi, "images": int(len(idx)), "kid": len(idx) >= ev["kid_min_images"], "sets": {}}
        if len(idx) >= 2:  # FID is left out: at a few dozen images its bias swamps the differences
            sub = {name: {k: v[idx] for k, v in e.items()} for name, e in sets.items()}
            entry["sets"] = summarise(sub, gt[idx], R, conf, seed, fid=False, kid=entry["kid"])[2]
        buckets.append(entry)
    uncovered = int(n - sum(b["images"] for b in buckets))

    write_json(paths.EVALUATION, {
        "images": n, "replicates": R, "confidence": conf, "seed": seed,
        "sets": table, "pairs": verdicts, "tied_for_best": tied, "decisive": decisive,
        "mask_buckets": buckets, "images_outside_buckets": uncovered,
    })
    plotting.mask_area_figure(buckets, list(sets), FIGURE, confidence=conf)
    best = ", ".join(tied["fid"])
    print(f"evaluate: {n} images, {R} replicates; tied for best FID: {best}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main, "evaluate")
