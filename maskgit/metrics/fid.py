"""FID and KID from torch-fidelity's ``inception-v3-compat`` pool features.

:class:`InceptionFeatures` takes a weights file (found offline by
``maskgit.project.inception_weights``); the metric maths is torch-fidelity's own
(``metric_fid`` / ``metric_kid``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np
import torch

from maskgit.metrics.registry import POINT_VALUES

FEATURE_DIM = 2048
KID_SUBSET_SIZE_MAX = 1000
KID_SUBSETS = 100
KID_SEED = 2020  # torch-fidelity's default rng_seed

# Images per Inception forward, per device type, however large fid.batch_size. On a CPU
# the activations of a large batch leave the cache, and past glibc's largest mmap threshold
# every forward page-faults them in afresh: an image then costs more in a batch of 50 than
# in one of 10 (docs/benchmarks.md). The number is fixed, not a param, because it is part
# of the features' bits: on one thread oneDNN picks another convolution kernel from 16
# images per forward on, whose last bits differ. Fixed, it keeps a CPU's FID independent of
# fid.batch_size (tests/test_fid.py). A GPU takes the whole batch.
INCEPTION_CHUNK = {"cpu": 10}


def inception_chunk(batch_size: int, device) -> int:
    """Images per Inception forward on `device` for a batch of `batch_size`."""
    return min(int(batch_size), INCEPTION_CHUNK.get(torch.device(device).type, int(batch_size)))


def is_offline() -> bool:
    """MASKGIT_OFFLINE or CI set: nothing may be downloaded."""
    def truthy(name: str) -> bool:
        value = os.environ.get(name, "").strip().lower()
        return value not in ("", "0", "false", "no", "off")

    return truthy("MASKGIT_OFFLINE") or truthy("CI")


# ---------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------


class InceptionFeatures:
    """2048-d pool features of torch-fidelity's ``inception-v3-compat`` extractor.

    Takes uint8 images (N, 3, H, W) of any size: the extractor itself resizes to
    299x299 with TF1-compatible bilinear interpolation and normalises (x - 128) / 128.
    """

    def __init__(
        self,
        weights_path: str | os.PathLike | None,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        progress: bool = True,
    ):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if weights_path is None and is_offline():
            raise RuntimeError(
                "No Inception weights given and offline (MASKGIT_OFFLINE/CI): pass a weights file "
                "(maskgit.project.inception_weights finds one from the fid.inception_weights param)"
            )
        self.weights_path = None if weights_path is None else Path(weights_path)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.chunk = inception_chunk(self.batch_size, self.device)
        self.progress = progress
        self.model = FeatureExtractorInceptionV3(
            "inception-v3-compat",
            ["2048"],
            feature_extractor_weights_path=None if weights_path is None else str(weights_path),
            verbose=False,
        ).to(self.device)
        # channels_last: the same network and weights in NHWC memory order, which the CPU
        # convolution kernels run faster with the same features (docs/findings.md)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.model.eval()

    def __call__(self, images_uint8: torch.Tensor, desc: str = "images") -> np.ndarray:
        from tqdm import tqdm

        images = torch.as_tensor(images_uint8)
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        n = images.shape[0]
        out = np.empty((n, FEATURE_DIM), dtype=np.float64)
        with torch.no_grad(), tqdm(
            total=n, desc=f"Inception features ({desc})", unit="img", disable=not self.progress, file=sys.stderr
        ) as bar:
            for start in range(0, n, self.chunk):
                batch = images[start : start + self.chunk].to(self.device)
                (feats,) = self.model(batch)
                out[start : start + len(batch)] = feats.detach().cpu().double().numpy()
                bar.update(len(batch))
        return out


# ---------------------------------------------------------------------------
# Metrics (torch-fidelity's own functions)
# ---------------------------------------------------------------------------


def _as_features(features) -> torch.Tensor:
    f = torch.as_tensor(np.asarray(features, dtype=np.float64))
    if f.dim() != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {tuple(f.shape)}")
    return f


def statistics(features) -> dict[str, np.ndarray]:
    """FID statistics {"mu": (D,), "sigma": (D, D)} in float64 (torch-fidelity's fid_features_to_statistics)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    f = _as_features(features)
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for FID statistics, got {f.shape[0]}")
    stats = fid_features_to_statistics(f)
    return {"mu": np.asarray(stats["mu"], np.float64), "sigma": np.asarray(stats["sigma"], np.float64)}


def _single_threaded_blas():
    """Limit numpy's BLAS to one thread when threadpoolctl is available, else do nothing.

    torch-fidelity's FID takes the eigenvalues of a 2048x2048 non-symmetric matrix, which
    OpenBLAS's threads slow down badly when another process holds a core; KID's many
    small products suffer the same way (docs/findings.md).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def fid_from_statistics(stats1: dict, stats2: dict) -> float:
    """FID between two statistics dicts (torch-fidelity's fid_statistics_to_metric)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    s1 = {k: np.asarray(stats1[k], np.float64) for k in ("mu", "sigma")}
    s2 = {k: np.asarray(stats2[k], np.float64) for k in ("mu", "sigma")}
    with _single_threaded_blas():
        return float(fid_statistics_to_metric(s1, s2, verbose=False)[KEY_METRIC_FID])


def point_values(features: np.ndarray, gt_features: np.ndarray, gt_stats: dict) -> dict[str, float]:
    """A set's FID and KID (with KID's spread over subsets) against the ground truth's
    features, without intervals: the evaluate stage gives those."""
    kid, kid_std = kid_from_features(features, gt_features)
    return dict(zip(POINT_VALUES, (fid_from_statistics(statistics(features), gt_stats), kid, kid_std)))


def describe_point_values(values: dict[str, float]) -> str:
    return f"FID {values['fid']:.2f}  KID {values['kid']:.4f} +- {values['kid_std']:.4f}"


def fid_from_features(f1, f2) -> float:
    return fid_from_statistics(statistics(f1), statistics(f2))


def kid_from_features(
    f1, f2, subset_size: int | None = None, subsets: int = KID_SUBSETS, seed: int = KID_SEED
) -> tuple[float, float]:
    """KID (mean, std) over ``subsets`` random subsets (torch-fidelity's kid_features_to_metric).

    subset_size defaults to min(1000, n1 // 2, n2 // 2): subsets as large as the whole set
    would all be the same set, leaving the spread (std) at zero. The seed makes it
    deterministic.
    """
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    t1, t2 = _as_features(f1), _as_features(f2)
    if subset_size is None:
        subset_size = min(KID_SUBSET_SIZE_MAX, t1.shape[0] // 2, t2.shape[0] // 2)
    if subset_size < 2:
        raise ValueError(f"KID needs a subset size of at least 2, got {subset_size}")
    with _single_threaded_blas():
        out = kid_features_to_metric(
            t1, t2, kid_subsets=int(subsets), kid_subset_size=int(subset_size), rng_seed=int(seed), verbose=False
        )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])
