"""Refuse params whose memory cannot fit before allocating anything: a batch size of
10^9 otherwise passes validation and the kernel kills the process a minute later
with no word of why.

The estimates are lower bounds (the largest activations a step must hold at once,
counted coarsely), so a run that is refused could never have fitted; a run that
passes may still be tight.
"""

from __future__ import annotations

import torch

from maskgit.project.errors import ParamError

FLOAT = 4  # bytes; activations are counted in fp32 (bf16 autocast halves some, not all)


def available_bytes(device: torch.device) -> int | None:
    """Free memory on the device: the CUDA driver's count, or the kernel's
    MemAvailable on CPU (None where it cannot be read)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def transformer_step_bytes(batch: int, num_tokens: int, vocab: int, dim: int, n_layers: int, n_heads: int,
                           mlp_dim: int, backward: bool = True) -> int:
    """Logits, attention maps and the per-layer activations a step keeps (for backward)."""
    logits = batch * num_tokens * vocab
    per_layer = batch * num_tokens * (4 * dim + mlp_dim) + batch * n_heads * num_tokens * num_tokens
    kept = n_layers * per_layer if backward else per_layer
    return FLOAT * (logits * (3 if backward else 1) + kept)


def vqgan_step_bytes(batch: int, size: int, channels: list[int]) -> int:
    """One feature map per encoder and decoder width at the full crop size (a lower
    bound: the real network holds several per width, some at lower resolution)."""
    return FLOAT * batch * size * size * (sum(channels) + 3) * 2


def inception_batch_bytes(batch: int) -> int:
    """Inception-v3 (FID) at 299x299 without gradients: its widest neighbouring pair of
    feature maps, 32 and 64 channels at 147x147, must be held at once."""
    return FLOAT * batch * (32 + 64) * 147 * 147


def check_fits(need: int, device: torch.device, what: str) -> None:
    free = available_bytes(device)
    if free is not None and need > free:
        raise ParamError(f"params.yaml: {what} needs at least {need / 2**30:.1f} GiB for one step but "
                         f"{torch.device(device)} has {free / 2**30:.1f} GiB free: lower it")
