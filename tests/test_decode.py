"""The decoding loop against each of its rules: the mask schedule, the sweet spot, the
annealed choice temperature, known tokens kept, the confidence order (docs/api.md)."""

import math
from fractions import Fraction

import pytest
import torch

from maskgit.algorithms.decoding import (Decoding, forward_chunk, forward_in_chunks, image_generators, iterative_decode,
                                         num_masked_after_step)
from maskgit.algorithms.masking import token_unknown_from_pixel_mask
from maskgit.algorithms.schedules import gamma
from maskgit.choices import ORDERS
from maskgit.models.transformer import BidirectionalTransformer

K = 32  # codebook size of the toy model
N = 64  # an 8x8 token grid


def toy_transformer(seed=0, **cfg):
    torch.manual_seed(seed)
    model = BidirectionalTransformer(K, N, {"dim": 32, "n_layers": 2, "n_heads": 4, "mlp_dim": 64, **cfg})
    return model.eval()


class CountingModel(torch.nn.Module):
    """Wraps a transformer and records every input it is run on."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.codebook_size = inner.codebook_size
        self.mask_token_id = inner.mask_token_id
        self.inputs = []

    def forward(self, tokens):
        self.inputs.append(tokens.clone())
        return self.inner(tokens)


class FixedLogits(torch.nn.Module):
    """Returns the same logits for every call (B, N, K + 1)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.codebook_size = logits.shape[-1] - 1
        self.mask_token_id = self.codebook_size

    def forward(self, tokens):
        return self.logits.expand(tokens.shape[0], -1, -1)


def batch_with_different_masks():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, K, (4, N), generator=g)
    unknown = torch.zeros(4, N, dtype=torch.bool)
    unknown[0, :40] = True  # large hole
    unknown[1, 10:15] = True  # small hole
    unknown[2, ::3] = True  # scattered
    unknown[3, 60] = True  # a single token
    return tokens, unknown


def exact_gamma(schedule, step, total_iter):
    """gamma((step) / total_iter) in exact rational arithmetic where the schedule allows."""
    r = Fraction(step, total_iter)
    if schedule == "linear":
        return 1 - r
    if schedule == "square":
        return 1 - r * r
    return Fraction(math.cos(math.pi * step / total_iter / 2))


def record_steps():
    steps = []

    def on_step(t, chosen, masked):
        steps.append((t, chosen.clone(), masked.clone()))

    return steps, on_step


# --- schedules -------------------------------------------------------------------


def test_schedule_values_and_clipping():
    assert gamma("cosine", 0.0) == 1.0
    assert gamma("cosine", 0.5) == pytest.approx(math.cos(math.pi / 4))
    assert gamma("linear", 0.25) == pytest.approx(0.75)
    assert gamma("square", 0.5) == pytest.approx(0.75)
    # float32 cos(pi/2) is slightly negative: it must clip to 1e-6, never go below
    assert torch.cos(torch.tensor(math.pi / 2, dtype=torch.float32)) < 0
    assert gamma("cosine", torch.tensor([1.0])).item() == pytest.approx(1e-6)
    assert gamma("linear", 1.0) == 1e-6
    r = torch.linspace(0, 1, 11, dtype=torch.float64)
    for name in ("cosine", "linear", "square"):
        values = gamma(name, r)
        assert torch.all(values[:-1] >= values[1:]), f"{name} must not increase"
        assert torch.allclose(values, torch.tensor([gamma(name, float(x)) for x in r], dtype=torch.float64))
    with pytest.raises(ValueError, match="known: cosine"):
        gamma("cosin", 0.5)


# --- the pixel-to-token rule -------------------------------------------------------


def test_token_mask_is_missing_when_any_pixel_of_its_patch_is_missing():
    known = torch.ones(2, 16, 16)
    known[0, 5, 6] = 0  # one pixel in patch (1, 1) of a 4x4 grid
    known[1, 0:8, 0:4] = 0  # patches (0, 0) and (1, 0)
    unknown = token_unknown_from_pixel_mask(known, patch=4)
    assert unknown.shape == (2, 16)
    assert unknown[0].nonzero().flatten().tolist() == [5]
    assert unknown[1].nonzero().flatten().tolist() == [0, 4]
    with pytest.raises(ValueError, match="not divisible"):
        token_unknown_from_pixel_mask(torch.ones(1, 18, 16), patch=4)


# --- the loop ------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("schedule", ["cosine", "linear", "square"])
@pytest.mark.parametrize("total_iter", [1, 2, 7, 10])
def test_exact_number_left_masked_per_image_and_step(schedule, total_iter, order):
    """The schedule decides how many, whichever order decides which."""
    tokens, unknown = batch_with_different_masks()
    steps, on_step = record_steps()
    iterative_decode(toy_transformer(), tokens, unknown,
                     Decoding(schedule=schedule, total_iter=total_iter, sweet_spot=total_iter, choice_temperature=4.5, order=order),
                     generator=torch.Generator().manual_seed(0), on_step=on_step)
    assert len(steps) == total_iter
    for i in range(tokens.shape[0]):
        n0 = int(unknown[i].sum())  # this image's own count, not N nor image 0's
        left = n0
        for t, _, masked in steps:
            if t == total_iter - 1:
                expected = 0
            else:
                expected = max(0, min(max(math.floor(n0 * exact_gamma(schedule, t + 1, total_iter)), 1), left - 1))
            assert int(masked[i].sum()) == expected, f"image {i} step {t}"
            left = expected


def test_known_tokens_never_change_and_masks_only_shrink():
    tokens, unknown = batch_with_different_masks()
    steps, on_step = record_steps()
    out = iterative_decode(toy_transformer(), tokens, unknown,
                           Decoding(schedule="cosine", total_iter=8, sweet_spot=8, choice_temperature=4.5, sampling="sample"),
                           generator=torch.Generator().manual_seed(3), on_step=on_step)
    assert torch.equal(out[~unknown], tokens[~unknown])
    previous = unknown
    for _, chosen, masked in steps:
        assert torch.equal(chosen[~unknown], tokens[~unknown])
        assert not (masked & ~previous).any(), "a revealed or known token was masked again"
        previous = masked


def test_rules_hold_under_bf16_autocast():
    """inpaint.precision: bf16 runs the forward in bfloat16; the counts, the known
    tokens and the final fill must not depend on it (only which tokens are chosen)."""
    tokens, unknown = batch_with_different_masks()
    steps, on_step = record_steps()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = iterative_decode(toy_transformer(), tokens, unknown,
                               Decoding(schedule="cosine", total_iter=7, sweet_spot=7, choice_temperature=4.5),
                               generator=torch.Generator().manual_seed(0), on_step=on_step)
    reference_steps, reference_on_step = record_steps()
    reference = iterative_decode(toy_transformer(), tokens, unknown,
                                 Decoding(schedule="cosine", total_iter=7, sweet_spot=7, choice_temperature=4.5),
                                 generator=torch.Generator().manual_seed(0), on_step=reference_on_step)
    assert out.dtype == torch.long and torch.equal(out[~unknown], tokens[~unknown]) and (out < K).all()
    for (_, _, masked), (_, _, ref_masked) in zip(steps, reference_steps, strict=True):
        assert torch.equal(masked.sum(1), ref_masked.sum(1))  # the same number left masked per image and step
    assert not steps[-1][2].any()
    assert (out == reference)[unknown].float().mean() > 0.5  # mostly the fp32 choices


def test_revealed_tokens_are_not_resampled():
    tokens, unknown = batch_with_different_masks()
    model = CountingModel(toy_transformer())
    steps, on_step = record_steps()
    iterative_decode(model, tokens, unknown,
                     Decoding(schedule="linear", total_iter=6, sweet_spot=6, choice_temperature=2.0, sampling="sample"),
                     generator=torch.Generator().manual_seed(5), on_step=on_step)
    for (_, chosen_a, masked_a), (_, chosen_b, _) in zip(steps, steps[1:]):
        revealed = ~masked_a
        assert torch.equal(chosen_b[revealed], chosen_a[revealed])
    # the model sees the mask id exactly at the still-masked positions
    for inp, (_, _, masked) in zip(model.inputs[1:], steps):
        assert torch.equal(inp == K, masked)


def test_nothing_masked_after_last_step_and_mask_id_never_predicted():
    # logits that favour the mask id everywhere: slicing must keep it out
    logits = torch.zeros(1, N, K + 1)
    logits[..., K] = 100.0
    logits[..., 3] = 1.0
    tokens, unknown = batch_with_different_masks()
    out = iterative_decode(FixedLogits(logits), tokens, unknown,
                           Decoding(schedule="cosine", total_iter=5, sweet_spot=5, choice_temperature=4.5))
    assert (out != K).all()
    assert (out[unknown] == 3).all()
    assert out.dtype == torch.long


def test_sweet_spot_stops_early_and_fills_everything():
    tokens, unknown = batch_with_different_masks()
    model = CountingModel(toy_transformer())
    steps, on_step = record_steps()
    out = iterative_decode(model, tokens, unknown,
                           Decoding(schedule="cosine", total_iter=10, sweet_spot=3, choice_temperature=4.5),
                           generator=torch.Generator().manual_seed(0), on_step=on_step)
    assert len(model.inputs) == 3
    assert (out != K).all()
    # the output is the choice of the third step, at a point where tokens were still masked
    assert torch.equal(out, steps[-1][1])
    assert int(steps[1][2].sum()) > 0
    # early steps are those of the full run: r uses total_iter, not sweet_spot
    full = CountingModel(toy_transformer())
    iterative_decode(full, tokens, unknown,
                     Decoding(schedule="cosine", total_iter=10, sweet_spot=10, choice_temperature=4.5),
                     generator=torch.Generator().manual_seed(0))
    assert len(full.inputs) == 10
    for a, b in zip(model.inputs, full.inputs[:3]):
        assert torch.equal(a, b)
    more = CountingModel(toy_transformer())
    iterative_decode(more, tokens, unknown,
                     Decoding(schedule="cosine", total_iter=4, sweet_spot=99, choice_temperature=1.0))
    assert len(more.inputs) == 4


def test_confidence_uses_log_probabilities_not_raw_logits():
    # position 0: top logit 10 but a near tie (p ~ 0.5); position 1: top logit 5, p ~ 1
    logits = torch.full((1, 2, 5), -100.0)
    logits[0, 0, 0], logits[0, 0, 1] = 10.0, 10.0 - 1e-3
    logits[0, 1, 2] = 5.0
    logits[..., 4] = 0.0  # mask id column, sliced away
    model = FixedLogits(logits)
    steps, on_step = record_steps()
    iterative_decode(model, torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool),
                     Decoding(schedule="linear", total_iter=2, sweet_spot=2, choice_temperature=0.0),
                     on_step=on_step)
    # after step 0 one token stays masked: the less confident one by probability
    assert steps[0][2].tolist() == [[True, False]]


def test_ties_broken_by_lower_index():
    logits = torch.zeros(1, N, K + 1)  # every choice equally confident
    tokens = torch.zeros(1, N, dtype=torch.long)
    unknown = torch.zeros(1, N, dtype=torch.bool)
    unknown[0, 20:40] = True
    steps, on_step = record_steps()
    iterative_decode(FixedLogits(logits), tokens, unknown,
                     Decoding(schedule="linear", total_iter=4, sweet_spot=4, choice_temperature=0.0),
                     on_step=on_step)
    n = math.floor(20 * 0.75)
    assert steps[0][2][0].nonzero().flatten().tolist() == list(range(20, 20 + n))


def test_temperature_is_annealed_in_the_confidence_of_each_step():
    # Effect, not call: the positions kept masked after each step are the lowest of
    # log p(chosen) + choice_temperature * (1 - r) * Gumbel, with the Gumbel noise drawn
    # here from a copy of the image's generator (one U(0, 1) per token per step, argmax).
    n, base, total_iter, seed = 12, 1.0, 4, 5
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, n, K + 1, generator=g)  # the chosen token's log p differs per position
    unknown = torch.ones(1, n, dtype=torch.bool)
    steps, on_step = record_steps()
    iterative_decode(FixedLogits(logits), torch.zeros(1, n, dtype=torch.long), unknown,
                     Decoding(schedule="linear", total_iter=total_iter, sweet_spot=total_iter, choice_temperature=base),
                     generator=[torch.Generator().manual_seed(seed)], on_step=on_step)

    logp = torch.log_softmax(logits[0, :, :K].double(), -1).max(-1).values
    noise = torch.Generator().manual_seed(seed)

    def kept(masked, tau, u, keep):
        confidence = torch.where(masked, logp - tau * torch.log(-torch.log(u)), torch.tensor(math.inf))
        return torch.zeros(n, dtype=torch.bool).index_fill_(0, confidence.argsort(stable=True)[:keep], True)

    masked = unknown[0]
    differs = 0
    for t in range(total_iter - 1):
        r = (t + 1) / total_iter
        u = torch.rand(n, generator=noise).double()
        keep = [9, 6, 3][t]  # floor(12 * (1 - r)) for the linear schedule
        expected = kept(masked, base * (1 - r), u, keep)
        differs += not torch.equal(expected, kept(masked, base, u, keep))  # the base value would keep others
        assert torch.equal(steps[t][2][0], expected), f"step {t}"
        masked = expected
    assert differs, "the case does not tell the annealed temperature from the base one"


@pytest.mark.parametrize("attention", ["manual", "sdpa"])
def test_the_forward_chunk_changes_the_speed_never_the_bits(attention):
    # 20 images: chunks of 1, 3 (a short last one), 8 (the CPU default) and all at once
    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, K + 1, (20, N), generator=g)
    model = toy_transformer(attention=attention)
    with torch.no_grad():
        whole = forward_in_chunks(model, tokens, None)
        assert torch.equal(whole, model(tokens))
        for chunk in (1, 3, 8, 0):
            assert torch.equal(forward_in_chunks(model, tokens, chunk), whole), f"chunk {chunk}"
    unknown = torch.rand(20, N, generator=g) < 0.5
    decoding = Decoding(schedule="cosine", total_iter=5, sweet_spot=5, choice_temperature=4.5)
    fills = [iterative_decode(model, tokens.clamp(max=K - 1), unknown, decoding, chunk=chunk,
                              generator=image_generators(0, range(20), "cpu")) for chunk in (None, 3, 0)]
    assert torch.equal(fills[0], fills[1]) and torch.equal(fills[0], fills[2])


def test_the_cpu_chunk_holds_the_score_budget():
    # 16 MiB of float32 scores: 4 heads x 256 x 256 x 4 bytes = 1 MiB an image -> 16;
    # 16 heads -> 4; a model that does not say its heads, or a GPU: the whole batch
    for heads, expected in ((4, 16), (16, 4), (2, 32)):
        model = BidirectionalTransformer(K, 256, {"dim": 32, "n_layers": 1, "n_heads": heads, "mlp_dim": 32})
        assert forward_chunk(model, "cpu") == expected
        assert forward_chunk(model, "cuda") is None
    assert forward_chunk(FixedLogits(torch.zeros(1, N, K + 1)), "cpu") is None


def test_batched_equals_one_image_at_a_time():
    tokens, unknown = batch_with_different_masks()
    model = toy_transformer()
    decoding = Decoding(schedule="cosine", total_iter=6, sweet_spot=6, choice_temperature=0.0)
    batched = iterative_decode(model, tokens, unknown, decoding)
    for i in range(tokens.shape[0]):
        single = iterative_decode(model, tokens[i:i + 1], unknown[i:i + 1], decoding)
        assert torch.equal(single[0], batched[i]), f"image {i}"


def test_images_with_nothing_or_everything_unknown():
    tokens = torch.randint(0, K, (2, N), generator=torch.Generator().manual_seed(0))
    unknown = torch.zeros(2, N, dtype=torch.bool)
    unknown[1] = True
    steps, on_step = record_steps()
    out = iterative_decode(toy_transformer(), tokens, unknown,
                           Decoding(schedule="square", total_iter=5, sweet_spot=5, choice_temperature=4.5),
                           generator=torch.Generator().manual_seed(0), on_step=on_step)
    assert torch.equal(out[0], tokens[0])
    assert all(int(m[0].sum()) == 0 for _, _, m in steps)
    assert [int(m[1].sum()) for _, _, m in steps] == [max(1, math.floor(N * gamma("square", (t + 1) / 5)))
                                                       for t in range(4)] + [0]


def test_every_schedule_against_its_formula():
    # each schedule at two points, by hand (the lab's cosine, linear, square; cubic, sqrt)
    expected = {"cosine": (math.sqrt(0.5), 0.5), "linear": (0.5, 1 / 3), "square": (0.75, 5 / 9),
                "cubic": (0.875, 19 / 27), "sqrt": (1 - math.sqrt(0.5), 1 - math.sqrt(2 / 3))}
    for name, (at_half, at_two_thirds) in expected.items():
        assert gamma(name, 0.5) == pytest.approx(at_half), name
        assert gamma(name, torch.tensor(2 / 3, dtype=torch.float64)).item() == pytest.approx(at_two_thirds), name


def test_sampling_draws_from_the_softmax():
    # one step (total_iter 1) samples every unknown token from softmax(logits): 70/30
    # between codes 3 and 5 at every position; argmax would give code 3 everywhere
    logits = torch.full((1, N, K + 1), -30.0)
    logits[..., 3], logits[..., 5] = math.log(0.7), math.log(0.3)
    tokens, unknown = torch.zeros(16, N, dtype=torch.long), torch.ones(16, N, dtype=torch.bool)
    out = iterative_decode(FixedLogits(logits), tokens, unknown,
                           Decoding(schedule="cosine", total_iter=1, sweet_spot=1, choice_temperature=0.0, sampling="sample"),
                           generator=torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {3, 5}
    share = (out == 3).double().mean().item()
    assert abs(share - 0.7) < 0.05  # 1024 draws: standard error 0.014


def test_sampling_is_reproducible_with_a_generator():
    tokens, unknown = batch_with_different_masks()
    model = toy_transformer()
    decoding = Decoding(schedule="cosine", total_iter=5, sweet_spot=5, choice_temperature=4.5, sampling="sample")
    a = iterative_decode(model, tokens, unknown, decoding, generator=torch.Generator().manual_seed(7))
    b = iterative_decode(model, tokens, unknown, decoding, generator=torch.Generator().manual_seed(7))
    c = iterative_decode(model, tokens, unknown, decoding, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_one_generator_per_image_makes_each_row_its_own():
    """With a generator per image, an image decoded inside a batch equals the same
    image decoded alone with a generator seeded the same (sampling and Gumbel noise)."""
    tokens, unknown = batch_with_different_masks()
    model = toy_transformer()
    decoding = Decoding(schedule="cosine", total_iter=5, sweet_spot=5, choice_temperature=4.5, sampling="sample")
    together = iterative_decode(model, tokens, unknown, decoding,
                                generator=[torch.Generator().manual_seed(10 + b) for b in range(len(tokens))])
    for b in range(len(tokens)):
        alone = iterative_decode(model, tokens[b:b + 1], unknown[b:b + 1], decoding,
                                 generator=[torch.Generator().manual_seed(10 + b)])
        assert torch.equal(alone[0], together[b])
    with pytest.raises(ValueError, match="one per image"):
        iterative_decode(model, tokens, unknown, decoding, generator=[torch.Generator()])


def test_num_masked_clamps():
    n0 = torch.tensor([0, 1, 2, 100, 100])
    current = torch.tensor([0, 1, 2, 100, 3])
    got = num_masked_after_step(n0, current, "linear", 0.99)
    assert got.tolist() == [0, 0, 1, 1, 1]
    # products that are exact integers in real arithmetic but not in binary floats
    assert num_masked_after_step(torch.tensor([5]), torch.tensor([5]), "linear", 4 / 5).item() == 1
    assert num_masked_after_step(torch.tensor([90]), torch.tensor([90]), "linear", 3 / 10).item() == 63


@pytest.mark.parametrize(
    "kwargs, param",
    [
        (dict(schedule="triangle"), "inpaint.schedules"),
        (dict(total_iter=0), "inpaint.total_iter"),
        (dict(total_iter=2.5), "inpaint.total_iter"),
        (dict(sweet_spot=0), "inpaint.sweet_spot"),
        (dict(choice_temperature=-1.0), "inpaint.choice_temperature"),
        (dict(sampling="top-k"), "inpaint.sampling"),
    ],
)
def test_bad_arguments_name_the_param(kwargs, param):
    settings = dict(schedule="cosine", total_iter=4, sweet_spot=4, choice_temperature=1.0, sampling="argmax")
    with pytest.raises(ValueError, match=param):  # refused where the settings are made, before any decoding
        Decoding(**{**settings, **kwargs})


# --- a prior over codes (pixel guidance) -----------------------------------------


def peaked_prior(codes, strength=20.0):
    """(B, N, K) log-prior that favours code codes[b, n] at every position."""
    prior = torch.zeros(*codes.shape, K)
    return prior.scatter_(-1, codes.unsqueeze(-1), strength)


def test_prior_chooses_where_the_model_is_indifferent_and_keeps_the_rules():
    """With uniform logits the choice at every unknown position is the prior's favourite;
    known tokens still never change and the counts per step are still exact."""
    tokens, unknown = batch_with_different_masks()
    favourite = torch.randint(0, K, tokens.shape, generator=torch.Generator().manual_seed(5))
    model = FixedLogits(torch.zeros(1, N, K + 1))
    steps, on_step = record_steps()
    out = iterative_decode(model, tokens, unknown,
                           Decoding(schedule="linear", total_iter=5, sweet_spot=5, choice_temperature=0.0),
                           prior=peaked_prior(favourite), on_step=on_step)
    assert torch.equal(out[unknown], favourite[unknown])
    assert torch.equal(out[~unknown], tokens[~unknown])
    for i in range(tokens.shape[0]):
        n0 = left = int(unknown[i].sum())
        for t, _, masked in steps:
            expected = 0 if t == 4 else max(0, min(max(math.floor(n0 * exact_gamma("linear", t + 1, 5)), 1), left - 1))
            assert int(masked[i].sum()) == expected, f"image {i} step {t}"
            left = expected


def test_prior_enters_the_confidence():
    """The confidence is the log-probability of the guided distribution: with the model
    indifferent, the positions the prior is sure about are revealed first."""
    tokens = torch.zeros(1, N, dtype=torch.long)
    unknown = torch.ones(1, N, dtype=torch.bool)
    sure = torch.zeros(N, dtype=torch.bool)
    sure[torch.randperm(N, generator=torch.Generator().manual_seed(2))[:16]] = True
    prior = peaked_prior(torch.zeros(1, N, dtype=torch.long), 20.0) * sure[None, :, None]
    steps, on_step = record_steps()
    iterative_decode(FixedLogits(torch.zeros(1, N, K + 1)), tokens, unknown,
                     Decoding(schedule="linear", total_iter=4, sweet_spot=4, choice_temperature=0.0), prior=prior,
                     on_step=on_step)
    revealed = ~steps[0][2][0]
    assert revealed.sum() == 16 and torch.equal(revealed, sure)


def test_zero_prior_is_the_decoding_without_one():
    tokens, unknown = batch_with_different_masks()
    decoding = Decoding(schedule="cosine", total_iter=6, sweet_spot=6, choice_temperature=4.5, sampling="sample")
    model = toy_transformer()
    plain = iterative_decode(model, tokens, unknown, decoding, generator=torch.Generator().manual_seed(9))
    zero = iterative_decode(model, tokens, unknown, decoding, generator=torch.Generator().manual_seed(9),
                            prior=torch.zeros(*tokens.shape, K))
    assert torch.equal(plain, zero)


def test_prior_of_the_wrong_shape_is_refused():
    tokens, unknown = batch_with_different_masks()
    with pytest.raises(ValueError, match="prior"):
        iterative_decode(toy_transformer(), tokens, unknown,
                         Decoding(schedule="cosine", total_iter=4, sweet_spot=4, choice_temperature=1.0),
                         prior=torch.zeros(*tokens.shape, K + 1))
