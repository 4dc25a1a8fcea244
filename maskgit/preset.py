"""Apply a named preset (configs/<name>.yaml) to params.yaml.

    python -m maskgit.preset tiny          # the tiny configuration, for debugging
    python -m maskgit.preset lab5          # the course lab's models and data layout
    python -m maskgit.preset demo          # back to the shipped default
    python -m maskgit.preset tiny mine     # several: applied left to right

Presets compose: applying presets A B is the default of every key any preset changes
(demo: the defaults in maskgit/pipeline/params.py, which need no file), then A's
values, then B's, so the result is the same whatever was applied before. A preset
states only what it changes. Paths the user set themselves (a *_dir, a checkpoint or
weights file that no preset names) are kept, and the one-line summary says so. The
result is checked like any params.yaml before it replaces the file, which is written
with the params' own comments (your own comments in it are not kept); a param that
params.yaml lacks, one added to the code since, is written at its default.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from ruamel.yaml import YAMLError

from maskgit.pipeline import paths
from maskgit.pipeline.files import atomic_write_bytes
from maskgit.pipeline.params import ParamError, check_params, defaults, flatten, render
from maskgit.pipeline.yamlio import parse_yaml
from maskgit.pipeline.tool import run_tool

BASE = "demo"  # the defaults themselves


def _is_path_key(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return leaf.endswith("_dir") or leaf in ("checkpoint", "inception_weights")


def _read(path: Path):
    try:
        return parse_yaml(path.read_text())
    except YAMLError as e:
        raise ParamError(f"{path}: not valid YAML ({' '.join(str(e).split())[:160]})") from None


def _load(name: str, configs: Path) -> dict:
    if name == BASE:
        return {}
    path = configs / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted([BASE, *(p.stem for p in configs.glob("*.yaml"))]))
        raise ParamError(f"{path}: no such preset (known: {known})")
    return flatten(_read(path) or {})


def _named_by_presets(configs: Path) -> dict[str, list]:
    named: dict[str, list] = {}
    for path in sorted(configs.glob("*.yaml")):
        for key, value in _load(path.stem, configs).items():
            named.setdefault(key, []).append(value)
    return named


def preset_values(names: list[str], configs: Path = paths.CONFIGS) -> dict:
    """{dotted key: value} that presets `names` set: the default of every key any preset
    names, then each preset in turn."""
    default = flatten(defaults())
    values = {key: default[key] for key in _named_by_presets(configs) if key in default}
    for name in names:
        values.update(_load(name, configs))
    return values


def with_preset(params: dict, names: list[str], configs: Path = paths.CONFIGS) -> tuple[dict, list[str], list[str]]:
    """(params with the presets applied, keys changed, user paths kept); `params` is not
    modified. A section or key of the defaults that `params` lacks is added at its default."""
    values = preset_values(names, configs)
    name = " ".join(names)
    named_by_presets = _named_by_presets(configs)
    out = copy.deepcopy(params)
    for section, value in defaults().items():
        if section not in out:
            out[section] = value
        elif isinstance(value, dict) and isinstance(out[section], dict):
            out[section] = {**value, **out[section]}
    changed, kept = [], []
    for key, value in values.items():
        *sections, leaf = key.split(".")
        node = out
        for section in sections:
            if not isinstance(node.get(section), dict):
                raise ParamError(f"preset {name}: {'.'.join(sections)} is not a section of params.yaml")
            node = node[section]
        if leaf not in node:
            raise ParamError(f"preset {name}: unknown key {key}")
        current = node[leaf]
        if _is_path_key(key) and current is not None and current not in named_by_presets.get(key, []):
            if current != value:
                kept.append(f"{key}={current}")
            continue
        if current != value:
            node[leaf] = value
            changed.append(key)
    return out, changed, kept


def apply_preset(names: str | list[str], params_path: Path = Path("params.yaml"), configs: Path = paths.CONFIGS) -> str:
    """Rewrite params_path with presets `names`; returns the one-line summary."""
    names = [names] if isinstance(names, str) else list(names)
    name = " ".join(names)
    if not params_path.is_file():
        raise ParamError(f"{params_path}: not found (run from the project root, or pass --params)")
    base = _read(params_path) or {}
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
