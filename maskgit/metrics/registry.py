"""The metrics a run is judged by, registered once: name, direction, how they are
printed, and for a per-image metric the function that computes it.

Adding a metric: an entry in METRICS (and, per image, its function in
maskgit/metrics/image.py). The FID stages then store it for every image, the evaluate
stage gives it intervals and verdicts, the report and `python -m maskgit.compare` print
it. Kept apart from the bootstrap (maskgit.metrics.evaluation) because the FID stages
import this file: a change to the statistics must not re-run Inception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from maskgit.metrics import image


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool
    digits: int  # printed after the point, at `scale`
    per_image: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None  # (images, gt, known) -> (n,)
    paired: bool = True  # compared between sets: verdicts, tables, compare pages
    # summarised per bucket of mask area; FID is not: at a few dozen images its bias swamps the differences
    by_area: bool = True
    scale: float = 1.0  # printed x scale: KID sits around 1e-3
    unit: str = ""
    # computed by the evaluate stage from the Inception features of a whole set (not stored
    # per image by the FID stages): a change to it must not re-run Inception either
    from_features: bool = False
    perceptual: bool = False  # needs the LPIPS network, which a run may lack


# The order is the order of every table and of metrics/evaluation.json.
METRICS: dict[str, Metric] = {
    "fid": Metric("FID", higher_is_better=False, digits=2, by_area=False),
    "kid": Metric("KID", higher_is_better=False, digits=2, scale=1000.0),
    "psnr": Metric("PSNR", True, 2, image.psnr, paired=False, by_area=False, unit="dB"),
    "ssim": Metric("SSIM", True, 3, image.ssim, paired=False, by_area=False),
    "hole_psnr": Metric("hole PSNR", True, 2, image.hole_psnr, unit="dB"),
    "hole_ssim": Metric("hole SSIM", True, 3, image.hole_ssim),
    # maskgit.metrics.perceptual, stored per image by the FID stages when they have the
    # LPIPS backbone's weights (fid.lpips_backbone), absent from the evidence otherwise
    "lpips": Metric("LPIPS", False, 3, by_area=False, perceptual=True),
    "hole_lpips": Metric("hole LPIPS", False, 3, perceptual=True),
    # maskgit.metrics.ids; only from evaluate.ids_min_images test images on
    "u_ids": Metric("U-IDS", True, 1, by_area=False, scale=100.0, unit="%", from_features=True),
    "p_ids": Metric("P-IDS", True, 1, by_area=False, scale=100.0, unit="%", from_features=True),
}
PER_IMAGE = tuple(m for m, spec in METRICS.items() if spec.per_image)
PERCEPTUAL = tuple(m for m, spec in METRICS.items() if spec.perceptual)
# what the evidence may hold per image: PER_IMAGE always, PERCEPTUAL when it was computed
STORED = PER_IMAGE + PERCEPTUAL
PAIRED = tuple(m for m, spec in METRICS.items() if spec.paired)
# per-image metrics first: the buckets are there for what happens inside the hole
BY_AREA = tuple(sorted((m for m, spec in METRICS.items() if spec.by_area), key=lambda m: METRICS[m].per_image is None))


def per_image_metrics(images: np.ndarray, gt: np.ndarray, known: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 (N, H, W, 3) images and ground truth, bool (N, H, W) known masks ->
    {metric: (N,) float64} for every per-image metric."""
    if images.shape != gt.shape or images.shape[:3] != known.shape:
        raise ValueError(f"shapes differ: images {images.shape}, gt {gt.shape}, masks {known.shape}")
    return {m: METRICS[m].per_image(images, gt, known) for m in PER_IMAGE}


def axis_title(metric: str) -> str:
    """The metric's name on a figure's axis: its unit and which way is better."""
    spec = METRICS[metric]
    better = "higher" if spec.higher_is_better else "lower"
    return f"{spec.label} ({spec.unit + ', ' if spec.unit else ''}{better} is better)"


def label(metric: str) -> str:
    """The metric's name in a table header: KID says it is printed x 1000, U-IDS in %."""
    spec = METRICS[metric]
    if spec.unit == "%":
        return f"{spec.label} (%)"
    return spec.label + (f" x {spec.scale:g}" if spec.scale != 1.0 else "")
