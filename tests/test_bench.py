"""The benchmark's correctness side: the two decoders it times agree token for token,
and a quick run writes every section. Speed itself is reported, never asserted."""

import json

import pytest
import torch

from maskgit import bench
from maskgit.algorithms.decoding import DECODE_CHUNK, Decoding, iterative_decode
from maskgit.bench_lab_loop import lab_inpaint


def test_lab_style_loop_gives_the_same_tokens_as_the_batched_decoder():
    transformer, vqgan = bench.build("demo", torch.device("cpu"))
    tokens, unknown = bench.test_batch(6, 128, torch.device("cpu"))
    decoded = []
    # the lab-style loop decodes the image after every step: count those decodes
    original = vqgan.decode_tokens
    vqgan.decode_tokens = lambda t: decoded.append(len(t)) or original(t)
    ours = bench.ours(transformer, vqgan, tokens, unknown, total_iter=4, precision="fp32", batch_size=4)
    # once per batch at the end, never per step; each a fixed-size chunk, so that no pixel
    # depends on inpaint.batch_size (maskgit.algorithms.decoding.DECODE_CHUNK)
    assert decoded == [DECODE_CHUNK, DECODE_CHUNK]
    decoded.clear()
    lab = bench.lab_style(transformer, vqgan, tokens, unknown, total_iter=4, precision="fp32")
    assert decoded == [1] * (6 * 4)  # every image at every step
    assert torch.equal(ours, lab)
    assert torch.equal(ours[~unknown], tokens[~unknown]) and (ours < 128).all()


def test_flop_count_matches_the_architecture():
    transformer, _ = bench.build("demo", torch.device("cpu"))
    x = torch.zeros(2, 256, dtype=torch.long)
    d, m, n, layers, vocab = 128, 512, 256, 4, 129
    # q, k, v, proj and the MLP per layer, QK^T and AV, then the head's transform and the tied logits
    matmuls = layers * (4 * n * d * d + 2 * n * d * m + 2 * n * n * d) + n * d * d + n * d * vocab
    flops = bench.forward_flops(transformer, x)
    assert 2 * 2 * matmuls <= flops <= 2 * 2 * matmuls * 1.05  # 2 FLOPs per multiply-add, batch 2


def test_quick_run_writes_every_section(tmp_path):
    bench.main(["--quick", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "benchmark.json").read_text())
    for key in ("inpainting", "flops", "training", "attention", "fid_cache", "scaling", "bootstrap", "orders",
                "forward_batch", "allocator", "inception_chunk"):
        assert result[key], key
    # below 16 images per forward (the quick run's 8 and 4) each image's Inception features do
    # not depend on the images sharing its forward, at one thread or two
    assert all(r["same_bits"] for r in result["inception_chunk"])
    assert result["machine"]["malloc"]  # what the figures were measured under
    assert all(r["tokens_identical"] for r in result["inpainting"] if r["precision"] == "fp32")
    assert all(r["max_abs_diff"] < 1e-3 for r in result["attention"] if r["precision"] == "fp32")
    assert "## 1. Inpainting" in (tmp_path / "benchmark.md").read_text()


def test_lab_style_subset_is_compared_on_the_images_both_ran():
    # the GPU run decodes 747 images but times the lab loop on the first 64 of them
    rows = bench.bench_inpainting("demo", torch.device("cpu"), n=5, total_iter=2, repeats=1, batch_size=4,
                                  n_lab_style=2)
    assert [(r["images"], r["lab_style_images"]) for r in rows] == [(5, 2), (5, 2)]
    assert all(r["tokens_identical"] for r in rows if r["precision"] == "fp32")


@pytest.mark.parametrize("schedule,total_iter,sweet_spot", [("cosine", 6, 6), ("linear", 8, 3)])
def test_the_lab_loop_written_apart_agrees_with_the_decoder(schedule, total_iter, sweet_spot):
    # two implementations of the same published algorithm: per-image masks of very
    # different sizes (one token, none, most), argmax, and the sweet spot before the end
    transformer, vqgan = bench.build("demo", torch.device("cpu"))
    tokens, unknown = bench.test_batch(4, 128, torch.device("cpu"), seed=3)
    unknown[1] = False
    unknown[1, 17] = True
    unknown[2] = False
    unknown[3, :200] = True
    lab = lab_inpaint(transformer, vqgan, tokens, unknown, decode_every_step=False, total_iter=total_iter,
                      sweet_spot=sweet_spot, schedule=schedule)
    ours = iterative_decode(transformer, tokens, unknown, Decoding(total_iter=total_iter, sweet_spot=sweet_spot,
                                                                   schedule=schedule, choice_temperature=0.0))
    assert torch.equal(lab, ours)
    assert torch.equal(lab[2], tokens[2]) and not torch.equal(lab[3], tokens[3])


def test_only_refuses_to_merge_a_smoke_run_into_a_page_measured_otherwise(tmp_path, capsys):
    # a --quick section (1 repeat) under a header that says "medians of 3 repeats" would
    # misstate it: the merge is refused before anything is measured or written
    page = {"machine": bench.machine(), "device": "cpu", "repeats": 3, "args": ["--repeats", "3"],
            "seconds": 1.0, "flops": [{"kept": 1}]}
    (tmp_path / "benchmark.json").write_text(json.dumps(page))
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--quick", "--only", "attention", "--out", str(tmp_path), "--device", "cpu"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and lines == [
        f"error: bench: --only: {tmp_path / 'benchmark.json'} was measured with another repeats (3, this run 1); "
        "run every section (no --only) or pass --out to another folder"]
    assert json.loads((tmp_path / "benchmark.json").read_text()) == page and not (tmp_path / "benchmark.md").exists()
    # measured the same way, the other sections are kept
    page.update(repeats=1, args=["--quick"])
    (tmp_path / "benchmark.json").write_text(json.dumps(page))
    bench.main(["--quick", "--only", "attention", "--out", str(tmp_path), "--device", "cpu"])
    merged = json.loads((tmp_path / "benchmark.json").read_text())
    assert merged["flops"] == [{"kept": 1}] and merged["kept"] == ["flops"] and merged["attention"]
