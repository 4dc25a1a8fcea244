"""The CUDA paths: decoding on the GPU under bf16 autocast with per-image CUDA
generators, torch.compile, and the training stage with device cuda.

CI machines have no GPU, so this file is skipped there; on a GPU machine run
`pytest tests/test_cuda.py`. The rules themselves are tested on CPU in test_decode.py;
here they must hold unchanged where the GPU's kernels and generators differ.
"""

import json

import pytest
import torch

from maskgit.pipeline.runtime import maybe_compile
from maskgit.algorithms.decoding import Decoding, iterative_decode
from maskgit.algorithms.decoding import decode_set, image_generators
from test_decode import batch_with_different_masks, record_steps, toy_transformer
from test_resume import make_project, run_stage, tiny_params

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI machines have none)")
CUDA = torch.device("cuda")
DECODE = Decoding(schedule="cosine", total_iter=7, sweet_spot=7, choice_temperature=4.5, sampling="sample")


def decode_on_cuda(model, tokens, unknown, seeds, on_step=None):
    generators = [torch.Generator(device=CUDA).manual_seed(s) for s in seeds]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        return iterative_decode(model, tokens.to(CUDA), unknown.to(CUDA), DECODE, generator=generators, on_step=on_step)


def test_rules_hold_on_cuda_under_bf16():
    tokens, unknown = batch_with_different_masks()
    steps, on_step = record_steps()
    out = decode_on_cuda(toy_transformer().to(CUDA), tokens, unknown, range(4), on_step)
    cpu_steps, cpu_on_step = record_steps()
    iterative_decode(toy_transformer(), tokens, unknown, DECODE, generator=torch.Generator().manual_seed(0),
                     on_step=cpu_on_step)
    assert out.device.type == "cuda" and out.dtype == torch.long
    unknown_cuda = unknown.to(CUDA)
    assert torch.equal(out[~unknown_cuda], tokens.to(CUDA)[~unknown_cuda])  # known tokens unchanged
    assert (out < toy_transformer().codebook_size).all()  # the mask id is never left in or predicted
    assert len(steps) == DECODE.total_iter and not steps[-1][2].any()
    previous = unknown_cuda
    for (_, chosen, masked), (_, _, cpu_masked) in zip(steps, cpu_steps, strict=True):
        # the same number left masked per image and step as on CPU, whatever the GPU chose
        assert torch.equal(masked.sum(1).cpu(), cpu_masked.sum(1))
        assert not (masked & ~previous).any() and torch.equal(chosen[~unknown_cuda], tokens.to(CUDA)[~unknown_cuda])
        previous = masked


def test_cuda_generators_make_decoding_repeatable_per_image():
    tokens, unknown = batch_with_different_masks()
    model = toy_transformer().to(CUDA)
    a = decode_on_cuda(model, tokens, unknown, [10, 11, 12, 13])
    b = decode_on_cuda(model, tokens, unknown, [10, 11, 12, 13])
    c = decode_on_cuda(model, tokens, unknown, [20, 21, 22, 23])
    assert torch.equal(a, b)
    assert not torch.equal(a[:3], c[:3])  # image 3 has one unknown token: it may well agree
    # decode_set's generators live on the device it decodes on
    assert all(g.device.type == "cuda" for g in image_generators(0, range(3), CUDA))


def test_inpaint_set_on_cuda_returns_host_tensors_and_keeps_known_tokens():
    from maskgit.models.vqgan import VQGAN

    tokens, unknown = batch_with_different_masks()
    vqgan = VQGAN(dict(image_channels=3, enc_channels=[16, 16, 16, 16], dec_channels=[16, 16, 16], latent_dim=8,
                       img_resolution=32, latent_resolution=8, num_codebook_vectors=32, beta=0.25, norm_groups=4))
    filled, images, history = decode_set(vqgan.to(CUDA).eval(), toy_transformer().to(CUDA), tokens, unknown, DECODE,
                                         batch_size=3, device=CUDA, seed=0, history_images=2)
    assert filled.device.type == "cpu" and images.device.type == "cpu" and images.shape == (4, 3, 32, 32)
    assert torch.equal(filled[~unknown], tokens[~unknown])
    assert history["masked"].shape == (2, DECODE.total_iter, tokens.shape[1])


def test_compiled_transformer_matches_eager():
    model = toy_transformer().to(CUDA)
    compiled = maybe_compile(model, CUDA, True)
    assert compiled is not model
    tokens, _ = batch_with_different_masks()
    with torch.no_grad():
        eager, fused = model(tokens.to(CUDA)), compiled(tokens.to(CUDA))
    torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-4)


def test_training_stage_on_cuda_with_compile_and_bf16(tmp_path):
    params = tiny_params(steps=30, eval_every=10, checkpoint_every=10, precision="bf16")
    params.update(device="cuda", compile=True)
    project = make_project(tmp_path / "p", params)
    proc = run_stage(project, tmp_path)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    metrics = json.loads((project / "dvclive" / "transformer" / "metrics.json").read_text())
    timing = json.loads((project / "timings" / "train_transformer.json").read_text())
    assert timing["tokens_per_s"] > 0 and 0 < timing["mfu"] < 1 and "mfu" not in metrics
    saved = torch.load(project / "models" / "transformer.pt", map_location="cpu", weights_only=False)
    # saved from the plain module, not the compiled wrapper: the keys load into a fresh model
    assert not any(k.startswith("_orig_mod.") for k in saved["state_dict"])
    assert all(t.device.type == "cpu" for t in saved["state_dict"].values())
