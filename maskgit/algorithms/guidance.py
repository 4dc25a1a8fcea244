"""Pixel guidance: the known pixels of partly known tokens as a log-prior over codes
for the decoder (the `inpaint.pixel_guidance` param)."""

from __future__ import annotations

import torch

from maskgit.algorithms.compositing import harmonic_fill
from maskgit.algorithms.masking import known_fraction_per_token
from maskgit.models.vqgan import squared_distances


@torch.no_grad()
def pixel_prior(vqgan, masked_input: torch.Tensor, known: torch.Tensor, guidance: float) -> torch.Tensor:
    """Log-prior over codes, (B, N, K), from the known pixels of partly known tokens.

    By the lab's rule a token is unknown when any pixel of its patch is missing, so the
    transformer never sees the known pixels of the ring of tokens around each hole.
    This gives them back as evidence:
    the holes are filled by harmonic_fill and the result encoded; for a token whose
    patch is partly known, code k gets the log-prior
        -guidance * (d_k - min_j d_j) / spacing,
    d_k the squared distance of the encoder output to code k and spacing the median
    squared distance from a code to its nearest other code, so one guidance value
    means the same for any codebook's scale. Tokens fully known or fully missing get
    0: a fully missing patch has no pixel of its own to tell. What it gains:
    docs/findings.md, "Pixel guidance".

    masked_input: (B, C, H, W) normalised; known: (B, H, W) bool.
    """
    r = vqgan.latent_resolution
    b = masked_input.shape[0]
    patch_known = known_fraction_per_token(known, masked_input.shape[-1] // r)
    partly = (patch_known > 0) & (patch_known < 1)
    codes = vqgan.codebook.embedding.weight.float()
    z = vqgan.encode_latent(harmonic_fill(masked_input, known)).float()
    d = squared_distances(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), codes).view(b, r * r, -1)
    between = squared_distances(codes, codes).fill_diagonal_(float("inf"))
    spacing = between.min(dim=1).values.median().clamp_min(1e-12)  # a codebook of duplicates: no NaN
    prior = -(d - d.min(dim=-1, keepdim=True).values) * (guidance / spacing)
    return torch.where(partly[..., None].to(prior.device), prior, torch.zeros_like(prior))
