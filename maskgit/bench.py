"""The benchmark: where the time goes, measured side by side in one run.

    python -m maskgit.bench              # every section (docs/benchmarks.md); --quick for a smoke run
    python -m maskgit.bench --full       # the scaling table at 100, 1,000 and 10,000 images

Writes reports/benchmark.json and reports/benchmark.md. Every figure is the median
of several repeats after a warm-up, and every ratio is taken inside the same run:
  1. inpainting seconds per image, this project's batched decoder against the
     lab's loop (maskgit.bench_lab_loop, written from the lab's algorithm apart from
     this decoder: one image at a time, VQGAN decode after every step) over the
     same model, tokens and settings (argmax, choice temperature 0: tokens must be
     identical, and are checked), demo and lab5 sizes, fp32 and bf16 autocast;
  2. the decoding forward's FLOP/s (torch's FlopCounterMode) against a large
     square matmul of the same dtype timed in the same run;
  3. training steps/s from pre-tokenized data against encoding every batch with
     the VQGAN as the lab does;
  4. FID of a second image set with cached ground-truth features against without;
  5. hand-written attention against scaled_dot_product_attention;
  6. inpainting and FID time and peak memory against the number of images;
  7. the bootstrap of the evaluate stage (7 sets, paired replicates), exact and through
     influence functions, against the number of images: seconds, peak memory and the
     share of the FID stages' own time (from section 6's seconds per image);
  8. each decoding order's cost per image and step;
  9. one decoding forward per image against the number of images in it;
 10. on CPU, glibc's default malloc against keeping freed memory (as the tokenize,
     training and inpaint stages and this benchmark run: devices.keep_freed_memory),
     in fresh processes.
Models are randomly initialised at the real sizes (speed does not depend on the
weights). Nothing here is asserted: tests check correctness, this reports speed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from maskgit.algorithms.decoding import Decoding, decode_set, forward_chunk, forward_in_chunks, image_generators, reveal_priority
from maskgit.algorithms.devices import autocast, keep_freed_memory
from maskgit.algorithms.masking import random_token_mask
from maskgit.bench_lab_loop import lab_inpaint
from maskgit.choices import ORDERS
from maskgit.project.errors import UserError
from maskgit.pipeline.perf import forward_flops, matmul_peak, timed, train_step_flops
from maskgit.project.tool import run_tool
from maskgit.models.transformer import BidirectionalTransformer
from maskgit.models.vqgan import VQGAN
from maskgit.project.params import defaults
from maskgit.project.presets import with_preset

def architecture(preset: str) -> dict:
    """The models of a preset ("demo": the defaults), as configs/ and params.py state them."""
    params, _, _ = with_preset(defaults(), [preset])
    vqgan = {k: v for k, v in params["vqgan"].items() if k != "checkpoint"}
    return {"codebook": vqgan["num_codebook_vectors"], "transformer": params["transformer"], "vqgan": vqgan}


SIZES = {size: architecture(size) for size in ("demo", "lab5")}
NUM_TOKENS = 256


def machine() -> dict:
    """Where the figures come from. Sets this process's malloc as the decoding and training
    stages set theirs (keeping freed memory), so that the benchmark measures what they run."""
    malloc = keep_freed_memory()
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "python": platform.python_version(),
        "malloc": malloc,
    }


def build(size: str, device, seed: int = 0):
    spec = SIZES[size]
    torch.manual_seed(seed)
    transformer = BidirectionalTransformer(spec["codebook"], NUM_TOKENS, spec["transformer"]).to(device).eval()
    vqgan = VQGAN(spec["vqgan"]).to(device).eval()
    with torch.no_grad():  # spread the codes so that decoding sees varied tokens
        vqgan.codebook.embedding.weight.normal_(0, 1)
    return transformer, vqgan


def test_batch(n: int, codebook: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, codebook, (n, NUM_TOKENS), generator=g)
    unknown = random_token_mask(n, NUM_TOKENS, "cosine", r_range=(0.3, 0.7), regional_prob=1.0, generator=g)
    return tokens.to(device), unknown.to(device)


SCHEDULE = "cosine"


def decoding(total_iter: int, order: str = "confidence") -> Decoding:
    """argmax at temperature 0: no noise, so ours and the lab's loop must give the same tokens."""
    return Decoding(schedule=SCHEDULE, total_iter=total_iter, sweet_spot=total_iter, choice_temperature=0.0,
                    order=order)


def ours(transformer, vqgan, tokens, unknown, total_iter, precision, batch_size, order="confidence", seed=None):
    """This project: decode_set, batched decoding, one VQGAN decode per batch at the end."""
    with autocast(tokens.device, precision):
        filled, _, _ = decode_set(vqgan, transformer, tokens, unknown, decoding(total_iter, order),
                                   batch_size=batch_size, device=tokens.device, desc="bench", seed=seed)
    return filled


def lab_style(transformer, vqgan, tokens, unknown, total_iter, precision):
    """The lab's loop (maskgit.bench_lab_loop, written apart from this project's decoder):
    one image at a time, the image decoded after every step."""
    with autocast(tokens.device, precision):
        return lab_inpaint(transformer, vqgan, tokens, unknown, total_iter=total_iter, sweet_spot=total_iter,
                           schedule=SCHEDULE)


def bench_inpainting(size, device, n, total_iter, repeats, batch_size, n_lab_style=None):
    """Seconds per image, ours over n images against the lab-style loop over the
    first n_lab_style of them (default all: on a GPU the lab loop over the 747
    images of the lab5 test set would take minutes per repeat, and its per-image
    cost does not depend on n); tokens compared on the images both ran."""
    n_lab_style = n_lab_style or n
    transformer, vqgan = build(size, device)
    tokens, unknown = test_batch(n, SIZES[size]["codebook"], device)
    rows, results = [], {}
    for precision in ("fp32", "bf16"):
        t_ours = timed(lambda: results.__setitem__(("ours", precision),
                       ours(transformer, vqgan, tokens, unknown, total_iter, precision, batch_size)), device, repeats)
        t_lab = timed(lambda: results.__setitem__(("lab", precision), lab_style(
                      transformer, vqgan, tokens[:n_lab_style], unknown[:n_lab_style], total_iter, precision)),
                      device, repeats)
        ours_tokens, lab_tokens = results[("ours", precision)][:n_lab_style], results[("lab", precision)]
        same = bool(torch.equal(ours_tokens, lab_tokens))
        # how many of the filled tokens agree, where batch size changes the kernels (bf16 on a GPU)
        equal_share = (ours_tokens == lab_tokens)[unknown[:n_lab_style].cpu()].float().mean().item()
        rows.append({"size": size, "precision": precision, "images": n, "lab_style_images": n_lab_style,
                     "total_iter": total_iter, "ours_s_total": t_ours, "ours_s_per_image": t_ours / n,
                     "lab_style_s_per_image": t_lab / n_lab_style,
                     "speedup": (t_lab / n_lab_style) / (t_ours / n), "tokens_identical": same,
                     "filled_tokens_equal": equal_share})
    agree = (results[("ours", "bf16")] == results[("ours", "fp32")])[unknown.cpu()].float().mean().item()
    for r in rows:
        r["bf16_token_agreement_vs_fp32"] = agree if r["precision"] == "bf16" else 1.0
    return rows


def bench_orders(size, device, n, total_iter, repeats, batch_size):
    """Seconds per image and step of each decoding order (inpaint.orders), and of the
    order's own work: the per-image reveal priority drawn once before the first step."""
    transformer, vqgan = build(size, device)
    tokens, unknown = test_batch(n, SIZES[size]["codebook"], device)
    generators = image_generators(0, range(n), device)
    rows, base = [], None
    for order in ORDERS:
        # per-image generators, as the inpaint stage draws its noise
        t = timed(lambda: ours(transformer, vqgan, tokens, unknown, total_iter, "fp32", batch_size, order, seed=0),
                  device, repeats)
        t_priority = 0.0 if order == "confidence" else timed(
            lambda: reveal_priority(order, tuple(tokens.shape), generators, device, halton_shift=True), device, repeats)
        base = base or t
        rows.append({"size": size, "order": order, "images": n, "total_iter": total_iter,
                     "s_per_image_step": t / n / total_iter, "vs_confidence": t / base,
                     "priority_s_per_image": t_priority / n})
    return rows


def in_fresh_process(target, *args):
    """target(*args, queue) run in a freshly spawned process (its own heap, its own peak
    memory, nothing this process did before it); what it put on the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bench_flops(size, device, batch, repeats, peak_n):
    """The decoding forward of `batch` images as the decoder runs it (forward_in_chunks),
    and the page faults of one such forward: a figure that page-faults its temporaries
    depends on what the process allocated before it."""
    transformer, _ = build(size, device)
    x = torch.randint(0, SIZES[size]["codebook"], (batch, NUM_TOKENS), device=device)
    flops = forward_flops(transformer, x)
    rows = []
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        with torch.no_grad(), autocast(device, precision):
            t = timed(lambda: forward_in_chunks(transformer, x), device, repeats)
            before = minor_faults()
            forward_in_chunks(transformer, x)
            faults = minor_faults() - before
        peak = matmul_peak(device, dtype, peak_n, repeats)
        rows.append({"size": size, "precision": precision, "batch": batch,
                     "chunk": forward_chunk(transformer, device) or batch, "forward_gflop": flops / 1e9,
                     "forward_s": t, "achieved_gflops": flops / t / 1e9, "matmul_peak_gflops": peak / 1e9,
                     "fraction_of_peak": flops / t / peak, "minor_faults_per_forward": faults})
    return rows


def bench_training(size, device, batch, repeats):
    transformer, vqgan = build(size, device)
    transformer.train()
    opt = torch.optim.AdamW(transformer.parameters(), lr=1e-4)
    codebook = SIZES[size]["codebook"]
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, codebook, (batch, NUM_TOKENS), generator=g).to(device)
    images = torch.rand(batch, 3, 64, 64, generator=g).to(device) * 2 - 1
    mask = random_token_mask(batch, NUM_TOKENS, "cosine", generator=g).to(device)

    def step(tok, precision):
        inputs = torch.where(mask, torch.full_like(tok, transformer.mask_token_id), tok)
        with autocast(device, precision):
            logits = transformer(inputs)[..., :codebook]
        loss = torch.nn.functional.cross_entropy(logits.float()[mask], tok[mask])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def lab_step(precision):
        with torch.no_grad(), autocast(device, precision):
            tok = vqgan.encode_to_tokens(images)
        step(tok, precision)

    # a training step is one forward and a backward of twice its FLOPs
    step_flops = train_step_flops(transformer, tokens)
    rows = []
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        t_tok = timed(lambda: step(tokens, precision), device, repeats)
        t_lab = timed(lambda: lab_step(precision), device, repeats)
        peak = matmul_peak(device, dtype, 2048, repeats)
        rows.append({"size": size, "precision": precision, "batch": batch,
                     "pretokenized_steps_per_s": 1 / t_tok, "encode_every_batch_steps_per_s": 1 / t_lab,
                     "speedup": t_lab / t_tok, "tokens_per_s": batch * NUM_TOKENS / t_tok,
                     "model_flops_utilisation": step_flops / t_tok / peak})
    return rows


def bench_attention(size, device, batch, repeats):
    spec = SIZES[size]
    rows = []
    x = torch.randint(0, spec["codebook"], (batch, NUM_TOKENS), device=device)
    torch.manual_seed(0)
    manual = BidirectionalTransformer(spec["codebook"], NUM_TOKENS, {**spec["transformer"], "attention": "manual"})
    sdpa = BidirectionalTransformer(spec["codebook"], NUM_TOKENS, {**spec["transformer"], "attention": "sdpa"})
    sdpa.load_state_dict(manual.state_dict())
    manual, sdpa = manual.to(device).eval(), sdpa.to(device).eval()
    for precision in ("fp32", "bf16"):
        with torch.no_grad(), autocast(device, precision):
            diff = (manual(x).float() - sdpa(x).float()).abs().max().item()
            t_manual = timed(lambda: manual(x), device, repeats)
            t_sdpa = timed(lambda: sdpa(x), device, repeats)
        rows.append({"size": size, "precision": precision, "batch": batch, "manual_s": t_manual, "sdpa_s": t_sdpa,
                     "sdpa_speedup": t_manual / t_sdpa, "max_abs_diff": diff})
    return rows


def bench_forward_batch(size, device, batches, repeats):
    """Seconds per image of one decoding forward against the number of images in it, for
    the hand-written attention and SDPA (same weights): where the cache stops holding a
    batch's attention scores. maskgit.algorithms.decoding.FORWARD_CHUNK is chosen from it."""
    spec = SIZES[size]
    torch.manual_seed(0)
    models = {kind: BidirectionalTransformer(spec["codebook"], NUM_TOKENS, {**spec["transformer"], "attention": kind})
              for kind in ("manual", "sdpa")}
    models["sdpa"].load_state_dict(models["manual"].state_dict())
    rows = []
    for batch in batches:
        x = torch.randint(0, spec["codebook"], (batch, NUM_TOKENS), device=device)
        row = {"size": size, "batch": batch}
        for kind, model in models.items():
            model = model.to(device).eval()
            with torch.no_grad():
                row[f"{kind}_ms_per_image"] = timed(lambda: model(x), device, repeats) / batch * 1e3
        rows.append(row)
    return rows


def _allocator_child(keep, train_batch, forward_batch, repeats, queue):
    # a fresh process: glibc's malloc as a process starts, or keeping freed memory as the stages do
    import statistics

    if keep:
        keep_freed_memory()
    cpu = torch.device("cpu")
    transformer, _ = build("demo", cpu)
    codebook = SIZES["demo"]["codebook"]
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, codebook, (train_batch, NUM_TOKENS), generator=g)
    mask = random_token_mask(train_batch, NUM_TOKENS, "cosine", generator=g)
    opt = torch.optim.AdamW(transformer.parameters(), lr=1e-4)
    x = torch.randint(0, codebook, (forward_batch, NUM_TOKENS), generator=g)

    def train_step():
        inputs = torch.where(mask, torch.full_like(tokens, transformer.mask_token_id), tokens)
        logits = transformer(inputs)[..., :codebook]
        torch.nn.functional.cross_entropy(logits[mask], tokens[mask]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward():  # the whole batch in one forward, as the decoder ran before its chunks
        transformer(x)

    out = {}
    for name, fn, train in (("train", train_step, True), ("forward", forward, False)):
        transformer.train(train)
        for _ in range(3):  # the heap grows to the step's peak once
            fn()
        times, before = [], minor_faults()
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[name] = (statistics.median(times), (minor_faults() - before) / repeats)
    queue.put(out)


def bench_allocator(train_batch, forward_batch, repeats):
    """A demo training step (fp32) and a whole-batch decoding forward, each process fresh:
    glibc's default malloc against keeping freed memory (devices.keep_freed_memory, set
    by the tokenize, training and inpaint stages and by this benchmark). Same arithmetic,
    so the same bits: speed only."""
    measured = {keep: in_fresh_process(_allocator_child, keep, train_batch, forward_batch, repeats)
                for keep in (False, True)}
    rows = []
    for name, what in (("train", f"training step, batch {train_batch}"),
                       ("forward", f"decoding forward, {forward_batch} images in one")):
        (t_default, f_default), (t_kept, f_kept) = measured[False][name], measured[True][name]
        rows.append({"what": what, "default_s": t_default, "kept_s": t_kept, "speedup": t_default / t_kept,
                     "default_minor_faults": f_default, "kept_minor_faults": f_kept})
    return rows


def _extractor():
    from maskgit.metrics.fid import InceptionFeatures
    from maskgit.project.inception_weights import CACHE_DIR, resolve_inception_weights

    path, _ = resolve_inception_weights(None, CACHE_DIR)
    return InceptionFeatures(path, progress=False, batch_size=50)


def _inception_child(n, chunk, repeats, queue):
    # glibc's default malloc, as the FID stages run
    import hashlib
    import statistics

    extractor = _extractor()
    extractor.chunk = chunk
    images = _random_images(n, 0)
    features = extractor(images)  # warm-up: the heap grows to a forward's peak once
    times, before = [], minor_faults()
    for _ in range(repeats):
        start = time.perf_counter()
        extractor(images)
        times.append(time.perf_counter() - start)
    queue.put((statistics.median(times), (minor_faults() - before) / repeats,
               hashlib.sha256(features.tobytes()).hexdigest()))


def bench_inception_chunk(n, chunks, repeats):
    """Inception features of n images, `chunk` images per forward, each in a fresh process:
    the FID stages' fid.batch_size against the CPU's INCEPTION_CHUNK. Same bits is checked."""
    rows = []
    for chunk in chunks:
        seconds, faults, digest = in_fresh_process(_inception_child, n, chunk, repeats)
        rows.append({"images": n, "per_forward": chunk, "s_per_image": seconds / n,
                     "minor_faults_per_image": faults / n, "features_sha256": digest[:12]})
    first = rows[0]["features_sha256"]
    for row in rows:
        row["speedup"] = rows[0]["s_per_image"] / row["s_per_image"]
        row["same_bits"] = row["features_sha256"] == first
    return rows


def _random_images(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 64, 64), generator=g, dtype=torch.uint8)


def bench_fid_cache(n, repeats):
    from maskgit.metrics.fid import fid_from_statistics, statistics as stats

    extractor, gt, other = _extractor(), _random_images(n, 0), _random_images(n, 1)
    gt_stats = stats(extractor(gt))

    def cached():
        return fid_from_statistics(stats(extractor(other)), gt_stats)

    def uncached():
        return fid_from_statistics(stats(extractor(other)), stats(extractor(gt)))

    cpu = torch.device("cpu")
    t_cached, t_uncached = timed(cached, cpu, repeats), timed(uncached, cpu, repeats)
    return [{"images": n, "cached_s": t_cached, "uncached_s": t_uncached, "speedup": t_uncached / t_cached}]


def _scaling_child(kind, n, batch_size, queue):
    # a fresh process per point, so that ru_maxrss is this point's peak alone; its malloc set
    # as its stage sets it (inpaint keeps freed memory, the FID stages do not)
    if kind == "inpaint":
        keep_freed_memory()
    torch.manual_seed(0)
    start = time.perf_counter()
    if kind == "inpaint":
        # the stages' path: decode a batch, convert, write its PNGs, drop it
        from maskgit.project.files import image_folder, to_uint8

        transformer, vqgan = build("demo", torch.device("cpu"))
        tokens, unknown = test_batch(n, SIZES["demo"]["codebook"], torch.device("cpu"))
        names = [f"{i:05d}.png" for i in range(n)]
        with tempfile.TemporaryDirectory() as tmp, image_folder(Path(tmp) / "images") as write, \
                autocast(tokens.device, "bf16"):
            decode_set(vqgan, transformer, tokens, unknown, decoding(8), batch_size=batch_size, device=tokens.device,
                       desc="bench", on_batch=lambda batch, _t, x: write(to_uint8(x, [0.5] * 3, [0.5] * 3), names[batch]))
    else:
        from maskgit.metrics.fid import statistics as stats

        stats(_extractor()(_random_images(n, 0)))
    queue.put((time.perf_counter() - start, peak_rss_mb()))


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries
    ru_maxrss across exec, so a spawned child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_scaling(kind, sizes, batch_size):
    rows = []
    for n in sizes:
        seconds, peak_mb = in_fresh_process(_scaling_child, kind, n, batch_size)
        rows.append({"what": kind, "images": n, "seconds": seconds, "s_per_image": seconds / n, "peak_rss_mb": peak_mb})
    return rows


def _bootstrap_child(n, replicates, sets, route, queue):
    import numpy as np

    from maskgit.metrics import bootstrap as bs

    rng = np.random.default_rng(0)
    gt = rng.normal(size=(n, 2048))
    features = {f"set{i}": gt + 0.5 * rng.normal(size=gt.shape) for i in range(sets)}
    per_image = {k: {"hole_psnr": rng.normal(20, 2, n), "hole_ssim": rng.uniform(0, 1, n)} for k in features}
    start = time.perf_counter()
    bs.resample(features, gt, per_image, replicates, seed=0, exact_up_to=n if route == "exact" else 0)
    queue.put((time.perf_counter() - start, peak_rss_mb()))


def bench_bootstrap(points, fid_s_per_image=None):
    """(images, replicates, sets, route) points, each in a fresh process for its own peak
    memory; route "exact" resamples FID and KID themselves, "linear" through their
    influence functions (evaluate.exact_up_to decides which the stage takes). For the
    exact route the time per set and replicate is the comparable column (at 10,000
    images one eigenproblem takes seconds, so that point runs a few replicates of one set).
    fid_s_per_image: the FID features' seconds per image of section 6 in this run; the
    FID stages then cost it times n times 8 sets (7 and the ground truth)."""
    rows = []
    for n, replicates, sets, route in points:
        seconds, peak_mb = in_fresh_process(_bootstrap_child, n, replicates, sets, route)
        # the exact route grows with the replicates; the linear one's cost is the influence
        # functions, once, and its replicates are one product per block
        full = seconds / replicates / sets * 7000 if route == "exact" else seconds / sets * 7
        row = {"route": route, "images": n, "sets": sets, "replicates": replicates, "seconds": seconds,
               "seconds_7_sets_1000_replicates": full, "peak_rss_mb": peak_mb}
        if fid_s_per_image:
            row["share_of_fid_stages"] = full / (fid_s_per_image * n * 8)
        rows.append(row)
    return rows


TITLES = {
    "inpainting": "1. Inpainting: this project's decoder against a lab-style loop (argmax, temperature 0)",
    "flops": "2. Decoding forward (in the decoder's chunks): achieved FLOP/s against the measured matmul peak of the same dtype",
    "training": "3. Transformer training: pre-tokenized data against VQGAN-encoding every batch",
    "fid_cache": "4. FID of a second image set: ground-truth features cached against recomputed",
    "attention": "5. Hand-written attention against scaled_dot_product_attention (same weights)",
    "scaling": "6. Scaling with the number of images (demo model, bf16; FID features)",
    "bootstrap": "7. Bootstrap of FID, KID, hole PSNR/SSIM over test images (7 sets, paired; stage evaluate)",
    "orders": "8. Decoding order: each order's cost per image and step (fp32, shifted Halton; decode_set)",
    "forward_batch": "9. One decoding forward per image against the images in it (fp32; manual attention and SDPA)",
    "allocator": "10. glibc's default malloc against keeping freed memory, as the stages do (demo, fp32, CPU; fresh processes)",
    "inception_chunk": "11. Inception features (FID) against the images per forward (CPU, default malloc as the FID stages; fresh processes)",
}
SECTIONS = tuple(TITLES)


def markdown(result: dict) -> str:
    import pandas as pd

    m = result["machine"]
    lines = ["# Benchmark", "", f"`python -m maskgit.bench {' '.join(result['args'])}`".replace("  ", " "), "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
             f"GPU: {m['gpu'] or 'none'}; torch {m['torch']}, Python {m['python']}; malloc: {m.get('malloc', 'not recorded')}. "
             f"Medians of {result['repeats']} repeats after a warm-up; "
             + (f"this invocation re-ran only `{result['only']}` in {result['seconds']:.0f} s, the other "
                f"sections come from the full run before it." if result.get("kept")
                else f"{result['seconds']:.0f} s in all."), ""]
    for key, title in TITLES.items():
        if result.get(key):
            lines += [f"## {title}", "", pd.DataFrame(result[key]).to_markdown(index=False, floatfmt=".4g"), ""]
    return "\n".join(lines)


def check_mergeable(kept: dict, result: dict, path: Path) -> None:
    """--only keeps the other sections of an existing benchmark.json, under one header: only
    sound when they were measured the same way (machine, device, repeats, smoke run or not).
    Raised before anything is measured, so the file is never rewritten for nothing."""
    # a file written before "quick" was stored says it in its args; --full is not compared:
    # it changes only the sizes of the sections it re-runs (docs/benchmarks.md re-runs
    # `--only scaling --full` into a page measured without it)
    kept = {"quick": "--quick" in kept.get("args", []), **kept}
    differ = [k for k in ("machine", "device", "repeats", "quick") if kept.get(k) != result[k]]
    if differ:
        k = differ[0]
        raise UserError(f"--only: {path} was measured with another {k} ({kept.get(k)!r}, this run "
                        f"{result[k]!r}); run every section (no --only) or pass --out to another folder")


def main(argv=None):
    run_tool(lambda: cli(argv), "bench")


def cli(argv=None):
    parser = argparse.ArgumentParser(description="Benchmark the decoder, training, FID and attention.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1 repeat: a smoke run, not numbers")
    parser.add_argument("--full", action="store_true", help="scaling table at 100, 1,000 and 10,000 images (long on a CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="reports", type=Path)
    parser.add_argument("--only", default=None, metavar="SECTION[,SECTION]",
                        help="re-run only these sections, keeping the others of an existing benchmark.json")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only.split(",")) - set(SECTIONS)) if args.only else []
    if unknown:  # before measuring anything, so an existing benchmark.json is never rewritten for nothing
        raise UserError(f"--only: unknown section {unknown[0]!r}; known: {', '.join(SECTIONS)}")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    gpu = device.type == "cuda"
    repeats = 1 if args.quick else args.repeats
    start = time.perf_counter()
    result = {"machine": machine(), "device": str(device), "repeats": repeats, "quick": args.quick,
              "full": args.full, "args": list(argv or sys.argv[1:])}
    only = set(args.only.split(",")) if args.only else None
    result["only"] = args.only
    if only and (args.out / "benchmark.json").is_file():
        kept = json.loads((args.out / "benchmark.json").read_text())
        check_mergeable(kept, result, args.out / "benchmark.json")
        result.update({k: v for k, v in kept.items() if k not in only and k not in ("args", "only", "kept")})
        result["kept"] = sorted(k for k in kept if k in SECTIONS and k not in only)
    # on a GPU the lab5 row inpaints the 747 images of the lab's test set
    n_demo, n_lab = (4, 1) if args.quick else ((747, 747) if gpu else (32, 4))
    lab_loop = 64 if gpu and not args.quick else None
    steps = 2 if args.quick else 10

    def section(name, fn):
        if only and name not in only:
            return
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result[name] = fn()
        result.setdefault("section_seconds", {})[name] = time.perf_counter() - started

    section("inpainting", lambda: bench_inpainting("demo", device, n_demo, steps, repeats, 256, lab_loop)
            + bench_inpainting("lab5", device, n_lab, steps, repeats, 256, lab_loop))
    section("flops", lambda: bench_flops("demo", device, 4 if args.quick else 64, repeats, 512 if args.quick else 2048)
            + ([] if args.quick else bench_flops("lab5", device, 64 if gpu else 4, repeats, 4096 if gpu else 2048)))
    section("training", lambda: bench_training("demo", device, 4 if args.quick else 32, repeats)
            + ([] if args.quick else bench_training("lab5", device, 32 if gpu else 4, repeats)))
    section("attention", lambda: bench_attention("demo", device, 4 if args.quick else 32, repeats)
            + ([] if args.quick else bench_attention("lab5", device, 4, repeats)))
    section("fid_cache", lambda: bench_fid_cache(8 if args.quick else 100, repeats))
    sizes = [8, 32] if args.quick else ([100, 1000, 10000] if args.full else [100, 1000])
    section("scaling", lambda: bench_scaling("inpaint", sizes, 100)
            + bench_scaling("fid", sizes[:1] if args.quick else (sizes if args.full else [100, 300]), 100))
    # the exact route at 10,000 images for 2 replicates of one set only: an eigenproblem of
    # ~6,300 distinct images per replicate; the linear route takes every set there
    fid_rows = [r for r in result.get("scaling", []) if r["what"] == "fid"]
    fid_s = max(fid_rows, key=lambda r: r["images"])["s_per_image"] if fid_rows else None
    section("forward_batch", lambda: bench_forward_batch("demo", device, [1, 4] if args.quick else
                                                         [1, 4, 8, 16, 32, 64, 100], repeats)
            + ([] if args.quick else bench_forward_batch("lab5", device, [1, 4, 8, 16], repeats)))
    if device.type == "cpu":
        section("allocator", lambda: bench_allocator(4 if args.quick else 32, 4 if args.quick else 100, repeats))
        section("inception_chunk", lambda: bench_inception_chunk(8 if args.quick else 100,
                                                                 [8, 4] if args.quick else [50, 25, 10, 5], repeats))
    section("orders", lambda: bench_orders("demo", device, 4 if args.quick else 64, steps, repeats, 64))
    section("bootstrap", lambda: bench_bootstrap(
        [(32, 100, 7, "exact"), (32, 100, 7, "linear")] if args.quick
        else [(150, 1000, 7, "exact"), (150, 1000, 7, "linear"), (747, 1000, 7, "exact"), (747, 1000, 7, "linear"),
              (2000, 1000, 7, "linear"), (10_000, 2, 1, "exact"), (10_000, 1000, 7, "linear")]
        + ([(30_000, 1000, 7, "linear")] if args.full else []), fid_s))
    result["seconds"] = time.perf_counter() - start  # this invocation
    args.out.mkdir(parents=True, exist_ok=True)
    from maskgit.project.files import atomic_write_bytes, write_json

    write_json(args.out / "benchmark.json", result)
    atomic_write_bytes(args.out / "benchmark.md", markdown(result).encode())
    print(f"wrote {args.out / 'benchmark.json'} and {args.out / 'benchmark.md'} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
