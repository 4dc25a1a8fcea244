"""Does this clone reproduce a committed run? Stage by stage, bit for bit.

    dvc repro && python -m maskgit.verify          # against HEAD's dvc.lock
    python -m maskgit.verify --rev v1.0            # against another revision's

Compares the output hashes of the workspace's dvc.lock (what `dvc repro` wrote here)
with the committed one's, in the order the stages run. Left out: wall times
(timings/*.json) and the report with its provenance, which name the commit and the
machine. At the first stage whose outputs differ, it
compares what decided that stage's bits here (its timings file's `numerics`) with the
committed run's (reports/provenance.json) and names every field that differs: the
mode, the CPU, the BLAS kernel, ATen's capability, a thread count, a package version.

Exit status: 0 when every stage matches, 1 when one differs, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from maskgit.pipeline.errors import InputError
from maskgit.pipeline.params import flatten
from maskgit.pipeline.yamlio import parse_yaml
from maskgit.pipeline.tool import run_tool

TIMINGS = "timings/"
PROVENANCE = "reports/provenance.json"
# outputs outside the promise: wall times, and the report and its provenance, which
# name the commit and the machine
UNPROMISED = (TIMINGS, "reports/report.md", PROVENANCE)


def git_show(rev: str, path: str, repo: Path) -> str | None:
    result = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def outputs(stage: dict) -> dict[str, str]:
    """{path: hash} of a dvc.lock stage's promised outputs (UNPROMISED left out)."""
    return {o["path"]: o.get("md5") or o.get("hash") for o in stage.get("outs", [])
            if not o["path"].startswith(UNPROMISED)}


def timing_name(stage: dict) -> str | None:
    for o in stage.get("outs", []):
        if o["path"].startswith(TIMINGS):
            return Path(o["path"]).stem
    return None


def run_order(stages: dict) -> list[str]:
    """Stage names with every stage after the stages whose outputs it reads (dvc.lock
    keeps the order in which stages were first locked, not the DAG's)."""
    def reads(a: str, b: str) -> bool:
        outs = [o["path"] for o in stages[b].get("outs", [])]
        return any(d["path"] == o or d["path"].startswith(o.rstrip("/") + "/") or o.startswith(d["path"].rstrip("/") + "/")
                   for d in stages[a].get("deps", []) for o in outs)

    order, left = [], list(stages)
    while left:
        ready = next((s for s in left if not any(reads(s, b) for b in left if b != s)), left[0])
        order.append(ready)
        left.remove(ready)
    return order


def _same(a, b) -> bool:
    # "x; y" lists (the BLAS libraries) in whatever order the process loaded them
    if isinstance(a, str) and isinstance(b, str):
        return sorted(a.split("; ")) == sorted(b.split("; "))
    return a == b


def differing_fields(committed: dict, here: dict) -> list[str]:
    keys = [k for k in committed if k in here] + [k for k in here if k not in committed]
    return [f"{k}: {committed.get(k, 'not recorded')!r} there, {here.get(k, 'not recorded')!r} here"
            for k in keys if not _same(committed.get(k), here.get(k))]


def verify(repo: Path, rev: str) -> tuple[bool, list[str]]:
    """(all match, the lines to print)."""
    committed_text = git_show(rev, "dvc.lock", repo)
    if committed_text is None:
        raise InputError(f"dvc.lock: not found at revision {rev!r} of {repo} (a git checkout with a committed run?)")
    lock_path = repo / "dvc.lock"
    if not lock_path.is_file():
        raise InputError(f"{lock_path}: not found: run `dvc repro` first")
    committed = parse_yaml(committed_text).get("stages", {})
    here = parse_yaml(lock_path.read_text()).get("stages", {})
    provenance_text = git_show(rev, PROVENANCE, repo)
    provenance = json.loads(provenance_text).get("stages", {}) if provenance_text else {}

    lines, first = param_lines(committed, here, rev), None
    for name in run_order(committed):
        theirs, ours = outputs(committed[name]), outputs(here.get(name, {}))
        if name not in here:
            lines.append(f"{name}: not run here")
            first = first or name
            continue
        missing = [p for p in ours if not (repo / p).exists()]
        if missing:
            lines.append(f"{name}: outputs not here ({', '.join(missing)}): run `dvc repro` (or `dvc pull`) first")
            first = first or name
            continue
        differ = [p for p in theirs if theirs[p] != ours.get(p)]
        lines.append(f"{name}: " + ("identical" if not differ else f"differs ({', '.join(differ)})"))
        if differ and first is None:
            first = name
            lines += explain(repo, committed[name], provenance)
    if first is None:
        lines.append(f"every stage's outputs match {rev}'s dvc.lock, bit for bit")
    else:
        lines.append(f"first difference: {first}")
    return first is None, lines


def param_lines(committed: dict, here: dict, rev: str) -> list[str]:
    """The params (as the stages read them) that differ from the committed run's, once
    each, as the first stage that reads them recorded them."""
    def params(stage):
        out = {}
        for values in (stage.get("params") or {}).values():
            out.update(flatten(values))
        return out

    differ = {}
    for name in committed:
        theirs, ours = params(committed[name]), params(here.get(name, {}))
        if name not in here:
            continue
        for k in sorted(set(theirs) | set(ours)):
            if theirs.get(k) != ours.get(k) and k not in differ:
                differ[k] = (theirs.get(k, "not set"), ours.get(k, "not set"))
    if not differ:
        return []
    return [f"params that differ from {rev}'s run (`git diff {rev} -- params.yaml`):"] + [
        f"  {k}: {a!r} there, {b!r} here" for k, (a, b) in sorted(differ.items())]


def explain(repo: Path, stage: dict, provenance: dict) -> list[str]:
    """Why the first differing stage differs: the numerics fields that changed."""
    name = timing_name(stage)
    theirs = provenance.get(name) if name else None
    timing = repo / TIMINGS / f"{name}.json" if name else None
    if theirs is None:
        return [f"  the committed run recorded no numerics for it ({PROVENANCE}): nothing to compare"]
    if timing is None or not timing.is_file():
        return [f"  no {TIMINGS}{name}.json here: the stage's numerics were not recorded"]
    ours = json.loads(timing.read_text()).get("numerics", {})
    fields = differing_fields(theirs, ours)
    if not fields:
        return ["  every recorded numerics field is the same as the committed run's: the difference comes "
                "from something not recorded (docs/reproducibility.md lists what is)"]
    return ["  what decided its bits, committed run against this one:"] + [f"    {f}" for f in fields]


def main(argv=None):
    run_tool(lambda: cli(argv), "verify")


def cli(argv=None):
    parser = argparse.ArgumentParser(prog="python -m maskgit.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="the git revision whose dvc.lock to compare with (default HEAD)")
    parser.add_argument("--repo", default=".", help="the project's folder (default: here)")
    args = parser.parse_args(argv)
    same, lines = verify(Path(args.repo), args.rev)
    print("\n".join(lines))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
