"""Measuring speed honestly: synchronised medians, the machine's own matmul peak,
and the FLOPs of a model's forward pass (counted by torch, not estimated)."""

from __future__ import annotations

import statistics
import time

import torch


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of fn() over `repeats` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 3) -> float:
    """FLOP/s of a large square matmul: the practical ceiling of this device and dtype,
    against which utilisation figures are stated."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / timed(lambda: a @ b, device, repeats)


@torch.no_grad()
def forward_flops(model: torch.nn.Module, batch: torch.Tensor) -> int:
    """FLOPs of one forward pass on `batch`, from torch's FLOP counter (eval mode, so
    that counting draws no dropout randomness)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(batch)
    model.train(was_training)
    return counter.get_total_flops()


def train_step_flops(model: torch.nn.Module, batch: torch.Tensor) -> int:
    """FLOPs of one training step on `batch`: the counted forward plus a backward of
    twice that (gradients of activations and of weights), the usual 3x rule."""
    return 3 * forward_flops(model, batch)
