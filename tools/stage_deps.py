"""Rewrite each dvc.yaml stage's maskgit/ dependencies to the modules its script imports.

    python tools/stage_deps.py          # rewrite dvc.yaml, print what changed
    python tools/stage_deps.py --check  # print what would change, exit 1 if anything would

A stage re-runs when a module it runs changes, so its deps must name every maskgit/
module its script imports, directly or not, and no other (a module it does not run
would re-run it for nothing; one that no longer exists stops `dvc repro`).
tests/test_stage_deps.py holds the rule; this writes it after a module moves. Only the
`      - maskgit/...` lines of each stage's deps are touched: the rest of the file, its
comments and its other deps stay as they are. For maintainers; not in the pipeline.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_stage_deps import closure  # noqa: E402  (the test's own import scan: one definition)

STAGE = re.compile(r"^  (\w+):\s*$")
CMD = re.compile(r"^    cmd: python (stages/\S+\.py)")
PACKAGE_DEP = re.compile(r"^      - (maskgit/\S+\.py)\s*$")


def rewrite(text: str) -> tuple[str, list[str]]:
    """(dvc.yaml with every stage's maskgit/ deps rewritten, one line per change)."""
    lines, out, changes = text.splitlines(keepends=True), [], []
    stage = script = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if STAGE.match(line):
            stage, script = STAGE.match(line)[1], None
        if CMD.match(line):
            script = CMD.match(line)[1]
        if line.rstrip() == "    deps:" and script:
            out.append(line)
            i += 1
            block = []
            while i < len(lines) and lines[i].startswith("      - "):
                block.append(lines[i])
                i += 1
            old = [PACKAGE_DEP.match(b)[1] for b in block if PACKAGE_DEP.match(b)]
            rest = [b for b in block if not PACKAGE_DEP.match(b)]
            new = sorted(closure(script))
            if old != new:
                gone, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
                changes.append(f"{stage}: " + "; ".join(filter(None, [
                    f"added {', '.join(added)}" if added else "", f"removed {', '.join(gone)}" if gone else "",
                    "sorted" if not added and not gone else ""])))
            # the script first, then the package modules, then the data the stage reads
            script_line = [b for b in rest if b.strip() == f"- {script}"]
            others = [b for b in rest if b.strip() != f"- {script}"]
            out += script_line + [f"      - {m}\n" for m in new] + others
            continue
        out.append(line)
        i += 1
    return "".join(out), changes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say what would change")
    args = parser.parse_args(argv)
    path = ROOT / "dvc.yaml"
    new, changes = rewrite(path.read_text())
    for change in changes:
        print(change)
    if args.check:
        return 1 if changes else 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
