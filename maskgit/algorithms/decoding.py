"""Iterative decoding of MaskGIT for inpainting, batched over images whose masks differ.

One step t = 0 .. T-1 with r = (t + 1) / T (Chang et al., 2022, section 3.2, as the lab implements it):
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

Step 5 is MaskGIT's *order*, which tokens are revealed; the schedule still decides
how many. `order` replaces it (ORDERS in maskgit.choices):
  confidence  the rule above (the paper's and the lab's);
  random      a uniform random order of the image's unknown tokens, drawn once per
              image from its generator;
  halton      the 2-D Halton sequence in bases (2, 3) mapped onto the token grid
              (Besnier et al., 2025, "Halton scheduler for masked generative image
              transformers"), filtered to the image's unknown tokens; with
              halton_shift, rolled on the grid by a seeded offset per image.
Random and Halton orders are fixed before the first step: the transformer's
predictions decide the tokens, never which positions are revealed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from maskgit.algorithms.devices import release_free_heap, to_device
from maskgit.algorithms.schedules import SCHEDULES, gamma
from maskgit.choices import ORDERS, SAMPLING


@dataclass(frozen=True)
class Decoding:
    """How a decoder fills a set: the settings of MaskGIT's loop, checked once (a
    ValueError naming the inpaint.* param), then handed to iterative_decode and
    decode_set whole. `schedule` and `order` make the decoder; the rest is shared by
    every decoder of a run."""

    schedule: str
    total_iter: int
    sweet_spot: int
    choice_temperature: float
    sampling: str = "argmax"
    order: str = "confidence"
    halton_shift: bool = False  # the Halton order rolled per image (halton only)

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"inpaint.orders: unknown order {self.order!r}; known: {', '.join(ORDERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"inpaint.schedules: unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        for name in ("total_iter", "sweet_spot"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"inpaint.{name} must be an integer >= 1, got {value!r}")
        t = self.choice_temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t >= 0):
            raise ValueError(f"inpaint.choice_temperature must be a finite number >= 0, got {t!r}")
        if self.sampling not in SAMPLING:
            raise ValueError(f"inpaint.sampling must be one of {', '.join(SAMPLING)}, got {self.sampling!r}")

    @property
    def steps(self) -> int:
        """Steps run: the lab's sweet spot stops the loop early."""
        return min(self.sweet_spot, self.total_iter)

    @classmethod
    def from_params(cls, inpaint: dict, schedule: str, order: str = "confidence") -> "Decoding":
        """One decoder's settings from params.yaml's inpaint section. halton_shift is read
        only where it matters (the Halton order), so that no other decoder depends on it."""
        return cls(schedule=schedule, total_iter=inpaint["total_iter"], sweet_spot=inpaint["sweet_spot"],
                   choice_temperature=inpaint["choice_temperature"], sampling=inpaint["sampling"], order=order,
                   halton_shift=order == "halton" and inpaint["halton_shift"])


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


def radical_inverse(i: int, base: int) -> float:
    """The i-th element of van der Corput's sequence in `base`: i's digits mirrored
    about the radix point (the coordinates of the Halton sequence)."""
    value, scale = 0.0, 1.0
    while i > 0:
        scale /= base
        i, digit = divmod(i, base)
        value += digit * scale
    return value


@functools.lru_cache(maxsize=8)
def _halton_cells(height: int, width: int) -> tuple[int, ...]:
    seen, order, i = set(), [], 1
    while len(order) < height * width:
        cell = int(radical_inverse(i, 2) * height) * width + int(radical_inverse(i, 3) * width)
        if cell not in seen:
            seen.add(cell)
            order.append(cell)
        i += 1
    return tuple(order)


def halton_order(height: int, width: int) -> torch.Tensor:
    """Every position of a height x width grid (row-major index), once, in the order
    the 2-D Halton sequence in bases (2, 3) first lands on it: point i (from 1) is
    (radical_inverse(i, 2), radical_inverse(i, 3)) = (row, column) as fractions of the
    grid. Points landing on a cell already taken are skipped."""
    return torch.tensor(_halton_cells(height, width), dtype=torch.long)


def reveal_priority(order: str, shape: tuple[int, int], generator: Generators, device,
                    halton_shift: bool = False) -> torch.Tensor:
    """(B, N) float32 for the random and Halton orders: higher is revealed earlier.
    The grid is square (N = side * side), as the VQGAN's token map is."""
    b, n = shape
    if order == "random":
        return _uniform(shape, generator, device)
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"the halton order needs a square token grid, got {n} tokens per image")
    rank = torch.empty(n, dtype=torch.float32)
    rank[halton_order(side, side)] = torch.arange(n, 0, -1, dtype=torch.float32)  # first point: highest
    rank = rank.to(device).expand(b, n)
    if not halton_shift:
        return rank.clone()
    # a toroidal roll of the whole order per image (valeoai's `randomize`): the
    # sequence keeps its spread, but images do not all start at the same cells
    offsets = (_uniform((b, 2), generator, device) * side).long()
    grid = rank.view(b, side, side)
    return torch.stack([torch.roll(g, (int(dy), int(dx)), (0, 1)) for g, (dy, dx) in zip(grid, offsets.tolist())]).view(b, n)


def _gumbel(shape, generator: Generators, device) -> torch.Tensor:
    # -log(-log U) with U kept away from 0 and 1 so the noise is finite
    u = _uniform(shape, generator, device).clamp(torch.finfo(torch.float32).tiny, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def _sample(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One draw per position from probs (B, N, K) -> (B, N) long."""
    if not _per_image(generator):
        return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).view(probs.shape[:2])
    return torch.stack([torch.multinomial(p, 1, generator=g).squeeze(-1) for p, g in zip(probs, generator)])


# The attention scores, (images, heads, N, N) float32, that one transformer forward may
# hold while decoding, per device type. On a CPU the scores of a whole batch leave the
# cache, and past glibc's largest mmap threshold (32 MiB) every forward page-faults them
# in afresh: an image then costs more in a large batch than in a small one
# (docs/benchmarks.md, section 9). A GPU takes the whole batch. Each image's logits come
# out the same whatever the chunk (tests/test_decode.py checks the bits): speed only.
FORWARD_SCORE_BYTES = {"cpu": 16 << 20}


def forward_chunk(transformer, device) -> int | None:
    """Images per decoding forward on `device`: as many as FORWARD_SCORE_BYTES holds the
    scores of (at least 1); None, the whole batch, on a device without a budget or for a
    model that does not say its number of heads."""
    budget = FORWARD_SCORE_BYTES.get(torch.device(device).type)
    heads = getattr(transformer, "config", {}).get("n_heads")
    if budget is None or heads is None:
        return None
    return max(1, budget // (heads * transformer.num_tokens ** 2 * 4))


def forward_in_chunks(transformer, tokens: torch.Tensor, chunk: int | None = 0) -> torch.Tensor:
    """transformer(tokens) computed `chunk` images at a time (0: forward_chunk's choice
    for the tokens' device, None: all at once)."""
    if chunk == 0:
        chunk = forward_chunk(transformer, tokens.device)
    if chunk is None or len(tokens) <= chunk:
        return transformer(tokens)
    return torch.cat([transformer(part) for part in tokens.split(chunk)])


@torch.no_grad()
def iterative_decode(
    transformer: torch.nn.Module,
    tokens: torch.Tensor,
    unknown: torch.Tensor,
    decoding: Decoding,
    *,
    chunk: int | None = 0,
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
    maskgit.algorithms.guidance.pixel_prior). The choice and its confidence then come from the
    softmax of the sum, p(code | context) * prior. None: the lab's decoding.
    `decoding`: the schedule, order and loop settings (Decoding); its choice_temperature
    only matters to the confidence order.
    `chunk`: images per transformer forward (0: maskgit's choice for the device,
    forward_chunk(); None: the whole batch at once); it changes the speed, never the result.
    """
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
    steps, total_iter = decoding.steps, decoding.total_iter
    positions = torch.arange(tokens.shape[1], device=device)
    # drawn before the first step so that a random order's draw comes first from each
    # image's generator, whatever the steps draw after it
    priority = (None if decoding.order == "confidence" else
                reveal_priority(decoding.order, tuple(tokens.shape), generator, device, decoding.halton_shift))

    for t in range(steps):
        r = (t + 1) / total_iter
        logits = forward_in_chunks(transformer, current, chunk)[..., :codebook_size].float()
        if prior is not None:
            logits = logits + prior
        log_probs = torch.log_softmax(logits, dim=-1)
        if decoding.sampling == "argmax":
            sampled = log_probs.argmax(dim=-1)
        else:
            sampled = _sample(log_probs.exp(), generator)
        chosen = torch.where(masked, sampled, current)
        if t == steps - 1:
            if on_step is not None:
                on_step(t, chosen, torch.zeros_like(masked))
            return chosen

        if priority is None:
            chosen_log_prob = log_probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
            tau = annealed_temperature(decoding.choice_temperature, r)
            confidence = chosen_log_prob + tau * _gumbel(chosen.shape, generator, device)
        else:
            confidence = priority
        confidence = torch.where(masked, confidence, torch.full_like(confidence, math.inf))

        n_keep = num_masked_after_step(n0, masked.sum(dim=1), decoding.schedule, r)
        # Stable ascending sort: equal confidences are ordered by position, so the
        # lower index is re-masked first and the result does not depend on the kernel.
        order = torch.sort(confidence, dim=1, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, positions.expand_as(order))
        masked = rank < n_keep[:, None]
        current = torch.where(masked, torch.full_like(chosen, mask_id), chosen)
        if on_step is not None:
            on_step(t, chosen, masked)
    return current  # only reached when steps == 0, which Decoding forbids


def image_generators(seed: int, indices: range, device) -> list[torch.Generator]:
    """One generator per image, seeded from (seed, index in the set): an image's noise
    is then the same whatever batch_size, and whichever images share its batch."""
    return [
        torch.Generator(device=device).manual_seed(int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint64)[0]))
        for i in indices
    ]


# Images go through the VQGAN decoder in chunks of exactly this many (the last one
# padded): oneDNN picks its convolution kernels by batch size, and with several
# threads two kernels round the same image differently, so decoding whole batches
# made a pixel's gray level depend on inpaint.batch_size (docs/faults.md). cuDNN also
# chooses by shape; one fixed size keeps that choice fixed there too.
DECODE_CHUNK = 16


def in_fixed_chunks(fn, x: torch.Tensor, chunk: int = DECODE_CHUNK) -> torch.Tensor:
    """fn(x) computed on chunks of exactly `chunk` items (the last padded), so that
    an item's result does not depend on how many came with it."""
    out = []
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk]
        n = len(part)
        if n < chunk:  # pad with copies of the first: its values do not matter, the size does
            part = torch.cat([part, part[:1].expand(chunk - n, *part.shape[1:])])
        out.append(fn(part)[:n])
    return torch.cat(out)


def decode_in_fixed_chunks(vqgan, tokens: torch.Tensor, chunk: int = DECODE_CHUNK) -> torch.Tensor:
    """vqgan.decode_tokens(tokens), each image decoded in a chunk of `chunk` images."""
    return in_fixed_chunks(vqgan.decode_tokens, tokens, chunk)


def reconstruct_in_fixed_chunks(vqgan, images: torch.Tensor, chunk: int = DECODE_CHUNK) -> torch.Tensor:
    """The VQGAN's reconstruction decode(encode(images)); the encoder's kernels round
    by batch size as the decoder's do, and a rounding can flip a token."""
    return decode_in_fixed_chunks(vqgan, in_fixed_chunks(vqgan.encode_to_tokens, images, chunk), chunk)


@torch.no_grad()
def decode_set(
    vqgan,
    transformer,
    tokens: torch.Tensor,
    unknown: torch.Tensor,
    decoding: Decoding,
    *,
    batch_size: int,
    device,
    seed: int | None = None,
    history_images: int = 0,
    desc: str = "inpaint",
    on_batch: Callable[[slice, torch.Tensor, torch.Tensor], None] | None = None,
    prior_fn: Callable[[slice], torch.Tensor] | None = None,
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
    `batch` for iterative_decode (pixel_prior), computed a batch at a time like the rest.

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
        filled = iterative_decode(
            transformer,
            to_device(tokens[batch], device),
            to_device(unknown[batch], device),
            decoding,
            generator=None if seed is None else image_generators(seed, range(batch.start, batch.stop), device),
            on_step=record if want_history else None,
            prior=None if prior_fn is None else to_device(prior_fn(batch), device),
        )
        release_free_heap()  # the decoding loop's logits and activations
        images = decode_in_fixed_chunks(vqgan, filled).float().cpu()
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
