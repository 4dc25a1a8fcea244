"""git, the one way the project asks it: a command's output, a file at a revision, a
revision resolved, and what is committed or not. Imports nothing heavy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from maskgit.pipeline.errors import UserError

# what decides a run's numbers: a change here and the revision alone no longer names the run
SOURCE_PATHS = ("params.yaml", "dvc.yaml", "maskgit", "stages", "configs")


def git_error(stderr: str) -> str:
    """git's own reason in one line (its last `fatal:` or `error:` line), for a UserError."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    reasons = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (reasons or lines or ["failed with no message"])[-1]


def git(*args: str, cwd: str | Path = ".", check: bool = True, timeout: float | None = 60) -> str:
    """git's stdout, stripped; with check, a failure is a UserError with git's reason
    (never a prompt for credentials: GIT_TERMINAL_PROMPT=0)."""
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.SubprocessError) as e:
        if check:
            raise UserError(f"git {' '.join(args)}: {e}") from None
        return ""
    if check and result.returncode != 0:
        raise UserError(f"git {' '.join(args)}: {git_error(result.stderr)}")
    return result.stdout.strip() if result.returncode == 0 else ""


def show(rev: str, path: str, cwd: str | Path = ".") -> str | None:
    """The file at `path` in revision `rev`, or None where it is not."""
    result = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=cwd, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def resolve(rev: str, cwd: str | Path = ".") -> str | None:
    """The commit `rev` names (a full hash), or None where it names none."""
    return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=cwd, check=False) or None


def revision_state(cwd: str | Path = ".", paths: tuple[str, ...] = SOURCE_PATHS) -> tuple[str, list[str]]:
    """(HEAD's short hash or "", the files under `paths` that differ from it, untracked ones included)."""
    rev = git("rev-parse", "--short", "HEAD", cwd=cwd, check=False)
    changed = git("status", "--porcelain", "--untracked-files=all", "--", *paths, cwd=cwd, check=False)
    return rev, changed.splitlines() if rev else []
