"""params.yaml: every param's default, check and comment (SCHEMA, the one place they
are written); load, check every key before any work, fail with one line.

params.yaml is SCHEMA's defaults written out by `render` (tests/test_params.py keeps
them in step): adding a param is its entry in SCHEMA, then `python -m maskgit.preset
demo` writes it into params.yaml with its default and comment.

Every stage checks the whole file (it is cheap), so a typo anywhere stops the first
stage that runs, before it does any work. A stage then *uses* only the sections it
declares under `params:` in dvc.yaml.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ruamel.yaml import YAMLError

from maskgit.algorithms.schedules import SCHEDULES
from maskgit.choices import ATTENTION_KINDS, COMPOSITE, DEVICES, ORDERS, POS_INITS, PRECISIONS, REPRODUCIBILITY, SAMPLING, SOURCES, MASK_FAMILIES, TEST_MASKS
from maskgit.project.errors import ParamError
from maskgit.project.yamlio import parse_yaml
from maskgit.models.vqgan_config import check_config as check_vqgan_config


Check = Callable[[Any], str | None]  # returns what is wrong, or None


def _int(lo=None, why: str = "") -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
            return (f"must be an integer >= {lo}" if lo is not None else "must be an integer") + (f" ({why})" if why else "")
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


def _names(what: str, known) -> Check:
    """A non-empty list of distinct names out of `known` (inpaint.schedules, inpaint.orders)."""
    def check(v):
        if not isinstance(v, list) or not v:
            return f"must be a non-empty list of {what} names"
        unknown = [s for s in v if s not in known]
        if unknown:
            return f"has unknown {what} {unknown[0]!r}; known: {', '.join(known)}"
        if len(set(v)) != len(v):
            return f"lists a {what} twice"
    return check


def _families(v):
    """A list, maybe empty, of distinct mask families (inpaint.mask_families)."""
    if not isinstance(v, list):
        return f"must be a list (maybe empty) of mask families out of {', '.join(MASK_FAMILIES)}"
    unknown = [f for f in v if f not in MASK_FAMILIES]
    if unknown:
        return f"has unknown mask family {unknown[0]!r}; known: {', '.join(MASK_FAMILIES)}"
    if len(set(v)) != len(v):
        return "lists a mask family twice"


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


@dataclass(frozen=True)
class Param:
    """One param: its default, its check, and its comment in params.yaml (a newline
    starts another comment line). Called, it checks a value: None or what is wrong."""
    default: Any
    check: Check
    comment: str = ""

    def __call__(self, value) -> str | None:
        return self.check(value)


HEADER = ("Every hyperparameter of the pipeline, grouped by the stage that reads it.\n"
          "`dvc repro` re-runs exactly the stages whose params or inputs changed.\n"
          "Written from maskgit/project/params.py (SCHEMA): defaults and comments live there.")
SECTIONS = {  # a section's comment in params.yaml
    "reproducibility": "what decides the bits of every result (docs/reproducibility.md)",
    "data": "image format shared by every stage that reads images",
    "vqgan": "stage-1 tokenizer; the keys of the lab's VQGAN.yml",
    "transformer": "stage-2 bidirectional transformer",
    "evaluate": "how sure the results are: bootstrap over test images (stage evaluate)",
}
# KID (maskgit.metrics.fid) draws subsets of half a set, and a subset needs 2 images
MIN_TEST_IMAGES = 4

SCHEMA: dict[str, Param | dict[str, Param]] = {
    "device": Param("auto", _choice(*DEVICES), "auto (CUDA when present) | cpu | cuda"),
    "compile": Param(False, _bool,
          "torch.compile the transformer for training on CUDA; ignored on CPU (inpainting stays eager)"),
    "reproducibility": {
        "mode": Param("portable", _choice(*REPRODUCIBILITY),
              "portable: kernels capped at AVX2 and MKL's vendor-neutral branch, threads fixed: bytes\n"
              "that do not follow the CPU (where checked: docs/reproducibility.md) | native: the\n"
              "best kernels this CPU has (faster, its own bits)"),
        "threads": Param(2, _int(1),
              "portable: intra-op threads of every stage (a parallel sum's order: part of the result)"),
    },
    "data": {
        "image_size": Param(64, _int(8)),
        "mean": Param([0.5, 0.5, 0.5], _list(_float(0.0, 1.0), length=3),
              "per-channel normalisation (x - mean) / std, x in [0, 1]"),
        "std": Param([0.5, 0.5, 0.5], _list(_float(0.0, lo_open=True), length=3)),
        "test_mean": Param(None, _optional(_list(_float(0.0, 1.0), length=3)),
              "the masked test images' own normalisation when they are encoded, as the lab"),
        "test_std": Param(None, _optional(_list(_float(0.0, lo_open=True), length=3)),
              "does (both or neither); null: mean and std above. Decoding always uses mean/std"),
    },
    "prepare": {
        "source": Param("procedural", _choice(*SOURCES),
              "procedural (built in, the keys below up to seed) | folders (your images, *_dir keys)"),
        "n_train": Param(3000, _int(1)),
        "n_val": Param(200, _int(1)),
        "n_test": Param(150, _int(MIN_TEST_IMAGES, "KID's subsets take half the set, at least 2 images"), "FID runs over 4 + #schedules sets of this size: the run's main cost"),
        "palette_size": Param(16, _int(0), "> 0: flat images in that many colours, hard edges"),
        "blur": Param(1.2, _float(0.0), "Gaussian softness (pixels) of a photo downsampled to 64x64"),
        "seed": Param(0, _int(0), "also seeds the train/val split of folders"),
        "test_masks": Param("builtin", _choice(*TEST_MASKS),
              "builtin: the procedural set's own masks, or test_mask_dir with folders;\n"
              "thin | medium | thick (LaMa's), small | large (MAT's): generated per test image"),
        "train_dir": Param(None, _optional_path,
              "source: folders. Test masked images, masks and ground truth pair by sorted name"),
        "val_dir": Param(None, _optional_path, "null: split prepare.val_fraction of train_dir off, seeded"),
        "val_fraction": Param(0.1, _float(0.0, 0.9, lo_open=True)),
        "test_masked_dir": Param(None, _optional_path,
              "null: made from test_gt_dir and test_mask_dir, holes filled with gray"),
        "test_mask_dir": Param(None, _optional_path, "white (>= 128) = known, black = missing"),
        "test_gt_dir": Param(None, _optional_path),
        "resize": Param(False, _bool, "folder images of another size: stop (false) or resize to data.image_size"),
        "convert_mode": Param(False, _bool, "grayscale / RGBA folder images: stop (false) or convert to RGB"),
    },
    "vqgan": {
        "image_channels": Param(3, _choice(3)),
        "enc_channels": Param([32, 32, 32, 32], _list(_int(1), min_length=2)),
        "dec_channels": Param([32, 32, 32], _list(_int(1), min_length=2)),
        "latent_dim": Param(16, _int(1)),
        "img_resolution": Param(64, _int(8)),
        "latent_resolution": Param(16, _int(1), "64 / 16 = 4x4 pixels per token"),
        "num_codebook_vectors": Param(128, _int(2)),
        "beta": Param(0.25, _float(0.0)),
        "norm_groups": Param(8, _int(1),
              "not in the lab's VQGAN.yml (32 there): at 32 channels, 32 groups\n"
              "pin every decoded image to one mean colour; 8 groups of 4 do not"),
        "checkpoint": Param(None, _optional_path,
              "a lab-format VQGAN.pt to use as is (no stage-1 training), or null"),
    },
    "train_vqgan": {
        "steps": Param(2100, _int(1)),
        "batch_size": Param(16, _int(1)),
        "continuous_steps": Param(300, _int(0),
              "first train without quantiser, then k-means the codebook from encoder outputs"),
        "crop_size": Param(24, _int(8),
              "train on random crops: cheaper than 64x64, same codes; more steps on\n"
              "smaller crops beat fewer on larger ones in equal time (docs/findings.md)"),
        "lr": Param(0.001, _float(0.0, lo_open=True), "cosine-decayed to 10% over the run"),
        "betas": Param([0.9, 0.99], _list(_float(0.0, 1.0), length=2)),
        "l1_weight": Param(1.0, _float(0.0)),
        "l2_weight": Param(0.0, _float(0.0), "L1 alone reconstructs better than L1 + L2 (docs/findings.md)"),
        "edge_weight": Param(0.5, _float(0.0), "L1 on image gradients: sharp edges without a perceptual net"),
        "restart_every": Param(50, _int(0), "re-seed unused codes every N steps (0 = never)"),
        "log_every": Param(100, _int(1)),
        "checkpoint_every": Param(200, _int(0),
              "resumable state in checkpoints/ every N steps (0 = never); a killed run continues"),
        "seed": Param(0, _int(0)),
    },
    "transformer": {
        "dim": Param(128, _int(1)),
        "n_layers": Param(4, _int(1)),
        "n_heads": Param(4, _int(1)),
        "mlp_dim": Param(512, _int(1)),
        "dropout": Param(0.0, _float(0.0, 1.0),
              "0.1 in the lab; dropout is costly on a CPU, and short runs do not overfit"),
        "attention": Param("manual", _choice(*ATTENTION_KINDS), "manual (hand-written) | sdpa (fused, same result)"),
        "norm_first": Param(False, _bool, "post-norm, as the lab and BERT"),
        "pos_init": Param("sincos", _choice(*POS_INITS),
              "learned position embeddings start as 2-D sin-cos codes (normal: random, as the lab)"),
        "checkpoint": Param(None, _optional_path,
              "a transformer.pt of this project to inpaint with (no training), or null"),
    },
    "train_transformer": {
        "steps": Param(600, _optional(_int(1)),
              "the budget: steps, or epochs over the prepared training set (one set, the other null)"),
        "epochs": Param(None, _optional(_float(0.0, lo_open=True)),
              "steps = ceil(epochs * n_train / (batch_size * grad_accum)), in the metrics"),
        "batch_size": Param(32, _int(1)),
        "grad_accum": Param(1, _int(1)),
        "lr": Param(0.001, _float(0.0, lo_open=True)),
        "betas": Param([0.9, 0.96], _list(_float(0.0, 1.0), length=2)),
        "weight_decay": Param(0.01, _float(0.0)),
        "warmup_steps": Param(30, _int(0)),
        "min_lr_ratio": Param(0.1, _float(0.0, 1.0), "cosine decay to lr * min_lr_ratio"),
        "grad_clip": Param(1.0, _float(0.0)),
        "label_smoothing": Param(0.1, _float(0.0, 1.0)),
        "gamma": Param("cosine", _choice(*SCHEDULES), "mask schedule used to draw training masks"),
        "r_range": Param([0.0, 1.0], _unit_range,
              "r ~ U(r_range), gamma(r) of the tokens masked (lab5: a mask ratio U[0, 0.5])"),
        "regional_mask_prob": Param(0.5, _float(0.0, 1.0),
              "share of training masks drawn as blobs (test masks are regional)"),
        "precision": Param("fp32", _choice(*PRECISIONS),
              "fp32 | bf16 autocast (faster on CPUs with bf16 instructions and on GPUs; on CPU, native mode only)"),
        "eval_every": Param(50, _int(1)),
        "checkpoint_every": Param(100, _int(0),
              "resumable state in checkpoints/ every N steps (0 = never); a killed run continues"),
        "nproc_per_node": Param(1, _int(1),
              "data-parallel processes (GPUs) under torchrun; batch_size is the global batch, split evenly"),
        "nnodes": Param(1, _int(1),
              "machines training together (docs/scale.md); each runs nproc_per_node processes.\n"
              "A node's rank comes from $NODE_RANK or $SLURM_NODEID"),
        "rdzv_endpoint": Param(None, _optional_endpoint,
              "host:port of the c10d rendezvous with nnodes > 1; null: the first node of the Slurm job, port 29500"),
        "seed": Param(0, _int(0)),
    },
    "inpaint": {
        "schedules": Param(["cosine", "linear", "square"], _names("schedule", SCHEDULES)),
        "orders": Param(["confidence", "halton"], _names("order", ORDERS),
              "which tokens a step reveals: confidence (the paper's) | random | halton\n"
              "(Halton-MaskGIT's low-discrepancy grid order); every schedule runs with every order"),
        "mask_families": Param([], _families,
              "standard mask families the test images are also filled and scored under, one\n"
              "stage each (family@<name>): thin | medium | thick (LaMa's), small | large (MAT's)"),
        "halton_shift": Param(False, _bool, "roll the Halton order on the grid by a seeded offset per image"),
        "total_iter": Param(8, _int(1)),
        "sweet_spot": Param(8, _int(1), "stop after this many steps (>= total_iter: run all)"),
        "choice_temperature": Param(4.5, _float(0.0)),
        "sampling": Param("argmax", _choice(*SAMPLING), "argmax (the lab) | sample (the official decoder)"),
        "composite": Param("poisson", _choice(*COMPOSITE),
              "known pixels of the input put back: poisson (seamless, the hole shifted\n"
              "to meet them) | paste (as they are) | none (the decoded image as is)"),
        "pixel_guidance": Param(10, _float(0.0),
              "weight of the known pixels of partly known tokens in their choice\n"
              "(maskgit.algorithms.guidance.pixel_prior); 0: the lab's decoding, tokens see no pixels"),
        "precision": Param("fp32", _choice(*PRECISIONS),
              "fp32 | bf16 autocast (faster; a few filled tokens differ from fp32: docs/findings.md)"),
        "batch_size": Param(100, _int(1)),
        "n_figure_images": Param(4, _int(0), "test images drawn step by step in the figures"),
        "seed": Param(0, _int(0)),
    },
    "fid": {
        "inception_weights": Param(None, _optional_path,
              "path to torch-fidelity's inception-v3-compat weights; null: search caches"),
        "lpips_backbone": Param(None, _optional_path,
              "torchvision's AlexNet weights for LPIPS; null: torch's hub cache; none: no LPIPS"),
        "batch_size": Param(50, _int(1),
              "images per Inception forward on a GPU; a CPU takes at most 10 (faster; its FID then does not depend on this)"),
    },
    "evaluate": {
        "replicates": Param(1000, _int(100),
              "resamples of the test images, >= 100; the same draw for every set (paired)"),
        "confidence": Param(0.95, _float(0.0, lo_open=True),
              "of every interval; a difference is real when its interval excludes 0"),
        "seed": Param(0, _int(0), "of the resampling: the same evidence gives the same intervals"),
        "mask_buckets": Param([0.0, 0.1, 0.2, 0.3, 0.4, 1.0], _bucket_edges,
              "edges of missing-pixel fraction, increasing in [0, 1]"),
        "kid_min_images": Param(20, _int(4), "a bucket with fewer images reports hole PSNR/SSIM only, no KID"),
        "exact_up_to": Param(500, _int(0),
              "test images up to which FID/KID are resampled exactly; above, to first order"),
        "ids_min_images": Param(4096, _int(2049),
              "P-IDS/U-IDS from this many test images on (a linear SVM separates fewer)"),
    },
}


def check_params(params: dict, source: str = "params.yaml") -> dict:
    """Raise ParamError (one line, naming the key) on the first problem."""
    if not isinstance(params, dict):
        raise ParamError(f"{source}: expected a mapping of sections")
    _check_mapping(params, SCHEMA, source)
    _check_across(params, source)
    return params


def _check_mapping(values: dict, spec: dict, source: str, section: str = "") -> None:
    """Every key of `values` known to `spec`, every key of `spec` present and valid;
    a nested dict of `spec` is a section, checked the same way."""
    for key in values:
        if key not in spec:
            what = f"key {section}{key}" if section else f"section or key {key!r}"
            raise ParamError(f"{source}: unknown {what}; known: {', '.join(spec)}")
    for key, check in spec.items():
        if key not in values:
            raise ParamError(f"{source}: missing {section}{key}")
        if isinstance(check, dict):
            if not isinstance(values[key], dict):
                raise ParamError(f"{source}: {section}{key} must be a mapping")
            _check_mapping(values[key], check, source, f"{key}.")
        else:
            _raise_if(check(values[key]), source, f"{section}{key}", values[key])


def _raise_if(problem: str | None, source: str, name: str, value) -> None:
    if problem:
        raise ParamError(f"{source}: {name} {problem} (got {value!r})")


def _check_across(p: dict, source: str) -> None:
    size, vq = p["data"]["image_size"], p["vqgan"]
    if p["prepare"]["source"] == "folders":
        generated = p["prepare"]["test_masks"] != "builtin"
        for key in ("train_dir", "test_gt_dir") + (() if generated else ("test_mask_dir",)):
            if p["prepare"][key] is None:
                raise ParamError(f"{source}: prepare.{key} must be set with prepare.source: folders")
        for key in ("test_mask_dir", "test_masked_dir") if generated else ():
            if p["prepare"][key] is not None:
                raise ParamError(f"{source}: prepare.{key} must be null with prepare.test_masks: "
                                 f"{p['prepare']['test_masks']} (the masks are generated)")
    main = p["prepare"]["test_masks"]
    if main in p["inpaint"]["mask_families"]:
        raise ParamError(f"{source}: inpaint.mask_families lists {main!r}, the main test set's own masks "
                         f"(prepare.test_masks): it would be scored twice")
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


def defaults() -> dict:
    """params.yaml as shipped: every param at its default."""
    return {section: copy.deepcopy(spec.default) if isinstance(spec, Param)
            else {key: copy.deepcopy(p.default) for key, p in spec.items()} for section, spec in SCHEMA.items()}


def in_current_layout(params: dict) -> tuple[dict, list[str], list[str]]:
    """(params in today's layout, the params it lacked, set to their defaults, the keys
    it has that today's code does not know, left out): a run from before a param was
    added, or after one was removed, read by a tool that looks at old runs (compare)."""
    out, added, dropped = {}, [], []
    for section, spec in SCHEMA.items():
        value = params.get(section) if isinstance(params, dict) else None
        if isinstance(spec, Param):
            out[section] = copy.deepcopy(spec.default) if section not in params else value
            added += [section] if section not in params else []
            continue
        if not isinstance(value, dict):  # a whole section the run predates
            out[section] = {key: copy.deepcopy(param.default) for key, param in spec.items()}
            added.append(section)
            continue
        out[section] = {}
        for key, param in spec.items():
            out[section][key] = value[key] if key in value else copy.deepcopy(param.default)
            added += [] if key in value else [f"{section}.{key}"]
        dropped += [f"{section}.{key}" for key in value if key not in spec]
    dropped += [section for section in params if section not in SCHEMA]
    return out, added, dropped


COMMENT_COLUMN = 26  # where a comment starts in params.yaml, so that they line up


def _scalar(v) -> str:
    """A value as YAML 1.2 and 1.1 both read it back (flow style for lists)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = repr(v)
        mantissa, e, exponent = text.partition("e")
        # 1e-05 is a float to YAML 1.2 but a string to YAML 1.1 (PyYAML): write 1.0e-05
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    plain = re.fullmatch(r"[A-Za-z_./~][A-Za-z0-9_./~-]*", v) and v.lower() not in (
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "~")
    return v if plain else json.dumps(v)


def _lines(indent: int, key: str, value: str, comment: str) -> list[str]:
    text = f"{' ' * indent}{key}:{' ' + value if value else ''}"
    if not comment:
        return [text]
    first, *rest = comment.split("\n")
    out = [f"{text.ljust(COMMENT_COLUMN - 1)} # {first}"]
    return out + [f"{' ' * COMMENT_COLUMN}# {line}" for line in rest]


def render(params: dict) -> str:
    """params.yaml's text for `params`: SCHEMA's order and comments. A param missing
    from `params` is written at its default."""
    lines = [f"# {line}" for line in HEADER.split("\n")]
    after_section = False
    for section, spec in SCHEMA.items():
        if isinstance(spec, Param):
            lines += _lines(0, section, _scalar(params.get(section, spec.default)), spec.comment)
            after_section = False
            continue
        lines += [""] if after_section else []
        lines += _lines(0, section, "", SECTIONS.get(section, ""))
        values = params.get(section) or {}
        for key, p in spec.items():
            lines += _lines(2, key, _scalar(values.get(key, p.default)), p.comment)
        after_section = True
    return "\n".join(lines) + "\n"


def read_params_file(path: str | Path = "params.yaml") -> dict:
    """params.yaml's values as written, unchecked; ParamError naming the file when it is
    missing or not YAML."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: not found (run from the project root)")
    try:
        params = parse_yaml(path.read_text())
    except YAMLError as e:
        raise ParamError(f"{path}: not valid YAML ({' '.join(str(e).split())[:160]})") from None
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of sections, not a {type(params).__name__}")
    return params


def load_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml read and checked, every key (ParamError, one line, on the first problem)."""
    return _expand_user(check_params(read_params_file(path), str(Path(path))))


def _expand_user(params: dict) -> dict:
    """`~` in a path param is the user's home, as in a shell (YAML does not expand it)."""
    for section, spec in SCHEMA.items():
        for key, param in (spec.items() if isinstance(spec, dict) else ()):
            if param.check is _optional_path and isinstance(params[section][key], str):
                params[section][key] = os.path.expanduser(params[section][key])
    return params


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


def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}: nested params or metrics as dotted keys."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}{sep}", sep))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _param_node(params: dict, key: str, what: str) -> tuple[dict, str]:
    """(the mapping that holds dotted key "a.b", its leaf "b"); ParamError naming `what`
    (the flag or file that asked for it) when the key is not a param of `params`."""
    node, parts = params, key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ParamError(f"{what}: unknown param {key} (params.yaml has no {part!r} section there)")
        node = node[part]
    if parts[-1] not in node:
        raise ParamError(f"{what}: unknown param {key}; known in {'.'.join(parts[:-1]) or 'params.yaml'}: "
                         f"{', '.join(node)}")
    return node, parts[-1]


def get_param(params: dict, key: str, what: str):
    """params[a][b] for the dotted key "a.b" (ParamError as _param_node)."""
    node, leaf = _param_node(params, key, what)
    return node[leaf]


def set_param(params: dict, key: str, value, what: str) -> None:
    """params[a][b] = value for the dotted key "a.b", in place (ParamError as
    _param_node). The one dotted-key setter of the tools that change params (sweep,
    tune, preset)."""
    node, leaf = _param_node(params, key, what)
    node[leaf] = value


def apply_overrides(params: dict, overrides: list[str]) -> dict:
    """params with `key=value` overrides set as `dvc exp run -S` sets them (values parsed
    as YAML 1.2, as DVC reads them: `1e-3` is a number, `on` a string); `params` is not
    modified. ParamError naming the override when its key is not a param."""
    out = copy.deepcopy(params)
    for o in overrides:
        key, _, raw = o.partition("=")
        set_param(out, key, parse_yaml(raw), f"-S {o}")
    return out


def check_overrides(params: dict, points: list[list[str]]) -> None:
    """Each list of overrides applied to params.yaml's values and checked as a whole
    params.yaml, before DVC sees any: a scalar where a list belongs (`-S
    inpaint.schedules=cosine`) is one line naming it here, not DVC's matrix error."""
    for point in points:
        check_params(apply_overrides(params, point), f"params.yaml with {' '.join(point)}")


def token_patch(params: dict) -> int:
    return params["data"]["image_size"] // params["vqgan"]["latent_resolution"]
