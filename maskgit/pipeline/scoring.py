"""Image sets scored against the ground truth: torch-fidelity's inception-v3-compat
features, FID and KID, and each set's per-image evidence (maskgit.project.evidence).
The FID stages score the main test set with it, a mask family's stage its own."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from maskgit.metrics.fid import InceptionFeatures, describe_point_values, inception_chunk, point_values, statistics
from maskgit.metrics.image import missing_fraction
from maskgit.metrics.registry import per_image_metrics
from maskgit.project.errors import InputError
from maskgit.project.evidence import write_evidence
from maskgit.project.files import list_images, read_images, read_masks, sha256_file
from maskgit.project.grid import TestSet
from maskgit.project.inception_weights import CACHE_DIR, resolve_inception_weights
from maskgit.project.lpips_weights import find_backbone, load_lpips
from maskgit.pipeline.memory import check_fits, inception_batch_bytes


def images_per_forward(batch_size: int, device, n_images: int) -> int:
    """Images in one Inception forward: the device's chunk of fid.batch_size, and never
    more than the test set holds (a set of 4 needs memory for 4, not for the chunk)."""
    return min(inception_chunk(batch_size, device), max(n_images, 1))


class Scorer:
    """Inception (and LPIPS, when its backbone resolves) loaded once for a stage.
    `used` names the weights behind the scores, for the report's provenance."""

    def __init__(self, params: dict, device, n_images: int, lpips: bool = True):
        self.size = params["data"]["image_size"]
        batch_size = params["fid"]["batch_size"]
        per_forward = images_per_forward(batch_size, device, n_images)
        check_fits(inception_batch_bytes(per_forward), device,
                   f"fid.batch_size {batch_size} ({per_forward} images per forward)")
        # every weights file resolved and read before the first is put to work: a bad one
        # stops the stage at once
        self.networks, backbone = {}, None  # {metric group: its network}, those the run has weights for
        if lpips:
            backbone, skipped = find_backbone(params["fid"]["lpips_backbone"])
            if backbone:
                self.networks["lpips"] = load_lpips(backbone, device)
            if skipped:
                print(f"fid: LPIPS skipped, {skipped}", file=sys.stderr)
        weights, _ = resolve_inception_weights(params["fid"]["inception_weights"], CACHE_DIR)
        try:
            self.extract = InceptionFeatures(weights, device=device, batch_size=batch_size)
        except RuntimeError as e:  # torch's key/shape dump spans pages: its first line names the problem
            if "state_dict" not in str(e):
                raise
            raise InputError(f"fid.inception_weights: {weights} does not fit torch-fidelity's inception-v3-compat "
                             f"network ({str(e).splitlines()[0][:120]})") from None
        self.used = {"inception_weights_sha256": sha256_file(weights) if weights is not None else None}
        if lpips:
            self.used["lpips_backbone_sha256"] = sha256_file(backbone) if backbone else None

    def features(self, name: str, images: np.ndarray) -> np.ndarray:
        return self.extract(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), desc=name)

    def score(self, image_sets: dict[str, Path], gt: np.ndarray, test_set: TestSet, out: Path,
              prefix: str = "", with_point_values: bool = True) -> dict:
        """Each set's evidence written to out/<set>.npz, read against `test_set`'s ground
        truth and masks, and (with_point_values) its FID and KID against the ground truth's
        features `gt`; without them only the evaluate stage's FID and KID, with intervals,
        are computed: torch-fidelity's FID solves a 2048 x 2048 eigenproblem per set.
        Every set must hold the ground truth's file names."""
        gt_dir, mask_dir = test_set.gt, test_set.mask64
        gt_stats = statistics(gt) if with_point_values else None
        gt_names = [p.name for p in list_images(gt_dir)]
        gt_images, known = read_images(gt_dir, self.size), read_masks(mask_dir, self.size)
        if len(gt_images) != len(gt) or len(known) != len(gt):
            raise InputError(f"{gt_dir}: {len(gt_images)} ground-truth images and {len(known)} masks in {mask_dir}, "
                             f"but the ground-truth features hold {len(gt)} (re-run fid_reference)")
        results = {}
        for name, folder in image_sets.items():
            names = [p.name for p in list_images(folder)]
            if names != gt_names:
                raise InputError(f"{folder}: {len(names)} images whose names differ from the {len(gt_names)} "
                                 f"of {gt_dir} (every set must hold the test set's names)")
            images = read_images(folder, self.size)
            f = self.features(prefix + name, images)
            if with_point_values:
                results[name] = point_values(f, gt, gt_stats)
                print(f"fid {prefix}{name}: {describe_point_values(results[name])}", file=sys.stderr)
            write_evidence(out / f"{name}.npz", names=np.array(names), features=f,
                           missing_fraction=missing_fraction(known),
                           **per_image_metrics(images, gt_images, known, self.networks))
        return results
