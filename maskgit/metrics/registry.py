"""The metrics a run is judged by, registered once: name, direction, how they are
printed, how they are computed, and which one the pages lead with.

How a metric is computed (`source`):
- PIXELS: per image, from the image, its ground truth and its mask (the FID stages
  store it in each set's evidence): its function is `per_image`;
- NETWORK: per image, by a network whose weights a run may lack (the FID stages store
  it when they have them): computed with the others of its `group`;
- FEATURES: from the Inception features of whole sets, by the evaluate stage: FID and
  KID (maskgit.metrics.bootstrap resamples them), and the metrics of a fitted `group`
  (an SVM per set: P-IDS and U-IDS).

Adding a metric: its entry in METRICS, and its function (a PIXELS metric's in
maskgit/metrics/image.py; a new group's in GROUPS). The FID stages then store it, the
evaluate stage gives it intervals and verdicts, the report and `python -m
maskgit.compare` print it; no code the pipeline runs outside maskgit/metrics/ names a
metric (the benchmark and tools/order_tables.py pick the ones they measure). Evidence
written before a PIXELS metric existed lacks it and is refused with one line: the FID
stages depend on this file, so `dvc repro` scores older runs again. Kept apart
from the bootstrap (maskgit.metrics.evaluation) because the FID stages import this
file: a change to the statistics must not re-run Inception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from maskgit.metrics import image, perceptual

PIXELS, NETWORK, FEATURES = "pixels", "network", "features"


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool
    digits: int  # printed after the point, at `scale`
    source: str = PIXELS  # how it is computed: PIXELS, NETWORK or FEATURES (module docstring)
    per_image: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None  # PIXELS: (images, gt, known) -> (n,)
    group: str | None = None  # computed with the others of its group (GROUPS)
    paired: bool = True  # compared between sets: verdicts, tables, compare pages
    # summarised per bucket of mask area; FID is not: at a few dozen images its bias swamps the differences
    by_area: bool = True
    scale: float = 1.0  # printed x scale: KID sits around 1e-3
    unit: str = ""
    hole: bool = False  # computed inside the missing region: nan for an image that has none


@dataclass(frozen=True)
class Group:
    """Metrics one function computes together, which a run may lack. A NETWORK group's
    function is `compute(model, images, gt, known)` (the FID stages call it); a FEATURES
    group's, `(gt_features, features)`, is maskgit.metrics.evaluation.FITTED's entry (only
    the evaluate stage depends on it: a change to it must not re-run Inception)."""
    source: str
    compute: Callable[..., dict[str, np.ndarray]] | None = None  # NETWORK
    # FEATURES: the evaluate.* setting below which it is not computed (maskgit.metrics.evaluation.Settings)
    min_images: str | None = None
    # why a run lacks it, on the pages; {images} and {<min_images>} are evaluation.json's
    absent: str = ""


# The order is the order of evaluation.json's flags (evaluation.computed_groups).
GROUPS: dict[str, Group] = {
    "ids": Group(FEATURES, min_images="ids_min_images", absent=(
        "P-IDS and U-IDS are not computed: {images} test images, fewer than `evaluate.ids_min_images` "
        "({ids_min_images}). Below about twice the 2048 Inception dimensions a linear SVM tells any two sets "
        "apart and both scores read 0 whatever the images (docs/evaluation.md).")),
    "lpips": Group(NETWORK, compute=perceptual.per_image, absent=(
        "LPIPS is not computed: the FID stages had no AlexNet weights for it (set `fid.lpips_backbone` to "
        "torchvision's `alexnet-owt-7be5be79.pth`; docs/evaluation.md).")),
}

# The order is the order of every table and of metrics/evaluation.json.
METRICS: dict[str, Metric] = {
    "fid": Metric("FID", higher_is_better=False, digits=2, source=FEATURES, by_area=False),
    "kid": Metric("KID", higher_is_better=False, digits=2, source=FEATURES, scale=1000.0),
    "psnr": Metric("PSNR", True, 2, per_image=image.psnr, paired=False, by_area=False, unit="dB"),
    "ssim": Metric("SSIM", True, 3, per_image=image.ssim, paired=False, by_area=False),
    "hole_psnr": Metric("hole PSNR", True, 2, per_image=image.hole_psnr, unit="dB", hole=True),
    "hole_ssim": Metric("hole SSIM", True, 3, per_image=image.hole_ssim, hole=True),
    # maskgit.metrics.perceptual, when the FID stages have the LPIPS backbone's weights
    # (fid.lpips_backbone); absent from the evidence otherwise
    "lpips": Metric("LPIPS", False, 3, source=NETWORK, group="lpips", by_area=False),
    "hole_lpips": Metric("hole LPIPS", False, 3, source=NETWORK, group="lpips", hole=True),
    # maskgit.metrics.ids; only from evaluate.ids_min_images test images on
    "u_ids": Metric("U-IDS", True, 1, source=FEATURES, group="ids", by_area=False, scale=100.0, unit="%"),
    "p_ids": Metric("P-IDS", True, 1, source=FEATURES, group="ids", by_area=False, scale=100.0, unit="%"),
}
# What the FID stages' files (metrics/fid_{decoders,baselines}.json) hold per set
POINT_VALUES = ("fid", "kid", "kid_std")
# The metrics a compact view shows, first the one the pages lead with and rank decoders
# by (FID, the field's), then the one that reads the hole itself.
SHOWN_FIRST = ("fid", "hole_psnr")
HEADLINE = SHOWN_FIRST[0]
PER_IMAGE = tuple(m for m, spec in METRICS.items() if spec.source == PIXELS)
NETWORK_METRICS = tuple(m for m, spec in METRICS.items() if spec.source == NETWORK)
# what the evidence may hold per image: PER_IMAGE always, NETWORK_METRICS when computed
STORED = PER_IMAGE + NETWORK_METRICS
HOLE = tuple(m for m, spec in METRICS.items() if spec.hole)  # may be nan: an image with no missing pixel
PAIRED = tuple(m for m, spec in METRICS.items() if spec.paired)
# per-image metrics first: the buckets are there for what happens inside the hole
BY_AREA = tuple(sorted((m for m, spec in METRICS.items() if spec.by_area), key=lambda m: METRICS[m].per_image is None))


def per_image_metrics(images: np.ndarray, gt: np.ndarray, known: np.ndarray,
                      networks: dict | None = None) -> dict[str, np.ndarray]:
    """uint8 (N, H, W, 3) images and ground truth, bool (N, H, W) known masks ->
    {metric: (N,) float64} for every PIXELS metric, and every NETWORK metric whose group's
    network is in `networks` ({group: model}, the ones a run has weights for)."""
    if images.shape != gt.shape or images.shape[:3] != known.shape:
        raise ValueError(f"shapes differ: images {images.shape}, gt {gt.shape}, masks {known.shape}")
    out = {m: METRICS[m].per_image(images, gt, known) for m in PER_IMAGE}
    for name, model in (networks or {}).items():
        out.update(GROUPS[name].compute(model, images, gt, known))
    return out





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
