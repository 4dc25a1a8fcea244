"""params.yaml: load, check every key before any work, fail with one line.

Every stage checks the whole file (it is cheap), so a typo anywhere stops the first
stage that runs, before it does any work. A stage then *uses* only the sections it
declares under `params:` in dvc.yaml.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from ruamel.yaml import YAML, YAMLError

from maskgit.algorithms.schedules import SCHEDULES
from maskgit.choices import ATTENTION_KINDS, COMPOSITE, DEVICES, POS_INITS, PRECISIONS, REPRODUCIBILITY, SAMPLING, SOURCES
from maskgit.pipeline.errors import ParamError
from maskgit.models.vqgan_config import check_config as check_vqgan_config


Check = Callable[[Any], str | None]  # returns what is wrong, or None


def _int(lo=None) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
            return f"must be an integer >= {lo}" if lo is not None else "must be an integer"
    return check


def _float(lo=None, hi=None, lo_open=False) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return "must be a finite number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo}"
        if hi is not None and v > hi:
            return f"must be <= {hi}"
    return check


def _choice(*options) -> Check:
    def check(v):
        if v not in options:
            return f"must be one of {', '.join(map(str, options))}"
    return check


def _bool(v):
    if not isinstance(v, bool):
        return "must be true or false"


def _list(item: Check, length=None, min_length=1) -> Check:
    def check(v):
        if not isinstance(v, list) or len(v) < min_length or (length is not None and len(v) != length):
            return f"must be a list of {length or f'at least {min_length}'} items"
        for i, x in enumerate(v):
            problem = item(x)
            if problem:
                return f"item {i} ({x!r}) {problem}"
    return check


def _optional(check: Check) -> Check:
    def optional(v):
        if v is not None:
            problem = check(v)
            return f"{problem} or null" if problem else None
    return optional


def _optional_path(v):
    if v is not None and not isinstance(v, str):
        return "must be a path or null"


def _optional_endpoint(v):
    if v is None:
        return None
    host, _, port = str(v).rpartition(":")
    if not host or not port.isdigit():
        return "must be host:port (the c10d rendezvous of multi-node training) or null"
    return None


def _schedules(v):
    if not isinstance(v, list) or not v:
        return "must be a non-empty list of schedule names"
    unknown = [s for s in v if s not in SCHEDULES]
    if unknown:
        return f"has unknown schedule {unknown[0]!r}; known: {', '.join(SCHEDULES)}"
    if len(set(v)) != len(v):
        return "lists a schedule twice"


def _bucket_edges(v):
    problem = _list(_float(0.0, 1.0), min_length=2)(v)
    if problem:
        return problem
    if any(b <= a for a, b in zip(v, v[1:])):
        return "must be strictly increasing fractions in [0, 1]"


def _unit_range(v):
    problem = _list(_float(0.0, 1.0), length=2)(v)
    if problem:
        return problem
    if v[0] > v[1]:
        return "must be [low, high] with low <= high"


SCHEMA: dict[str, dict[str, Check]] = {
    "device": _choice(*DEVICES),
    "compile": _bool,
    "reproducibility": {
        "mode": _choice(*REPRODUCIBILITY),
        "threads": _int(1),
    },
    "data": {
        "image_size": _int(8),
        "mean": _list(_float(0.0, 1.0), length=3),
        "std": _list(_float(0.0, lo_open=True), length=3),
        "test_mean": _optional(_list(_float(0.0, 1.0), length=3)),
        "test_std": _optional(_list(_float(0.0, lo_open=True), length=3)),
    },
    "prepare": {
        "source": _choice(*SOURCES),
        "n_train": _int(1),
        "n_val": _int(1),
        "n_test": _int(2),
        "palette_size": _int(0),
        "blur": _float(0.0),
        "seed": _int(0),
        "train_dir": _optional_path,
        "val_dir": _optional_path,
        "val_fraction": _float(0.0, 0.9, lo_open=True),
        "test_masked_dir": _optional_path,
        "test_mask_dir": _optional_path,
        "test_gt_dir": _optional_path,
        "resize": _bool,
        "convert_mode": _bool,
    },
    "vqgan": {
        "image_channels": _choice(3),
        "enc_channels": _list(_int(1), min_length=2),
        "dec_channels": _list(_int(1), min_length=2),
        "latent_dim": _int(1),
        "img_resolution": _int(8),
        "latent_resolution": _int(1),
        "num_codebook_vectors": _int(2),
        "beta": _float(0.0),
        "norm_groups": _int(1),
        "checkpoint": _optional_path,
    },
    "train_vqgan": {
        "steps": _int(1),
        "batch_size": _int(1),
        "continuous_steps": _int(0),
        "crop_size": _int(8),
        "lr": _float(0.0, lo_open=True),
        "betas": _list(_float(0.0, 1.0), length=2),
        "l1_weight": _float(0.0),
        "l2_weight": _float(0.0),
        "edge_weight": _float(0.0),
        "restart_every": _int(0),
        "log_every": _int(1),
        "checkpoint_every": _int(0),
        "seed": _int(0),
    },
    "transformer": {
        "dim": _int(1),
        "n_layers": _int(1),
        "n_heads": _int(1),
        "mlp_dim": _int(1),
        "dropout": _float(0.0, 1.0),
        "attention": _choice(*ATTENTION_KINDS),
        "norm_first": _bool,
        "pos_init": _choice(*POS_INITS),
        "checkpoint": _optional_path,
    },
    "train_transformer": {
        "steps": _optional(_int(1)),
        "epochs": _optional(_float(0.0, lo_open=True)),
        "batch_size": _int(1),
        "grad_accum": _int(1),
        "lr": _float(0.0, lo_open=True),
        "betas": _list(_float(0.0, 1.0), length=2),
        "weight_decay": _float(0.0),
        "warmup_steps": _int(0),
        "min_lr_ratio": _float(0.0, 1.0),
        "grad_clip": _float(0.0),
        "label_smoothing": _float(0.0, 1.0),
        "gamma": _choice(*SCHEDULES),
        "r_range": _unit_range,
        "regional_mask_prob": _float(0.0, 1.0),
        "precision": _choice(*PRECISIONS),
        "eval_every": _int(1),
        "checkpoint_every": _int(0),
        "nproc_per_node": _int(1),
        "nnodes": _int(1),
        "rdzv_endpoint": _optional_endpoint,
        "seed": _int(0),
    },
    "inpaint": {
        "schedules": _schedules,
        "total_iter": _int(1),
        "sweet_spot": _int(1),
        "choice_temperature": _float(0.0),
        "sampling": _choice(*SAMPLING),
        "composite": _choice(*COMPOSITE),
        "pixel_guidance": _float(0.0),
        "precision": _choice(*PRECISIONS),
        "batch_size": _int(1),
        "n_figure_images": _int(0),
        "seed": _int(0),
    },
    "fid": {
        "inception_weights": _optional_path,
        "batch_size": _int(1),
    },
    "evaluate": {
        "replicates": _int(100),
        "confidence": _float(0.0, lo_open=True),
        "seed": _int(0),
        "mask_buckets": _bucket_edges,
        "kid_min_images": _int(4),
    },
}


def check_params(params: dict, source: str = "params.yaml") -> dict:
    """Raise ParamError (one line, naming the key) on the first problem."""
    if not isinstance(params, dict):
        raise ParamError(f"{source}: expected a mapping of sections")
    for key in params:
        if key not in SCHEMA:
            raise ParamError(f"{source}: unknown section or key {key!r}; known: {', '.join(SCHEMA)}")
    for section, spec in SCHEMA.items():
        if section not in params:
            raise ParamError(f"{source}: missing {section}")
        value = params[section]
        if callable(spec):
            _raise_if(spec(value), source, section, value)
            continue
        if not isinstance(value, dict):
            raise ParamError(f"{source}: {section} must be a mapping")
        for key in value:
            if key not in spec:
                raise ParamError(f"{source}: unknown key {section}.{key}; known: {', '.join(spec)}")
        for key, check in spec.items():
            if key not in value:
                raise ParamError(f"{source}: missing {section}.{key}")
            _raise_if(check(value[key]), source, f"{section}.{key}", value[key])
    _check_across(params, source)
    return params


def _raise_if(problem: str | None, source: str, name: str, value) -> None:
    if problem:
        raise ParamError(f"{source}: {name} {problem} (got {value!r})")


def _check_across(p: dict, source: str) -> None:
    size, vq = p["data"]["image_size"], p["vqgan"]
    if p["prepare"]["source"] == "folders":
        for key in ("train_dir", "test_mask_dir", "test_gt_dir"):
            if p["prepare"][key] is None:
                raise ParamError(f"{source}: prepare.{key} must be set with prepare.source: folders")
    tv = p["train_vqgan"]
    if tv["continuous_steps"] >= tv["steps"]:
        raise ParamError(f"{source}: train_vqgan.continuous_steps ({tv['continuous_steps']}) must be below "
                         f"train_vqgan.steps ({tv['steps']}): the codebook needs quantised steps")
    if vq["img_resolution"] != size:
        raise ParamError(f"{source}: vqgan.img_resolution ({vq['img_resolution']}) must equal data.image_size ({size})")
    if size % vq["latent_resolution"]:
        raise ParamError(
            f"{source}: data.image_size ({size}) is not divisible by vqgan.latent_resolution "
            f"({vq['latent_resolution']}): the token patch would not tile the image"
        )
    try:
        check_vqgan_config(vq)  # widths against norm_groups, resolution ratio, enough stages
    except ValueError as e:
        raise ParamError(f"{source}: {e}") from None
    crop, patch = p["train_vqgan"]["crop_size"], size // vq["latent_resolution"]
    if crop % patch or crop > size:
        raise ParamError(f"{source}: train_vqgan.crop_size ({crop}) must be a multiple of the token patch ({patch}) and <= data.image_size")
    tt = p["train_transformer"]
    if (tt["steps"] is None) == (tt["epochs"] is None):
        both = "both are set" if tt["steps"] is not None else "both are null"
        raise ParamError(f"{source}: set exactly one of train_transformer.steps and train_transformer.epochs "
                         f"(the other null): {both}")
    d = p["data"]
    if (d["test_mean"] is None) != (d["test_std"] is None):
        raise ParamError(f"{source}: data.test_mean and data.test_std are a pair: set both (the test images' "
                         f"own normalisation) or neither (null: data.mean and data.std)")
    if tt["batch_size"] % tt["nproc_per_node"]:
        raise ParamError(f"{source}: train_transformer.batch_size ({tt['batch_size']}) must be divisible by "
                         f"train_transformer.nproc_per_node ({tt['nproc_per_node']}): each process takes an equal slice")
    if tt["batch_size"] % (tt["nproc_per_node"] * tt["nnodes"]):
        raise ParamError(f"{source}: train_transformer.batch_size ({tt['batch_size']}) must be divisible by "
                         f"nproc_per_node x nnodes ({tt['nproc_per_node']} x {tt['nnodes']}): each process takes an equal slice")
    if p["evaluate"]["confidence"] >= 1:
        raise ParamError(f"{source}: evaluate.confidence must be in (0, 1), e.g. 0.95 (got {p['evaluate']['confidence']!r})")
    t = p["transformer"]
    if t["dim"] % t["n_heads"]:
        raise ParamError(f"{source}: transformer.dim ({t['dim']}) must be divisible by transformer.n_heads ({t['n_heads']})")


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: not found (run the stage from the project root)")
    try:
        params = parse_yaml(path.read_text())
    except YAMLError as e:
        raise ParamError(f"{path}: not valid YAML ({' '.join(str(e).split())[:160]})") from None
    return check_params(params, str(path))


def test_normalisation(params: dict, train_norm: dict) -> dict:
    """{'mean', 'std'} for the masked test images on their way into the VQGAN encoder:
    data.test_mean / data.test_std when set, as the lab normalises its test images
    with their own statistics; else `train_norm` (the VQGAN checkpoint's). Decoded
    images go back to pixels with `train_norm` either way, so that the known pixels
    composited into them and the output PNGs keep the training images' scale."""
    d = params["data"]
    if d["test_mean"] is None:
        return train_norm
    return {"mean": d["test_mean"], "std": d["test_std"]}


def parse_yaml(text: str):
    """params.yaml read as DVC reads it (ruamel.yaml, safe, YAML 1.2), so that the
    values DVC compares to decide what is up to date are the values the stages use:
    PyYAML (YAML 1.1) reads `lr: 1e-3` as a string and `on` as true, DVC as 0.001
    and 'on'."""
    return YAML(typ="safe").load(text)


def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}: nested params or metrics as dotted keys."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}{sep}", sep))
        else:
            out[f"{prefix}{key}"] = value
    return out


def token_patch(params: dict) -> int:
    return params["data"]["image_size"] // params["vqgan"]["latent_resolution"]
