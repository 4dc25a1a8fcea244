"""The LPIPS backbone's weights, found offline: the param fid.lpips_backbone, else torch's
hub cache (where torchvision keeps its AlexNet after one online download). Nothing here
downloads; without a file LPIPS is skipped, with the reason in one line."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from maskgit.metrics import perceptual
from maskgit.project.errors import InputError
from maskgit.project.weights import read_weights

PARAM_NAME = "fid.lpips_backbone"


def find_backbone(param_path: str | os.PathLike | None) -> tuple[Path | None, str]:
    """(the backbone file, "") or (None, the one-line reason LPIPS is skipped)."""
    if param_path not in (None, ""):
        path = Path(param_path).expanduser()
        if not path.is_file():
            raise InputError(f"{PARAM_NAME} points to a missing file: {path}")
        return path, ""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / perceptual.BACKBONE_FILE
    if cached.is_file():
        return cached, ""
    return None, (f"no AlexNet weights for LPIPS: set {PARAM_NAME} to torchvision's {perceptual.BACKBONE_FILE} "
                  f"(or put it in {cached.parent})")


def load_lpips(path: Path, device) -> torch.nn.Module:
    """LPIPS on the AlexNet backbone in `path`; a file that is not torch weights (random
    bytes, a truncated download) or not an AlexNet's is one line naming it."""
    state = read_weights(path, PARAM_NAME)
    if not isinstance(state, dict):
        raise InputError(f"{PARAM_NAME}: {path} holds a {type(state).__name__}, expected torchvision's AlexNet "
                         f"state dict ({perceptual.BACKBONE_FILE})")
    try:
        return perceptual.from_backbone(state, device)
    except ValueError as e:
        raise InputError(f"{PARAM_NAME}: {path}: {e}") from None
