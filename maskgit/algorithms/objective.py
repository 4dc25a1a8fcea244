"""The training objective of masked visual token modelling (MVTM) and its
learning-rate schedule.

The masked tokens are replaced by mask_token_id and the transformer predicts them;
the loss is cross-entropy (with label smoothing) over the masked positions only.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F

from maskgit.algorithms.devices import autocast


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """The learning-rate multiplier of step `step` (0-based): linear warm-up over
    `warmup` steps to 1, then a cosine decay to `min_ratio` at step `total`, flat after."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def training_steps(steps: int | None, epochs: float | None, n_train: int, batch_size: int, grad_accum: int) -> int:
    """The optimizer steps of a training budget given in steps or in epochs (exactly
    one not None). An epoch is n_train sequences drawn; a step draws batch_size *
    grad_accum of them (batch_size is the global batch, whatever the number of
    processes), so epochs take ceil(epochs * n_train / (batch_size * grad_accum))
    steps: rounded up, so the run sees at least the epochs asked for. Batches are
    drawn with replacement, so an epoch here is a count of sequences seen, not a pass
    over each one once as the lab's shuffled loader makes it: the same amount of
    training, in a different order."""
    if (steps is None) == (epochs is None):
        raise ValueError("exactly one of steps and epochs must be given")
    if steps is not None:
        return steps
    if n_train < 1:
        raise ValueError("an epoch budget needs a non-empty training set")
    # the epochs as the decimal written, not its binary float: 1.1 epochs of 50 sequences
    # are 55, where the float product 55.00000000000001 would round up to one step more
    images = Fraction(str(epochs)) * n_train
    return max(1, math.ceil(images / (batch_size * grad_accum)))


def masked_loss(model, tokens, mask, label_smoothing, precision="fp32", forward=None):
    """Summed cross-entropy over the masked positions and the number predicted right.
    Sums, not means: the caller divides by the masked count of the whole (global)
    batch, which is what makes N data-parallel ranks take the step of one process.
    `forward` is the module to call (the DDP or compiled wrapper of `model`)."""
    inputs = torch.where(mask, torch.full_like(tokens, model.mask_token_id), tokens)
    with autocast(tokens.device, precision):
        # `is None`, not `or`: a compiled module has no truth value (its __len__ raises)
        logits = (model if forward is None else forward)(inputs)[..., : model.codebook_size]
    logits = logits.float()[mask]  # the softmax and the loss in float32
    loss = F.cross_entropy(logits, tokens[mask], label_smoothing=label_smoothing, reduction="sum")
    return loss, (logits.argmax(-1) == tokens[mask]).sum().float()


def rank_objective(loss_sum, global_count, world_size: int, grad_accum: int):
    """What one rank back-propagates for one micro-batch: its summed loss scaled so that,
    once DDP averages the gradients over `world_size` ranks and `grad_accum` micro-batches
    add up, the step is that of one process on the whole batch, the mean loss per masked
    token of the global batch. `global_count` is the masked count of the whole global
    micro-batch, not of this rank's shard: shards mask different numbers of tokens."""
    return loss_sum * world_size / (global_count * grad_accum)
