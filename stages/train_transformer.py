"""Stage train_transformer: masked visual token modelling on the token grids.

Per sample r ~ U(r_range), exactly ceil(gamma(r) * N) tokens replaced by the mask
token, cross-entropy on the masked positions. AdamW (no decay on norms, biases and
embeddings), linear warmup then cosine decay, gradient clipping and accumulation.
The budget is train_transformer.steps or .epochs over the prepared training set
(maskgit.algorithms.objective.training_steps); the summary metrics give both.
Writes models/transformer.pt and the curves under dvclive/transformer. Saves a
resumable checkpoint every train_transformer.checkpoint_every steps: a killed run
re-started with the same command continues from it (maskgit/pipeline/training.py,
maskgit/pipeline/resume.py). With transformer.checkpoint set, that model is checked
against the tokens and used as is.

Data parallel: with train_transformer.nproc_per_node > 1 the stage relaunches itself
under torchrun (or run `torchrun --nproc_per_node N stages/train_transformer.py`);
each rank trains on its slice of the same global batch and rank 0 alone writes
(maskgit/pipeline/distributed.py). With train_transformer.nnodes > 1 it joins a c10d
rendezvous of that many machines (docs/scale.md, docs/slurm-train.sbatch).
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import json
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from maskgit.project import paths
from maskgit.pipeline import distributed, numerics
from maskgit.algorithms.devices import to_device
from maskgit.algorithms.objective import lr_factor, masked_loss, rank_objective, training_steps
from maskgit.pipeline.memory import check_fits, transformer_step_bytes
from maskgit.pipeline.runtime import maybe_compile, resolve_device, run_stage, seed_everything
from maskgit.algorithms.masking import random_token_mask
from maskgit.project.params import load_params
from maskgit.pipeline.perf import matmul_peak, train_step_flops
from maskgit.project.transformer_checkpoint import copy_trained, save_transformer
from maskgit.pipeline.training import TrainingRun, run_fingerprint
from maskgit.models.transformer import BidirectionalTransformer
from maskgit.project.errors import InputError, ParamError

TRAIN, VAL = paths.tokens("train"), paths.tokens("val")


@torch.no_grad()
def evaluate(model, val, masks, label_smoothing, precision, batch_size=100):
    """Validation loss on fixed masks (drawn once), so that values are comparable."""
    model.eval()
    loss, correct = 0.0, 0.0
    for i in range(0, len(val), batch_size):
        l, c = masked_loss(model, val[i : i + batch_size], masks[i : i + batch_size], label_smoothing, precision)
        loss, correct = loss + l.item(), correct + c.item()
    model.train()
    n = int(masks.sum())
    return loss / n, correct / n


def main():
    params = load_params()
    tp, vq = params["train_transformer"], params["vqgan"]
    device = resolve_device(params["device"])
    numerics.check_precision(tp["precision"], device, "train_transformer.precision")
    several = tp["nproc_per_node"] > 1 or tp["nnodes"] > 1
    if several and not distributed.under_launcher() and params["transformer"]["checkpoint"] is None:
        try:
            nodes = distributed.node_setup(tp["nnodes"], tp["rdzv_endpoint"])
        except ValueError as e:
            raise ParamError(f"params.yaml: {e}") from None
        code = distributed.relaunch(tp["nproc_per_node"], sys.argv[0], nodes)
        if code:
            sys.exit(code)  # the ranks printed their error
        # rank 0 wrote its throughput into the timings file this process now rewrites
        timing = paths.TIMINGS / "train_transformer.json"
        ranks = json.loads(timing.read_text()) if timing.is_file() else {}
        return {k: ranks[k] for k in ("tokens_per_s", "mfu") if k in ranks}
    world, device = distributed.init(device)
    try:
        measured = train_or_load(params, tp, vq, device, world)
    except BaseException:
        distributed.close(world, finished=False)
        raise
    distributed.close(world, finished=True)
    return measured


def train_or_load(params, tp, vq, device, world):
    generator = seed_everything(tp["seed"])  # the same on every rank: all draw the same global batches
    train = torch.from_numpy(np.load(TRAIN).astype(np.int64))
    val = torch.from_numpy(np.load(VAL).astype(np.int64))
    codebook_size, num_tokens = vq["num_codebook_vectors"], train.shape[1]
    if int(train.max()) >= codebook_size:
        raise InputError(f"{TRAIN}: token {int(train.max())} >= vqgan.num_codebook_vectors {codebook_size}")
    if params["transformer"]["checkpoint"] is not None:
        copy_trained(params["transformer"]["checkpoint"], paths.TRANSFORMER, codebook_size, num_tokens)
        return None
    if tp["batch_size"] % world.size:
        raise InputError(f"train_transformer.batch_size ({tp['batch_size']}) is not divisible by the "
                         f"{world.size} processes (train_transformer.nproc_per_node x nnodes)")
    t = params["transformer"]
    check_fits(transformer_step_bytes(tp["batch_size"] // world.size, num_tokens, codebook_size + 1, t["dim"],
                                      t["n_layers"], t["n_heads"], t["mlp_dim"]),
               device, f"train_transformer.batch_size {tp['batch_size']}")
    # the budget in steps, from train_transformer.epochs when that is the one set: from
    # here on tp["steps"] is that number (in the run's fingerprint and logged params)
    tp = {**tp, "steps": training_steps(tp["steps"], tp["epochs"], len(train), tp["batch_size"], tp["grad_accum"])}
    epochs_seen = tp["steps"] * tp["batch_size"] * tp["grad_accum"] / len(train)
    # the token grids are small (a few MB): on the device once, no per-batch copies
    train, val = train.to(device), val.to(device)

    model = BidirectionalTransformer(codebook_size, num_tokens, params["transformer"]).to(device)
    opt = torch.optim.AdamW(model.param_groups(tp["weight_decay"]), lr=tp["lr"], betas=tuple(tp["betas"]))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, tp["warmup_steps"], tp["steps"], tp["min_lr_ratio"])
    )
    mask_args = dict(schedule=tp["gamma"], r_range=tuple(tp["r_range"]), regional_prob=tp["regional_mask_prob"])
    val_masks = random_token_mask(len(val), num_tokens, generator=torch.Generator().manual_seed(1234), **mask_args)
    val_masks = val_masks.to(device)

    # everything that decides the result, except how often to save and how many
    # processes share the work (neither changes the steps taken)
    run = {k: v for k, v in tp.items() if k not in ("checkpoint_every", "nproc_per_node", "nnodes", "rdzv_endpoint")}
    key = run_fingerprint({"transformer": params["transformer"], "train_transformer": run}, device, TRAIN, VAL)
    training = TrainingRun("train_transformer", key, tp["checkpoint_every"], paths.LIVE_TRANSFORMER,
                           {"transformer": params["transformer"], "train_transformer": tp}, is_main=world.is_main)
    start, saved = training.resume(model, opt, sched, generator)
    if distributed.disagree(start, world, device):
        # nodes with their own clones see their own checkpoints/: one resuming while
        # another starts afresh would train on different batches, silently
        raise InputError(f"checkpoints/train_transformer: the nodes would resume from different steps; give every "
                         f"node the same checkpoints/ folder, or delete it on all of them (rank {world.rank}: step {start})")
    running = saved.get("running", [])  # (loss, accuracy) since the last log

    net = DistributedDataParallel(model) if world.active else model
    net = maybe_compile(net, device, params["compile"])
    training.open_live()
    bar = tqdm(range(start, tp["steps"]), desc="train_transformer", unit="step", initial=start, total=tp["steps"],
               disable=not world.is_main)
    train_seconds = 0.0  # from the second step on: the first compiles (compile: true) and warms up kernels
    for step in bar:
        started = time.perf_counter()
        for micro in range(tp["grad_accum"]):
            # the global micro-batch, identical on every rank; each trains on its slice
            idx = torch.randint(0, len(train), (tp["batch_size"],), generator=generator)
            mask = random_token_mask(tp["batch_size"], num_tokens, generator=generator, **mask_args)
            count = mask.sum().clamp(min=1)
            tokens = distributed.shard(train[idx.to(device)], world)
            mask = distributed.shard(to_device(mask, device), world)
            sync = micro == tp["grad_accum"] - 1 or not world.active  # DDP: all-reduce once per step
            with net.no_sync() if not sync else nullcontext():
                loss_sum, correct = masked_loss(model, tokens, mask, tp["label_smoothing"], tp["precision"], net)
                rank_objective(loss_sum, count, world.size, tp["grad_accum"]).backward()
            stats = distributed.all_sum(torch.stack([loss_sum.detach(), correct]), world) / count.to(device)
            training.check_finite(stats[0], step)  # the same value on every rank: all stop together
        if tp["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tp["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        loss, acc = stats.tolist()
        if step > start:
            train_seconds += time.perf_counter() - started
        running.append((loss, acc))
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.2f}")
        if world.is_main and ((step + 1) % tp["eval_every"] == 0 or step + 1 == tp["steps"]):
            val_loss, val_acc = evaluate(model, val, val_masks, tp["label_smoothing"], tp["precision"])
            row = {
                "train/loss": float(np.mean([x[0] for x in running])),
                "train/accuracy": float(np.mean([x[1] for x in running])),
                "val/loss": val_loss,
                "val/accuracy": val_acc,
                "lr": sched.get_last_lr()[0],
            }
            running.clear()
            training.log(row)
        if step + 1 < tp["steps"]:
            training.save(step + 1, model, opt, sched, generator, running=running)

    rank_diff = distributed.max_weight_diff(model, world)  # a collective: every rank takes part
    if not world.is_main:
        return
    last = training.history[-1]
    summary = {"val_loss": last["val/loss"], "val_accuracy": last["val/accuracy"],
               "params": model.num_params(), "processes": world.size, "rank_max_weight_diff": rank_diff,
               "steps": tp["steps"], "epochs": epochs_seen, "n_train": len(train)}
    # measured on the wall clock, so into timings/ (run_stage), never into the cached
    # curves: equal weights must give equal dvclive files, or every later stage re-runs.
    # Counted before saving, which moves the model to the CPU.
    measured = throughput(model, tp, num_tokens, device, world, start, train_seconds)
    save_transformer(paths.TRANSFORMER, model, params["transformer"], steps=tp["steps"])
    training.finish(summary)
    return measured


def throughput(model, tp, num_tokens, device, world, start, seconds):
    """Training tokens/s and model FLOPs utilisation: the FLOPs the model needs per
    step (perf.train_step_flops) over the time taken, as a share of this device's
    measured matmul peak in the training dtype times the number of processes
    (timing noise on tiny runs makes these rough). The first step of the run is left
    out, as from `seconds`: with compile: true it holds the compilation, which says
    nothing about the steps that follow."""
    steps = tp["steps"] - start - 1
    if steps <= 0 or seconds == 0:
        return {}
    tokens = steps * tp["grad_accum"] * tp["batch_size"] * num_tokens
    per_sequence = train_step_flops(model, torch.zeros(1, num_tokens, dtype=torch.long, device=device))
    peak = matmul_peak(device, torch.bfloat16 if tp["precision"] == "bf16" else torch.float32) * world.size
    return {"tokens_per_s": tokens / seconds, "mfu": per_sequence * tokens / num_tokens / seconds / peak}


if __name__ == "__main__":
    run_stage(main, "train_transformer", keep_memory=True)
