"""Per-image evidence of a scored image set: written once by the FID stages, read by
every statistic after them (so none re-runs Inception).

One `<set>.npz` per set (where: maskgit.project.grid.TestSet.evidence):
    names             (n,)     test image file names, in the ground truth's order
    features          (n, d)   Inception pool features (float64)
    psnr, ssim        (n,)     over the whole image
    hole_psnr, hole_ssim (n,)  inside the missing region (nan: no missing pixel)
    lpips, hole_lpips (n,)     LPIPS, only when the FID stages had its network's weights
    ...                        every per-image metric of maskgit.metrics.evaluation
    missing_fraction  (n,)     of the test image's mask
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from maskgit.metrics.registry import HOLE, NETWORK_METRICS, PER_IMAGE
from maskgit.project.errors import InputError
from maskgit.project.files import atomic_file
from maskgit.project.grid import MAIN, TestSet, set_names

FIELDS = ("names", "features", *PER_IMAGE, "missing_fraction")
OPTIONAL = NETWORK_METRICS  # LPIPS: only where the FID stages had its network's weights


def write_evidence(path: str | Path, **arrays) -> None:
    missing = [f for f in FIELDS if f not in arrays]
    if missing:
        raise ValueError(f"evidence for {path} lacks {missing}")
    with atomic_file(path) as f:
        np.savez(f, **{k: np.asarray(arrays[k]) for k in (*FIELDS, *OPTIONAL) if k in arrays})


def read_evidence(path: str | Path, root: str | Path = ".", hint: str = "run `dvc repro` to write it") -> dict:
    """One set's evidence as a dict of arrays; InputError naming the file when absent or incomplete."""
    path = Path(root) / path
    if not path.is_file():
        raise InputError(f"{path}: per-image evidence not found ({hint})")
    return parse_evidence(path.read_bytes(), str(path), hint)


def parse_evidence(data: bytes, where: str, hint: str) -> dict:
    """The arrays of one `<set>.npz` read as bytes (from a file, or from dvc.api at a revision)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        absent = [f for f in FIELDS if f not in z.files]
        if absent:
            raise InputError(f"{where}: per-image evidence lacks {', '.join(absent)} (written by older code: {hint})")
        ev = {k: z[k] for k in (*FIELDS, *OPTIONAL) if k in z.files}
    problem = evidence_problem(ev)
    if problem:
        raise InputError(f"{where}: {problem} (a damaged file: {hint})")
    return ev


def evidence_problem(ev: dict) -> str | None:
    """Why these arrays cannot be one set's evidence, or None. Checked on read, so that a
    damaged file stops at its name, not in an eigensolver, and no image drops silently out
    of the mask-area bins. A per-image metric may be +inf (a perfect PSNR); a hole metric
    is nan only for an image with no missing pixel."""
    n = len(ev["names"])
    for k, v in ev.items():
        if k != "names" and len(v) != n:
            return f"{k} has {len(v)} rows for {n} images"
    if not np.isfinite(ev["features"]).all():
        return "features hold non-finite values"
    fraction = ev["missing_fraction"]
    if not (np.isfinite(fraction).all() and (fraction >= 0).all() and (fraction <= 1).all()):
        return "missing_fraction holds values outside [0, 1]"
    for k in (f for f in ev if f not in ("names", "features", "missing_fraction")):
        v = np.asarray(ev[k], dtype=float)
        bad = np.isnan(v) & ~((fraction == 0) if k in HOLE else np.zeros(n, bool))
        if bad.any() or np.isneginf(v).any():
            return f"{k} holds nan or -inf (first at image {int(np.flatnonzero(bad | np.isneginf(v))[0])})"
    return None


def read_run(decoder_names: list[str], test_set: TestSet = MAIN, root: str | Path = ".",
             hint: str = "run `dvc repro` to write it") -> dict[str, dict]:
    """Every set a run scored on `test_set` (its decoders, then the baselines), checked
    to have scored the same test images."""
    sets = {name: read_evidence(test_set.evidence(name), root, hint) for name in set_names(decoder_names)}
    names = next(iter(sets.values()))["names"]
    for name, ev in sets.items():
        if not np.array_equal(ev["names"], names):
            raise InputError(f"{test_set.evidence(name)}: scored other test images than {decoder_names[0]} "
                             "(re-run the FID stages)")
    return sets
