"""Where tensors run: host-to-device copies, the autocast of a `precision` param, and
glibc's heap: trimmed between batches that stream through memory, and kept by a stage
between its steps.

glibc's malloc serves a block above its mmap threshold (32 MiB at most) with a fresh mmap
and unmaps it on free, and returns the top of its heap past the trim threshold. A
training step or a batched forward allocates temporaries that large on every step (the
attention scores of 32 sequences of 256 tokens in float32 are 32 MiB a layer), so every
step the kernel maps them again, zero-fills them and takes a fault for each 4 KiB page
touched: time spent on nothing the model computes. `keep_freed_memory` turns mmap off
for large blocks and raises the trim threshold, so freed blocks go back to malloc's free
lists and the next step reuses pages already mapped. Speed only: the arithmetic, and so
every bit a stage writes, is the same (tests/test_allocator.py checks the faults,
`python -m maskgit.bench` section 10 the time). A process then keeps its peak memory
until it exits, and a varied allocation pattern can fragment the heap: the stages that
repeat one step (run_stage's keep_memory) and the benchmark set it; library code leaves
the process's malloc alone.
"""

from __future__ import annotations

import ctypes
import functools
import os

import torch


def usable_cores() -> int:
    """The cores this process may run on (a Slurm job's share, not the whole node's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


# mallopt's parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# the largest value mallopt takes (an int): a heap top this large is not given back
KEEP_TOP_BYTES = 2**31 - 1


def glibc() -> str | None:
    """glibc's version string ("glibc 2.36"), or None for another C library (macOS, musl)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None


def keep_freed_memory() -> str:
    """Set this process's malloc to keep freed memory (module docstring); returns what is
    in force, for a stage's timings and the benchmark's machine line. Another C library
    keeps its own policy: mallopt is glibc's."""
    version = glibc()
    if version is None:
        return "system default (not glibc)"
    mallopt = _libc().mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, KEEP_TOP_BYTES)):
        return f"{version} default (mallopt refused)"
    return f"{version}, freed memory kept"


def release_free_heap() -> None:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim; a no-op elsewhere).

    Called between inpainting batches. glibc raises its mmap threshold after large
    frees, so later batches' tensors land on the heap and fragment it, and resident
    memory creeps up batch after batch although nothing is kept. Trimming holds it
    flat; a fixed mmap threshold would too, but page-faults on every large tensor
    (docs/findings.md)."""
    if glibc() is not None:  # elsewhere: nothing to trim
        _libc().malloc_trim(0)


@functools.cache
def _libc():
    return ctypes.CDLL(None)  # the C library this process runs on
