"""Another DVC run in the same workspace, seen by a stage or a project command.

DVC releases its repository lock while a stage's command runs and guards only the
stage's deps and outs (`.dvc/tmp/rwlock`, each entry the pid and command line of the
DVC process holding it). So a second `dvc exp run` started meanwhile rewrites
params.yaml with its `-S` values before DVC's lock stops it, under the `dvc repro`
that is running: a stage that starts afterwards reads them, and dvc.lock records a run
under params nobody asked that `dvc repro` for, while the refused command leaves
params.yaml rewritten. Each stage therefore refuses to start beside another DVC
process of the workspace, refuses to start when params.yaml was rewritten after the
DVC command running it began, and fails when params.yaml changed while it ran; a
refused stage keeps no output (docs/faults.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil

from maskgit.project.errors import UserError

RWLOCK = Path(".dvc") / "tmp" / "rwlock"
# where `dvc exp run` notes its pid once it has applied its -S values to the workspace
# (DVC's WorkspaceQueue): the moment the experiment's own rewrite of params.yaml is done
EXP_RUN_INFO = Path(".dvc") / "tmp" / "exps" / "run" / "workspace" / "workspace.json"
# a write this soon after the anchor is not taken for another command's: DVC reads
# params.yaml seconds after it starts, and clocks and file times differ by a tick
SLACK_S = 0.5


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
    """ConcurrentRun when params.yaml is not what the stage read at its start, naming
    the params that changed."""
    now = params_bytes(path)
    if now != before:
        changed = _changed_params(_parse(before), _parse(now), "when the stage started")
        raise ConcurrentRun(f"{path} changed while stage {stage} ran (a `dvc exp run` or an editor in this "
                            f"workspace?){changed}: nothing of it is kept; put {path} back as you want it "
                            f"(`git diff {path}`), then `dvc repro`")


# ---------------------------------------------------------------------------
# params.yaml rewritten after the DVC command running this stage began
# ---------------------------------------------------------------------------

def dvc_command() -> tuple[psutil.Process, list[str]] | None:
    """The nearest ancestor of this process that is a DVC command, with the words after
    `dvc` (`["repro", "-f"]`); None when no DVC command started this process."""
    process = psutil.Process().parent()
    while process is not None:
        try:
            cmdline = process.cmdline()
        except (psutil.Error, OSError):
            return None
        for i, part in enumerate(cmdline):
            if Path(part).name == "dvc" or (part == "dvc" and i > 0 and cmdline[i - 1] == "-m"):
                return process, cmdline[i + 1:]
        process = process.parent()
    return None


def started_at(process: psutil.Process) -> float:
    """When `process` started, in time.time()'s clock. psutil's create_time is anchored
    on the boot time in whole seconds; on Linux the start in clock ticks since boot,
    against the boot clock now, is good to a tick."""
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)
    except (OSError, ValueError, IndexError, AttributeError):
        return process.create_time() + 1.0  # late rather than early: never blame a write made before


def params_anchor(root: str | Path = ".") -> tuple[float, str] | None:
    """(the time after which no one but the DVC command running this stage may write
    params.yaml, that command) or None where there is no such time: `dvc repro` writes
    it never, so from its start; `dvc exp run` writes its -S values first, then notes
    its pid (EXP_RUN_INFO), so from that note. Queued experiments run in a copy of the
    project that nothing else writes."""
    found = dvc_command()
    if found is None:
        return None
    process, words = found
    if words[:1] == ["repro"]:
        return started_at(process), "`dvc repro`"
    if words[:2] == ["exp", "run"]:
        info = Path(root) / EXP_RUN_INFO
        try:
            if json.loads(info.read_text()).get("pid") == process.pid:
                return info.stat().st_mtime, "`dvc exp run`"
        except (OSError, ValueError, AttributeError):
            pass
    return None


def refuse_params_rewritten(stage: str, path: str | Path = "params.yaml", root: str | Path = ".") -> None:
    """ConcurrentRun when params.yaml was written after the DVC command running this
    stage took its params: another command rewrote them under it (the params a stage
    would read now are not the run's). Names the params of this stage that differ from
    its last recorded run (dvc.lock), else from the committed params.yaml."""
    anchor = params_anchor(root)
    if anchor is None:
        return
    since, command = anchor
    try:
        written = Path(path).stat().st_mtime
    except FileNotFoundError:
        return  # the stage's load_params says what is missing
    if written <= since + SLACK_S:
        return
    now = _parse(params_bytes(path))
    changed = (_changed_params(_recorded_params(root), now, "in dvc.lock")
               or _changed_params(_committed_params(root), now, "at HEAD"))
    raise ConcurrentRun(
        f"{path} was rewritten {written - since:.1f} s after this {command} began (another command in this "
        f"workspace: a `dvc exp run` writes its -S values there before DVC refuses it){changed}: stage {stage} "
        f"does not run under params its {command} was not given; put {path} back as you want it "
        f"(`git diff {path}`), then `dvc repro`")


def _parse(data: bytes | None) -> dict:
    from maskgit.project.params import flatten
    from maskgit.project.yamlio import parse_yaml

    try:
        loaded = parse_yaml(data.decode()) if data else {}
    except Exception:  # noqa: BLE001 - half-written or not YAML: nothing to name
        return {}
    return flatten(loaded) if isinstance(loaded, dict) else {}


def _recorded_params(root: str | Path) -> dict:
    """The params this stage's last run recorded (DVC_STAGE names the stage), flat."""
    from maskgit.project.params import flatten
    from maskgit.project.yamlio import parse_yaml

    try:
        stage = parse_yaml((Path(root) / "dvc.lock").read_text())["stages"][os.environ["DVC_STAGE"]]
    except Exception:  # noqa: BLE001 - never run, or no lock: the caller falls back to HEAD
        return {}
    out = {}
    for values in (stage.get("params") or {}).values():
        out.update(flatten(values))
    return out


def _committed_params(root: str | Path) -> dict:
    from maskgit.project.gitrepo import show

    text = show("HEAD", "params.yaml", root)
    return _parse(text.encode()) if text else {}


def _changed_params(before: dict, now: dict, where: str, most: int = 3) -> str:
    """': a.b is 2 now, 0 <where>; ...' for the params in `before` whose value differs now."""
    keys = [k for k in before if k in now and now[k] != before[k]]
    if not keys:
        return ""
    shown = "; ".join(f"{k} is {now[k]!r} now, {before[k]!r} {where}" for k in keys[:most])
    return f": {shown}" + (f" and {len(keys) - most} more" if len(keys) > most else "")


def remove_stage_outputs(root: str | Path = ".") -> list[str]:
    """Delete the outputs of the DVC stage running this process (DVC_STAGE), so that a
    refused stage keeps none; the paths removed."""
    stage_name = os.environ.get("DVC_STAGE")
    if not stage_name:
        return []
    from dvc.repo import Repo

    removed = []
    try:
        with Repo(str(root)) as repo:
            for stage in repo.stage.collect(stage_name):
                for out in stage.outs:
                    if out.exists:
                        out.remove(ignore_remove=False)
                        removed.append(str(out))
    except Exception as e:  # noqa: BLE001 - the refusal itself must still be said
        print(f"{stage_name}: could not remove its outputs ({type(e).__name__}: {e}); `dvc status` lists them",
              file=sys.stderr)
    return removed

