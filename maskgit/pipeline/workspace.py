"""Another DVC run in the same workspace, seen by a stage or a project command.

DVC releases its repository lock while a stage's command runs and guards only the
stage's deps and outs (`.dvc/tmp/rwlock`, each entry the pid and command line of the
DVC process holding it). So a second `dvc exp run` started meanwhile rewrites
params.yaml with its `-S` values before DVC's lock stops it, under the stage that is
running; the running stage then records, in dvc.lock, params it never read, and the
next `dvc repro` runs with values nobody applied. Each stage therefore refuses to start
beside another DVC process of the workspace, and fails, unrecorded, when params.yaml
changed under it (docs/faults.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil

from maskgit.pipeline.errors import UserError

RWLOCK = Path(".dvc") / "tmp" / "rwlock"


class ConcurrentRun(UserError):
    """Another DVC process works in this workspace, or changed params.yaml under a stage."""


def _ancestors() -> set[int]:
    """This process and the processes that started it: the DVC run a stage belongs to."""
    pids, process = set(), psutil.Process()
    while process is not None:
        pids.add(process.pid)
        process = process.parent()
    return pids


def other_runs(root: str | Path = ".") -> list[str]:
    """"pid N: command" of every live DVC process, other than this one's own, that holds a
    lock on a path of the workspace at `root` (none when DVC has never run there)."""
    try:
        lock = json.loads((Path(root) / RWLOCK).read_text())
    except (OSError, ValueError):
        return []  # absent, or being rewritten this instant: DVC itself reports a corrupted one
    infos = list((lock.get("write") or {}).values())
    infos += [info for readers in (lock.get("read") or {}).values() for info in readers]
    mine, seen = _ancestors(), {}
    for info in infos:
        pid = info.get("pid") if isinstance(info, dict) else None
        if isinstance(pid, int) and pid not in mine and pid not in seen and _is_dvc(pid):
            seen[pid] = f"pid {pid}: {info.get('cmd', '?')}"
    return list(seen.values())


def _is_dvc(pid: int) -> bool:
    """A live DVC process: an entry left by a killed run may name a pid the system has
    since given to another program."""
    try:
        return any("dvc" in part for part in psutil.Process(pid).cmdline())
    except (psutil.Error, OSError):
        return False


def refuse_concurrent_runs(what: str, root: str | Path = ".") -> None:
    """ConcurrentRun (one line) when another DVC process works in this workspace."""
    others = other_runs(root)
    if others:
        raise ConcurrentRun(f"{what}: another DVC run is in progress in this workspace ({others[0]}); "
                            f"wait for it to end, or queue this one (`dvc exp run --queue`)")


def params_bytes(path: str | Path = "params.yaml") -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def check_params_unchanged(before: bytes | None, stage: str, path: str | Path = "params.yaml") -> None:
    """ConcurrentRun when params.yaml is not what the stage read at its start."""
    if params_bytes(path) != before:
        raise ConcurrentRun(f"{path} changed while stage {stage} ran (a `dvc exp run` or an editor in this "
                            f"workspace?): its outputs are not recorded; see `git diff {path}`, then `dvc repro`")

