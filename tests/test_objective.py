"""The training objective (masked visual token modelling) and its lr schedule, each
rule against a value computed here by hand, not against the code itself."""

import math

import numpy as np
import pytest
import torch

from maskgit.algorithms.objective import lr_factor, masked_loss, rank_objective

K = 5  # codebook size; the model's vocabulary adds the mask id K
N = 6  # tokens per sample


class TableModel(torch.nn.Module):
    """Logits of position n given input token v: table[v] + bias[n], over K + 2 outputs
    (the mask id and one extra column, both beyond the codebook). Each position sees
    only its own input, so the hand computation below needs no attention."""

    codebook_size = K
    mask_token_id = K

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(K + 1, K + 2, generator=g) * 2)
        self.bias = torch.nn.Parameter(torch.randn(N, K + 2, generator=g))

    def forward(self, inputs):
        return self.table[inputs] + self.bias


def hand_loss(model, tokens, mask, eps):
    """Sum over masked positions of -(1 - eps) log p(y) - eps / K * sum_k log p(k), p the
    softmax over the K codes of the logits of the mask id's row; and the argmax hits."""
    table, bias = model.table.detach().double().numpy(), model.bias.detach().double().numpy()
    total, hits = 0.0, 0
    for b, n in zip(*np.nonzero(mask.numpy())):
        z = (table[K] + bias[n])[:K]
        logp = z - np.log(np.exp(z).sum())
        y = int(tokens[b, n])
        total += -(1 - eps) * logp[y] - eps / K * logp.sum()
        hits += int(np.argmax(z) == y)
    return total, hits


def batch(seed=1, b=4):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, K, (b, N), generator=g)
    mask = torch.rand(b, N, generator=g) < 0.5
    mask[0] = True  # a sample fully masked
    mask[1] = False
    mask[1, 2] = True  # and one with a single masked token
    return tokens, mask


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_loss_is_the_smoothed_cross_entropy_summed_over_masked_positions(eps):
    model = TableModel()
    tokens, mask = batch()
    # make some predictions right, so the count of hits is not trivially zero
    best = (model.table[K] + model.bias)[:, :K].argmax(-1)
    tokens[0, :3] = best[:3]
    loss, correct = masked_loss(model, tokens, mask, eps)
    expected, hits = hand_loss(model, tokens, mask, eps)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert int(correct) == hits and 3 <= hits < int(mask.sum())


def test_unmasked_positions_neither_count_nor_leak_into_the_input():
    model = TableModel()
    tokens, mask = batch()
    loss, _ = masked_loss(model, tokens, mask, 0.1)
    other = torch.where(mask, tokens, (tokens + 1) % K)  # every unmasked token changed
    assert masked_loss(model, other, mask, 0.1)[0].item() == pytest.approx(loss.item(), rel=1e-6)
    # one more masked position adds exactly its own term
    more = mask.clone()
    more[1, 4] = True
    assert masked_loss(model, tokens, more, 0.1)[0].item() == pytest.approx(hand_loss(model, tokens, more, 0.1)[0],
                                                                            rel=1e-5)


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("world_size,grad_accum", [(2, 1), (3, 1), (2, 2)])
def test_ranks_take_the_step_of_one_process(world_size, grad_accum):
    tokens, mask = batch(seed=3, b=12)
    size = len(tokens) // grad_accum  # the global micro-batch
    micro = [slice(i * size, (i + 1) * size) for i in range(grad_accum)]
    shard = [slice(r * size // world_size, (r + 1) * size // world_size) for r in range(world_size)]
    assert len({int(mask[j][s].sum()) for j in micro for s in shard}) > 1  # shards mask different counts

    # one process: per micro-batch, the mean loss per masked token; micro-batches averaged
    single = TableModel()
    for j in micro:
        loss, _ = masked_loss(single, tokens[j], mask[j], 0.1)
        (loss / mask[j].sum() / grad_accum).backward()
    expected = grads(single)

    # N ranks, each on its shard of every micro-batch; DDP averages the gradients over ranks
    per_rank = []
    for s in shard:
        model = TableModel()
        for j in micro:
            loss_sum, _ = masked_loss(model, tokens[j][s], mask[j][s], 0.1)
            rank_objective(loss_sum, mask[j].sum(), world_size, grad_accum).backward()
        per_rank.append(grads(model))
    torch.testing.assert_close(torch.stack(per_rank).mean(0), expected, rtol=1e-5, atol=1e-7)


def test_lr_warms_up_linearly_then_decays_by_a_cosine_to_the_floor():
    warmup, total, floor = 4, 12, 0.1
    # warm-up: (step + 1) / warmup
    assert [lr_factor(s, warmup, total, floor) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # decay: floor + (1 - floor) * (1 + cos(pi * progress)) / 2, progress = (step - 4) / 8
    assert lr_factor(4, warmup, total, floor) == pytest.approx(1.0)
    assert lr_factor(6, warmup, total, floor) == pytest.approx(0.1 + 0.9 * (1 + math.sqrt(0.5)) / 2)
    assert lr_factor(8, warmup, total, floor) == pytest.approx(0.55)
    assert lr_factor(12, warmup, total, floor) == pytest.approx(0.1)
    assert lr_factor(30, warmup, total, floor) == pytest.approx(0.1)  # flat after the end
    assert lr_factor(0, 0, 10, 0.0) == pytest.approx(1.0)  # no warm-up: the full rate at once
    assert lr_factor(5, 0, 10, 0.0) == pytest.approx(0.5)
