"""What every stage script shares: one-line errors, the device, seeding."""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Callable

import numpy as np
import torch

from .io import write_json
from .params import ParamError
from .resume import TrainingDiverged

# Errors that mean "the input is wrong" (or training diverged), shown as one line; anything else is a bug
# and keeps its traceback. MASKGIT_DEBUG=1 shows the traceback for all of them.
USER_ERRORS = (ParamError, ValueError, FileNotFoundError, NotADirectoryError, TrainingDiverged)


def run_stage(main: Callable[[], None], name: str, record_time: bool = True) -> None:
    """Run a stage's main(); on bad input print one line and exit 2. The wall time
    lands in timings/<name>.json (a stage output) for the report."""
    start = time.perf_counter()
    try:
        main()
    except USER_ERRORS as e:
        if os.environ.get("MASKGIT_DEBUG") or "--debug" in sys.argv:
            raise
        print(f"error: {name}: {e}", file=sys.stderr)
        sys.exit(2)
    seconds = time.perf_counter() - start
    if record_time and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        os.makedirs("timings", exist_ok=True)
        write_json(f"timings/{name}.json", {"stage": name, "seconds": round(seconds, 2)})
    print(f"{name}: done in {seconds:.1f} s", file=sys.stderr)


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


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host to device; on CUDA through pinned memory, so the copy overlaps compute."""
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


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


def autocast(device: torch.device, precision: str):
    """The autocast context of a `precision` param: bf16 runs matmuls in bfloat16
    (2.3x the fp32 training throughput of the demo transformer on a 2-core CPU with
    avx512_bf16); fp32 is plain float32. Weights and optimizer state stay float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
