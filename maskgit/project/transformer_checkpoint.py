"""The transformer's checkpoint, models/transformer.pt ({config, codebook_size,
num_tokens, state_dict, steps})."""

from __future__ import annotations

from pathlib import Path


from maskgit.models.transformer import BidirectionalTransformer
from maskgit.project.errors import InputError
from maskgit.project.files import save_torch
from maskgit.project.weights import check_state_dict, read_weights
from maskgit.project.vqgan_checkpoint import load_project_checkpoint


def load_transformer(path: str | Path, device="cpu") -> BidirectionalTransformer:
    ckpt = load_project_checkpoint(path)
    model = BidirectionalTransformer(ckpt["codebook_size"], ckpt["num_tokens"], ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


def save_transformer(path: str | Path, model: BidirectionalTransformer, config: dict, **extra) -> None:
    save_torch(path, {"config": config, "codebook_size": model.codebook_size, "num_tokens": model.num_tokens,
                      "state_dict": model.cpu().state_dict(), **extra})


def copy_trained(path, dest, codebook_size: int, num_tokens: int) -> None:
    """transformer.checkpoint: a model trained elsewhere (say on a GPU machine), for
    inpainting only; it must fit the tokenizer's vocabulary and token count."""
    ckpt = read_weights(checked_path(path), "transformer.checkpoint")
    if not isinstance(ckpt, dict) or not {"config", "codebook_size", "num_tokens", "state_dict"} <= set(ckpt):
        raise InputError(f"transformer.checkpoint: {path} is not a transformer.pt written by this project")
    if ckpt["codebook_size"] != codebook_size:
        raise InputError(f"transformer.checkpoint: {path} predicts {ckpt['codebook_size']} codes but the tokenizer "
                         f"has {codebook_size} (vqgan.num_codebook_vectors)")
    if ckpt["num_tokens"] != num_tokens:
        raise InputError(f"transformer.checkpoint: {path} takes {ckpt['num_tokens']} tokens per image but the "
                         f"tokenizer gives {num_tokens}")
    model = BidirectionalTransformer(ckpt["codebook_size"], ckpt["num_tokens"], ckpt["config"])
    check_state_dict(ckpt["state_dict"], model.state_dict(), "transformer.checkpoint", path, "its own config")
    model.load_state_dict(ckpt["state_dict"])  # strict: a broken file fails here, before anything is written
    save_torch(dest, ckpt)


def checked_path(path):
    if not Path(path).is_file():
        raise InputError(f"transformer.checkpoint: {path} not found")
    return path
