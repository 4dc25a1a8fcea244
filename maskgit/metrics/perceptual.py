"""LPIPS (Zhang et al., 2018), the perceptual distance LaMa and later inpainting papers
report, per image: over the whole image and inside the hole.

The implementation is the authors' own package, `lpips` (version 0.1 of its linear
heads, which ship inside the package), on the AlexNet backbone the papers use. The
backbone's ImageNet weights are not in any package: they come from a file, a
torchvision AlexNet state dict (`alexnet-owt-7be5be79.pth`), named by the param
fid.lpips_backbone or found in torch's hub cache (maskgit.project.lpips_weights), never
downloaded here. Without one the FID stages store no LPIPS.

- lpips: the package's value, its per-layer distances averaged over each layer's grid.
- hole_lpips: the package's spatial map (each layer's distance upsampled to the image and
  summed over layers) averaged over the missing pixels: the same distance, read only
  where the image was filled. The known pixels are pasted back into every output, so
  outside the hole the two images agree and the map is low but not zero (AlexNet's
  receptive fields reach into the hole).

Lower is better for both. tests/test_perceptual.py checks the whole-image value against
torchmetrics' LPIPS fed the same backbone.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's name for its ImageNet AlexNet


def from_backbone(state: dict, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The lpips package's AlexNet LPIPS with its own linear heads and this backbone: a
    torchvision AlexNet state dict (maskgit.project.lpips_weights reads the file)."""
    import lpips

    with warnings.catch_warnings():
        # lpips builds torchvision's AlexNet with the deprecated `pretrained=False`, which
        # torchvision reads as weights=None: no download, which is the point
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    # torchvision's keys are features.<i>.*; the package keeps the same layers as slices
    mapped = {}
    for name in model.net.state_dict():
        _, index, rest = name.split(".", 2)
        key = f"features.{index}.{rest}"
        if key not in state:
            raise ValueError(f"not a torchvision AlexNet state dict (no {key})")
        mapped[name] = state[key]
    model.net.load_state_dict(mapped)
    return model.eval().to(device)


@torch.no_grad()
def per_image(model: torch.nn.Module, images: np.ndarray, gt: np.ndarray, known: np.ndarray,
              batch_size: int = 50) -> dict[str, np.ndarray]:
    """uint8 (N, H, W, 3) images and ground truth, bool (N, H, W) known masks ->
    {"lpips": (N,), "hole_lpips": (N,)} float64; hole_lpips is nan for an image without hole."""
    device = next(model.parameters()).device
    out = {"lpips": np.empty(len(images)), "hole_lpips": np.empty(len(images))}
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        a, b = (torch.as_tensor(x[sl]).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device) for x in (images, gt))
        model.spatial = False
        out["lpips"][sl] = model(a, b).flatten().double().cpu().numpy()
        model.spatial = True
        spatial = model(a, b)[:, 0].double().cpu().numpy()  # (n, H, W)
        hole = ~known[sl]
        count = hole.sum((1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            out["hole_lpips"][sl] = np.where(count > 0, (spatial * hole).sum((1, 2)) / count, np.nan)
    model.spatial = False
    return out
