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
import torch

from maskgit.pipeline import paths
from maskgit.pipeline.runtime import resolve_device, run_stage
from maskgit.metrics.fid import InceptionFeatures, fid_from_statistics, inception_chunk, kid_from_features, statistics
from maskgit.pipeline.inception_weights import CACHE_DIR, resolve_inception_weights
from maskgit.metrics.registry import per_image_metrics
from maskgit.metrics.image import missing_fraction
from maskgit.metrics import perceptual
from maskgit.pipeline.lpips_weights import find_backbone, load_lpips
from maskgit.pipeline.evidence import write_evidence
from maskgit.pipeline import sets
from maskgit.pipeline.sets import BASELINES
from maskgit.pipeline.memory import check_fits, inception_batch_bytes
from maskgit.pipeline.files import sha256_file, list_images, make_tmp_dir, read_images, read_masks, replace_dir, save_npy, write_json
from maskgit.pipeline.params import ParamError, load_params
from maskgit.pipeline.errors import InputError



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
    sets = image_sets(which, params)
    size = params["data"]["image_size"]
    device = resolve_device(params["device"])
    batch_size = params["fid"]["batch_size"]
    n_images = len(list_images(paths.TEST / "gt"))
    per_forward = min(inception_chunk(batch_size, device), max(n_images, 1))
    check_fits(inception_batch_bytes(per_forward), device, f"fid.batch_size {batch_size} ({per_forward} images per forward)")
    weights, _ = resolve_inception_weights(params["fid"]["inception_weights"], CACHE_DIR)
    try:
        extract = InceptionFeatures(weights, device=device, batch_size=batch_size)
    except RuntimeError as e:  # torch's key/shape dump spans pages: its first line names the problem
        if "state_dict" not in str(e):
            raise
        raise InputError(f"fid.inception_weights: {weights} does not fit torch-fidelity's inception-v3-compat "
                         f"network ({str(e).splitlines()[0][:120]})") from None

    def features(name, images):
        return extract(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), desc=name)

    # provenance for the report: which weights made these features
    used = {"inception_weights_sha256": sha256_file(weights) if weights is not None else None}
    if which == "reference":
        save_npy(paths.GT_FEATURES, features("gt", read_images(sets["gt"], size)))
        return used
    gt = np.load(paths.GT_FEATURES)
    gt_stats = statistics(gt)
    gt_names = [p.name for p in list_images(paths.TEST / "gt")]
    gt_images, known = read_images(paths.TEST / "gt", size), read_masks(paths.TEST / "mask64", size)
    if len(gt_images) != len(gt) or len(known) != len(gt):
        raise InputError(f"{paths.TEST}: {len(gt_images)} ground-truth images and {len(known)} masks, but "
                         f"{paths.GT_FEATURES} holds {len(gt)} (re-run fid_reference)")
    backbone, skipped = find_backbone(params["fid"]["lpips_backbone"])
    lpips = load_lpips(backbone, device) if backbone else None
    used["lpips_backbone_sha256"] = sha256_file(backbone) if backbone else None
    if skipped:
        print(f"fid: LPIPS skipped, {skipped}", file=sys.stderr)
    evidence = paths.EVIDENCE_BASELINES if which == "baselines" else paths.EVIDENCE_SCHEDULES
    tmp = make_tmp_dir(evidence)  # the folder appears whole or not at all
    try:
        results = {}
        for name, folder in sets.items():
            names = [p.name for p in list_images(folder)]
            if names != gt_names:
                raise InputError(f"{folder}: {len(names)} images whose names differ from the {len(gt_names)} "
                                 f"of {paths.TEST / 'gt'} (every set must hold the test set's names)")
            images = read_images(folder, size)
            f = features(name, images)
            kid, kid_std = kid_from_features(f, gt)
            results[name] = {"fid": fid_from_statistics(statistics(f), gt_stats), "kid": kid, "kid_std": kid_std}
            write_evidence(tmp / f"{name}.npz", names=np.array(names), features=f,
                           missing_fraction=missing_fraction(known), **per_image_metrics(images, gt_images, known),
                           **(perceptual.per_image(lpips, images, gt_images, known) if lpips else {}))
            print(f"fid {name}: FID {results[name]['fid']:.2f}  KID {kid:.4f} +- {kid_std:.4f}", file=sys.stderr)
        write_json({"schedules": paths.FID_SCHEDULES, "baselines": paths.FID_BASELINES}[which], results)
        replace_dir(tmp, evidence)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return used


if __name__ == "__main__":
    run_stage(main, f"fid-{sys.argv[1] if len(sys.argv) > 1 else 'unknown'}")
