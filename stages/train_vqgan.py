"""Stage train_vqgan: train the stage-1 tokenizer on data/prepared/train.

The first `continuous_steps` steps train the encoder and decoder without the
quantiser; the codebook is then initialised by k-means on encoder outputs of the
training images, and training goes on with quantisation (straight-through,
commitment loss, dead-code restarts).

With vqgan.checkpoint set, the lab's pretrained VQGAN is loaded strictly and used
as is: no training, only its reconstruction and codebook usage on val images.

Writes models/vqgan.pt ({config, state_dict, mean, std}) and, under dvclive/vqgan,
the training curves and the final metrics (reconstruction error, codebook usage).
Saves a resumable checkpoint every train_vqgan.checkpoint_every steps: a killed run
re-started with the same command continues from it (maskgit/pipeline/training.py,
maskgit/pipeline/resume.py).
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import math
import sys
from pathlib import Path

import torch
from dvclive import Live
from tqdm import tqdm

from maskgit.project import paths
from maskgit.pipeline.memory import check_fits, vqgan_step_bytes
from maskgit.pipeline.runtime import resolve_device, run_stage, seed_everything
from maskgit.project.files import list_images, read_images, replace_dir, to_tensor
from maskgit.project.params import load_params
from maskgit.project.vqgan_checkpoint import load_lab_checkpoint, save_vqgan
from maskgit.pipeline.training import TrainingRun, partial_dir, run_fingerprint
from maskgit.models.vqgan import (
    VQGAN,
    codebook_usage,
    kmeans_codes,
    reconstruction_loss,
    restart_dead_codes,
)
from maskgit.project.errors import InputError

KMEANS_IMAGES = 1000  # training images whose encoder outputs seed the codebook
TRAIN, VAL = paths.split_images("train"), paths.split_images("val")
PRETRAINED_EVAL = 100  # val images to score a pretrained VQGAN on: the lab's architecture is slow on CPU


def random_crop(images, size, generator):
    """One random crop per batch. The VQGAN is convolutional (its attention runs over
    whatever latent grid it gets), so training on crops costs (size / H)^2 of the
    full images per step and learns the same local code; evaluation uses full images."""
    h = images.shape[-1]
    if size >= h:
        return images
    y, x = torch.randint(0, h - size + 1, (2,), generator=generator).tolist()
    return images[..., y : y + size, x : x + size]


@torch.no_grad()
def evaluate(model, images, batch_size, device):
    model.eval()
    l1, mse, indices = 0.0, 0.0, []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device)
        recon, idx, _ = model(x)
        # errors in [0, 1] pixel units: the normalised space is 2x wider for std 0.5
        l1 += (recon - x).abs().sum().item()
        mse += ((recon - x) ** 2).sum().item()
        indices.append(idx.cpu())
    n = images.numel()
    model.train()
    return l1 / n, mse / n, torch.cat(indices)


@torch.no_grad()
def init_codebook(model, images, generator, device, batch_size=100):
    pick = torch.randperm(len(images), generator=generator)[:KMEANS_IMAGES]
    d = model.latent_dim
    z = torch.cat([model.encode_latent(images[pick[i : i + batch_size]].to(device)).permute(0, 2, 3, 1).reshape(-1, d)
                   for i in range(0, len(pick), batch_size)])
    model.codebook.embedding.weight.copy_(kmeans_codes(z, model.num_codebook_vectors, generator=generator))


def main():
    params = load_params()
    cfg, tp, data = params["vqgan"], params["train_vqgan"], params["data"]
    device = resolve_device(params["device"])
    generator = seed_everything(tp["seed"])
    size, mean, std = data["image_size"], data["mean"], data["std"]
    if cfg["checkpoint"] is not None:
        val = read_images(VAL, size, limit=PRETRAINED_EVAL)
        return use_pretrained(cfg, val_images=to_tensor(val, mean, std), mean=mean, std=std, device=device)
    crop = min(tp["crop_size"], size)
    check_fits(vqgan_step_bytes(tp["batch_size"], crop, cfg["enc_channels"] + cfg["dec_channels"]), device,
               f"train_vqgan.batch_size {tp['batch_size']}")
    train = to_tensor(read_images(TRAIN, size), mean, std)
    val = to_tensor(read_images(VAL, size), mean, std)

    model = VQGAN(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=tp["lr"], betas=tuple(tp["betas"]))
    # cosine decay to 10%: large steps early for a fast start on CPU, small ones to settle codes
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, tp["steps"]) / tp["steps"]))
    )
    counts = torch.zeros(cfg["num_codebook_vectors"], dtype=torch.long)
    run = {k: v for k, v in tp.items() if k != "checkpoint_every"}
    key = run_fingerprint({"vqgan": cfg, "train_vqgan": run, "data": data}, device,
                          *list_images(TRAIN), *list_images(VAL))
    training = TrainingRun("train_vqgan", key, tp["checkpoint_every"], paths.LIVE_VQGAN,
                           {"vqgan": cfg, "train_vqgan": tp})
    start, saved = training.resume(model, opt, sched, generator)
    counts, restarted = saved.get("counts", counts), saved.get("restarted", 0)

    training.open_live()
    bar = tqdm(range(start + 1, tp["steps"] + 1), desc="train_vqgan", unit="step", initial=start, total=tp["steps"])
    for step in bar:
        quantise = step > tp["continuous_steps"]
        if step == tp["continuous_steps"] + 1 and step > 1:
            init_codebook(model, train, generator, device)
        idx = torch.randint(0, len(train), (tp["batch_size"],), generator=generator)
        x = random_crop(train[idx], tp["crop_size"], generator).to(device)
        if quantise:
            recon, indices, q_loss = model(x)
        else:
            recon, q_loss = model.decode(model.encode_latent(x)), torch.zeros((), device=device)
            indices = torch.zeros(0, dtype=torch.long, device=device)
        rec_loss, parts = reconstruction_loss(recon, x, tp["l1_weight"], tp["l2_weight"], tp["edge_weight"])
        loss = rec_loss + q_loss
        training.check_finite(loss, step - 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        counts += torch.bincount(indices.flatten().cpu(), minlength=len(counts))
        if quantise and tp["restart_every"] and step % tp["restart_every"] == 0 and step < tp["steps"]:
            with torch.no_grad():
                z_e = model.encode_latent(x).permute(0, 2, 3, 1).reshape(-1, cfg["latent_dim"])
            restarted += restart_dead_codes(model, z_e, counts, generator=generator)
            counts.zero_()
        if step % tp["log_every"] == 0 or step == tp["steps"]:
            usage = codebook_usage(indices, cfg["num_codebook_vectors"])
            row = {f"train/{k}": float(v) for k, v in {"loss": loss.item(), "q_loss": q_loss.item(), **parts}.items()}
            if quantise:  # no codes are used before the codebook exists
                row["train/perplexity"] = usage["perplexity"]
            row["train/lr"] = sched.get_last_lr()[0]
            training.log(row)
            bar.set_postfix(loss=f"{loss.item():.4f}", ppl=f"{usage['perplexity']:.0f}")
        if step < tp["steps"]:
            training.save(step, model, opt, sched, generator, counts=counts, restarted=restarted)

    metrics = val_metrics(model, val, cfg, std, device, restarted)
    save_vqgan(paths.VQGAN, model, cfg, mean, std)
    training.finish(metrics)


def use_pretrained(cfg, val_images, mean, std, device):
    """vqgan.checkpoint: the lab's VQGAN as is (strict load, this config), no training;
    its reconstruction and codebook usage on (up to PRETRAINED_EVAL) val images."""
    path = Path(cfg["checkpoint"])
    if not path.is_file():
        raise InputError(f"vqgan.checkpoint: {path} not found")
    model = load_lab_checkpoint(path, cfg).to(device)
    partial = partial_dir(paths.LIVE_VQGAN)
    with Live(partial, dvcyaml=False, save_dvc_exp=False, report=None) as live:
        live.log_params({"vqgan": cfg, "pretrained": str(path)})
        for key, value in val_metrics(model, val_images, cfg, std, device, restarted=0).items():
            live.summary[key] = value
    save_vqgan(paths.VQGAN, model, cfg, mean, std, pretrained=str(path))
    replace_dir(partial, paths.LIVE_VQGAN)
    print(f"train_vqgan: no training, using {path}", file=sys.stderr)


def val_metrics(model, val, cfg, std, device, restarted):
    l1, mse, val_indices = evaluate(model, val, 100, device)
    usage = codebook_usage(val_indices, cfg["num_codebook_vectors"])
    scale = sum(std) / 3  # back to [0, 1] pixel units
    return {
        "val_l1": l1 * scale,
        "val_psnr": 10 * math.log10(1.0 / (mse * scale**2)),
        "perplexity": usage["perplexity"],
        "codes_used": usage["used"],
        "dead_codes": usage["dead"],
        "codes_restarted": restarted,
    }


if __name__ == "__main__":
    run_stage(main, "train_vqgan")
