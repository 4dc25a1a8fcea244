"""Stages fid_reference, fid_baselines and fid: FID and KID against the ground truth
with torch-fidelity's standard inception-v3-compat features.

    python stages/fid.py reference   # ground-truth features, computed once
    python stages/fid.py baselines   # masked input, one-step decoding, VQGAN reconstruction
    python stages/fid.py schedules   # every schedule in inpaint.schedules

Split in three so that DVC caches the expensive parts: a new sweet_spot re-runs
only the last one, which reuses the ground-truth features from the first.
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch

from maskgit.pipeline import paths
from maskgit.pipeline.runtime import resolve_device, run_stage
from maskgit.metrics.fid import InceptionFeatures, fid_from_statistics, kid_from_features, statistics
from maskgit.pipeline.inception_weights import resolve_inception_weights
from maskgit.pipeline.files import read_images, save_npy, write_json
from maskgit.pipeline.params import ParamError, load_params
from maskgit.pipeline.errors import InputError

CACHE_DIR = Path(os.environ.get("MASKGIT_CACHE", Path.home() / ".cache" / "maskgit"))


def image_sets(which, params):
    if which == "reference":
        return {"gt": paths.TEST / "gt"}
    if which == "baselines":
        return {
            "masked_input": paths.TEST / "masked_image",
            "onestep": paths.BASELINES / "onestep/images",
            "recon": paths.BASELINES / "recon/images",
            "harmonic": paths.BASELINES / "harmonic/images",
        }
    # read the list from params, never glob: removed schedules leave stale folders
    return {s: paths.INPAINT / s / "images" for s in params["inpaint"]["schedules"]}


def main():
    params = load_params()
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in ("reference", "baselines", "schedules"):
        raise ParamError("usage: python stages/fid.py reference|baselines|schedules")
    sets = image_sets(which, params)
    size = params["data"]["image_size"]
    weights, _ = resolve_inception_weights(params["fid"]["inception_weights"], CACHE_DIR)
    try:
        extract = InceptionFeatures(weights, device=resolve_device(params["device"]), batch_size=params["fid"]["batch_size"])
    except RuntimeError as e:  # torch's key/shape dump spans pages: its first line names the problem
        if "state_dict" not in str(e):
            raise
        raise InputError(f"fid.inception_weights: {weights} does not fit torch-fidelity's inception-v3-compat "
                         f"network ({str(e).splitlines()[0][:120]})") from None

    def features(name, folder):
        images = torch.from_numpy(read_images(folder, size)).permute(0, 3, 1, 2).contiguous()
        return extract(images, desc=name)

    if which == "reference":
        save_npy(paths.GT_FEATURES, features("gt", sets["gt"]))
        return
    gt = np.load(paths.GT_FEATURES)
    gt_stats = statistics(gt)
    results = {}
    for name, folder in sets.items():
        f = features(name, folder)
        if len(f) != len(gt):
            raise InputError(f"{folder}: {len(f)} images but the ground truth has {len(gt)}")
        kid, kid_std = kid_from_features(f, gt)
        results[name] = {"fid": fid_from_statistics(statistics(f), gt_stats), "kid": kid, "kid_std": kid_std}
        print(f"fid {name}: FID {results[name]['fid']:.2f}  KID {kid:.4f} +- {kid_std:.4f}", file=sys.stderr)
    write_json({"schedules": paths.FID_SCHEDULES, "baselines": paths.FID_BASELINES}[which], results)


if __name__ == "__main__":
    run_stage(main, f"fid-{sys.argv[1] if len(sys.argv) > 1 else 'unknown'}")
