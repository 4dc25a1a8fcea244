"""Inpainting runs over the test set on disk, shared by the inpaint and baselines
stages (one-step decoding is the same run with total_iter 1)."""

import time
from pathlib import Path

import numpy as np
import torch

from .checkpoints import load_transformer, load_vqgan
from .cli import autocast, maybe_compile, resolve_device
from .inpaint import composite, inpaint_set
from .io import list_images, read_images, read_masks, save_npy, to_tensor, to_uint8, write_images, write_json

TEST = Path("data/prepared/test")


def load_test_set(params):
    size = params["data"]["image_size"]
    tokens = torch.from_numpy(np.load("data/tokens/test.npy").astype(np.int64))
    unknown = torch.from_numpy(np.load("data/tokens/test_unknown.npy"))
    masked = read_images(TEST / "masked_image", size)
    known = torch.from_numpy(read_masks(TEST / "mask64", size))
    names = [p.name for p in list_images(TEST / "masked_image")]
    return tokens, unknown, masked, known, names


def run_inpainting(params, out_dir: Path, *, schedule, total_iter, sweet_spot, history_images, desc):
    """Inpaint the whole test set with one setting; write images/, the per-step
    arrays of the first `history_images` images, and info.json into out_dir."""
    ip = params["inpaint"]
    device = resolve_device(params["device"])
    vqgan, norm = load_vqgan("models/vqgan.pt", device)
    transformer = maybe_compile(load_transformer("models/transformer.pt", device), device, params["compile"])
    tokens, unknown, masked, known, names = load_test_set(params)
    generator = torch.Generator(device=device).manual_seed(ip["seed"])
    start = time.perf_counter()
    with autocast(device, ip["precision"]):
        _, images, history = inpaint_set(
            vqgan, transformer, tokens, unknown,
            batch_size=ip["batch_size"], device=device, generator=generator, history_images=history_images,
            desc=desc, schedule=schedule, total_iter=total_iter, sweet_spot=sweet_spot,
            choice_temperature=ip["choice_temperature"], sampling=ip["sampling"],
        )
    seconds = time.perf_counter() - start
    if ip["composite"]:
        images = composite(images, to_tensor(masked, norm["mean"], norm["std"]), known)
    write_images(out_dir / "images", to_uint8(images, norm["mean"], norm["std"]), names)
    if history is not None:
        steps = to_uint8(history["images"].flatten(0, 1), norm["mean"], norm["std"])
        k, t = history["images"].shape[:2]
        save_npy(out_dir / "steps_images.npy", steps.reshape(k, t, *steps.shape[1:]))
        save_npy(out_dir / "steps_masked.npy", history["masked"].numpy())
    write_json(out_dir / "info.json", {
        "schedule": schedule, "total_iter": total_iter, "sweet_spot": sweet_spot,
        "images": len(names), "seconds": round(seconds, 3), "seconds_per_image": seconds / len(names),
        "device": str(device), "precision": ip["precision"],
    })
