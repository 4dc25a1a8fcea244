"""Remove what stages params no longer ask for left behind: their dvc.lock entries and outputs.

    python -m maskgit.prune            # list them, remove nothing
    python -m maskgit.prune --remove   # remove them

A matrix stage (family@<name> of inpaint.mask_families, inpaint@<schedule>-<order>)
whose entry leaves params.yaml is no longer a stage of dvc.yaml, but DVC keeps its
entry in dvc.lock and its output folder in the workspace, and `dvc status` says
nothing of either: a family dropped from inpaint.mask_families keeps its folder of
images and evidence. This lists every dvc.lock entry that dvc.yaml (expanded with
today's params, as DVC expands it) no longer defines, with its outputs; --remove
deletes those outputs (never one a current stage also declares), DVC's .gitignore
entries for them, and the lock entries, with DVC's own YAML writer.

Exit status 0; bad input (not a DVC project, params DVC cannot expand) is one line, exit 2.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from maskgit.project.errors import InputError
from maskgit.project.params import load_params
from maskgit.project.tool import run_tool
from maskgit.project.yamlio import parse_yaml


def stale_stages(root: Path) -> dict[str, list[str]]:
    """{stage: its outputs no current stage declares} for every dvc.lock entry that
    dvc.yaml no longer defines."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    locked = (parse_yaml(lock.read_text()) or {}).get("stages") or {}
    try:
        with Repo(str(root)) as repo:
            current = {stage.addressing: [str(out.def_path) for out in stage.outs] for stage in repo.index.stages}
    except NotDvcRepoError:
        raise InputError(f"{root}: not a DVC project (no .dvc folder)") from None
    declared = {path for outs in current.values() for path in outs}
    return {name: [o["path"] for o in entry.get("outs", []) if o["path"] not in declared]
            for name, entry in locked.items() if name not in current}


def remove(root: Path, stale: dict[str, list[str]]) -> None:
    """The outputs, their .gitignore lines and the lock entries of `stale` removed."""
    from dvc.repo import Repo
    from dvc.utils.serialize import modify_yaml

    with Repo(str(root)) as repo:
        for outs in stale.values():
            for out in outs:
                path = (root / out).resolve()
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
                repo.scm.ignore_remove(str(path))
    with modify_yaml(str(root / "dvc.lock")) as lock:
        for name in stale:
            del lock["stages"][name]


def cli(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskgit.prune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--remove", action="store_true", help="remove them (default: only list them)")
    parser.add_argument("--repo", default=".", type=Path, help="the project's folder (default: here)")
    args = parser.parse_args(argv)
    # a params.yaml DVC cannot expand is one line here, not DVC's matrix error
    load_params(args.repo / "params.yaml")
    stale = stale_stages(args.repo)
    if not stale:
        print("nothing stale: every dvc.lock entry is a stage of dvc.yaml")
        return 0
    for name, outs in stale.items():
        print(f"{name}: no longer a stage of dvc.yaml" + (f"; its outputs: {', '.join(outs)}" if outs else ""))
    if args.remove:
        remove(args.repo, stale)
        print(f"removed {len(stale)} dvc.lock entries and their outputs")
    else:
        print("`python -m maskgit.prune --remove` removes them")
    return 0


def main(argv=None) -> None:
    run_tool(lambda: cli(argv), "prune")


if __name__ == "__main__":
    main()
