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
by hand works the same. With `train_transformer.nnodes > 1` the same relaunch joins
a c10d rendezvous of that many machines (`node_setup`: the node's rank from
$NODE_RANK or Slurm's $SLURM_NODEID, the endpoint from the params or the Slurm job's
first node); the global batch is still split over every process of every node, so
the steps are those of one process. Rank 0 (on node 0) alone writes.
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


RDZV_PORT = 29500  # torchrun's own default port


@dataclass(frozen=True)
class Nodes:
    nnodes: int = 1
    node_rank: int = 0
    endpoint: str = ""


def _first_slurm_host() -> str | None:
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not nodelist:
        return None
    try:  # scontrol expands "gpu[01-04]" into hosts, one a line
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return nodelist.split(",")[0] if "[" not in nodelist else None


def node_setup(nnodes: int, endpoint: str | None, environ=os.environ) -> Nodes:
    """This machine's place in a multi-node run: rank from $NODE_RANK (torchrun's own
    name) or $SLURM_NODEID, the rendezvous endpoint from the param or the Slurm job.
    ValueError naming what is missing."""
    if nnodes == 1:
        return Nodes()
    rank = environ.get("NODE_RANK", environ.get("SLURM_NODEID"))
    if rank is None or not rank.isdigit() or int(rank) >= nnodes:
        raise ValueError(f"train_transformer.nnodes is {nnodes} but this node's rank is unknown or out of range "
                         f"(set NODE_RANK=0..{nnodes - 1}, or run under Slurm, got {rank!r})")
    if endpoint is None:
        host = _first_slurm_host() if environ is os.environ else None
        if host is None:
            raise ValueError("train_transformer.nnodes > 1 needs train_transformer.rdzv_endpoint (host:port of "
                             "node 0) outside a Slurm job")
        endpoint = f"{host}:{RDZV_PORT}"
    return Nodes(nnodes, int(rank), endpoint)


def relaunch(nproc: int, script: str, nodes: Nodes = Nodes()) -> int:
    """Run `script` as `nproc` workers under torchrun on this machine (one node of
    `nodes`); its exit code."""
    if nodes.nnodes == 1:
        where = ["--standalone"]
    else:
        # every node's agent meets at the endpoint; the node ranks fix who is rank 0
        where = [f"--nnodes={nodes.nnodes}", f"--node_rank={nodes.node_rank}", "--rdzv_backend=c10d",
                 f"--rdzv_endpoint={nodes.endpoint}", "--rdzv_id=maskgit-train_transformer"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc_per_node={nproc}", script]
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


def disagree(value: int, world: World, device: torch.device) -> bool:
    """True on every rank when some ranks hold another value than others."""
    if not world.active:
        return False
    both = torch.tensor([value, -value], dtype=torch.float64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return bool(both[0] != -both[1])


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
