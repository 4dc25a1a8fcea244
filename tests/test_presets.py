"""Presets: lab5 builds the lab's models exactly; demo undoes any other preset."""

import json
import re
import shutil

import pytest
import torch
import yaml

from conftest import NEEDS_LAB5, ROOT, SHARED
from maskgit.project.params import SCHEMA, Param, defaults, load_params, render
from maskgit.project.yamlio import parse_yaml
from maskgit.preset import apply_preset
from maskgit.models.transformer import BidirectionalTransformer
from maskgit.models.vqgan import VQGAN

SHAPES = SHARED / "lab5" / "vqgan_lab_state_dict_shapes.json"
# The lab's transformer (../shared/lab5/FORMAT.md), counted from its description, not from
# this project's model: token embedding (1024 codes + mask) and a learned position embedding
# with a LayerNorm; per layer q, k, v and output projections, an MLP 768-1536-768 and two
# LayerNorms; the head's dense + LayerNorm, the logits tied to the token embedding plus a
# per-position bias over the vocabulary.
D, V, N, L, M = 768, 1025, 256, 15, 1536
LAB_TRANSFORMER_PARAMS = (V * D + N * D + 2 * D
                          + L * (4 * (D * D + D) + (D * M + M) + (M * D + D) + 2 * 2 * D)
                          + (D * D + D) + 2 * D + N * V)


def lines(text: str) -> list[str]:
    """params.yaml as lines, up to the spaces before a comment."""
    return [re.sub(r"\s+#", " #", line).rstrip() for line in text.splitlines()]


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
        pytest.skip(NEEDS_LAB5)
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
    # the file reads as before: the same lines, comments and nulls, up to the spaces before a comment
    assert lines((project / "params.yaml").read_text()) == lines((ROOT / "params.yaml").read_text())


def test_presets_name_only_params_that_exist(project):
    default = yaml.safe_load((project / "params.yaml").read_text())
    for path in (project / "configs").glob("*.yaml"):
        for section, values in (yaml.safe_load(path.read_text()) or {}).items():
            assert section in default, f"{path.name}: {section}"
            for key in values:
                assert key in default[section], f"{path.name}: {section}.{key}"


@pytest.mark.parametrize("before", ["lab5", "tiny", "demo"])
def test_a_preset_gives_the_same_params_whatever_came_before(project, before):
    apply_preset("tiny")
    tiny_alone = lines((project / "params.yaml").read_text())
    apply_preset("demo")
    apply_preset(before)
    apply_preset("tiny")
    assert lines((project / "params.yaml").read_text()) == tiny_alone


def test_presets_compose_left_to_right(project):
    (project / "configs/mine.yaml").write_text("inpaint:\n  total_iter: 6\n  sweet_spot: 6\n")
    apply_preset(["tiny", "mine"])
    params = load_params()
    assert params["inpaint"]["total_iter"] == 6 and params["train_transformer"]["steps"] == 40


def test_a_users_own_paths_are_kept_and_named(project):
    text = (project / "params.yaml").read_text().replace("  train_dir: null", "  train_dir: /data/my_cats")
    (project / "params.yaml").write_text(text)
    summary = apply_preset("lab5")
    params = load_params()
    assert params["prepare"]["train_dir"] == "/data/my_cats"
    assert params["prepare"]["val_dir"] == "lab5_dataset/val"  # the preset's own path for a key left at null
    assert "kept your own prepare.train_dir=/data/my_cats" in summary and "\n" not in summary
    assert "vqgan.checkpoint" in summary.split(";")[0]  # changed, and said so


def test_params_yaml_is_the_schemas_defaults_with_their_comments():
    # every default and comment is written once, in SCHEMA; the shipped file is its rendering
    # (after editing SCHEMA: `python -m maskgit.preset demo` rewrites params.yaml)
    assert (ROOT / "params.yaml").read_text() == render(defaults())
    text = (ROOT / "params.yaml").read_text()
    for section, spec in SCHEMA.items():
        for key, param in ([(section, spec)] if isinstance(spec, Param) else spec.items()):
            for comment in filter(None, param.comment.split("\n")):
                assert f"# {comment}" in text, f"{section}.{key}: its comment is not in params.yaml"


@pytest.mark.parametrize("preset", ["demo", "tiny", "lab5"])
def test_a_written_params_yaml_reads_back_as_the_values_it_was_written_from(project, preset):
    apply_preset(preset)
    written = (project / "params.yaml").read_text()
    assert render(parse_yaml(written)) == written  # a fixed point: nothing drifts on re-writing
    assert parse_yaml(written) == yaml.safe_load(written)  # DVC's YAML 1.2 and YAML 1.1 agree on every value


def test_a_param_added_to_the_schema_reaches_params_yaml_at_its_default(project, monkeypatch):
    monkeypatch.setitem(SCHEMA["inpaint"], "new_knob", Param(1.0e-5, lambda v: None, "a knob added in code"))
    summary = apply_preset("demo")
    text = (project / "params.yaml").read_text()
    assert "new_knob: 1.0e-05" in text and "# a knob added in code" in text
    assert parse_yaml(text)["inpaint"]["new_knob"] == 1e-5 and "\n" not in summary


def test_preset_run_from_another_folder_uses_the_presets_beside_its_params(project, tmp_path, monkeypatch):
    from maskgit.preset import cli

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cli(["tiny", "--params", str(project / "params.yaml")])
    assert load_params(project / "params.yaml") != load_params(ROOT / "params.yaml")
    assert not list(elsewhere.iterdir())
    cli(["demo", "--params", str(project / "params.yaml")])
    assert (project / "params.yaml").read_text() == (ROOT / "params.yaml").read_text()
