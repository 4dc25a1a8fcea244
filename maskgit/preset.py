"""Apply a named preset (configs/<name>.yaml: only the params it changes) to params.yaml.

    python -m maskgit.preset tiny          # the 3-minute configuration
    python -m maskgit.preset demo          # back to the shipped default

The result is checked like any params.yaml before it replaces the file, and the
comments of params.yaml are kept (ruamel round-trip, which DVC itself uses).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from ruamel.yaml import YAML

from .io import atomic_write_bytes
from .params import ParamError, check_params

CONFIGS = Path("configs")


def merge(base, overrides, prefix=""):
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ParamError(f"preset: unknown key {name}")
        if isinstance(value, dict):
            if not isinstance(base[key], dict):
                raise ParamError(f"preset: {name} is not a section")
            merge(base[key], value, f"{name}.")
        else:
            base[key] = value


def apply_preset(name: str, params_path: Path = Path("params.yaml")) -> None:
    preset = CONFIGS / f"{name}.yaml"
    if not preset.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml"))) or "none"
        raise ParamError(f"{preset}: no such preset (known: {known})")
    yaml = YAML()
    base = yaml.load(params_path.read_text())
    merge(base, yaml.load(preset.read_text()) or {})
    check_params(base, f"{params_path} with preset {name}")
    buf = io.StringIO()
    yaml.dump(base, buf)
    atomic_write_bytes(params_path, buf.getvalue().encode())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="preset name: a file configs/<name>.yaml")
    parser.add_argument("--params", default="params.yaml", type=Path)
    args = parser.parse_args(argv)
    try:
        apply_preset(args.name, args.params)
    except ParamError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"applied preset {args.name} to {args.params}")


if __name__ == "__main__":
    main()
