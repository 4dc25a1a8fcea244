"""Resumable training: periodic checkpoints of everything a training loop needs to
continue bit for bit, and the guard that stops a run whose loss is not finite.

A checkpoint lives outside the stage's DVC outputs (DVC deletes those before it
re-runs a stage) under checkpoints/<stage>/last.pt, and carries a fingerprint of the
params and input data it belongs to: a run with other params starts afresh instead
of continuing someone else's run. The finished stage deletes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from maskgit.project import paths
from maskgit.project.errors import TrainingDiverged
from maskgit.project.files import save_torch


def fingerprint(params: dict, *files: str | Path) -> str:
    """Hash of the params a run depends on and the bytes of its input files."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def rng_state(generator: torch.Generator) -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Resumable:
    """checkpoints/<stage>/last.pt: save every `every` steps, load if it matches."""

    def __init__(self, stage: str, key: str, every: int, root: str | Path = paths.CHECKPOINTS):
        self.path = Path(root) / stage / "last.pt"
        self.key, self.every = key, int(every)

    def load(self, verbose: bool = True) -> dict | None:
        """The saved state of this run, or None (nothing saved, or another run's)."""
        if not self.path.is_file():
            return None
        state = self._read()
        if state is None:
            return None
        if state.get("fingerprint") != self.key:
            if verbose:
                print(f"{self.path}: belongs to other params or data; starting afresh")
            return None
        if verbose:
            print(f"{self.path}: resuming after step {state['step']}")
        return state

    def _read(self) -> dict | None:
        """The saved state, or None after setting an unreadable file aside (truncated by a
        crash, emptied, overwritten): a resumable state is a convenience, so a bad one
        costs the steps since the run began, never a run that cannot start."""
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
            if not isinstance(state, dict) or not {"fingerprint", "step"} <= state.keys():
                raise ValueError("not a training checkpoint of this project")
            return state
        except Exception as e:  # any unreadable file: pickle, zip, EOF, a foreign object
            aside = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, aside)
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"{self.path}: unreadable ({reason[:120]}); moved to {aside}, starting afresh", file=sys.stderr)
            return None

    def restore(self, saved: dict, model, optimizer, scheduler, generator: torch.Generator) -> None:
        """Put a loaded state back into the training objects."""
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"], generator)

    def save_training(self, step: int, model, optimizer, scheduler, generator: torch.Generator, **extra) -> None:
        """Save everything restore() needs, plus the loop's own `extra` state."""
        self.save(step, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "rng": rng_state(generator), **extra})

    def due(self, step: int) -> bool:
        """Save after `step` steps done? (never when every == 0)"""
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, state: dict) -> None:
        # written to a temporary name and moved: a kill mid-save leaves the last one
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_torch(self.path, {"fingerprint": self.key, "step": step, **state})

    def last_good(self) -> str:
        if self.path.is_file():
            try:
                step = torch.load(self.path, map_location="cpu", weights_only=False)["step"]
            except Exception:  # only a message depends on it
                return f"{self.path} (unreadable)"
            return f"{self.path} (step {step})"
        return "none saved yet"

    def check_finite(self, loss: torch.Tensor, step: int) -> None:
        """Stop on a NaN/inf loss, naming the step and the last good checkpoint."""
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(
                f"loss is {loss.item()} at step {step + 1}; nothing written; last good checkpoint: {self.last_good()}"
            )

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
