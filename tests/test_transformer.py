import math

import pytest
import torch
import torch.nn.functional as F

from maskgit.algorithms.masking import random_token_mask
from maskgit.algorithms.schedules import gamma
from maskgit.models.transformer import BidirectionalTransformer, MultiHeadSelfAttention


def test_manual_attention_equals_scaled_dot_product_attention():
    torch.manual_seed(0)
    manual = MultiHeadSelfAttention(64, 8, dropout=0.1, attention="manual").eval()
    fused = MultiHeadSelfAttention(64, 8, dropout=0.1, attention="sdpa").eval()
    fused.load_state_dict(manual.state_dict())
    x = torch.randn(3, 50, 64)
    assert torch.allclose(manual(x), fused(x), atol=1e-5)
    # and against the functional reference on the raw projections
    q, k, v = (manual._split_heads(p(x)) for p in (manual.q, manual.k, manual.v))
    ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(3, 50, 64)
    assert torch.allclose(manual(x), manual.proj(ref), atol=1e-5)


def test_attention_dropout_is_active_only_in_training():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(32, 4, dropout=0.5)
    x = torch.randn(2, 10, 32)
    attn.train()
    assert not torch.allclose(attn(x), attn(x))
    attn.eval()
    assert torch.equal(attn(x), attn(x))


def test_transformer_is_bidirectional_and_tied():
    torch.manual_seed(0)
    model = BidirectionalTransformer(16, 16, {"dim": 32, "n_layers": 2, "n_heads": 4, "mlp_dim": 64}).eval()
    assert model.mask_token_id == 16
    tokens = torch.randint(0, 17, (2, 16))
    logits = model(tokens)
    assert logits.shape == (2, 16, 17)
    # changing the last token changes the logits at the first position: no causal mask
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 16
    assert not torch.allclose(model(changed)[:, 0], logits[:, 0])
    # the output head reuses the token embedding: no separate output matrix
    names = [n for n, p in model.named_parameters() if p.shape == (17, 32)]
    assert names == ["tok_emb.weight"]


def test_weight_decay_only_on_linear_matrices():
    model = BidirectionalTransformer(16, 16, {"dim": 32, "n_layers": 2, "n_heads": 4, "mlp_dim": 64})
    decay, no_decay = model.param_groups(0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    ids = {id(p) for p in no_decay["params"]}
    assert id(model.tok_emb.weight) in ids and id(model.pos_emb) in ids and id(model.bias) in ids
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_params()


@pytest.mark.parametrize("schedule", ["cosine", "linear", "square"])
def test_training_mask_has_exactly_ceil_gamma_n_tokens(schedule):
    g = torch.Generator().manual_seed(0)
    for r in (0.0, 0.3, 0.77, 1.0):
        mask = random_token_mask(64, 256, schedule, r_range=(r, r), regional_prob=0.5, generator=g)
        expected = math.ceil(gamma(schedule, r) * 256)
        assert mask.sum(dim=1).tolist() == [expected] * 64
    mask = random_token_mask(2000, 256, schedule, r_range=(0.0, 0.5), generator=g)
    counts = mask.sum(dim=1).double()
    assert counts.min() >= math.ceil(gamma(schedule, 0.5) * 256)
    # r ~ U(0, 0.5): the mean of gamma(r) over [0, 0.5] in closed form, times 256, plus
    # about 0.5 for the ceil; the mean of 2000 counts has a standard error below 1
    mean_gamma = {"cosine": 4 / math.pi * math.sin(math.pi / 4), "linear": 0.75, "square": 1 - 0.25 / 3}[schedule]
    assert abs(counts.mean().item() - (256 * mean_gamma + 0.5)) < 3


def test_regional_training_masks_are_compact():
    g = torch.Generator().manual_seed(0)
    uniform = random_token_mask(200, 256, "linear", r_range=(0.7, 0.7), regional_prob=0.0, generator=g)
    regional = random_token_mask(200, 256, "linear", r_range=(0.7, 0.7), regional_prob=1.0, generator=g)

    def masked_neighbours(mask):  # fraction of horizontal neighbour pairs both masked
        grid = mask.view(-1, 16, 16)
        return (grid[:, :, 1:] & grid[:, :, :-1]).float().sum() / grid.float().sum()

    assert masked_neighbours(regional) > 2 * masked_neighbours(uniform)


def test_position_embeddings_start_as_2d_sincos_codes():
    """pos_init sincos: neighbours on the token grid, across rows as along them,
    start with more similar position embeddings than distant tokens; the embeddings
    stay learned parameters with the scale of the random init."""
    from maskgit.models.transformer import sincos_2d

    model = BidirectionalTransformer(16, 64, {"dim": 32, "n_layers": 1, "n_heads": 4, "mlp_dim": 64})
    pos = model.pos_emb.detach()[0]
    assert model.pos_emb.requires_grad and torch.equal(pos, sincos_2d(64, 32))
    assert 0.015 < pos.std() < 0.03
    sim = F.normalize(pos, dim=1) @ F.normalize(pos, dim=1).t()
    at = lambda y, x: y * 8 + x  # noqa: E731
    for a, near, far in ((at(3, 3), at(3, 4), at(3, 7)), (at(3, 3), at(4, 3), at(7, 3)), (at(0, 0), at(1, 1), at(6, 6))):
        assert sim[a, near] > sim[a, far] + 0.05
    assert len({tuple(row.tolist()) for row in pos}) == 64  # every position distinct
    random = BidirectionalTransformer(16, 64, {"dim": 32, "n_layers": 1, "n_heads": 4, "mlp_dim": 64, "pos_init": "normal"})
    assert not torch.equal(random.pos_emb.detach()[0], pos)
    with pytest.raises(ValueError, match="transformer.pos_init"):
        BidirectionalTransformer(16, 64, {"dim": 32, "n_layers": 1, "n_heads": 4, "mlp_dim": 64, "pos_init": "x"})
    with pytest.raises(ValueError, match="square"):
        BidirectionalTransformer(16, 60, {"dim": 32, "n_layers": 1, "n_heads": 4, "mlp_dim": 64})
