"""git, the one way the project asks it: a command's output, a file at a revision, a
revision resolved, and what is committed or not. Imports nothing heavy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from maskgit.project.errors import UserError

# what decides a run's numbers: a change here and the revision alone no longer names the
# run (the pipeline's own outputs, dvc.lock, metrics, timings and reports, change on
# every run and would otherwise always mark the tree dirty)
SOURCE_PATHS = ("params.yaml", "dvc.yaml", "pyproject.toml", "maskgit", "stages", "configs")


def git_error(stderr: str) -> str:
    """The line of git's stderr that says what went wrong: its first `fatal:` or `error:`
    line. Its last line is often advice ("and the repository exists."), which read alone
    says the opposite of the problem."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith(("fatal:", "error:", "ERROR:"))),
                lines[0] if lines else "failed")


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


def default_remote(cwd: str | Path = ".") -> str | None:
    """The git remote a command uses when none is given: origin, else the first."""
    remotes = git("remote", cwd=cwd, check=False).split()
    return ("origin" if "origin" in remotes else remotes[0]) if remotes else None


def revision_state(cwd: str | Path = ".", paths: tuple[str, ...] = SOURCE_PATHS) -> tuple[str, list[str]]:
    """(HEAD's short hash or "", the files under `paths` that differ from it, untracked ones included)."""
    rev = git("rev-parse", "--short", "HEAD", cwd=cwd, check=False)
    changed = git("status", "--porcelain", "--untracked-files=all", "--", *paths, cwd=cwd, check=False)
    return rev, changed.splitlines() if rev else []
