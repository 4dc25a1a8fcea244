"""Per-image metrics of an inpainted image against its ground truth: PSNR and SSIM
over the whole image and inside the missing region, and the missing-pixel fraction.

Each metric is a function (images, gt, known) -> (N,) float64 on uint8 (N, H, W, 3)
images and ground truth and bool (N, H, W) known masks; maskgit.metrics.evaluation
lists them. The metric maths is torchmetrics' own; inside the hole, PSNR is
torchmetrics' PSNR of the hole pixels alone and SSIM is the mean of torchmetrics' SSIM
map over them. An image with no missing pixel has hole metrics nan; a hole reproduced
exactly has hole PSNR inf.
"""

from __future__ import annotations

import numpy as np

DATA_RANGE = 255.0


def missing_fraction(known: np.ndarray) -> np.ndarray:
    """(N, H, W) bool masks, True = known -> (N,) fraction of missing pixels."""
    return 1.0 - np.asarray(known, bool).reshape(len(known), -1).mean(1)


def _images(images: np.ndarray, gt: np.ndarray):
    """(N, H, W, 3) uint8 arrays as (N, 3, H, W) float64 tensors for torchmetrics."""
    import torch  # here, not at import: the tools that only read stored evidence never load torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double()
    y = torch.from_numpy(np.ascontiguousarray(gt)).permute(0, 3, 1, 2).double()
    return x, y


def _hole(known: np.ndarray):
    """The missing pixels, (N, H, W) bool tensor, from the known ones."""
    import torch

    return ~torch.from_numpy(np.asarray(known, bool))


# The last set's SSIM (per image, and the map): ssim and hole_ssim of one set ask for the
# same map, the dearest per-image computation, one after the other
_SSIM_LAST: list = []


def _ssim_map(images: np.ndarray, gt: np.ndarray):
    """torchmetrics' SSIM of each image and its full map, for uint8 (N, H, W, 3) images."""
    for seen_images, seen_gt, result in _SSIM_LAST:
        if seen_images.shape == images.shape and np.array_equal(seen_images, images) and np.array_equal(seen_gt, gt):
            return result
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = _images(images, gt)
    # One image per call. The Gaussian window is a float64 conv2d, whose buffers for a
    # whole set are large enough to be mapped afresh and page-faulted in on every call
    # (several times slower); each image's SSIM and map are the same bits either way
    # (tests/test_metric_formulas.py).
    parts = [structural_similarity_index_measure(x[i : i + 1], y[i : i + 1], data_range=DATA_RANGE,
                                                 reduction="none", return_full_image=True) for i in range(len(x))]
    result = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    _SSIM_LAST[:] = [(np.array(images), np.array(gt), result)]
    return result


def psnr(images: np.ndarray, gt: np.ndarray, known: np.ndarray) -> np.ndarray:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, y = _images(images, gt)
    values = peak_signal_noise_ratio(x, y, data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3))
    return values.numpy().astype(np.float64)


def ssim(images: np.ndarray, gt: np.ndarray, known: np.ndarray) -> np.ndarray:
    return _ssim_map(images, gt)[0].numpy().astype(np.float64)


def hole_psnr(images: np.ndarray, gt: np.ndarray, known: np.ndarray) -> np.ndarray:
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio

    (x, y), hole = _images(images, gt), _hole(known)
    out = []
    for i in range(len(x)):
        h = hole[i]
        if not h.any():
            out.append(float("nan"))
            continue
        px, py = x[i][:, h], y[i][:, h]
        exact = torch.equal(px, py)
        out.append(float("inf") if exact else float(peak_signal_noise_ratio(px, py, data_range=DATA_RANGE)))
    return np.array(out, np.float64)


def hole_ssim(images: np.ndarray, gt: np.ndarray, known: np.ndarray) -> np.ndarray:
    hole = _hole(known)
    ssim_map = _ssim_map(images, gt)[1]
    means = [float(ssim_map[i][:, h].mean()) if h.any() else float("nan") for i, h in enumerate(hole)]
    return np.array(means, np.float64)
