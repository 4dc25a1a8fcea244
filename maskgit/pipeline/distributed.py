"""Data-parallel training: one process per GPU (or CPU process group) under torchrun.

The sampling scheme makes the number of processes a resource choice, not a
hyperparameter: every rank draws the same *global* batch from the same seeded
generator and trains on its own contiguous slice of it (`shard`), and the loss is
normalised by the masked-token count of the whole global batch. After DDP averages
the gradients, each optimizer step is the step one process would take on the whole
batch, so N processes give the weights of one (up to float summation order), a
resumed run may use another number of processes, and the only RNG a checkpoint
needs is rank 0's (all ranks' generators stay equal).

`train_transformer.nproc_per_node > 1` makes the stage relaunch itself under
`torch.distributed.run` (torchrun); running `torchrun ... stages/train_transformer.py`
by hand works the same.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs, models and shows the progress bar."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def under_launcher() -> bool:
    """Started by torchrun (which sets these for every worker)?"""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch(nproc: int, script: str) -> int:
    """Run `script` as `nproc` workers under torchrun on this machine; its exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", script]
    return subprocess.call(cmd)


def init(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on CPU) and pick
    this rank's device; a plain `python` run is a world of one."""
    if not under_launcher() or int(os.environ["WORLD_SIZE"]) == 1:
        return World(), device
    world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def close(world: World, finished: bool) -> None:
    """Tear the process group down. After a finished run every rank waits for the
    others first: rank 1 used to finish while rank 0 was still measuring and
    writing, destroy the group while DDP's reducer (caught in a reference cycle)
    still held it, and abort at interpreter exit ("terminate called without an
    active exception", exit -6) in 3 of 32 two-process test runs; 0 of 48 since.
    After a failure nobody waits: the other ranks may be inside a collective that
    a barrier would never match, and the run would hang instead of stopping."""
    if not (world.active and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
        gc.collect()  # the DDP wrapper, while Python is fully alive
    dist.destroy_process_group()


def shard(x: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (its size divides evenly,
    checked in params)."""
    if not world.active:
        return x
    n = len(x) // world.size
    return x[world.rank * n:(world.rank + 1) * n]


def all_sum(x: torch.Tensor, world: World) -> torch.Tensor:
    """Sum over ranks (in place); the identity in a world of one."""
    if world.active:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def max_weight_diff(model: torch.nn.Module, world: World) -> float:
    """Largest |w - w_rank0| over every parameter and rank: 0.0 when the replicas
    agree, as data parallelism promises. Reported with the training metrics."""
    if not world.active:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return diff.item()
