"""Inpainting whole image sets: batched token decoding, VQGAN decoding, compositing."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .cli import release_free_heap, to_device
from .decode import inpaint_tokens
from .masking import known_fraction_per_token
from .vqgan import squared_distances


COMPOSITE = ("poisson", "paste", "none")


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


@torch.no_grad()
def pixel_prior(vqgan, masked_input: torch.Tensor, known: torch.Tensor, guidance: float) -> torch.Tensor:
    """Log-prior over codes, (B, N, K), from the known pixels of partly known tokens.

    By the lab's rule a token is unknown when any pixel of its patch is missing, so the
    transformer never sees the known pixels of the ring of tokens around each hole
    (43% of the hole tokens of the demo's test set). This gives them back as evidence:
    the holes are filled by harmonic_fill and the result encoded; for a token whose
    patch is partly known, code k gets the log-prior
        -guidance * (d_k - min_j d_j) / spacing,
    d_k the squared distance of the encoder output to code k and spacing the median
    squared distance from a code to its nearest other code, so one guidance value
    means the same for any codebook's scale. Tokens fully known or fully missing get
    0: a fully missing patch has no pixel of its own to tell. Measured on the demo:
    the partly known tokens take the ground truth's code 28% of the time without the
    prior and 51% with guidance 10.

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
    for _ in range(max_iter or 4 * sum(difference.shape[-2:])):
        if bool((rr <= stop).all()):
            break
        ap = apply(p)
        pap = (p * ap).sum((-2, -1), keepdim=True)
        alpha = torch.where(pap > 0, rr / pap.clamp(min=1e-30), torch.zeros_like(pap))
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = (r * r).sum((-2, -1), keepdim=True)
        p = r + torch.where(rr > 0, rr_new / rr.clamp(min=1e-30), torch.zeros_like(rr)) * p
        rr = rr_new
    return x


def image_generators(seed: int, indices: range, device) -> list[torch.Generator]:
    """One generator per image, seeded from (seed, index in the set): an image's noise
    is then the same whatever batch_size, and whichever images share its batch."""
    return [
        torch.Generator(device=device).manual_seed(int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint64)[0]))
        for i in indices
    ]


@torch.no_grad()
def inpaint_set(
    vqgan,
    transformer,
    tokens: torch.Tensor,
    unknown: torch.Tensor,
    *,
    batch_size: int,
    device,
    seed: int | None = None,
    history_images: int = 0,
    desc: str = "inpaint",
    on_batch: Callable[[slice, torch.Tensor, torch.Tensor], None] | None = None,
    prior_fn: Callable[[slice], torch.Tensor] | None = None,
    **decode_args,
):
    """Inpaint N images in batches of `batch_size`. Returns (tokens (N, n) long,
    images, history) where history, for the first `history_images` images, holds per
    step the still masked tokens (k, T, n) bool and the decoded current choice
    (k, T, 3, H, W).

    Without `on_batch`, images is (N, 3, H, W) float on CPU: the whole set in memory,
    for small sets and tests. With it, `on_batch(batch, tokens, images)` receives each
    batch's slice of the set, filled tokens and decoded images (float, CPU) and images
    is None: nothing of size N but the tokens is kept, so memory is bounded by
    `batch_size` whatever N (the stages write each batch out as it comes).

    `prior_fn(batch)`, when given, returns the log-prior (n, N, K) of the images in
    `batch` for inpaint_tokens (pixel_prior), computed a batch at a time like the rest.

    With `seed`, image i draws its noise (Gumbel confidences, samples) from its own
    generator seeded with (seed, i): results do not depend on batch_size. Without
    it, torch's global generator is used."""
    all_tokens, all_images = [], []
    masks_per_step, chosen_per_step = [], []

    def record(t, chosen, masked):
        masks_per_step.append(masked[:history_images].cpu())
        chosen_per_step.append(chosen[:history_images].clone())

    for start in tqdm(range(0, len(tokens), batch_size), desc=desc, unit="batch"):
        batch = slice(start, min(start + batch_size, len(tokens)))
        want_history = start == 0 and history_images > 0
        filled = inpaint_tokens(
            transformer,
            to_device(tokens[batch], device),
            to_device(unknown[batch], device),
            generator=None if seed is None else image_generators(seed, range(batch.start, batch.stop), device),
            on_step=record if want_history else None,
            prior=None if prior_fn is None else to_device(prior_fn(batch), device),
            **decode_args,
        )
        release_free_heap()  # the decoding loop's logits and activations
        images = vqgan.decode_tokens(filled).float().cpu()
        filled = filled.cpu()
        all_tokens.append(filled)
        if on_batch is None:
            all_images.append(images)
        else:
            on_batch(batch, filled, images)
            release_free_heap()  # the decoded images, once written

    history = None
    if masks_per_step:
        # only the few figure images are decoded at every step; the lab decoded all
        steps = [vqgan.decode_tokens(c).float().cpu() for c in chosen_per_step]
        history = {"masked": torch.stack(masks_per_step, 1), "images": torch.stack(steps, 1)}
    return torch.cat(all_tokens), (torch.cat(all_images) if on_batch is None else None), history
