"""Building models back from this project's own checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

from .transformer import BidirectionalTransformer
from .vqgan import VQGAN


def _load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (run the stage that writes it)")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_vqgan(path: str | Path, device="cpu") -> tuple[VQGAN, dict]:
    """The project's VQGAN checkpoint -> (model in eval mode, {'mean', 'std'})."""
    ckpt = _load(path)
    model = VQGAN(ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), {"mean": ckpt["mean"], "std": ckpt["std"]}


def load_transformer(path: str | Path, device="cpu") -> BidirectionalTransformer:
    ckpt = _load(path)
    model = BidirectionalTransformer(ckpt["codebook_size"], ckpt["num_tokens"], ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()
