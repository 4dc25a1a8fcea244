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


def _tensors(images: np.ndarray, gt: np.ndarray, known: np.ndarray):
    import torch  # here, not at import: the tools that only read stored evidence never load torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double()
    y = torch.from_numpy(np.ascontiguousarray(gt)).permute(0, 3, 1, 2).double()
    return x, y, ~torch.from_numpy(np.asarray(known, bool))


def _ssim_map(x, y):
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(x, y, data_range=DATA_RANGE, reduction="none", return_full_image=True)


def psnr(images: np.ndarray, gt: np.ndarray, known: np.ndarray) -> np.ndarray:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, y, _ = _tensors(images, gt, known)
    values = peak_signal_noise_ratio(x, y, data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3))
    return values.numpy().astype(np.float64)


def ssim(images: np.ndarray, gt: np.ndarray, known: np.ndarray) -> np.ndarray:
    x, y, _ = _tensors(images, gt, known)
    return _ssim_map(x, y)[0].numpy().astype(np.float64)


def hole_psnr(images: np.ndarray, gt: np.ndarray, known: np.ndarray) -> np.ndarray:
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, y, hole = _tensors(images, gt, known)
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
    x, y, hole = _tensors(images, gt, known)
    ssim_map = _ssim_map(x, y)[1]
    means = [float(ssim_map[i][:, h].mean()) if h.any() else float("nan") for i, h in enumerate(hole)]
    return np.array(means, np.float64)
