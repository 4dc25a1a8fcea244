"""What every stage script shares: one-line errors, the device, seeding."""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from maskgit.pipeline import numerics, workspace
from maskgit.project import paths
from maskgit.algorithms.devices import keep_freed_memory, usable_cores
from maskgit.project.errors import ParamError, one_line_errors
from maskgit.project.files import remove_stale_tmp, write_json

# the top folders of every path paths.py names (data, models, outputs, ...): where a stage writes
OUTPUT_ROOTS = sorted({p.parts[0] for p in vars(paths).values() if isinstance(p, Path)})


def run_stage(main: Callable[[], dict | None], name: str, record_time: bool = True, keep_memory: bool = False) -> None:
    """Run a stage's main(); on bad input print one line and exit 2. The wall time,
    plus any timings main() returns as a dict, lands in timings/<name>.json (a stage
    output) for the report. Timings go there and never into a stage's cached outputs:
    a re-run that writes the same images must hash the same, so DVC skips what follows.
    keep_memory: the process's malloc keeps freed memory (devices.keep_freed_memory),
    for a stage that repeats one step of large temporaries: tokenize, the transformer's
    training, inpainting (faster, same bits, a little more peak memory: docs/benchmarks.md).
    The others keep glibc's default: the FID stages were no faster kept, and once
    reached twice their usual peak memory."""
    numerics.enter()  # portable mode's settings in force, before any work (may re-start the process)
    malloc = keep_freed_memory() if keep_memory else "default"
    start = time.perf_counter()
    # --debug (or MASKGIT_DEBUG=1) shows the traceback of bad input too
    # a stage script's own main (not a test's, which expects SystemExit) leaves at once
    with one_line_errors(name, f"{name}: interrupted; `dvc repro` resumes (training from its last checkpoint)",
                         debug="--debug" in sys.argv, exit_now=getattr(main, "__module__", "") == "__main__"):
        workspace.refuse_concurrent_runs(f"stage {name}")
        workspace.refuse_params_rewritten(name)
        for stale in remove_stale_tmp(OUTPUT_ROOTS):
            print(f"{name}: removed {stale} (left by a killed run)", file=sys.stderr)
        params_read = workspace.params_bytes()
        try:
            extra = main()
            workspace.check_params_unchanged(params_read, name)
        except Exception as e:
            changed = e if isinstance(e, workspace.ConcurrentRun) else None
            if changed is None:
                try:  # a stage that failed because its params changed under it says so, not a traceback
                    workspace.check_params_unchanged(params_read, name)
                except workspace.ConcurrentRun as c:
                    changed = c
            if changed is None:
                raise
            # made under params nobody asked this run for: nothing of it is kept
            workspace.remove_stage_outputs()
            raise changed from None
    seconds = time.perf_counter() - start
    if record_time and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        os.makedirs(paths.TIMINGS, exist_ok=True)
        write_json(paths.TIMINGS / f"{name}.json",
                   {"stage": name, "seconds": round(seconds, 2), "device": device_used(), "malloc": malloc, **(extra or {}),
                    "numerics": numerics.environment()})
    print(f"{name}: done in {seconds:.1f} s", file=sys.stderr)


def device_used() -> str:
    """What the stage ran on, for the report's provenance: a CUDA device once the stage
    has touched CUDA, else the CPU cores this process may use."""
    if torch.cuda.is_initialized():
        return f"cuda ({torch.cuda.get_device_name(torch.cuda.current_device())})"
    return f"cpu ({usable_cores()} cores)"


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # several GPUs: the one with the most free memory, so that experiments run
        # side by side (dvc queue start -j N) spread over them instead of piling on GPU 0
        free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
        return torch.device("cuda", free.index(max(free)))
    if choice == "cuda" and not torch.cuda.is_available():
        raise ParamError("params.yaml: device is 'cuda' but no CUDA device is available (use auto or cpu)")
    return torch.device(choice)


def maybe_compile(model: torch.nn.Module, device: torch.device, enabled: bool) -> torch.nn.Module:
    """The `compile` param: torch.compile on CUDA (fused kernels, fewer launches).
    On CPU it is skipped with a note: compiling this model there takes longer than
    a demo run saves, and needs a C++ toolchain."""
    if not enabled:
        return model
    if device.type != "cuda":
        print("compile: true applies on CUDA only; running eagerly on CPU", file=sys.stderr)
        return model
    return torch.compile(model)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
