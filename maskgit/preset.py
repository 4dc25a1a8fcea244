"""Apply a named preset (configs/<name>.yaml) to params.yaml.

    python -m maskgit.preset tiny          # the tiny configuration, for debugging
    python -m maskgit.preset lab5          # the course lab's models and data layout
    python -m maskgit.preset demo          # back to the shipped default
    python -m maskgit.preset tiny mine     # several: applied left to right

Presets compose: applying presets A B is configs/demo.yaml (the demo value of every
key any preset changes), then A's values, then B's, so the result is the same
whatever was applied before. Paths the user set themselves (a *_dir, a
checkpoint or weights file that no preset names) are kept, and the one-line summary
says so. The result is checked like any params.yaml before it replaces the file, and
its comments are kept (ruamel round-trip, which DVC itself uses).
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
from pathlib import Path

from ruamel.yaml import YAML

from maskgit.pipeline import paths
from maskgit.pipeline.files import atomic_write_bytes
from maskgit.pipeline.params import ParamError, check_params, flatten

BASE = "demo"


def _is_path_key(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return leaf.endswith("_dir") or leaf in ("checkpoint", "inception_weights")


def _load(name: str, configs: Path) -> dict:
    path = configs / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in configs.glob("*.yaml"))) or "none"
        raise ParamError(f"{path}: no such preset (known: {known})")
    # round-trip, not safe: a float keeps its spelling (1.0e-4 stays 1.0e-4 in params.yaml,
    # where a plain float would be written 0.0001), so demo restores the file's own text
    return flatten(YAML().load(path.read_text()) or {})


def preset_values(names: list[str], configs: Path = paths.CONFIGS) -> dict:
    """{dotted key: value} that presets `names` set: the base preset, then each in turn."""
    values = _load(BASE, configs)
    for name in names:
        values.update(_load(name, configs))
    return values


def with_preset(params: dict, names: list[str], configs: Path = paths.CONFIGS) -> tuple[dict, list[str], list[str]]:
    """(params with the presets applied, keys changed, user paths kept). `params` may be
    a plain dict or ruamel's round-trip map; it is not modified."""
    values = preset_values(names, configs)
    name = " ".join(names)
    named_by_presets = {}
    for path in configs.glob("*.yaml"):
        for key, value in _load(path.stem, configs).items():
            named_by_presets.setdefault(key, []).append(value)
    out = copy.deepcopy(params)
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
            if isinstance(current, list) and isinstance(value, list):
                current[:] = value  # in place: a flow-style [a, b] list stays one
            else:
                node[leaf] = value
            changed.append(key)
    return out, changed, kept


def apply_preset(names: str | list[str], params_path: Path = Path("params.yaml"), configs: Path = paths.CONFIGS) -> str:
    """Rewrite params_path with presets `names`; returns the one-line summary."""
    names = [names] if isinstance(names, str) else list(names)
    name = " ".join(names)
    yaml = YAML()
    # null stays `null`, as written in params.yaml (ruamel writes None as an empty value)
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    base = yaml.load(params_path.read_text())
    new, changed, kept = with_preset(base, names, configs)
    check_params(new, f"{params_path} with preset {name}")
    buf = io.StringIO()
    yaml.dump(new, buf)
    atomic_write_bytes(params_path, buf.getvalue().encode())
    summary = f"preset {name}: changed {len(changed)} params" + (f" ({', '.join(changed)})" if changed else "")
    if kept:
        summary += f"; kept your own {', '.join(kept)}"
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", metavar="name", help="preset name: a file configs/<name>.yaml")
    parser.add_argument("--params", default="params.yaml", type=Path)
    args = parser.parse_args(argv)
    try:
        print(apply_preset(args.names, args.params))
    except ParamError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
