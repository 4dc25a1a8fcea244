"""Masks: the lab's pixel-to-token rule and the training masks of masked visual
token modelling (MVTM)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from maskgit.algorithms.schedules import gamma


def known_fraction_per_token(known: torch.Tensor, patch: int) -> torch.Tensor:
    """Fraction of known pixels in each token's patch.

    known: (B, H, W) or (B, 1, H, W), 1/True = known pixel. Returns float (B, h*w),
    row-major like the VQGAN's token order.
    """
    if known.dim() == 3:
        known = known[:, None]
    h, w = known.shape[-2:]
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not divisible by the token patch {patch}")
    return F.avg_pool2d(known.float(), patch).flatten(1)


def token_unknown_from_pixel_mask(known: torch.Tensor, patch: int) -> torch.Tensor:
    """The lab's rule: a token is unknown when any pixel of its patch is missing.

    known: (B, H, W) or (B, 1, H, W), 1/True = known pixel. Returns bool (B, h*w),
    row-major like the VQGAN's token order.
    """
    return known_fraction_per_token(known, patch) < 1.0


def random_token_mask(
    batch: int,
    num_tokens: int,
    schedule: str,
    r_range: tuple[float, float] = (0.0, 1.0),
    regional_prob: float = 0.0,
    grid: int | None = None,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """Training mask for MVTM: per sample r ~ U(r_range), exactly ceil(gamma(r) * N)
    positions masked (True).

    Positions are chosen uniformly at random, or, with probability `regional_prob`,
    as the ceil(gamma(r) * N) tokens nearest to a random centre under a random
    anisotropic metric: a blob of the same size. Test-time inpainting masks are
    regional, unlike uniform ones, and the GUIDE suggests mixing them in.
    """
    lo, hi = r_range
    r = lo + (hi - lo) * torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    n_mask = torch.ceil(gamma(schedule, r) * num_tokens).long().clamp(1, num_tokens)
    scores = torch.rand(batch, num_tokens, generator=generator, device=device)
    if regional_prob > 0:
        grid = grid or math.isqrt(num_tokens)
        ys, xs = torch.meshgrid(
            torch.arange(grid, device=device, dtype=torch.float32),
            torch.arange(grid, device=device, dtype=torch.float32),
            indexing="ij",
        )
        centre = torch.rand(batch, 2, generator=generator, device=device) * grid
        scale = 0.5 + torch.rand(batch, 2, generator=generator, device=device)
        dist = ((ys.flatten() - centre[:, :1]) * scale[:, :1]) ** 2 + ((xs.flatten() - centre[:, 1:]) * scale[:, 1:]) ** 2
        # the small uniform jitter makes blob borders ragged and breaks ties
        regional = dist / grid**2 + 0.05 * scores
        use_regional = torch.rand(batch, 1, generator=generator, device=device) < regional_prob
        scores = torch.where(use_regional, regional, scores)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < n_mask[:, None]
