"""Does this workspace hold the committed run? Stage by stage, bit for bit, read from disk.

    dvc repro && python -m maskgit.verify          # against HEAD's dvc.lock
    python -m maskgit.verify --rev v1.0            # against another revision's

Hashes every output the reference revision's dvc.lock promises, as the files are in
the workspace now (DVC's own hashing, the hashes `dvc status` computes), and compares
each with the hash that lock recorded, in the order the stages run. A folder that
differs is opened file by file: each edited, missing or extra file is named (the
reference's file list comes from the DVC cache; `dvc fetch` brings it where it is
not). Left out of the promise: wall times (timings/*.json) and the report with its
provenance, which name the commit and the machine. The params in params.yaml are
compared with the values the reference run recorded, and each that differs is named.

At the first stage whose bytes differ it says why, as far as the files tell: edited
after the run (this workspace's dvc.lock still records the reference's hash), or made
under other numerics (its timings file's `numerics` against the reference run's
reports/provenance.json, field by field: mode, CPU, BLAS kernel, ATen's capability, a
thread count, a package version).

Exit status: 0 when every promised output's bytes and every param match, 1 when
anything differs, 2 on bad input (no such folder, revision or lock).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maskgit.project.errors import InputError
from maskgit.project.gitrepo import resolve, show
from maskgit.project.params import flatten, load_params
from maskgit.project.tool import run_tool
from maskgit.project.yamlio import parse_yaml

TIMINGS = "timings/"
PROVENANCE = "reports/provenance.json"
# outputs outside the promise: wall times, and the report and its provenance, which
# name the commit and the machine
UNPROMISED = (TIMINGS, "reports/report.md", PROVENANCE)
NAMED = 5  # files named per kind of difference before "and N more"


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


# ---------------------------------------------------------------------------
# the workspace's bytes, hashed by DVC
# ---------------------------------------------------------------------------

class Workspace:
    """The files of a DVC project as they are now, hashed as DVC hashes an output."""

    def __init__(self, root: Path):
        from dvc.exceptions import NotDvcRepoError
        from dvc.repo import Repo

        try:
            self.repo = Repo(str(root))
        except NotDvcRepoError:
            raise InputError(f"{root}: not a DVC project (no .dvc folder): run verify in the project's folder, "
                             f"or pass --repo") from None
        self.odb = self.repo.cache.local

    def close(self):
        self.repo.close()

    def hash(self, path: str):
        """(hash, tree) of the output at `path`: tree is {file: hash} for a folder, else
        None; (None, None) when the path is not there."""
        from dvc_data.hashfile.build import build
        from dvc_data.hashfile.tree import Tree

        fs_path = self.repo.fs.join(self.repo.root_dir, path)
        if not self.repo.fs.exists(fs_path):
            return None, None
        _, _, obj = build(self.odb, fs_path, self.repo.fs, "md5", ignore=self.repo.dvcignore, dry_run=True)
        return obj.hash_info.value, (_files(obj) if isinstance(obj, Tree) else None)

    def reference_tree(self, value: str) -> dict[str, str] | None:
        """{file: hash} of a folder hash recorded in a lock, from the cache; None when
        the cache does not hold its listing."""
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.tree import Tree

        try:
            return _files(Tree.load(self.odb, HashInfo("md5", value)))
        except Exception:  # noqa: BLE001 - absent or unreadable: the caller says `dvc fetch`
            return None

    def params(self) -> dict[str, dict]:
        """{stage: {param: value}} as DVC would record each stage's params now."""
        from dvc.dependency.param import ParamsDependency

        return {stage.addressing: flatten({k: v for dep in stage.deps if isinstance(dep, ParamsDependency)
                                           for k, v in dep.read_params(flatten=False).items()})
                for stage in self.repo.index.stages}


def _files(tree) -> dict[str, str]:
    return {"/".join(key): hash_info.value for key, (_, hash_info) in tree.as_dict().items()}


def _names(paths: list[str]) -> str:
    shown = ", ".join(paths[:NAMED])
    return shown + (f" and {len(paths) - NAMED} more" if len(paths) > NAMED else "")


def folder_difference(there: dict[str, str], here: dict[str, str]) -> str:
    """'edited: a; missing: b; extra: c' between two {file: hash} listings."""
    kinds = {"edited": sorted(f for f in there if f in here and here[f] != there[f]),
             "missing": sorted(f for f in there if f not in here),
             "extra": sorted(f for f in here if f not in there)}
    return "; ".join(f"{kind} {_names(files)}" for kind, files in kinds.items() if files)


# ---------------------------------------------------------------------------
# the comparison
# ---------------------------------------------------------------------------

def verify(repo: Path, rev: str) -> tuple[bool, list[str]]:
    """(everything matches, the lines to print)."""
    if not repo.is_dir():
        raise InputError(f"{repo}: no such folder (--repo names the project's folder)")
    if resolve(rev, repo) is None:
        raise InputError(f"{rev}: not a revision of the git repository at {repo} (`git log` lists them)")
    committed_text = show(rev, "dvc.lock", repo)
    if committed_text is None:
        raise InputError(f"dvc.lock: not found at revision {rev!r} of {repo} (a git checkout with a committed run?)")
    committed = parse_yaml(committed_text).get("stages", {})
    # a params.yaml DVC cannot expand (a scalar where a list belongs) stops here in one
    # line, before DVC's own error about its matrix
    load_params(repo / "params.yaml")
    lock_path = repo / "dvc.lock"
    here = parse_yaml(lock_path.read_text()).get("stages", {}) if lock_path.is_file() else {}
    provenance_text = show(rev, PROVENANCE, repo)
    provenance = json.loads(provenance_text).get("stages", {}) if provenance_text else {}

    workspace = Workspace(repo)
    try:
        params = param_lines(committed, workspace.params(), rev, flatten(load_params(repo / "params.yaml")))
        lines, first = list(params), None
        for name in run_order(committed):
            stage_lines, differ = compare_stage(workspace, name, committed[name], here.get(name, {}), rev)
            lines += stage_lines
            if differ and first is None:
                first = name
                lines += explain(repo, differ, committed[name], here.get(name, {}), provenance)
    finally:
        workspace.close()
    for name in here:
        if name not in committed:
            lines.append(f"{name}: not in {rev}'s run (not compared)")
    if first is None and not params:
        lines.append(f"every promised output matches {rev}'s dvc.lock, bit for bit, as read from disk")
    elif first is None:
        lines.append(f"every promised output matches {rev}'s dvc.lock, but params.yaml is not the params of that run")
    else:
        lines.append(f"first difference: {first}")
    return first is None and not params, lines


def compare_stage(workspace: Workspace, name: str, theirs: dict, ours: dict, rev: str) -> tuple[list[str], list[str]]:
    """The lines for one stage, and its promised outputs whose bytes differ."""
    promised = outputs(theirs)
    if not promised:
        return [f"{name}: nothing promised (it writes the report, or wall times)"], []
    details, differ = [], []
    for path, value in promised.items():
        actual, tree = workspace.hash(path)
        if actual == value:
            continue
        differ.append(path)
        if actual is None:
            details.append(f"  {path}: not here: `dvc repro` (or `dvc pull`) first")
            continue
        if tree is not None:
            reference = workspace.reference_tree(value) if value.endswith(".dir") else None
            what = (folder_difference(reference, tree) if reference is not None else
                    f"{rev}'s file list is not in the DVC cache (`dvc fetch` brings it): the files are not named")
        else:
            what = "its bytes differ"
        recorded = outputs(ours).get(path)
        stale = (f"; dvc.lock here records {rev}'s hash: changed since the run made it (`dvc status`)"
                 if recorded == value else "")
        details.append(f"  {path}: {what}{stale}")
    return [f"{name}: " + ("differs" if details else "identical")] + details, differ


def param_lines(committed: dict, workspace_params: dict[str, dict], rev: str, params_now: dict) -> list[str]:
    """The params that differ between the values the reference run recorded and
    params.yaml now (as each stage declares them), once each; a param that only one
    side sets is named too. A param the reference run recorded for a stage that no
    longer declares it is read from params.yaml (`params_now`, flat): a stage that reads
    fewer params is a code change its outputs show, not a param that changed."""
    def recorded(stage):
        out = {}
        for values in (stage.get("params") or {}).values():
            out.update(flatten(values))
        return out

    differ = {}
    for name, stage in committed.items():
        theirs = recorded(stage)
        ours = workspace_params.get(name)
        if ours is None:
            continue  # a stage this workspace's dvc.yaml no longer has: its outputs say the rest
        for k in sorted(set(theirs) | set(ours)):
            a, b = theirs.get(k, NOT_SET), ours.get(k, params_now.get(k, NOT_SET))
            if a != b:
                differ.setdefault(k, (a, b))
    if not differ:
        return []
    return [f"params that differ from {rev}'s run (`git diff {rev} -- params.yaml`):"] + [
        f"  {k}: {a!r} there, {b!r} here" for k, (a, b) in sorted(differ.items())]


class _NotSet:
    def __repr__(self):
        return "not set"


NOT_SET = _NotSet()


def explain(repo: Path, differ: list[str], committed: dict, here: dict, provenance: dict) -> list[str]:
    """Why the first differing stage differs: its files changed after its run here, or
    the numerics fields that decided its bits."""
    theirs_hashes, ours_hashes = outputs(committed), outputs(here)
    if all(ours_hashes.get(p) == theirs_hashes[p] for p in differ):
        return []  # its run here made the committed bytes: each line above says the files changed since
    name = timing_name(committed)
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
