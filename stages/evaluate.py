"""Stage evaluate: how sure the results are, from the per-image evidence the FID stages stored.

    metrics/evaluation.json        every set's FID, KID, PSNR and SSIM (whole image and
                                   hole) with a bootstrap interval; the paired differences
                                   a reader compares, with interval, p-value and verdict
                                   (Holm-corrected over all of them); the sets tied for
                                   best; the same per bucket of mask area; and all of it
                                   again per mask family of inpaint.mask_families
    reports/evaluation/mask_area.png   hole PSNR / SSIM against mask area per set
    reports/evaluation/families.png    every set's FID per mask family (with families)

The metrics, the paired summary and the buckets are maskgit.metrics.evaluation's: a
bootstrap over test images, the same resampled images for every set, seeded by
evaluate.seed; this script reads the evidence and writes what comes back. Never runs
Inception: a change of evaluate.* re-runs this stage alone.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import sys
from pathlib import Path

import numpy as np

from maskgit.metrics import evaluation
from maskgit.metrics.registry import HEADLINE
from maskgit.pages import figures
from maskgit.project import paths
from maskgit.project.errors import InputError
from maskgit.project.evidence import read_run
from maskgit.project.files import write_json
from maskgit.project.params import load_params
from maskgit.pipeline.runtime import run_stage
from maskgit.project.grid import TestSet, decoder_names, pairs_to_compare, stale_matrix_stages
from maskgit.project.yamlio import parse_yaml

FIGURE = paths.EVALUATION_FIGURES / "mask_area.png"
LOCK = Path("dvc.lock")  # DVC's record of the last runs: read for a message, never a dep
FAMILIES_FIGURE = paths.EVALUATION_FIGURES / "families.png"


def judge(sets: dict, gt: np.ndarray, settings: evaluation.Settings, decoders: list[str], where: str) -> dict:
    """Everything evaluation.json says of one test set's scored sets. Its verdicts are
    one family of comparisons: with dozens at 95% each, a few would be chance."""
    n = len(gt)
    for name, e in sets.items():
        if len(e["features"]) != n:
            raise InputError(f"{where}{name}: {len(e['features'])} scored images but {paths.GT_FEATURES} holds {n} "
                             "(re-run the FID stages)")
    point, reps, table, verdicts = evaluation.summarise(sets, gt, settings, pairs=pairs_to_compare(decoders))
    correction = evaluation.correct(verdicts, settings.alpha, "holm")
    buckets = evaluation.by_mask_area(sets, gt, settings)
    fraction = next(iter(sets.values()))["missing_fraction"]
    return {
        "images": n, "missing_fraction": {"mean": float(fraction.mean()), "min": float(fraction.min()),
                                          "max": float(fraction.max())},
        "resampling": "exact" if n <= settings.exact_up_to else "linear",
        **evaluation.computed_groups(sets, settings, n),
        "sets": table, "pairs": verdicts, "correction": correction,
        "tied_for_best": evaluation.tied_for_best(point, reps, decoders, settings),
        "decisive": evaluation.decisive(point, reps, decoders, n, settings),
        "mask_buckets": buckets, "images_outside_buckets": int(n - sum(b["images"] for b in buckets)),
    }


def main():
    params = load_params()
    settings, decoders = evaluation.Settings.from_params(params["evaluate"]), decoder_names(params["inpaint"])
    gt = np.load(paths.GT_FEATURES)
    sets = read_run(decoders)
    main_set = judge(sets, gt, settings, decoders, "")
    families = {f: judge(read_run(decoders, TestSet(f)), gt, settings, decoders, f"{f}: ")
                for f in params["inpaint"]["mask_families"]}
    write_json(paths.EVALUATION, {
        "replicates": settings.replicates, "confidence": settings.confidence, "seed": settings.seed,
        "exact_up_to": settings.exact_up_to, "ids_min_images": settings.ids_min_images,
        "test_masks": params["prepare"]["test_masks"], **main_set, "mask_families": families,
    })
    figures.mask_area_figure(main_set["mask_buckets"], list(sets), FIGURE, confidence=settings.confidence)
    if families:
        figures.families_figure({params["prepare"]["test_masks"]: main_set, **families}, FAMILIES_FIGURE,
                                 confidence=settings.confidence)
    stale = stale_matrix_stages(params["inpaint"], parse_yaml(LOCK.read_text()) if LOCK.is_file() else {})
    if stale:
        print(f"evaluate: dvc.lock keeps {', '.join(stale)}, which params.yaml no longer asks for, and their outputs "
              f"stay in the workspace: `python -m maskgit.prune --remove` removes them", file=sys.stderr)
    for name, e in {"main test set": main_set, **families}.items():
        print(f"evaluate {name}: {e['images']} images, {settings.replicates} replicates; tied for best FID: "
              f"{', '.join(e['tied_for_best'][HEADLINE])}; {e['correction']['decided']} of "
              f"{e['correction']['comparisons']} verdicts decided", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main, "evaluate")
