"""Where tensors run: host-to-device copies, the autocast of a `precision` param, and
heap trimming for loops that stream batches through memory."""

from __future__ import annotations

import functools

import torch


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host to device; on CUDA through pinned memory, so the copy overlaps compute."""
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def autocast(device: torch.device, precision: str):
    """The autocast context of a `precision` param: bf16 runs matmuls in bfloat16
    (faster on GPUs and on CPUs with bf16 instructions); fp32 is plain float32.
    Weights and optimizer state stay float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def release_free_heap() -> None:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim; a no-op elsewhere).

    Called between inpainting batches. glibc raises its mmap threshold after large
    frees, so later batches' tensors land on the heap and fragment it, and resident
    memory creeps up batch after batch although nothing is kept. Trimming holds it
    flat; a fixed mmap threshold would too, but page-faults on every large tensor
    (docs/findings.md)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
