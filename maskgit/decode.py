"""Iterative decoding of MaskGIT for inpainting, batched over images whose masks differ.

One step t = 0 .. T-1 with r = (t + 1) / T (../shared/GUIDE.md section 1):
  1. run the transformer on the current tokens (unknown ones = mask_token_id);
  2. slice the logits to the real codebook, so the mask id is never predicted;
  3. choose a token for every unknown position (argmax, or a sample of the softmax);
     known tokens are never replaced;
  4. confidence = log p(chosen) + tau * Gumbel, tau = choice_temperature * (1 - r),
     recomputed from the base temperature at every step (never compounded);
     known tokens get +inf;
  5. keep masked the n lowest-confidence positions, n = floor(N0 * gamma(r)) with N0
     the number of unknown tokens of *that image* at the start, clamped to
     [1, currently_unknown - 1] while steps remain; ties go to the lower index;
  6. after the last step nothing stays masked: the output is the chosen tokens.
The lab's sweet spot stops after `sweet_spot` steps; every position still unknown
then keeps its choice from that step.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .schedules import SCHEDULES, gamma

SAMPLING = ("argmax", "sample")


def check_decode_args(schedule: str, total_iter, sweet_spot, choice_temperature, sampling: str) -> None:
    """Raise ValueError naming the offending argument (as its inpaint.* param)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"inpaint.schedules: unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    for name, value in (("total_iter", total_iter), ("sweet_spot", sweet_spot)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"inpaint.{name} must be an integer >= 1, got {value!r}")
    if isinstance(choice_temperature, bool) or not isinstance(choice_temperature, (int, float)) or not (
        math.isfinite(choice_temperature) and choice_temperature >= 0
    ):
        raise ValueError(f"inpaint.choice_temperature must be a finite number >= 0, got {choice_temperature!r}")
    if sampling not in SAMPLING:
        raise ValueError(f"inpaint.sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")


def num_masked_after_step(n0: torch.Tensor, currently_unknown: torch.Tensor, schedule: str, r: float) -> torch.Tensor:
    """How many tokens of each image stay masked after a step that is not the last.

    floor(N0 * gamma(r)), clamped so that a step reveals at least one token and keeps
    at least one masked. An image whose unknown tokens are all revealed already (or
    had none) stays at 0. The product is taken in float64 plus 1e-9 so that exact
    products land on their integer: 1 - 0.8 is 0.19999999999999996 in binary, and
    floor(5 * 0.2) must be 1, not 0.
    """
    n = torch.floor(n0.double() * gamma(schedule, r) + 1e-9).long()
    n = torch.minimum(n.clamp(min=1), currently_unknown - 1)
    return n.clamp(min=0)


def annealed_temperature(choice_temperature: float, r: float) -> float:
    """tau of step r: linear annealing from the base temperature to 0 at r = 1."""
    return choice_temperature * (1.0 - r)


Generators = torch.Generator | Sequence[torch.Generator] | None


def _per_image(generator: Generators) -> bool:
    """True for a sequence of generators, one per image of the batch."""
    return generator is not None and not isinstance(generator, torch.Generator)


def _uniform(shape, generator: Generators, device) -> torch.Tensor:
    """U(0, 1) noise of `shape` (B, ...): from one generator, or row b from generator b."""
    if not _per_image(generator):
        return torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    return torch.stack([torch.rand(shape[1:], generator=g, device=device, dtype=torch.float32) for g in generator])


def _gumbel(shape, generator: Generators, device) -> torch.Tensor:
    # -log(-log U) with U kept away from 0 and 1 so the noise is finite
    u = _uniform(shape, generator, device).clamp(torch.finfo(torch.float32).tiny, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def _sample(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One draw per position from probs (B, N, K) -> (B, N) long."""
    if not _per_image(generator):
        return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).view(probs.shape[:2])
    return torch.stack([torch.multinomial(p, 1, generator=g).squeeze(-1) for p, g in zip(probs, generator)])


@torch.no_grad()
def inpaint_tokens(
    transformer: torch.nn.Module,
    tokens: torch.Tensor,
    unknown: torch.Tensor,
    *,
    schedule: str,
    total_iter: int,
    sweet_spot: int,
    choice_temperature: float,
    sampling: str = "argmax",
    generator: Generators = None,
    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fill the unknown tokens of a batch by MaskGIT's iterative decoding.

    tokens: (B, N) long, the tokenised input (values at unknown positions are ignored);
    unknown: (B, N) bool, True where the token must be generated; it may differ per image.
    Returns (B, N) long: known positions unchanged, every unknown one filled.
    `generator`: one torch.Generator for the batch, or a sequence of B, one per image,
    so that an image's noise does not depend on which images share its batch.
    `on_step(t, chosen, still_masked)` is called after each step with the tokens chosen
    at that step and the mask that remains (for the lab's per-step figures).
    `prior`: optional (B, N, codebook_size) log-prior added to the logits at every step,
    evidence about the unknown tokens from outside the token grid (see
    maskgit.inpaint.pixel_prior). The choice and its confidence then come from the
    softmax of the sum, p(code | context) * prior. None: the lab's decoding.
    """
    check_decode_args(schedule, total_iter, sweet_spot, choice_temperature, sampling)
    if tokens.shape != unknown.shape or tokens.dim() != 2:
        raise ValueError(f"tokens {tuple(tokens.shape)} and unknown {tuple(unknown.shape)} must both be (B, N)")
    codebook_size = transformer.codebook_size
    if prior is not None and prior.shape != (*tokens.shape, codebook_size):
        raise ValueError(f"prior {tuple(prior.shape)} must be (B, N, codebook_size) = {(*tokens.shape, codebook_size)}")
    mask_id = transformer.mask_token_id
    unknown = unknown.bool()
    device = tokens.device
    if _per_image(generator) and len(generator) != len(tokens):
        raise ValueError(f"{len(generator)} generators for a batch of {len(tokens)} images: give one per image")

    n0 = unknown.sum(dim=1)  # per image, fixed for the whole loop
    masked = unknown.clone()
    current = torch.where(masked, torch.full_like(tokens, mask_id), tokens)
    steps = min(sweet_spot, total_iter)
    positions = torch.arange(tokens.shape[1], device=device)

    for t in range(steps):
        r = (t + 1) / total_iter
        logits = transformer(current)[..., :codebook_size].float()
        if prior is not None:
            logits = logits + prior
        log_probs = torch.log_softmax(logits, dim=-1)
        if sampling == "argmax":
            sampled = log_probs.argmax(dim=-1)
        else:
            sampled = _sample(log_probs.exp(), generator)
        chosen = torch.where(masked, sampled, current)
        if t == steps - 1:
            if on_step is not None:
                on_step(t, chosen, torch.zeros_like(masked))
            return chosen

        chosen_log_prob = log_probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
        tau = annealed_temperature(choice_temperature, r)
        confidence = chosen_log_prob + tau * _gumbel(chosen.shape, generator, device)
        confidence = torch.where(masked, confidence, torch.full_like(confidence, math.inf))

        n_keep = num_masked_after_step(n0, masked.sum(dim=1), schedule, r)
        # Stable ascending sort: equal confidences are ordered by position, so the
        # lower index is re-masked first and the result does not depend on the kernel.
        order = torch.sort(confidence, dim=1, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, positions.expand_as(order))
        masked = rank < n_keep[:, None]
        current = torch.where(masked, torch.full_like(chosen, mask_id), chosen)
        if on_step is not None:
            on_step(t, chosen, masked)
    return current  # only reached when steps == 0, which check_decode_args forbids
