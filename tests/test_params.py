"""Bad params stop with one line naming the param, before any work."""

import copy
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, stage_env
from maskgit.project.params import ParamError, check_params, load_params
from maskgit.preset import apply_preset

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(path, value):
    params = copy.deepcopy(DEFAULT)
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    return params


def test_shipped_params_are_valid():
    assert load_params(ROOT / "params.yaml")["inpaint"]["schedules"] == ["cosine", "linear", "square"]


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("inpaint.schedules", ["cosine", "triangle"], "inpaint.schedules has unknown schedule 'triangle'; known: cosine"),
        ("inpaint.schedules", [], "inpaint.schedules"),
        ("inpaint.total_iter", 0, "inpaint.total_iter must be an integer >= 1"),
        ("inpaint.total_iter", 2.5, "inpaint.total_iter must be an integer >= 1"),
        ("inpaint.sweet_spot", 0, "inpaint.sweet_spot must be an integer >= 1"),
        ("inpaint.sweet_spot", True, "inpaint.sweet_spot must be an integer >= 1"),
        ("inpaint.choice_temperature", -0.5, "inpaint.choice_temperature must be >= 0.0"),
        ("inpaint.sampling", "topk", "inpaint.sampling must be one of argmax, sample"),
        ("inpaint.pixel_guidance", -1, "inpaint.pixel_guidance must be >= 0.0"),
        ("data.image_size", 66, "data.image_size"),
        ("train_transformer.r_range", [0.6, 0.2], "train_transformer.r_range must be [low, high]"),
        ("transformer.n_heads", 5, "must be divisible by transformer.n_heads (5)"),
        ("device", "tpu", "device must be one of auto, cpu, cuda"),
        ("train_transformer.precision", "fp16", "train_transformer.precision must be one of"),
        ("inpaint.precision", "fp16", "inpaint.precision must be one of fp32, bf16"),
        ("compile", "yes", "compile must be true or false"),
        ("train_transformer.nproc_per_node", 0, "train_transformer.nproc_per_node must be an integer >= 1"),
        ("train_transformer.nproc_per_node", 3, "train_transformer.batch_size (32) must be divisible by "
                                                "train_transformer.nproc_per_node (3)"),
        ("train_transformer.nnodes", 3, "train_transformer.batch_size (32) must be divisible by "
                                        "nproc_per_node x nnodes (1 x 3)"),
        ("train_transformer.rdzv_endpoint", "node0", "train_transformer.rdzv_endpoint must be host:port"),
        ("prepare.blur", -1.0, "prepare.blur must be >= 0"),
        ("train_vqgan.continuous_steps", 5000, "train_vqgan.continuous_steps (5000) must be below train_vqgan.steps"),
        ("vqgan.norm_groups", 7, "norm_groups"),
        ("inpaint.composite", True, "inpaint.composite must be one of poisson, paste, none"),
        ("transformer.pos_init", "learned", "transformer.pos_init must be one of sincos, normal"),
        ("train_transformer.epochs", 50, "set exactly one of train_transformer.steps and train_transformer.epochs "
                                         "(the other null): both are set"),
        ("train_transformer.steps", None, "set exactly one of train_transformer.steps and train_transformer.epochs "
                                          "(the other null): both are null"),
        ("train_transformer.epochs", 0, "train_transformer.epochs must be > 0.0 or null"),
        ("train_transformer.steps", 2.5, "train_transformer.steps must be an integer >= 1 or null"),
        ("data.test_mean", [0.5, 0.5, 0.5], "data.test_mean and data.test_std are a pair"),
        ("data.test_std", [0.5, 0.5], "data.test_std must be a list of 3 items or null"),
        ("inpaint.mask_families", ["thin", "wide"], "inpaint.mask_families has unknown mask family 'wide'; known: thin"),
        ("inpaint.mask_families", ["thick", "thick"], "inpaint.mask_families lists a mask family twice"),
        ("inpaint.mask_families", "thin", "inpaint.mask_families must be a list (maybe empty)"),
        ("prepare.n_test", 3, "prepare.n_test must be an integer >= 4 (KID's subsets take half the set, at least 2 "
                              "images) (got 3)"),
    ],
)
def test_bad_values_name_the_param(path, value, expected):
    with pytest.raises(ParamError) as err:
        check_params(with_change(path, value))
    message = str(err.value)
    assert expected in message and "\n" not in message


def test_a_mask_family_is_not_scored_twice():
    params = with_change("prepare.test_masks", "thin")
    params["inpaint"]["mask_families"] = ["large", "thin"]
    with pytest.raises(ParamError, match="inpaint.mask_families lists 'thin', the main test set's own masks"):
        check_params(params)
    params["inpaint"]["mask_families"] = ["large"]
    assert check_params(params)["inpaint"]["mask_families"] == ["large"]


def test_image_size_must_tile_into_tokens():
    params = with_change("data.image_size", 66)
    params["vqgan"]["img_resolution"] = 66
    with pytest.raises(ParamError, match="data.image_size \\(66\\) is not divisible by vqgan.latent_resolution"):
        check_params(params)


def test_unknown_keys_are_typos():
    params = copy.deepcopy(DEFAULT)
    params["inpaint"]["sweetspot"] = 8
    with pytest.raises(ParamError, match="unknown key inpaint.sweetspot; known: schedules"):
        check_params(params)
    params = copy.deepcopy(DEFAULT)
    params["inpiant"] = {}
    with pytest.raises(ParamError, match="unknown section or key 'inpiant'"):
        check_params(params)
    params = copy.deepcopy(DEFAULT)
    del params["inpaint"]["total_iter"]
    with pytest.raises(ParamError, match="missing inpaint.total_iter"):
        check_params(params)


@pytest.mark.parametrize("path, value, param", [
    ("inpaint.schedules", ["cosine", "zigzag"], "inpaint.schedules"),
    ("inpaint.sweet_spot", 0, "inpaint.sweet_spot"),
    ("train_transformer.epochs", 50, "train_transformer.epochs"),
])
def test_a_stage_stops_before_any_work(scratch_project, tmp_path, path, value, param):
    (scratch_project / "params.yaml").write_text(yaml.safe_dump(with_change(path, value)))
    result = subprocess.run([sys.executable, "stages/prepare.py"], cwd=scratch_project, env=stage_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and param in lines[0] and "Traceback" not in result.stderr
    assert not (scratch_project / "data" / "prepared").exists()


def test_tiny_preset_changes_only_what_it_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    apply_preset("tiny")
    after = yaml.safe_load((tmp_path / "params.yaml").read_text())
    tiny = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    for section, values in DEFAULT.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            assert after[section][key] == tiny.get(section, {}).get(key, value), f"{section}.{key}"
    assert "# Every hyperparameter" in (tmp_path / "params.yaml").read_text(), "comments must survive"
    (tmp_path / "configs/bad.yaml").write_text("inpaint:\n  sweet_spot: 0\n")
    before = (tmp_path / "params.yaml").read_text()
    with pytest.raises(ParamError, match="inpaint.sweet_spot"):
        apply_preset("bad")
    assert (tmp_path / "params.yaml").read_text() == before


def test_params_are_read_with_dvcs_yaml_rules(tmp_path):
    # DVC decides what is up to date from the values it reads; the stages must use the
    # same ones: `lr: 1e-3` is a number for both (PyYAML alone would read a string)
    from dvc.utils.serialize._yaml import parse_yaml as dvc_parse

    text = (ROOT / "params.yaml").read_text()
    text = text.replace("  lr: 0.001", "  lr: 1e-3").replace("  weight_decay: 0.01", "  weight_decay: 1e-2")
    assert "lr: 1e-3" in text and "weight_decay: 1e-2" in text
    path = tmp_path / "params.yaml"
    path.write_text(text)
    params = load_params(path)
    assert params["train_transformer"]["lr"] == 1e-3 and params["train_transformer"]["weight_decay"] == 1e-2
    assert params == dvc_parse(text, str(path))


@pytest.mark.parametrize("raw", ["1e-3", "1e-05", "0.001", "8", "true", "on", "null", "[cosine,linear]", "cosine"])
def test_a_set_value_means_to_the_sweep_what_it_means_to_dvc_exp_run(raw, tmp_path):
    # `dvc exp run -S` applies the override with Hydra's grammar to params.yaml; the sweep
    # checks and names its points with its own parse (maskgit.tune passes repr(float),
    # e.g. 1e-05). PyYAML read `1e-3` as a string and refused a value DVC accepts.
    from dvc.utils.hydra import apply_overrides as dvc_apply_overrides

    from maskgit.project.params import apply_overrides
    from maskgit.project.yamlio import parse_yaml

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    dvc_apply_overrides(path, [f"train_transformer.lr={raw}"])
    by_dvc = parse_yaml(path.read_text())["train_transformer"]["lr"]
    ours = apply_overrides(load_params(ROOT / "params.yaml"), [f"train_transformer.lr={raw}"])
    assert ours["train_transformer"]["lr"] == by_dvc and type(ours["train_transformer"]["lr"]) is type(by_dvc)


def test_a_tuned_value_means_to_dvc_exp_run_the_float_optuna_suggested(tmp_path):
    # maskgit.tune hands each trial's float to `dvc exp run -S` (in this checkout, or in a
    # sweep job) as trial_override writes it: DVC must read back that very float, and the
    # sweep's own parse (which checks and names points) must agree. The values: edge cases
    # of repr() (exponent forms, integral floats) and what Optuna's sampler draws
    import optuna
    from dvc.utils.hydra import apply_overrides as dvc_apply_overrides

    from maskgit.project.yamlio import parse_yaml
    from maskgit.project.params import apply_overrides
    from maskgit.tune import trial_override

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [study.ask().suggest_float("lr", 1e-7, 1e3, log=True) for _ in range(20)]
    params = load_params(ROOT / "params.yaml")
    for value in [1e-05, 1e-3, 0.0001, 2.5e-3, 1.0, 4.0, 1e-10, 123456.789, 1e16, *drawn]:
        override = trial_override("train_transformer.lr", value)
        path = tmp_path / "params.yaml"
        path.write_text((ROOT / "params.yaml").read_text())
        dvc_apply_overrides(path, [override])
        by_dvc = parse_yaml(path.read_text())["train_transformer"]["lr"]
        ours = apply_overrides(params, [override])["train_transformer"]["lr"]
        assert type(by_dvc) is float and by_dvc == value, (override, by_dvc)
        assert type(ours) is float and ours == value, (override, ours)


def test_a_path_param_expands_the_users_home(tmp_path, monkeypatch):
    # YAML keeps "~/lab5" as text; a stage reads it as the shell would
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_change("fid.inception_weights", "~/weights/inception.pth")))
    assert load_params(path)["fid"]["inception_weights"] == str(tmp_path / "weights/inception.pth")
    assert load_params(path)["prepare"]["train_dir"] is None
