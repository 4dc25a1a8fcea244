"""Inpainting whole sets: batching does not change results, compositing keeps the
known pixels, the per-step history is that of the decoding loop."""

import pytest
import torch

from maskgit.algorithms.compositing import composite, harmonic_fill
from maskgit.algorithms.decoding import Decoding, decode_set
from maskgit.algorithms.guidance import pixel_prior
from maskgit.algorithms.masking import token_unknown_from_pixel_mask
from maskgit.models.transformer import BidirectionalTransformer
from maskgit.models.vqgan import VQGAN

CONFIG = dict(image_channels=3, enc_channels=[32, 32], dec_channels=[32], latent_dim=8, img_resolution=16,
              latent_resolution=8, num_codebook_vectors=16, beta=0.25)


def models():
    torch.manual_seed(0)
    vqgan = VQGAN(CONFIG).eval()
    transformer = BidirectionalTransformer(16, 64, {"dim": 16, "n_layers": 1, "n_heads": 2, "mlp_dim": 32}).eval()
    return vqgan, transformer


def holes(n):
    vqgan, transformer = models()
    images = torch.rand(n, 3, 16, 16) * 2 - 1
    known = torch.ones(n, 16, 16, dtype=torch.bool)
    for i in range(n):
        known[i, i : i + 6, 2 : 2 + 2 * i + 2] = False  # a different hole per image
    tokens = vqgan.encode_to_tokens(images)
    return vqgan, transformer, tokens, token_unknown_from_pixel_mask(known, 2)


@pytest.mark.parametrize("sampling", ["argmax", "sample"])
def test_with_noise_an_image_is_filled_the_same_in_any_batch(sampling):
    """Gumbel confidences (and samples) come from one generator per image, seeded by
    (seed, index): the fill of an image does not depend on batch_size, while another
    seed changes the order in which tokens are revealed (so the noise is really used)."""
    vqgan, transformer, tokens, unknown = holes(5)
    decoding = Decoding(schedule="cosine", total_iter=4, sweet_spot=4, choice_temperature=4.5, sampling=sampling)
    args = dict(device="cpu")
    t_all, x_all, h_all = decode_set(vqgan, transformer, tokens, unknown, decoding, batch_size=5, seed=3,
                                      history_images=5, **args)
    t_two, x_two, _ = decode_set(vqgan, transformer, tokens, unknown, decoding, batch_size=2, seed=3, **args)
    t_one, _, _ = decode_set(vqgan, transformer, tokens, unknown, decoding, batch_size=1, seed=3, **args)
    assert torch.equal(t_all, t_two) and torch.equal(t_all, t_one) and torch.allclose(x_all, x_two, atol=1e-5)
    t_other, _, h_other = decode_set(vqgan, transformer, tokens, unknown, decoding, batch_size=5, seed=4,
                                      history_images=5, **args)
    assert not torch.equal(h_all["masked"], h_other["masked"])
    assert torch.equal(t_all[~unknown], t_other[~unknown])


def test_batch_size_does_not_change_the_result_and_history_is_kept():
    vqgan, transformer, tokens, unknown = holes(5)
    decoding = Decoding(schedule="cosine", total_iter=4, sweet_spot=4, choice_temperature=0.0)
    t_all, x_all, hist = decode_set(vqgan, transformer, tokens, unknown, decoding, batch_size=5, history_images=2,
                                    device="cpu")
    t_two, x_two, _ = decode_set(vqgan, transformer, tokens, unknown, decoding, batch_size=2, device="cpu")
    assert torch.equal(t_all, t_two) and torch.allclose(x_all, x_two, atol=1e-5)
    assert torch.equal(t_all[~unknown], tokens[~unknown])
    assert hist["masked"].shape == (2, 4, 64) and hist["images"].shape == (2, 4, 3, 16, 16)
    assert not hist["masked"][:, -1].any()  # nothing masked after the last step
    assert torch.equal(hist["masked"][:, 0].sum(1) <= unknown[:2].sum(1), torch.tensor([True, True]))
    assert torch.allclose(hist["images"][:, -1], x_all[:2], atol=1e-5)


def test_composite_keeps_known_pixels():
    generated = torch.zeros(2, 3, 4, 4)
    masked_input = torch.ones(2, 3, 4, 4)
    known = torch.zeros(2, 4, 4, dtype=torch.bool)
    known[0, :2] = True
    out = composite(generated, masked_input, known)
    assert (out[0, :, :2] == 1).all() and (out[0, :, 2:] == 0).all() and (out[1] == 0).all()
    assert torch.equal(composite(generated, masked_input, known, "none"), generated)
    with pytest.raises(ValueError, match="inpaint.composite"):
        composite(generated, masked_input, known, "feather")


def smooth_images(n, size=24):
    """Smooth random images (cumulative sums of noise), so that a fill can be judged."""
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size).cumsum(-1).cumsum(-2) / size


def poisson_holes(n, size=24):
    known = torch.ones(n, size, size, dtype=torch.bool)
    known[0, 5:15, 3:11] = False  # inside the image
    known[1, :9, :] = False  # across the whole top edge: no known pixel above it
    known[2, 14:, 16:] = False  # in a corner
    known[2, 2:5, 2:20] = False  # and a second hole
    return known


def test_poisson_composite_removes_a_shade_off_fill_and_keeps_known_pixels():
    """A fill that is the right image a uniform shade off, per channel (the seam that
    paste leaves as a visible rectangle): seamless cloning shifts it back exactly."""
    gt = smooth_images(3)
    known = poisson_holes(3)
    generated = gt + torch.tensor([0.3, -0.2, 0.1])[:, None, None]
    masked_input = torch.where(known[:, None], gt, torch.zeros_like(gt))  # holes gray, as in the lab
    out = composite(generated, masked_input, known, "poisson")
    assert torch.equal(out[known[:, None].expand_as(out)], masked_input[known[:, None].expand_as(out)])
    assert torch.allclose(out, gt, atol=1e-4)
    pasted = composite(generated, masked_input, known, "paste")
    assert (pasted - gt).abs().amax() > 0.25  # the seam that poisson removes


def test_poisson_correction_is_harmonic_in_the_hole_and_matches_the_border():
    from maskgit.algorithms.compositing import _neighbour_sum, poisson_correction

    difference = smooth_images(3) * 3
    known = poisson_holes(3)
    c = poisson_correction(difference, known)
    hole = ~known[:, None].expand_as(c)
    assert (c[~hole] == 0).all()
    # discrete Laplace equation at every hole pixel, known neighbours at `difference`,
    # no flux across the image border (a pixel has as many neighbours as lie inside)
    field = torch.where(hole, c, difference)
    degree = _neighbour_sum(torch.ones(1, 1, 24, 24))
    residual = degree * field - _neighbour_sum(field)
    assert residual[hole].abs().max() < 1e-3 * difference.abs().max()
    assert c[hole].abs().max() > 0.1  # not trivially zero


def test_streaming_batches_gives_the_in_memory_result_and_keeps_no_images():
    """With on_batch (what the stages use, so that memory does not grow with the
    number of images) every image arrives exactly once, in order, equal to the
    in-memory result, and nothing of the set's images is kept."""
    vqgan, transformer = models()
    images = torch.rand(7, 3, 16, 16) * 2 - 1
    known = torch.ones(7, 16, 16, dtype=torch.bool)
    for i in range(7):
        known[i, i : i + 5, 1 : 3 + i] = False
    tokens = vqgan.encode_to_tokens(images)
    unknown = token_unknown_from_pixel_mask(known, 2)
    decoding = Decoding(schedule="linear", total_iter=3, sweet_spot=3, choice_temperature=0.0)
    t_all, x_all, _ = decode_set(vqgan, transformer, tokens, unknown, decoding, batch_size=7, device="cpu")
    seen = []
    t_stream, x_stream, _ = decode_set(vqgan, transformer, tokens, unknown, decoding, batch_size=3, device="cpu",
                                        on_batch=lambda b, t, x: seen.append((b, t, x)))
    assert x_stream is None and torch.equal(t_stream, t_all)
    assert [(b.start, b.stop) for b, _, _ in seen] == [(0, 3), (3, 6), (6, 7)]
    assert torch.equal(torch.cat([t for _, t, _ in seen]), t_all)
    assert torch.allclose(torch.cat([x for _, _, x in seen]), x_all, atol=1e-5)


# --- pixel guidance --------------------------------------------------------------


def partly_known_set(n=3):
    """Images with holes that cut through token patches (2x2 pixels per token here)."""
    images = torch.rand(n, 3, 16, 16) * 2 - 1
    known = torch.ones(n, 16, 16, dtype=torch.bool)
    for i in range(n):
        known[i, 3 + i : 10, 5 : 12 - i] = False  # odd edges: a ring of half-known patches
    return images, known


def test_pixel_prior_speaks_only_for_partly_known_tokens_and_favours_the_prefill_code():
    vqgan, _ = models()
    images, known = partly_known_set()
    masked = torch.where(known[:, None], images, torch.zeros_like(images))
    with torch.no_grad():
        prior = pixel_prior(vqgan, masked, known, 10.0)
        prefill_codes = vqgan.encode_to_tokens(harmonic_fill(masked, known))
    patch_known = known.float().reshape(3, 8, 2, 8, 2).mean(dim=(2, 4)).reshape(3, 64)
    partly = (patch_known > 0) & (patch_known < 1)
    assert partly.sum() > 0 and ((patch_known == 0).sum() > 0)
    assert prior.shape == (3, 64, 16)
    assert (prior[~partly] == 0).all(), "a token fully known or fully missing got a prior"
    assert (prior[partly].amax(-1) == 0).all() and (prior[partly].amin(-1) < 0).all()
    assert torch.equal(prior.argmax(-1)[partly], prefill_codes[partly])
    # the guidance is a plain weight: twice the guidance, twice the log-prior
    with torch.no_grad():
        assert torch.allclose(pixel_prior(vqgan, masked, known, 20.0), 2 * prior)


def test_pixel_prior_does_not_depend_on_the_scale_of_the_latent_space():
    """Scaling the latents and the codebook together (another tokenizer's units) leaves
    the prior unchanged: distances are measured in codebook spacings."""
    vqgan, _ = models()
    images, known = partly_known_set()
    masked = torch.where(known[:, None], images, torch.zeros_like(images))
    with torch.no_grad():
        before = pixel_prior(vqgan, masked, known, 10.0)
        vqgan.quant_conv.weight.mul_(7.0)
        vqgan.quant_conv.bias.mul_(7.0)
        vqgan.codebook.embedding.weight.mul_(7.0)
        after = pixel_prior(vqgan, masked, known, 10.0)
    assert torch.allclose(before, after, atol=1e-3, rtol=1e-4)


def test_prior_fn_is_called_per_batch_and_reaches_the_decoder():
    """decode_set hands each batch's prior to the decoder: a prior that forces one code
    everywhere fills every unknown token with it, in every batch."""
    vqgan, transformer, tokens, unknown = holes(5)
    calls = []

    def force_code_3(batch):
        calls.append((batch.start, batch.stop))
        prior = torch.zeros(batch.stop - batch.start, 64, 16)
        prior[..., 3] = 1e4
        return prior

    filled, _, _ = decode_set(vqgan, transformer, tokens, unknown,
                              Decoding(schedule="cosine", total_iter=3, sweet_spot=3, choice_temperature=0.0),
                              batch_size=2, device="cpu", prior_fn=force_code_3)
    assert calls == [(0, 2), (2, 4), (4, 5)]
    assert (filled[unknown] == 3).all() and torch.equal(filled[~unknown], tokens[~unknown])


def test_a_fill_is_the_same_bits_in_any_batch():
    # inpaint.batch_size must not move a pixel: the Poisson solve stops each image when
    # it converges (not when the slowest of its batch does), and the VQGAN decodes in
    # chunks of one fixed size (its conv kernels round by batch size with 2+ threads)
    import numpy as np
    import yaml

    from conftest import ROOT
    from maskgit.algorithms.compositing import poisson_correction
    from maskgit.algorithms.decoding import reconstruct_in_fixed_chunks
    from maskgit.data.procedural import make_dataset, make_masks

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        n = 24
        images = torch.from_numpy(make_dataset(3, n)).permute(0, 3, 1, 2).float() / 127.5 - 1
        known = torch.from_numpy(make_masks(4, n))
        difference = 0.3 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
        together = poisson_correction(difference, known)
        alone = torch.cat([poisson_correction(difference[i : i + 1], known[i : i + 1]) for i in range(n)])
        assert torch.equal(together, alone)

        torch.manual_seed(0)
        config = yaml.safe_load((ROOT / "params.yaml").read_text())["vqgan"]
        vqgan = VQGAN(config).eval()
        transformer = BidirectionalTransformer(config["num_codebook_vectors"], 256,
                                               {"dim": 16, "n_layers": 1, "n_heads": 2, "mlp_dim": 32}).eval()
        tokens = torch.randint(0, config["num_codebook_vectors"], (n, 256))
        unknown = torch.from_numpy(np.repeat(np.repeat(~make_masks(5, n)[:, ::4, ::4], 1, 1), 1, 2)).reshape(n, 256)
        decoding = Decoding(schedule="cosine", total_iter=2, sweet_spot=2, choice_temperature=0.0)
        _, x_all, _ = decode_set(vqgan, transformer, tokens, unknown, decoding, batch_size=n, device="cpu")
        _, x_seven, _ = decode_set(vqgan, transformer, tokens, unknown, decoding, batch_size=7, device="cpu")
        assert torch.equal(x_all, x_seven)

        # the baselines' VQGAN reconstruction, batched by inpaint.batch_size in the stage
        whole = reconstruct_in_fixed_chunks(vqgan, images)
        assert torch.equal(whole, torch.cat([reconstruct_in_fixed_chunks(vqgan, images[i : i + 7])
                                             for i in range(0, n, 7)]))
    finally:
        torch.set_num_threads(threads)
