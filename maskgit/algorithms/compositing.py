"""Compositing: putting the known pixels back around a generated fill (paste, Poisson
seamless cloning), and the harmonic fill, the classical fill that needs no model."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from maskgit.choices import COMPOSITE





def composite(generated: torch.Tensor, masked_input: torch.Tensor, known: torch.Tensor,
              mode: str = "paste") -> torch.Tensor:
    """Put the known pixels of the input back: only the holes come from the model.

    generated, masked_input: (B, 3, H, W) in the same (linear) space; known: (B, H, W) bool.
    mode "paste": known pixels from the input, holes as generated; "poisson": the same,
    but the holes shifted by poisson_correction so that they meet the known pixels
    without a seam; "none": the generated image as is.
    """
    if mode not in COMPOSITE:
        raise ValueError(f"inpaint.composite must be one of {', '.join(COMPOSITE)}, got {mode!r}")
    if mode == "none":
        return generated
    known = known[:, None].to(generated.device)
    masked_input = masked_input.to(generated.device)
    if mode == "poisson":
        generated = generated + poisson_correction(masked_input - generated, known)
    return torch.where(known, masked_input, generated)


def harmonic_fill(masked_input: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The classical non-learned fill: every hole becomes the smoothest surface (the
    harmonic function, Laplace interpolation) that meets the known pixels around it.
    No model and no tokens; the reference a learned inpainter should beat.

    masked_input: (B, C, H, W) in a linear space; known: (B, H, W) bool.
    """
    known = known[:, None].to(masked_input.device)
    return torch.where(known, masked_input, poisson_correction(masked_input, known))


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 4 neighbours of every pixel of (B, C, H, W); outside the image counts 0."""
    p = F.pad(x, (1, 1, 1, 1))
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def poisson_correction(difference: torch.Tensor, known: torch.Tensor, tol: float = 1e-5,
                       max_iter: int | None = None) -> torch.Tensor:
    """The smooth field that seamless cloning (Perez et al., 2003) adds to a hole.

    Inside the holes (known False) returns the harmonic function c (discrete Laplace
    equation, 4-neighbours, no flux across the image border) equal to `difference`
    on the known pixels around them; 0 on known pixels. generated + c keeps the
    gradients of the generated fill and meets the known pixels exactly, so a fill
    that is a shade off leaves no visible rectangle around the hole. Solved by
    conjugate gradients, one system per image and channel, batched.

    difference: (B, C, H, W), input minus generated; known: (B, 1, H, W) or (B, H, W) bool.
    """
    if known.dim() == 3:
        known = known[:, None]
    hole = (~known.to(difference.device)).to(difference.dtype)
    difference = difference * (1 - hole)
    degree = _neighbour_sum(torch.ones_like(difference[:1, :1]))  # 4 inside, 3 on edges, 2 in corners

    def apply(c):  # the Laplacian restricted to the hole pixels (symmetric positive definite)
        return hole * (degree * c - _neighbour_sum(c * hole))

    b = hole * _neighbour_sum(difference)  # the known neighbours move to the right-hand side
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = (r * r).sum((-2, -1), keepdim=True)
    stop = (tol**2) * rr.clamp(min=1e-30)
    # CG on an L-pixel-wide hole needs O(L) iterations; 4 (H + W) is a generous cap
    # A system that has converged stops moving (alpha 0) while others go on: each
    # image's fill then takes the same iterations whatever else shares its batch, so
    # inpaint.batch_size changes no pixel. (Iterating all until the slowest converges
    # moved finished fills by a gray level in a few pixels depending on the batch.)
    for _ in range(max_iter or 4 * sum(difference.shape[-2:])):
        active = rr > stop
        if not bool(active.any()):
            break
        ap = apply(p)
        pap = (p * ap).sum((-2, -1), keepdim=True)
        alpha = torch.where(active & (pap > 0), rr / pap.clamp(min=1e-30), torch.zeros_like(pap))
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = (r * r).sum((-2, -1), keepdim=True)
        p = torch.where(active, r + torch.where(rr > 0, rr_new / rr.clamp(min=1e-30), torch.zeros_like(rr)) * p, p)
        rr = torch.where(active, rr_new, rr)
    return x
