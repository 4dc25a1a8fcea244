"""The VQGAN's checkpoints: this project's models/vqgan.pt ({config, state_dict,
mean, std}), and the lab's pretrained VQGAN.pt (a plain state dict), loaded strictly."""

from __future__ import annotations

from pathlib import Path

import torch

from maskgit.models.vqgan import VQGAN
from maskgit.pipeline.errors import InputError
from maskgit.pipeline.files import save_torch


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


def _shape(t) -> str:
    return "(" + ", ".join(str(s) for s in t) + ")"


def load_lab_checkpoint(path, config: dict) -> VQGAN:
    """Build VQGAN(config) and load a lab-style checkpoint strictly; eval mode, on CPU.

    path (str or Path) holds a plain state_dict or a dict with one under 'state_dict'.
    Any key or shape disagreement is reported as one line, before torch's own
    multi-line error could be.
    """
    name = str(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # unpickling errors are multi-line; keep ours to one
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{name}: cannot be read as a tensor state dict ({first})") from e
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict):
        raise InputError(f"{name}: expected a state dict, got {type(ckpt).__name__}")

    model = VQGAN(config)
    expected = model.state_dict()
    for key, want in expected.items():
        if key not in ckpt:
            raise InputError(f"{name}: {key} is missing from the checkpoint (expected shape {_shape(want.shape)})")
        got = ckpt[key]
        if not torch.is_tensor(got):
            raise InputError(f"{name}: {key} is a {type(got).__name__} in the checkpoint, not a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise InputError(
                f"{name}: {key} has shape {_shape(got.shape)} in the checkpoint "
                f"but {_shape(want.shape)} for the config"
            )
    for key in ckpt:
        if key not in expected:
            raise InputError(f"{name}: unexpected key {key} in the checkpoint")

    model.load_state_dict(ckpt, strict=True)
    return model.eval()
