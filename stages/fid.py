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

from maskgit.cli import resolve_device, run_stage
from maskgit.fid import InceptionFeatures, fid_from_statistics, kid_from_features, resolve_inception_weights, statistics
from maskgit.io import read_images, save_npy, write_json
from maskgit.params import ParamError, load_params

GT_FEATURES = Path("outputs/fid/gt_features.npy")
CACHE_DIR = Path(os.environ.get("MASKGIT_CACHE", Path.home() / ".cache" / "maskgit"))


def image_sets(which, params):
    if which == "reference":
        return {"gt": "data/prepared/test/gt"}
    if which == "baselines":
        return {
            "masked_input": "data/prepared/test/masked_image",
            "onestep": "outputs/baselines/onestep/images",
            "recon": "outputs/baselines/recon/images",
            "harmonic": "outputs/baselines/harmonic/images",
        }
    # read the list from params, never glob: removed schedules leave stale folders
    return {s: f"outputs/inpaint/{s}/images" for s in params["inpaint"]["schedules"]}


def main():
    params = load_params()
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in ("reference", "baselines", "schedules"):
        raise ParamError("usage: python stages/fid.py reference|baselines|schedules")
    sets = image_sets(which, params)
    size = params["data"]["image_size"]
    weights, _ = resolve_inception_weights(params["fid"]["inception_weights"], CACHE_DIR)
    extract = InceptionFeatures(weights, device=resolve_device(params["device"]), batch_size=params["fid"]["batch_size"])

    def features(name, folder):
        images = torch.from_numpy(read_images(folder, size)).permute(0, 3, 1, 2).contiguous()
        return extract(images, desc=name)

    if which == "reference":
        save_npy(GT_FEATURES, features("gt", sets["gt"]))
        return
    gt = np.load(GT_FEATURES)
    gt_stats = statistics(gt)
    results = {}
    for name, folder in sets.items():
        f = features(name, folder)
        if len(f) != len(gt):
            raise ValueError(f"{folder}: {len(f)} images but the ground truth has {len(gt)}")
        kid, kid_std = kid_from_features(f, gt)
        results[name] = {"fid": fid_from_statistics(statistics(f), gt_stats), "kid": kid, "kid_std": kid_std}
        print(f"fid {name}: FID {results[name]['fid']:.2f}  KID {kid:.4f} +- {kid_std:.4f}", file=sys.stderr)
    write_json(f"metrics/fid_{which}.json", results)


if __name__ == "__main__":
    run_stage(main, f"fid-{sys.argv[1] if len(sys.argv) > 1 else 'unknown'}")
