"""Stages fid_reference, fid_baselines and fid: FID and KID against the ground truth
with torch-fidelity's standard inception-v3-compat features.

    python stages/fid.py reference   # ground-truth features, computed once
    python stages/fid.py baselines   # masked input, one-step decoding, VQGAN reconstruction, harmonic fill
    python stages/fid.py decoders    # every decoder of inpaint.schedules x inpaint.orders

Split in three so that DVC caches the expensive parts: a new sweet_spot re-runs
only the last one, which reuses the ground-truth features from the first.

The baselines and decoders stages also keep each set's per-image evidence
(maskgit.project.evidence: features, PSNR/SSIM in the hole and overall, mask
area) in outputs/fid/{baselines,decoders}/<set>.npz, which the evaluate stage
bootstraps without running Inception again.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import shutil
import sys

import numpy as np

from maskgit.project import paths
from maskgit.project.files import list_images, make_tmp_dir, read_images, replace_dir, save_npy, write_json
from maskgit.project.params import ParamError, load_params
from maskgit.pipeline.runtime import resolve_device, run_stage
from maskgit.pipeline.scoring import Scorer
from maskgit.project.grid import BASELINES, MAIN, decoder_names


def image_sets(which, params):
    if which == "reference":
        return {"gt": MAIN.gt}
    # read the list from params, never glob: removed decoders leave stale folders
    names = list(BASELINES) if which == "baselines" else decoder_names(params["inpaint"])
    return {name: MAIN.images(name) for name in names}


def main():
    params = load_params()
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in ("reference", "baselines", "decoders"):
        raise ParamError("usage: python stages/fid.py reference|baselines|decoders")
    image_folders = image_sets(which, params)
    scorer = Scorer(params, resolve_device(params["device"]), len(list_images(MAIN.gt)), lpips=which != "reference")
    if which == "reference":
        save_npy(paths.GT_FEATURES, scorer.features("gt", read_images(image_folders["gt"], scorer.size)))
        return scorer.used
    evidence = paths.EVIDENCE_BASELINES if which == "baselines" else paths.EVIDENCE_DECODERS
    tmp = make_tmp_dir(evidence)  # the folder appears whole or not at all
    try:
        results = scorer.score(image_folders, np.load(paths.GT_FEATURES), MAIN, tmp)
        write_json({"decoders": paths.FID_DECODERS, "baselines": paths.FID_BASELINES}[which], results)
        replace_dir(tmp, evidence)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return scorer.used


if __name__ == "__main__":
    run_stage(main, f"fid-{sys.argv[1] if len(sys.argv) > 1 else 'unknown'}")
