"""Presets (configs/<name>.yaml): what they set, and params with them applied.

Presets compose: applying presets A B is the default of every key any preset changes
(demo: the defaults in maskgit/project/params.py, which need no file), then A's
values, then B's, so the result is the same whatever was applied before. A preset
states only what it changes. Paths the user set themselves (a *_dir, a checkpoint or
weights file that no preset names) are kept. Used by `python -m maskgit.preset` and
by the benchmark, which builds the lab5 preset's models.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ruamel.yaml import YAMLError

from maskgit.project import paths
from maskgit.project.params import ParamError, defaults, flatten, get_param, set_param
from maskgit.project.yamlio import parse_yaml

BASE = "demo"  # the defaults themselves


def _is_path_key(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return leaf.endswith("_dir") or leaf in ("checkpoint", "inception_weights")


def read_preset_file(path: Path):
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
    return flatten(read_preset_file(path) or {})


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
        current = get_param(out, key, f"preset {name}")
        if _is_path_key(key) and current is not None and current not in named_by_presets.get(key, []):
            if current != value:
                kept.append(f"{key}={current}")
            continue
        if current != value:
            set_param(out, key, value, f"preset {name}")
            changed.append(key)
    return out, changed, kept


