"""A run's evidence at a revision: an experiment, a git revision or the workspace, read
through DVC's own API (dvc.api), so that nothing is recomputed but the statistics.

Read by the tools that look at more than one run (compare, experiments).
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np

from maskgit.pipeline import paths
from maskgit.pipeline.errors import InputError
from maskgit.pipeline.evidence import evidence_path, parse_evidence, run_sets
from maskgit.pipeline.params import check_params, in_current_layout
from maskgit.pipeline.sets import decoders
from maskgit.pipeline.yamlio import parse_yaml


class Run:
    """One run's files at a revision (or the workspace), read through dvc.api."""

    def __init__(self, rev: str, repo: str = "."):
        self.rev, self.repo = rev, repo
        self.predates: list[str] = []  # params this run was made before, read at their defaults
        self.unknown: list[str] = []  # params this run has that today's code does not know
        self.skipped: list[str] = []  # sets its params list but its evidence lacks (a run that predates them)
        self.hint = ("run `dvc repro`" if rev == "workspace" else
                     f"`dvc exp apply {rev}` then `dvc repro`, or `dvc pull` if its outputs were pushed")

    def read(self, path: str | Path) -> bytes:
        path = Path(path)
        if self.rev == "workspace":
            full = Path(self.repo) / path
            if not full.is_file():
                raise FileNotFoundError(path)
            return full.read_bytes()
        import dvc.api

        try:
            with dvc.api.open(path.as_posix(), repo=self.repo, rev=self.rev, mode="rb") as f:
                return f.read()
        except Exception as e:  # dvc raises several kinds for a missing path, revision or cache entry
            if "revision" in str(e).lower() and "unknown" in str(e).lower():
                raise InputError(f"{self.rev}: not an experiment name, git revision or `workspace` ({e})") from None
            raise FileNotFoundError(f"{path} ({type(e).__name__})") from None

    def params(self) -> dict:
        """The run's params, checked, in today's layout: a param the run predates is read at
        its default and named in `self.predates` (one it has that the code no longer
        knows, in `self.unknown`), so that runs made before a param existed can be compared."""
        try:
            params = parse_yaml(self.read("params.yaml").decode())
        except FileNotFoundError:
            raise InputError(f"{self.rev}: params.yaml not found") from None
        if not isinstance(params, dict):
            raise InputError(f"{self.rev}:params.yaml: expected a mapping of sections")
        params, self.predates, self.unknown = in_current_layout(params)
        return check_params(params, f"{self.rev}:params.yaml")

    def evidence(self, name: str, kind: str, family: str | None = None) -> dict:
        path = evidence_path(name, kind, family)
        try:
            data = self.read(path)
        except FileNotFoundError:
            raise InputError(f"{self.rev}: per-image evidence {path} is missing (a run from before the evidence "
                             f"was stored, or a cleared cache): {self.hint}") from None
        return parse_evidence(data, f"{self.rev}: {path}", self.hint)

    def gt_features(self) -> np.ndarray:
        try:
            return np.load(io.BytesIO(self.read(paths.GT_FEATURES)))
        except FileNotFoundError:
            raise InputError(f"{self.rev}: {paths.GT_FEATURES} is missing: {self.hint}") from None

    def image(self, path: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(self.read(path))) as im:
            return np.asarray(im.convert("RGB"))

    def git_revision(self) -> str:
        if self.rev == "workspace":
            rev = _git(self.repo, "rev-parse", "--short", "HEAD")
            dirty = _git(self.repo, "status", "--porcelain", "--", "params.yaml", "dvc.yaml", "maskgit", "stages")
            return f"{rev}{' + uncommitted changes' if dirty else ''}" if rev else "unknown"
        from dvc.repo import Repo
        from dvc.scm import resolve_rev

        with Repo(self.repo) as repo:
            return resolve_rev(repo.scm, self.rev)[:7]


    def load(self) -> tuple[dict, dict[str, dict], np.ndarray]:
        """params, {set: evidence} (schedules in params order, then the baselines), gt features."""
        params = self.params()
        return params, self._sets(params), self.gt_features()

    def family(self, params: dict, family: str) -> dict[str, dict]:
        """{set: evidence} under mask family `family` (one of its inpaint.mask_families)."""
        return self._sets(params, family)

    def _sets(self, params: dict, family: str | None = None) -> dict[str, dict]:
        """Every set's evidence. A run that predates a param lists sets by today's defaults
        (inpaint.orders: the Halton decoders too): a set its evidence lacks is left out and
        named in `self.skipped`, not an error."""
        sets = {}
        for name, kind in run_sets(decoders(params["inpaint"])):
            try:
                sets[name] = self.evidence(name, kind, family)
            except InputError:
                if not self.predates:
                    raise
                self.skipped.append(name if family is None else f"{family}: {name}")
        return sets


def _git(repo, *args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
