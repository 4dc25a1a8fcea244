"""Presets: lab5 builds the lab's models exactly; demo undoes any other preset."""

import json
import shutil

import pytest
import torch
import yaml

from conftest import ROOT, SHARED
from maskgit.params import load_params
from maskgit.preset import apply_preset
from maskgit.transformer import BidirectionalTransformer
from maskgit.vqgan import VQGAN

SHAPES = SHARED / "lab5" / "vqgan_lab_state_dict_shapes.json"
LAB_TRANSFORMER_PARAMS = 72_745_472  # dim 768, 15 layers, 16 heads, MLP 1536, 1024 codes + mask, 256 tokens, tied head


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_lab5_preset_builds_the_lab_models(project):
    apply_preset("lab5")
    params = load_params()
    assert params["prepare"]["source"] == "folders" and params["vqgan"]["checkpoint"] == "lab5/VQGAN.pt"
    assert params["inpaint"]["choice_temperature"] == 4.5 and params["inpaint"]["total_iter"] == 10
    with torch.device("meta"):
        vqgan = VQGAN(params["vqgan"])
        transformer = BidirectionalTransformer(params["vqgan"]["num_codebook_vectors"], 256, params["transformer"])
    assert transformer.num_params() == LAB_TRANSFORMER_PARAMS
    assert transformer.mask_token_id == 1024
    if not SHAPES.is_file():
        pytest.skip(f"{SHAPES} absent: cannot compare with the lab checkpoint's layout")
    ref = json.loads(SHAPES.read_text())["state_dict_shapes"]
    got = {k: list(v.shape) for k, v in vqgan.state_dict().items()}
    assert got == {k: list(v) for k, v in ref.items()}


@pytest.mark.parametrize("other", ["lab5", "tiny"])
def test_demo_preset_restores_the_default(project, other):
    default = yaml.safe_load((project / "params.yaml").read_text())
    apply_preset(other)
    assert yaml.safe_load((project / "params.yaml").read_text()) != default
    apply_preset("demo")
    assert yaml.safe_load((project / "params.yaml").read_text()) == default


def test_presets_name_only_params_that_exist(project):
    default = yaml.safe_load((project / "params.yaml").read_text())
    for path in (project / "configs").glob("*.yaml"):
        for section, values in (yaml.safe_load(path.read_text()) or {}).items():
            assert section in default, f"{path.name}: {section}"
            for key in values:
                assert key in default[section], f"{path.name}: {section}.{key}"
