"""YAML as DVC reads it: ruamel.yaml, safe, YAML 1.2. The one reader of every YAML file
the project reads (params.yaml, presets, dvc.yaml, dvc.lock, a run's files at a
revision), so that the values DVC compares to decide what is up to date are the values
the stages use: PyYAML (YAML 1.1) reads `lr: 1e-3` as a string and `on` as true, DVC
as 0.001 and 'on'. Loads no numeric library (numerics.py reads params.yaml through it
before numpy and torch load).
"""

from __future__ import annotations


def parse_yaml(text: str):
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text)
