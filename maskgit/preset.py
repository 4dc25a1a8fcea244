"""Apply a named preset (configs/<name>.yaml) to params.yaml.

    python -m maskgit.preset tiny          # the tiny configuration, for debugging
    python -m maskgit.preset lab5          # the course lab's models and data layout
    python -m maskgit.preset demo          # back to the shipped default
    python -m maskgit.preset tiny mine     # several: applied left to right

Presets compose: applying presets A B is the default of every key any preset changes
(demo: the defaults in maskgit/project/params.py, which need no file), then A's
values, then B's, so the result is the same whatever was applied before. A preset
states only what it changes. Paths the user set themselves (a *_dir, a checkpoint or
weights file that no preset names) are kept, and the one-line summary says so. The
result is checked like any params.yaml before it replaces the file, which is written
with the params' own comments (your own comments in it are not kept); a param that
params.yaml lacks, one added to the code since, is written at its default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskgit.project import paths
from maskgit.project.files import atomic_write_bytes
from maskgit.project.params import ParamError, check_params, render
from maskgit.project.presets import read_preset_file, with_preset
from maskgit.project.tool import run_tool


def apply_preset(names: str | list[str], params_path: Path = Path("params.yaml"), configs: Path = paths.CONFIGS) -> str:
    """Rewrite params_path with presets `names`; returns the one-line summary."""
    names = [names] if isinstance(names, str) else list(names)
    name = " ".join(names)
    if not params_path.is_file():
        raise ParamError(f"{params_path}: not found (run from the project root, or pass --params)")
    base = read_preset_file(params_path) or {}
    if not isinstance(base, dict):
        raise ParamError(f"{params_path}: expected a mapping of sections")
    new, changed, kept = with_preset(base, names, configs)
    check_params(new, f"{params_path} with preset {name}")
    atomic_write_bytes(params_path, render(new).encode())
    summary = f"preset {name}: changed {len(changed)} params" + (f" ({', '.join(changed)})" if changed else "")
    if kept:
        summary += f"; kept your own {', '.join(kept)}"
    return summary


def cli(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", metavar="name", help="preset name: a file configs/<name>.yaml")
    parser.add_argument("--params", default="params.yaml", type=Path)
    args = parser.parse_args(argv)
    # the presets beside the params file, so that --params works from any folder
    print(apply_preset(args.names, args.params, args.params.parent / paths.CONFIGS))


def main(argv=None) -> None:
    run_tool(lambda: cli(argv), "preset")


if __name__ == "__main__":
    main()
