"""A run's evidence at a revision: an experiment, a git revision or the workspace, read
through DVC's own filesystem (dvc.api.DVCFileSystem), so that nothing is recomputed but
the statistics.

Read by the tools that look at more than one run (compare, experiments).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from maskgit.project import paths
from maskgit.project.errors import InputError
from maskgit.project.evidence import parse_evidence
from maskgit.project.gitrepo import revision_state
from maskgit.project.grid import TestSet, decoder_names, set_names
from maskgit.project.params import check_params, in_current_layout
from maskgit.project.yamlio import parse_yaml

# outputs renamed on 2026-12-07 ("schedules" named lists of decoders): a run made before
# holds them under their old names
RENAMED = {"outputs/fid/decoders/": "outputs/fid/schedules/", "metrics/fid_decoders.json": "metrics/fid_schedules.json"}


def older_names(path: str) -> list[str]:
    """`path` and the name it had in runs made before it was renamed."""
    return [path] + [old + path[len(new):] for new, old in RENAMED.items() if path.startswith(new)]


class Run:
    """One run's files at a revision (or the workspace)."""

    def __init__(self, rev: str, repo: str = "."):
        self.rev, self.repo = rev, repo
        self.predates: list[str] = []  # params this run was made before, read at their defaults
        self.unknown: list[str] = []  # params this run has that today's code does not know
        self.skipped: list[str] = []  # sets its params list but its evidence lacks (a run that predates them)
        self.hint = ("run `dvc repro`" if rev == "workspace" else
                     f"`dvc exp apply {rev}` then `dvc repro`, or `dvc pull` if its outputs were pushed")
        self._fs = None

    def _filesystem(self):
        """DVC's view of the project at the revision, opened once: each dvc.api.open
        builds DVC's index of the revision anew, a second or more per file."""
        if self._fs is None:
            from dvc.api import DVCFileSystem

            fs = DVCFileSystem(self.repo, rev=self.rev)
            try:
                fs.exists("dvc.yaml")  # the revision is resolved at the first look
            except Exception as e:  # noqa: BLE001 - dvc raises several kinds for an unknown revision
                first = (str(e).splitlines() or [type(e).__name__])[0]
                raise InputError(f"{self.rev}: not an experiment name, git revision or `workspace` ({first})") from None
            self._fs = fs
        return self._fs

    def read(self, path: str | Path) -> bytes:
        path = Path(path).as_posix()
        if self.rev == "workspace":
            full = Path(self.repo) / path
            if not full.is_file():
                raise FileNotFoundError(path)
            return full.read_bytes()
        fs = self._filesystem()
        for name in older_names(path):
            try:
                with fs.open(name, mode="rb") as f:
                    return f.read()
            except Exception:  # noqa: BLE001 - absent at the revision, or its data not in the cache
                continue
        raise FileNotFoundError(path)

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

    def evidence(self, name: str, test_set: TestSet = TestSet()) -> dict:
        """Set `name`'s per-image evidence on `test_set`."""
        path = test_set.evidence(name)
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
            rev, changed = revision_state(self.repo)
            return f"{rev}{' + uncommitted changes' if changed else ''}" if rev else "unknown"
        from dvc.repo import Repo
        from dvc.scm import resolve_rev

        with Repo(self.repo) as repo:
            return resolve_rev(repo.scm, self.rev)[:7]

    def load(self) -> tuple[dict, dict[str, dict], np.ndarray]:
        """params, {set: evidence} (decoders in params order, then the baselines), gt features."""
        params = self.params()
        return params, self.sets(params), self.gt_features()

    def sets(self, params: dict, test_set: TestSet = TestSet()) -> dict[str, dict]:
        """Every set's evidence on `test_set` (the main one, or a mask family's). A run that
        predates a param lists sets by today's defaults (inpaint.orders: the Halton decoders
        too): a set its evidence lacks is left out and named in `self.skipped`, not an error."""
        sets = {}
        for name in set_names(decoder_names(params["inpaint"])):
            try:
                sets[name] = self.evidence(name, test_set)
            except InputError:
                if not self.predates:
                    raise
                self.skipped.append(name if test_set.family is None else f"{test_set.family}: {name}")
        return sets
