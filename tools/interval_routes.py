"""The exact bootstrap against the first-order route of the evaluate stage's intervals
(docs/evaluation.md, "Intervals at benchmark scale"): the measurements behind the
default of evaluate.exact_up_to.

    python tools/interval_routes.py agree --run PROJECT       # a run's evidence (outputs/fid/)
    python tools/interval_routes.py agree --procedural 747     # built-in images, 3 non-learned fills
    python tools/interval_routes.py spread --procedural 747    # both routes against FID's spread
                                                               # over test sets drawn from the 747
    python tools/interval_routes.py scale --procedural 4096    # the evaluate stage's summary at
                                                               # benchmark scale: FID, KID, P-IDS, U-IDS

--procedural draws n test images and masks (seed 1234), fills the holes three ways
without a model (gray, harmonic fill, and a blurred copy of the whole image) and takes
torch-fidelity's Inception features of all four sets once (a few minutes on a CPU),
cached in --cache. Prints markdown tables; writes nothing else.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from maskgit.metrics import bootstrap as bs
from maskgit.metrics import influence


def run_features(project: Path) -> tuple[dict, np.ndarray]:
    root = project / "outputs" / "fid"
    gt = np.load(root / "gt_features.npy")
    sets = {p.stem: np.load(p)["features"] for p in sorted(root.glob("*/*.npz"))}
    if not sets:
        sys.exit(f"{root}: no evidence (run `dvc repro` in {project} first)")
    return sets, gt


def procedural_features(n: int, cache: Path, weights: str | None) -> tuple[dict, np.ndarray]:
    if cache.is_file():
        z = np.load(cache)
        if len(z["gt"]) == n:
            return {k: z[k] for k in z.files if k != "gt"}, z["gt"]
    import torch

    from maskgit.algorithms.compositing import harmonic_fill
    from maskgit.data import procedural as pr
    from maskgit.metrics.fid import InceptionFeatures
    from maskgit.project.inception_weights import CACHE_DIR, resolve_inception_weights

    images, known = pr.make_dataset(1234, n), pr.make_masks(1234, n)
    masked = np.stack([pr.apply_mask(im, k) for im, k in zip(images, known)])
    linear = torch.from_numpy(masked).permute(0, 3, 1, 2).double() / 255
    harmonic = (harmonic_fill(linear, torch.from_numpy(known)).clamp(0, 1) * 255).round().to(torch.uint8)
    blurred = np.stack([pr.soften(im, 1.5) for im in images])
    extract = InceptionFeatures(resolve_inception_weights(weights, CACHE_DIR)[0])

    def nchw(a):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)

    out = {"gt": extract(nchw(images), "ground truth"), "masked_input": extract(nchw(masked), "masked input"),
           "harmonic": extract(harmonic, "harmonic fill"), "blurred": extract(nchw(blurred), "blurred")}
    np.savez(cache, **out)
    gt = out.pop("gt")
    return out, gt


def width(reps, point, confidence=0.95):
    lo, hi = bs.interval(reps, confidence, point)
    return hi - lo


def agree(sets: dict, gt: np.ndarray, replicates: int = 1000) -> None:
    start = time.perf_counter()
    pe, exact = bs.resample(sets, gt, {}, replicates, 0, exact_up_to=len(gt))
    t_exact = time.perf_counter() - start
    start = time.perf_counter()
    pl, linear = bs.resample(sets, gt, {}, replicates, 0, exact_up_to=0)
    t_linear = time.perf_counter() - start
    print(f"{len(gt)} images, {len(sets)} sets, {replicates} replicates: exact {t_exact:.1f} s, "
          f"linear {t_linear:.1f} s\n")
    print("| set | statistic | value | width linear / exact |\n| --- | --- | ---: | ---: |")
    for name, stat in itertools.product(sets, ("fid", "kid")):
        ratio = width(linear[name][stat], pl[name][stat]) / width(exact[name][stat], pe[name][stat])
        print(f"| {name} | {stat} | {pe[name][stat]:.5g} (linear {pl[name][stat]:.5g}) | {ratio:.3f} |")
    print("\n| pair | statistic | width linear / exact | exact verdict | linear verdict |\n| --- | --- | ---: | --- | --- |")
    for (a, b), stat in itertools.product(itertools.combinations(sets, 2), ("fid", "kid")):
        de, dl = exact[a][stat] - exact[b][stat], linear[a][stat] - linear[b][stat]
        ie = bs.interval(de, 0.95, pe[a][stat] - pe[b][stat])
        il = bs.interval(dl, 0.95, pl[a][stat] - pl[b][stat])
        print(f"| {a} - {b} | {stat} | {(il[1] - il[0]) / (ie[1] - ie[0]):.3f} | {bs.verdict(*ie)} | {bs.verdict(*il)} |")


def spread(sets: dict, gt: np.ndarray, sizes=(100, 150, 250), draws: int = 300, tries: int = 8) -> None:
    """FID's standard deviation over test sets of n drawn without replacement from the N
    images (scaled by the finite-population factor), against each route's bootstrap
    standard deviation averaged over `tries` such test sets."""
    rng = np.random.default_rng(0)
    population = len(gt)
    names = list(sets)
    a, b = names[0], names[1]
    print("| n | set | spread over test sets | exact bootstrap | linear |\n| ---: | --- | ---: | ---: | ---: |")
    for n in sizes:
        factor = np.sqrt(1 - (n - 1) / (population - 1))
        values = {name: [] for name in [*names, f"{a} - {b}"]}
        for _ in range(draws):
            idx = rng.choice(population, n, replace=False)
            fid = {name: influence.fid(f[idx], gt[idx])[0] for name, f in sets.items()}
            for name in names:
                values[name].append(fid[name])
            values[f"{a} - {b}"].append(fid[a] - fid[b])
        sd_exact = {name: [] for name in values}
        sd_linear = {name: [] for name in values}
        for t in range(tries):
            idx = rng.choice(population, n, replace=False)
            sub = {name: f[idx] for name, f in sets.items()}
            for route, up_to, out in (("exact", n, sd_exact), ("linear", 0, sd_linear)):
                _, reps = bs.resample(sub, gt[idx], {}, 400, t, exact_up_to=up_to)
                for name in names:
                    out[name].append(np.std(reps[name]["fid"]))
                out[f"{a} - {b}"].append(np.std(reps[a]["fid"] - reps[b]["fid"]))
        for name in values:
            print(f"| {n} | {name} | {np.std(values[name], ddof=1) / factor:.2f} | {np.mean(sd_exact[name]):.2f} | "
                  f"{np.mean(sd_linear[name]):.2f} |")


def scale(sets: dict, gt: np.ndarray) -> None:
    """What the evaluate stage would print for these sets at this many images, with the
    stage's defaults (the linear route above evaluate.exact_up_to, P-IDS/U-IDS from
    evaluate.ids_min_images), and how long it takes."""
    from maskgit.metrics import evaluation
    from maskgit.metrics.registry import METRICS
    from maskgit.project.params import defaults

    settings = evaluation.Settings.from_params(defaults()["evaluate"])
    names = list(sets)
    start = time.perf_counter()
    point, _, table, verdicts = evaluation.summarise({k: {"features": f} for k, f in sets.items()}, gt, settings,
                                                     pairs=list(itertools.combinations(names, 2)))
    correction = evaluation.correct(verdicts, settings.alpha)
    seconds = time.perf_counter() - start
    route = "linear" if len(gt) > settings.exact_up_to else "exact"
    print(f"{len(gt)} images, {settings.replicates} replicates, {route} route, P-IDS/U-IDS "
          f"{'computed' if evaluation.fits(settings, len(gt)) else 'not computed'}: {seconds:.1f} s\n")
    metrics = [m for m in METRICS if all(m in table[k] for k in names)]
    print("| set | " + " | ".join(METRICS[m].label for m in metrics) + " |")
    print("| --- |" + " ---: |" * len(metrics))
    for name in names:
        cells = []
        for m in metrics:
            c, sc, dg = table[name][m], METRICS[m].scale, METRICS[m].digits
            cells.append(f"{c['value'] * sc:.{dg}f} [{c['low'] * sc:.{dg}f}, {c['high'] * sc:.{dg}f}]")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n{correction['comparisons']} paired verdicts under Holm's correction, {correction['decided']} decided:")
    for v in verdicts:
        sc, dg = METRICS[v["metric"]].scale, METRICS[v["metric"]].digits
        print(f"- {v['a']} vs {v['b']}, {METRICS[v['metric']].label}: {v['verdict']} "
              f"({v['diff'] * sc:+.{dg}f} [{v['interval'][0] * sc:+.{dg}f}, {v['interval'][1] * sc:+.{dg}f}])")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["agree", "spread", "scale"])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a project after `dvc repro`: its outputs/fid evidence")
    source.add_argument("--procedural", type=int, metavar="N", help="N built-in test images")
    parser.add_argument("--cache", type=Path, default=Path("interval_routes_features.npz"),
                        help="the --procedural features, computed once")
    parser.add_argument("--inception-weights", help="as fid.inception_weights (default: the caches)")
    args = parser.parse_args(argv)
    sets, gt = run_features(args.run) if args.run else procedural_features(args.procedural, args.cache, args.inception_weights)
    if args.what == "spread" and args.run:
        sys.exit("spread: needs a population larger than a test set (--procedural N)")
    {"agree": agree, "spread": spread, "scale": scale}[args.what](sets, gt)


if __name__ == "__main__":
    main()
