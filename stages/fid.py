"""Stages fid_reference, fid_baselines and fid: FID and KID against the ground truth
with torch-fidelity's standard inception-v3-compat features.

    python stages/fid.py reference   # ground-truth features, computed once
    python stages/fid.py baselines   # masked input, one-step decoding, VQGAN reconstruction
    python stages/fid.py schedules   # every schedule in inpaint.schedules

Split in three so that DVC caches the expensive parts: a new sweet_spot re-runs
only the last one, which reuses the ground-truth features from the first.

The baselines and schedules stages also keep each set's per-image evidence
(maskgit.pipeline.evidence: features, PSNR/SSIM in the hole and overall, mask
area) in outputs/fid/{baselines,schedules}/<set>.npz, which the evaluate stage
bootstraps without running Inception again.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import shutil
import sys

import numpy as np

from maskgit.pipeline import paths, sets
from maskgit.pipeline.files import list_images, make_tmp_dir, read_images, replace_dir, save_npy, write_json
from maskgit.pipeline.params import ParamError, load_params
from maskgit.pipeline.runtime import resolve_device, run_stage
from maskgit.pipeline.scoring import Scorer
from maskgit.pipeline.sets import BASELINES


def image_sets(which, params):
    if which == "reference":
        return {"gt": paths.TEST / "gt"}
    if which == "baselines":
        return {name: spec.images for name, spec in BASELINES.items()}
    # read the list from params, never glob: removed schedules leave stale folders
    return {s: sets.inpaint_dir(s) / "images" for s in sets.decoders(params["inpaint"])}


def main():
    params = load_params()
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in ("reference", "baselines", "schedules"):
        raise ParamError("usage: python stages/fid.py reference|baselines|schedules")
    image_folders = image_sets(which, params)
    scorer = Scorer(params, resolve_device(params["device"]), len(list_images(paths.TEST / "gt")),
                    lpips=which != "reference")
    if which == "reference":
        save_npy(paths.GT_FEATURES, scorer.features("gt", read_images(image_folders["gt"], scorer.size)))
        return scorer.used
    evidence = paths.EVIDENCE_BASELINES if which == "baselines" else paths.EVIDENCE_SCHEDULES
    tmp = make_tmp_dir(evidence)  # the folder appears whole or not at all
    try:
        results = scorer.score(image_folders, np.load(paths.GT_FEATURES), paths.TEST / "gt", paths.TEST / "mask64", tmp)
        write_json({"schedules": paths.FID_SCHEDULES, "baselines": paths.FID_BASELINES}[which], results)
        replace_dir(tmp, evidence)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return scorer.used


if __name__ == "__main__":
    run_stage(main, f"fid-{sys.argv[1] if len(sys.argv) > 1 else 'unknown'}")
