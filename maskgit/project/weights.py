"""Weights a user points the pipeline at, checked on load: one line naming the file
and what was expected, never torch's multi-page key dumps or a pickle traceback.

A file is read with torch.load(weights_only=True): tensors, dicts, lists and plain
values only. A whole pickled model (torch.save(model)) is refused rather than
unpickled (unpickling runs code from the file); so is a truncated or non-torch file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from maskgit.project.errors import InputError


def read_weights(path: str | Path, what: str) -> object:
    """torch.load(path, weights_only=True), or InputError naming `what` (the param or
    the file's role) and the likely cause."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what}: {path} not found")
    if path.stat().st_size == 0:
        raise InputError(f"{what}: {path} is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and EOF errors span pages; one line instead
        text = str(e)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # torch's weights_only refusal opens with a paragraph on its own defaults; the
        # reason is the line after "WeightsUnpickler error:"
        marker = next((i for i, line in enumerate(lines) if line.startswith("Please file an issue")), None)
        first = (lines[marker + 1] if marker is not None and marker + 1 < len(lines) else
                 (lines or [type(e).__name__])[0])[:120]
        if "Unsupported global" in text:  # weights_only refused a class: an object, not tensors
            cause = "it holds pickled Python objects (a whole model saved with torch.save(model)?), not a state dict"
        else:
            cause = f"truncated, damaged or not a torch file: {first}"
        raise InputError(f"{what}: {path} cannot be read as torch weights ({cause})") from None


def check_state_dict(state: object, expected: dict[str, torch.Tensor], what: str, path: str | Path,
                     config_name: str = "the config") -> None:
    """Keys, tensor types, shapes and finiteness of `state` against a model's own
    state_dict(): the first problem, one line."""
    if not isinstance(state, dict):
        raise InputError(f"{what}: {path} holds a {type(state).__name__}, expected a state dict")
    for key, want in expected.items():
        if key not in state:
            raise InputError(f"{what}: {path}: {key} is missing from the checkpoint (expected shape "
                             f"{tuple(want.shape)}; {len(set(expected) - set(state))} of {len(expected)} keys missing)")
        got = state[key]
        if not torch.is_tensor(got):
            raise InputError(f"{what}: {path}: {key} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise InputError(f"{what}: {path}: {key} has shape {tuple(got.shape)} in the checkpoint "
                             f"but {tuple(want.shape)} for {config_name}")
    extra = [k for k in state if k not in expected]
    if extra:
        raise InputError(f"{what}: {path}: unexpected key {extra[0]} ({len(extra)} unexpected in all)")
    check_finite(state, what, path)


def check_finite(state: dict, what: str, path: str | Path) -> None:
    for key, t in state.items():
        if torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise InputError(f"{what}: {path}: {key} holds {bad} non-finite values (NaN or inf): broken weights")
