"""Per-image metrics of an inpainted image against its ground truth: PSNR and SSIM
over the whole image and inside the missing region, and the missing-pixel fraction.

The metric maths is torchmetrics' own; inside the hole, PSNR is torchmetrics' PSNR of
the hole pixels alone and SSIM is the mean of torchmetrics' SSIM map over them.
"""

from __future__ import annotations

import numpy as np
import torch

DATA_RANGE = 255.0


def missing_fraction(known: np.ndarray) -> np.ndarray:
    """(N, H, W) bool masks, True = known -> (N,) fraction of missing pixels."""
    return 1.0 - np.asarray(known, bool).reshape(len(known), -1).mean(1)


def per_image_metrics(images: np.ndarray, gt: np.ndarray, known: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 (N, H, W, 3) images and ground truth, bool (N, H, W) known masks ->
    {"psnr", "ssim", "hole_psnr", "hole_ssim"}: (N,) float64 each. An image with no
    missing pixel has hole metrics nan; a hole reproduced exactly has hole PSNR inf."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if images.shape != gt.shape or images.shape[:3] != known.shape:
        raise ValueError(f"shapes differ: images {images.shape}, gt {gt.shape}, masks {known.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double()
    y = torch.from_numpy(np.ascontiguousarray(gt)).permute(0, 3, 1, 2).double()
    hole = ~torch.from_numpy(np.asarray(known, bool))
    psnr = peak_signal_noise_ratio(x, y, data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3))
    ssim, ssim_map = structural_similarity_index_measure(
        x, y, data_range=DATA_RANGE, reduction="none", return_full_image=True)
    hole_psnr, hole_ssim = [], []
    for i in range(len(x)):
        h = hole[i]
        if not h.any():
            hole_psnr.append(float("nan"))
            hole_ssim.append(float("nan"))
            continue
        px, py = x[i][:, h], y[i][:, h]
        if torch.equal(px, py):
            hole_psnr.append(float("inf"))
        else:
            hole_psnr.append(float(peak_signal_noise_ratio(px, py, data_range=DATA_RANGE)))
        hole_ssim.append(float(ssim_map[i][:, h].mean()))
    return {"psnr": psnr.numpy().astype(np.float64), "ssim": ssim.numpy().astype(np.float64),
            "hole_psnr": np.array(hole_psnr), "hole_ssim": np.array(hole_ssim)}
