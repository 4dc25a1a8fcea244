"""Decoding order (inpaint.orders): which tokens a step reveals, against values
written out by hand; the schedule's count rule and the known tokens under every order."""

from dataclasses import replace
from fractions import Fraction

import pytest
import torch

from maskgit.algorithms.decoding import (Decoding, halton_order, image_generators, iterative_decode, radical_inverse,
                                         reveal_priority)
from maskgit.choices import ORDERS
from maskgit.project import grid

from test_decode import K, N, FixedLogits, batch_with_different_masks, record_steps, toy_transformer


def test_halton_points_are_the_radical_inverses_in_bases_2_and_3():
    # i written in the base, its digits mirrored about the radix point
    base2 = [Fraction(1, 2), Fraction(1, 4), Fraction(3, 4), Fraction(1, 8), Fraction(5, 8), Fraction(3, 8),
             Fraction(7, 8), Fraction(1, 16)]
    base3 = [Fraction(1, 3), Fraction(2, 3), Fraction(1, 9), Fraction(4, 9), Fraction(7, 9), Fraction(2, 9),
             Fraction(5, 9), Fraction(8, 9)]
    for i, (x, y) in enumerate(zip(base2, base3), start=1):
        assert radical_inverse(i, 2) == pytest.approx(float(x), abs=1e-15)
        assert radical_inverse(i, 3) == pytest.approx(float(y), abs=1e-15)
    assert radical_inverse(0, 2) == 0.0


def test_the_first_cells_of_a_4x4_grid_by_hand():
    # point i -> (row, column) = (floor(4 * base2[i]), floor(4 * base3[i])), index 4 * row + column:
    # (1/2, 1/3) -> (2, 1) = 9; (1/4, 2/3) -> (1, 2) = 6; (3/4, 1/9) -> (3, 0) = 12; (1/8, 4/9) -> (0, 1) = 1;
    # (5/8, 7/9) -> (2, 3) = 11; (3/8, 2/9) -> (1, 0) = 4; (7/8, 5/9) -> (3, 2) = 14; (1/16, 8/9) -> (0, 3) = 3
    assert halton_order(4, 4)[:8].tolist() == [9, 6, 12, 1, 11, 4, 14, 3]


@pytest.mark.parametrize("shape", [(4, 4), (8, 8), (16, 16), (5, 7)])
def test_the_halton_order_covers_every_cell_exactly_once(shape):
    order = halton_order(*shape)
    assert sorted(order.tolist()) == list(range(shape[0] * shape[1]))


def test_halton_reveals_the_unknown_tokens_in_halton_order_whatever_the_model():
    unknown = torch.zeros(2, N, dtype=torch.bool)
    unknown[0] = True
    unknown[1, 8:40] = True  # a band of rows: the order is filtered to it
    tokens = torch.zeros(2, N, dtype=torch.long)
    sequence = halton_order(8, 8).tolist()
    masks = []
    for seed in (0, 1):  # two unrelated models
        logits = torch.randn(1, N, K + 1, generator=torch.Generator().manual_seed(seed))
        steps, on_step = record_steps()
        iterative_decode(FixedLogits(logits), tokens, unknown,
                         Decoding(schedule="linear", total_iter=4, sweet_spot=4, choice_temperature=4.5, order="halton"),
                         on_step=on_step)
        masks.append([m for _, _, m in steps])
        for image in range(2):
            own = [p for p in sequence if unknown[image, p]]
            for _, _, masked in steps:
                revealed = int(unknown[image].sum() - masked[image].sum())
                assert set(torch.nonzero(unknown[image] & ~masked[image]).flatten().tolist()) == set(own[:revealed])
    assert all(torch.equal(a, b) for a, b in zip(*masks)), "the model changed which positions were revealed"


def test_a_shifted_halton_order_is_the_grid_rolled_per_image():
    plain = reveal_priority("halton", (1, 64), None, "cpu")[0].view(8, 8)
    shifted = reveal_priority("halton", (6, 64), image_generators(0, range(6), "cpu"), "cpu", halton_shift=True)
    rolls = {(dy, dx) for dy in range(8) for dx in range(8)}
    found = []
    for row in shifted:
        match = [r for r in rolls if torch.equal(torch.roll(plain, r, (0, 1)), row.view(8, 8))]
        assert match, "a shifted order is not a roll of the Halton order"
        found.append(match[0])
    assert len(set(found)) > 1, "every image got the same offset"
    again = reveal_priority("halton", (2, 64), image_generators(0, range(4, 6), "cpu"), "cpu", halton_shift=True)
    assert torch.equal(again, shifted[4:]), "an image's offset depends on its batch"


def test_a_random_order_is_the_images_own_and_uniform():
    first = reveal_priority("random", (4000, 16), torch.Generator().manual_seed(0), "cpu").argmax(dim=1)
    counts = torch.bincount(first, minlength=16).float()
    # each position first with probability 1/16: 250 of 4000, sd ~15.3
    assert counts.min() > 250 - 5 * 15.3 and counts.max() < 250 + 5 * 15.3
    a = reveal_priority("random", (3, 16), image_generators(7, range(3), "cpu"), "cpu")
    b = reveal_priority("random", (1, 16), image_generators(7, range(2, 3), "cpu"), "cpu")
    assert torch.equal(a[2:], b)
    assert not torch.equal(a[0].argsort(), a[1].argsort())


@pytest.mark.parametrize("order", ORDERS)
def test_every_order_fills_every_unknown_token_and_keeps_the_known(order):
    tokens, unknown = batch_with_different_masks()
    steps, on_step = record_steps()
    out = iterative_decode(toy_transformer(), tokens, unknown,
                           Decoding(schedule="cosine", total_iter=8, sweet_spot=8, choice_temperature=4.5, order=order),
                           generator=image_generators(0, range(4), "cpu"), on_step=on_step)
    assert torch.equal(out[~unknown], tokens[~unknown])
    assert (out < K).all(), "the mask id survived or was predicted"
    previous = unknown
    for _, _, masked in steps:
        assert not (masked & ~previous).any(), "a revealed or known token was masked again"
        previous = masked
    assert not steps[-1][2].any()


@pytest.mark.parametrize("order", ["random", "halton"])
def test_an_order_fill_does_not_depend_on_the_batch(order):
    tokens, unknown = batch_with_different_masks()
    decoding = Decoding(schedule="cosine", total_iter=6, sweet_spot=6, choice_temperature=4.5, order=order,
                        halton_shift=True)
    whole = iterative_decode(toy_transformer(), tokens, unknown, decoding, generator=image_generators(0, range(4), "cpu"))
    alone = torch.cat([iterative_decode(toy_transformer(), tokens[i:i + 1], unknown[i:i + 1], decoding,
                                        generator=image_generators(0, range(i, i + 1), "cpu"))
                       for i in range(4)])
    assert torch.equal(whole, alone)


def test_confidence_is_the_default_and_an_unknown_order_names_the_param():
    tokens, unknown = batch_with_different_masks()
    decoding = Decoding(schedule="cosine", total_iter=5, sweet_spot=5, choice_temperature=4.5)
    default = iterative_decode(toy_transformer(), tokens, unknown, decoding, generator=torch.Generator().manual_seed(0))
    named = iterative_decode(toy_transformer(), tokens, unknown, replace(decoding, order="confidence"),
                             generator=torch.Generator().manual_seed(0))
    assert torch.equal(default, named)
    with pytest.raises(ValueError, match="inpaint.orders: unknown order 'zigzag'"):
        replace(decoding, order="zigzag")


def test_a_decoder_has_one_name_key_stage_and_folder():
    ip = {"schedules": ["cosine", "square"], "orders": ["confidence", "halton"]}
    assert grid.decoder_names(ip) == ["cosine", "square", "cosine-halton", "square-halton"]
    assert grid.Decoder.parse("square-halton") == grid.Decoder("square", "halton")
    assert grid.Decoder.parse("cosine") == grid.Decoder("cosine", "confidence")
    cosine = grid.Decoder("cosine")
    assert (cosine.name, cosine.key, cosine.stage) == ("cosine", "cosine-confidence", "inpaint@cosine-confidence")
    assert all(grid.Decoder.parse(d.name) == d for d in grid.decoders(ip))  # a name gives its decoder back
    assert str(grid.MAIN.decoder_folder(grid.Decoder.parse("square-halton"))) == "outputs/inpaint/halton/square"
    assert str(grid.TestSet("thin").images("square-halton")) == "outputs/families/thin/inpaint/halton/square/images"
    # along the grid's axes only: no cosine-confidence against square-halton
    pairs = [p for p in grid.pairs_to_compare(grid.decoder_names(ip)) if p[1] not in grid.BASELINES]
    assert pairs == [("cosine", "square"), ("cosine", "cosine-halton"), ("square", "square-halton"),
                     ("cosine-halton", "square-halton")]


def test_the_order_table_reads_each_order_against_confidence():
    from maskgit.pages.markdown import order_table

    def cell(v, lo, hi):
        return {"value": v, "interval": [lo, hi]}

    ev = {"sets": {"cosine": {"fid": cell(50.0, 45.0, 55.0)}, "cosine-halton": {"fid": cell(47.0, 42.0, 52.0)}},
          # stored as confidence - halton: confidence's FID 3 higher, so confidence is worse
          "pairs": [{"a": "cosine", "b": "cosine-halton", "metric": "fid", "diff": 3.0, "interval": [1.0, 5.0],
                     "verdict": "worse"},
                    {"a": "cosine", "b": "cosine-halton", "metric": "hole_psnr", "diff": 0.5, "interval": [-0.2, 1.1],
                     "verdict": "indistinguishable"}]}
    table = "\n".join(order_table(ev, ["cosine"], ["confidence", "halton"]))
    row = next(line for line in table.splitlines() if line.startswith("| cosine"))
    assert "50.00 [45.00, 55.00]" in row and "47.00 [42.00, 52.00]" in row
    assert "better, -3.00 [-5.00, -1.00]" in row  # halton against confidence
    assert "indistinguishable, -0.50 [-1.10, +0.20]" in row
    assert order_table(ev, ["cosine"], ["confidence"]) == []


def test_every_roll_of_the_grid_is_reachable_and_none_other():
    # the offset is drawn uniformly over the side x side rolls: with 600 images of a 4 x 4
    # grid each of the 16 rolls is drawn (a miss has probability below 16 (15/16)^600),
    # the last row and column included
    plain = reveal_priority("halton", (1, 16), None, "cpu")[0].view(4, 4)
    shifted = reveal_priority("halton", (600, 16), image_generators(0, range(600), "cpu"), "cpu", halton_shift=True)
    rolls = {}
    for row in shifted:
        found = [(dy, dx) for dy in range(4) for dx in range(4) if torch.equal(torch.roll(plain, (dy, dx), (0, 1)),
                                                                             row.view(4, 4))]
        assert len(found) == 1
        rolls[found[0]] = rolls.get(found[0], 0) + 1
    assert set(rolls) == {(dy, dx) for dy in range(4) for dx in range(4)}
    assert max(rolls.values()) < 3 * min(rolls.values())  # roughly uniform, no roll favoured
