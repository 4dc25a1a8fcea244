"""The lab's inpainting loop, written from its published algorithm (MaskGIT, Chang et
al. 2022, section 3.2, as the course lab states it) and deliberately NOT from this project's decoder: no import from
maskgit.algorithms.decoding or maskgit.algorithms.schedules. The benchmark times it and
compares its tokens with maskgit.algorithms.decoding, so that "tokens identical" is an
agreement between two implementations, not the decoder compared with itself.

As the lab ran it: one image at a time, with that image's own mask; argmax choices
(the confidence's Gumbel term is zero at choice_temperature 0, the only temperature
here: the lab drew its noise from its own generator, which no other loop can
reproduce); known tokens put back after every prediction; the n = floor(N0 * gamma(r))
lowest-confidence positions taken by top-k and masked again; and the VQGAN decode of
the image after every step.
"""

from __future__ import annotations

import math

import torch

# the lab's mask schedules, gamma(r) for r in [0, 1], written out again on purpose
LAB_GAMMA = {
    "cosine": lambda r: math.cos(r * math.pi / 2),
    "linear": lambda r: 1 - r,
    "square": lambda r: 1 - r**2,
}


@torch.no_grad()
def lab_inpaint_one(transformer, vqgan, tokens: torch.Tensor, unknown: torch.Tensor, *, total_iter: int,
                    sweet_spot: int, schedule: str = "cosine", decode_every_step: bool = True) -> torch.Tensor:
    """Inpaint one image: tokens (N,) long, unknown (N,) bool -> (N,) long."""
    mask_id, codebook = transformer.mask_token_id, transformer.codebook_size
    z = tokens.clone()
    mask = unknown.clone().bool()
    n0 = int(mask.sum())  # this image's unknown tokens at the start
    for t in range(min(total_iter, sweet_spot)):
        r = (t + 1) / total_iter
        logits = transformer(torch.where(mask, mask_id, z)[None])[0, :, :codebook].float()
        probs = torch.softmax(logits, dim=-1)
        z_pred = torch.where(mask, probs.argmax(dim=-1), z)  # known tokens restored
        if decode_every_step:
            vqgan.decode_tokens(z_pred[None])
        if t == min(total_iter, sweet_spot) - 1:
            return z_pred  # the last step (or the sweet spot): every token takes its choice
        confidence = torch.log(probs.gather(-1, z_pred[:, None])[:, 0])
        confidence = torch.where(mask, confidence, torch.tensor(float("inf"), device=z.device))
        still = int(mask.sum())
        n = min(max(math.floor(n0 * LAB_GAMMA[schedule](r)), 1), still - 1) if still else 0
        mask = torch.zeros_like(mask)
        if n > 0:
            mask[torch.topk(confidence, n, largest=False).indices] = True
        z = z_pred
    return z


def lab_inpaint(transformer, vqgan, tokens: torch.Tensor, unknown: torch.Tensor, **kwargs) -> torch.Tensor:
    """The lab's loop over a set: one image after the other. (B, N) -> (B, N) long on CPU."""
    return torch.stack([lab_inpaint_one(transformer, vqgan, tokens[i], unknown[i], **kwargs).cpu()
                        for i in range(len(tokens))])
