"""The VQGAN's checkpoints: this project's models/vqgan.pt ({config, state_dict,
mean, std}), and the lab's pretrained VQGAN.pt (a plain state dict), loaded strictly."""

from __future__ import annotations

from pathlib import Path

import torch

from maskgit.models.vqgan import VQGAN
from maskgit.project.errors import InputError
from maskgit.project.files import save_torch
from maskgit.project.weights import check_state_dict, read_weights


def load_project_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found (run the stage that writes it)")
    return torch.load(path, map_location="cpu", weights_only=False)


def save_vqgan(path: str | Path, model: VQGAN, config: dict, mean, std, **extra) -> None:
    save_torch(path, {"config": config, "state_dict": model.cpu().state_dict(), "mean": mean, "std": std, **extra})


def load_vqgan(path: str | Path, device="cpu") -> tuple[VQGAN, dict]:
    """The project's VQGAN checkpoint -> (model in eval mode, {'mean', 'std'})."""
    ckpt = load_project_checkpoint(path)
    model = VQGAN(ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), {"mean": ckpt["mean"], "std": ckpt["std"]}


def load_lab_checkpoint(path, config: dict) -> VQGAN:
    """Build VQGAN(config) and load a lab-style checkpoint strictly; eval mode, on CPU.

    path (str or Path) holds a plain state_dict or a dict with one under 'state_dict'.
    Any key or shape disagreement is reported as one line, before torch's own
    multi-line error could be.
    """
    ckpt = read_weights(path, "vqgan.checkpoint")
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    model = VQGAN(config)
    check_state_dict(ckpt, model.state_dict(), "vqgan.checkpoint", path)
    model.load_state_dict(ckpt, strict=True)
    return model.eval()
