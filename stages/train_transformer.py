"""Stage train_transformer: masked visual token modelling on the token grids.

Per sample r ~ U(r_range), exactly ceil(gamma(r) * N) tokens replaced by the mask
token, cross-entropy on the masked positions. AdamW (no decay on norms, biases and
embeddings), linear warmup then cosine decay, gradient clipping and accumulation.
Writes models/transformer.pt and the curves under dvclive/transformer. Saves a
resumable checkpoint every train_transformer.checkpoint_every steps: a killed run
re-started with the same command continues from it (maskgit/resume.py). With
transformer.checkpoint set, that model is checked against the tokens and used as is.
"""

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from dvclive import Live
from tqdm import tqdm

from maskgit.cli import autocast, resolve_device, run_stage, seed_everything
from maskgit.io import save_torch
from maskgit.masking import random_token_mask
from maskgit.params import load_params
from maskgit.resume import Resumable, fingerprint, log_row
from maskgit.transformer import BidirectionalTransformer

TRAIN, VAL = "data/tokens/train.npy", "data/tokens/val.npy"


def lr_factor(step, warmup, total, min_ratio):
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def masked_loss(model, tokens, mask, label_smoothing, precision="fp32"):
    inputs = torch.where(mask, torch.full_like(tokens, model.mask_token_id), tokens)
    with autocast(tokens.device, precision):
        logits = model(inputs)[..., : model.codebook_size]
    logits = logits.float()  # the softmax and the loss in float32
    loss = F.cross_entropy(logits[mask], tokens[mask], label_smoothing=label_smoothing)
    accuracy = (logits[mask].argmax(-1) == tokens[mask]).float().mean()
    return loss, accuracy


@torch.no_grad()
def evaluate(model, val, masks, label_smoothing, device, precision, batch_size=100):
    """Validation loss on fixed masks (drawn once), so that values are comparable."""
    model.eval()
    losses, accs, weights = [], [], []
    for i in range(0, len(val), batch_size):
        loss, acc = masked_loss(model, val[i : i + batch_size].to(device), masks[i : i + batch_size].to(device),
                                label_smoothing, precision)
        n = int(masks[i : i + batch_size].sum())
        losses.append(loss.item() * n)
        accs.append(acc.item() * n)
        weights.append(n)
    model.train()
    return sum(losses) / sum(weights), sum(accs) / sum(weights)


def main():
    params = load_params()
    tp, vq = params["train_transformer"], params["vqgan"]
    device = resolve_device(params["device"])
    generator = seed_everything(tp["seed"])
    train = torch.from_numpy(np.load(TRAIN).astype(np.int64))
    val = torch.from_numpy(np.load(VAL).astype(np.int64))
    codebook_size, num_tokens = vq["num_codebook_vectors"], train.shape[1]
    if int(train.max()) >= codebook_size:
        raise ValueError(f"{TRAIN}: token {int(train.max())} >= vqgan.num_codebook_vectors {codebook_size}")

    if params["transformer"]["checkpoint"] is not None:
        return use_trained(params["transformer"]["checkpoint"], codebook_size, num_tokens)
    model = BidirectionalTransformer(codebook_size, num_tokens, params["transformer"]).to(device)
    opt = torch.optim.AdamW(model.param_groups(tp["weight_decay"]), lr=tp["lr"], betas=tuple(tp["betas"]))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, tp["warmup_steps"], tp["steps"], tp["min_lr_ratio"])
    )
    mask_args = dict(schedule=tp["gamma"], r_range=tuple(tp["r_range"]), regional_prob=tp["regional_mask_prob"])
    val_masks = random_token_mask(len(val), num_tokens, generator=torch.Generator().manual_seed(1234), **mask_args)

    # everything that decides the result, except checkpoint_every: changing how often
    # to save must not throw a saved run away
    run = {k: v for k, v in tp.items() if k != "checkpoint_every"}
    key = fingerprint({"transformer": params["transformer"], "train_transformer": run, "device": str(device)}, TRAIN, VAL)
    resume = Resumable("train_transformer", key, tp["checkpoint_every"])
    start, running, history = 0, [], []  # running: (loss, accuracy) since the last log; history: logged rows
    saved = resume.load()
    if saved is not None:
        resume.restore(saved, model, opt, sched, generator)
        start, running, history = saved["step"], saved["running"], saved["history"]

    with Live("dvclive/transformer", dvcyaml=False, save_dvc_exp=False, report=None) as live:
        live.log_params({"transformer": params["transformer"], "train_transformer": tp})
        for row in history:  # the curve of the steps before a resume, as they were logged
            log_row(live, row)
        bar = tqdm(range(start, tp["steps"]), desc="train_transformer", unit="step", initial=start, total=tp["steps"])
        for step in bar:
            for _ in range(tp["grad_accum"]):
                idx = torch.randint(0, len(train), (tp["batch_size"],), generator=generator)
                mask = random_token_mask(tp["batch_size"], num_tokens, generator=generator, **mask_args)
                loss, acc = masked_loss(model, train[idx].to(device), mask.to(device), tp["label_smoothing"],
                                        tp["precision"])
                resume.check_finite(loss, step)
                (loss / tp["grad_accum"]).backward()
            if tp["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tp["grad_clip"])
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            running.append((loss.item(), acc.item()))
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc.item():.2f}")
            if (step + 1) % tp["eval_every"] == 0 or step + 1 == tp["steps"]:
                val_loss, val_acc = evaluate(model, val, val_masks, tp["label_smoothing"], device, tp["precision"])
                row = {
                    "train/loss": float(np.mean([x[0] for x in running])),
                    "train/accuracy": float(np.mean([x[1] for x in running])),
                    "val/loss": val_loss,
                    "val/accuracy": val_acc,
                    "lr": sched.get_last_lr()[0],
                }
                running.clear()
                history.append(row)
                log_row(live, row)
            if resume.due(step + 1) and step + 1 < tp["steps"]:
                resume.save_training(step + 1, model, opt, sched, generator, running=running, history=history)
        last = history[-1]
        live.summary.update({"val_loss": last["val/loss"], "val_accuracy": last["val/accuracy"],
                             "params": model.num_params()})
    save_torch(
        "models/transformer.pt",
        {
            "config": params["transformer"],
            "codebook_size": codebook_size,
            "num_tokens": num_tokens,
            "state_dict": model.cpu().state_dict(),
            "steps": tp["steps"],
        },
    )
    resume.clear()


def use_trained(path, codebook_size, num_tokens):
    """transformer.checkpoint: a model trained elsewhere (say on a GPU machine), for
    inpainting only; it must fit the tokenizer's vocabulary and token count."""
    ckpt = torch.load(checked_path(path), map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or not {"config", "codebook_size", "num_tokens", "state_dict"} <= set(ckpt):
        raise ValueError(f"transformer.checkpoint: {path} is not a transformer.pt written by this project")
    if ckpt["codebook_size"] != codebook_size:
        raise ValueError(f"transformer.checkpoint: {path} predicts {ckpt['codebook_size']} codes but the tokenizer "
                         f"has {codebook_size} (vqgan.num_codebook_vectors)")
    if ckpt["num_tokens"] != num_tokens:
        raise ValueError(f"transformer.checkpoint: {path} takes {ckpt['num_tokens']} tokens per image but the "
                         f"tokenizer gives {num_tokens}")
    model = BidirectionalTransformer(ckpt["codebook_size"], ckpt["num_tokens"], ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])  # strict: a broken file fails here, before anything is written
    save_torch("models/transformer.pt", ckpt)


def checked_path(path):
    if not Path(path).is_file():
        raise FileNotFoundError(f"transformer.checkpoint: {path} not found")
    return path


if __name__ == "__main__":
    run_stage(main, "train_transformer")
