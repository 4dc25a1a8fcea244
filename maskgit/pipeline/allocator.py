"""Keep the memory a stage frees for its next step, instead of handing it back to the kernel.

glibc's malloc serves a block above its mmap threshold (32 MiB at most) with a fresh
mmap and unmaps it on free, and returns the top of its heap past the trim threshold.
A training step or a batched forward allocates temporaries that large on every step
(the attention scores of 32 sequences of 256 tokens in float32 are 32 MiB a layer), so
every step the kernel maps them again, zero-fills them and takes a page fault for every
4 KiB page touched: time spent on nothing the model computes. With mmap off for large
blocks and the trim threshold raised, freed blocks go back to malloc's own free lists
and the next step reuses pages already mapped.

Speed only: the arithmetic, and so every bit a stage writes, is the same either way
(tests/test_allocator.py checks the faults; docs/benchmarks.md, section 10, the time).
The cost is that a stage keeps its peak memory until it exits, which suits stages: one
short process each. Library code never calls this; stages (run_stage) and the benchmark do.
"""

from __future__ import annotations

import ctypes
import os

# mallopt's parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# the largest value mallopt takes (an int); a heap top this large is not given back
KEEP_TOP_BYTES = 2**31 - 1


def glibc() -> str | None:
    """glibc's version string ("glibc 2.39"), or None for another C library (macOS, musl)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None


def keep_freed_memory() -> str:
    """Set this process's malloc to keep freed memory (above); returns what is in force,
    for a stage's timings and the benchmark's machine line. Other C libraries keep their
    own policy: mallopt is glibc's."""
    version = glibc()
    if version is None:
        return "system default (not glibc)"
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, KEEP_TOP_BYTES)):
        return f"{version} default (mallopt refused)"
    return f"{version}, freed memory kept"
