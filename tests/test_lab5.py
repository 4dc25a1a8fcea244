"""The lab5 preset trains and scores like the lab: a budget in epochs, the reports'
recipe with its sources, and the lab's own normalisation of its masked test images."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import ROOT, SHARED, stage_env
from test_resume import make_project, run_stage, tiny_params
from maskgit.algorithms.decoding import Decoding
from maskgit.algorithms.objective import training_steps
from maskgit.algorithms.schedules import gamma
from maskgit.data.procedural import make_dataset
from maskgit.models.transformer import BidirectionalTransformer
from maskgit.models.vqgan import VQGAN
from maskgit.pipeline import runner
from maskgit.project import paths
from maskgit.project.files import list_images, write_images
from maskgit.project.transformer_checkpoint import save_transformer
from maskgit.project.vqgan_checkpoint import save_vqgan

FORMAT = SHARED / "lab5" / "FORMAT.md"
LAB5 = ROOT / "configs" / "lab5.yaml"


# -- epochs -> steps ---------------------------------------------------------------

@pytest.mark.parametrize("epochs, n_train, batch_size, grad_accum, steps", [
    (50, 10_000, 32, 1, 15_625),   # 500,000 sequences at 32 a step
    (50, 10_001, 32, 1, 15_627),   # 15,626.56 rounds up: at least the epochs asked for
    (50, 10_000, 16, 2, 15_625),   # accumulation: a step still sees 32 sequences
    (50, 10_000, 16, 1, 31_250),
    (1.1, 50, 1, 1, 55),           # 1.1 * 50 is 55.00000000000001 in floats: not 56 steps
    (0.1, 747, 32, 1, 3),
    (1e-6, 10, 32, 1, 1),          # never zero steps
])
def test_epochs_resolve_to_steps(epochs, n_train, batch_size, grad_accum, steps):
    assert training_steps(None, epochs, n_train, batch_size, grad_accum) == steps


def test_steps_are_taken_as_given():
    assert training_steps(600, None, 10, 32, 4) == 600


@pytest.mark.parametrize("steps, epochs", [(600, 50), (None, None)])
def test_exactly_one_budget(steps, epochs):
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        training_steps(steps, epochs, 100, 32, 1)


def test_the_stage_trains_for_the_epochs_and_reports_both(tmp_path):
    # 64 training grids, 2.25 epochs, 16 x 2 a step: ceil(144 / 32) = 5 steps, 2.5 epochs seen
    params = tiny_params(steps=None, epochs=2.25, batch_size=16, grad_accum=2, eval_every=2, checkpoint_every=0)
    project = make_project(tmp_path / "p", params)
    proc = run_stage(project, tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = json.loads((project / "dvclive" / "transformer" / "metrics.json").read_text())
    assert (summary["steps"], summary["epochs"], summary["n_train"]) == (5, 2.5, 64)
    assert summary["step"] == 2  # rows logged after steps 2, 4 and the last, 5
    logged = yaml.safe_load((project / "dvclive" / "transformer" / "params.yaml").read_text())
    assert logged["train_transformer"]["steps"] == 5 and logged["train_transformer"]["epochs"] == 2.25
    assert torch.load(project / "models" / "transformer.pt", weights_only=False)["steps"] == 5


# -- the lab5 recipe and its sources -------------------------------------------------

RECIPE = ("epochs", "batch_size", "grad_accum", "lr", "betas", "weight_decay", "warmup_steps", "gamma", "r_range",
          "precision")
NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"


def commented_section(text: str, section: str) -> dict:
    """{key: (value, comment)} of one top-level section of a preset, the comment with
    its continuation lines (comment-only lines right below, indented past the key)."""
    out, inside, last = {}, False, None
    for line in text.splitlines():
        if not line.startswith(" "):
            inside, last = line.startswith(f"{section}:"), None
            continue
        if not inside:
            continue
        m = re.match(r"^  (\w+):\s*(.*?)\s*(?:#\s*(.*))?$", line)
        if m:
            last = m.group(1)
            out[last] = (yaml.safe_load(m.group(2)), m.group(3) or "")
        elif last and line.strip().startswith("#"):
            value, comment = out[last]
            out[last] = (value, f"{comment} {line.strip().lstrip('#').strip()}")
    return out


def citations(comment: str) -> list[tuple[str, str]]:
    """[(report letter, the setting it states)]: 'report C: wd 2e-3' -> ('C', 'wd 2e-3');
    a setting runs to the next ';', '(' or the end."""
    return [(m.group(1), m.group(2).strip().rstrip(",.:")) for m in re.finditer(r"report ([A-Z]): ([^;(]+)", comment)]


def format_rows() -> dict:
    """{report letter: its rows of the FORMAT's table of published results}."""
    rows = {}
    for line in FORMAT.read_text().splitlines():
        m = re.match(r"^\|\s*report ([A-Z])", line)
        if m:
            rows[m.group(1)] = rows.get(m.group(1), "") + line
    return rows


def test_the_lab5_recipe_equals_what_its_comments_cite():
    recipe = commented_section(LAB5.read_text(), "train_transformer")
    assert set(RECIPE) <= set(recipe), f"missing from the lab5 preset: {set(RECIPE) - set(recipe)}"
    share = sorted(gamma(recipe["gamma"][0], torch.tensor(r, dtype=torch.float64)).item()
                   for r in recipe["r_range"][0])
    cited = 0
    for key, (value, comment) in recipe.items():
        sources = citations(comment)
        if key not in RECIPE and not sources:
            continue
        assert sources or comment.startswith("not in the reports:"), f"{key}: no source and no reason: {comment!r}"
        for report, setting in sources:
            numbers = [float(x) for x in re.findall(NUMBER, setting)]
            if "mask ratio" in setting:
                # the reports' mask ratio is the share of tokens masked: gamma(r) over r_range;
                # uniform in it only if gamma is linear in r
                assert recipe["gamma"][0] == "linear", key
                assert share == pytest.approx(numbers, abs=1e-5), key
            else:
                assert len(numbers) == 1 and value == pytest.approx(numbers[0]), f"{key}: {value} but {comment!r}"
            cited += 1
    assert cited >= 6  # epochs, batch size, lr twice, weight decay, the mask ratio


def test_the_lab5_recipe_cites_the_reports_as_they_are():
    if not FORMAT.is_file():
        pytest.skip(f"{FORMAT} absent: cannot read the published reports")
    rows = format_rows()
    for key, (_, comment) in commented_section(LAB5.read_text(), "train_transformer").items():
        for report, setting in citations(comment):
            assert setting in rows.get(report, ""), f"{key}: report {report} does not state {setting!r}"


# -- test-time normalisation ------------------------------------------------------------

TRAIN_NORM = {"mean": [0.4816, 0.4324, 0.3845], "std": [0.2602, 0.2518, 0.2537]}


def lab_normalise(images: np.ndarray, mean, std) -> torch.Tensor:
    """What the lab's test loader gives: ToTensor (x / 255, CHW) then Normalize."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32).div(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def tokenize_project(path, vqgan, vq_config, test_norm):
    """A prepared project (train, val, a masked test set) tokenized by the stage with
    the VQGAN `vqgan` and data.test_mean/test_std from `test_norm` (None: null)."""
    images = make_dataset(3, 48, palette_size=0)
    write_images(path / "data" / "prepared" / "train", images[:16])
    write_images(path / "data" / "prepared" / "val", images[16:24])
    masked, known = images[24:].copy(), np.ones(images[24:].shape[:3], dtype=bool)
    known[:, 20:44, 16:40] = False
    masked[~known] = 128
    write_images(path / "data" / "prepared" / "test" / "masked_image", masked)
    write_images(path / "data" / "prepared" / "test" / "mask64", known)
    write_images(path / "data" / "prepared" / "test" / "gt", images[24:])
    save_vqgan(path / "models" / "vqgan.pt", vqgan, vq_config, TRAIN_NORM["mean"], TRAIN_NORM["std"])
    params = tiny_params()
    params["vqgan"] = vq_config
    params["data"].update(mean=TRAIN_NORM["mean"], std=TRAIN_NORM["std"],
                          test_mean=test_norm and test_norm["mean"], test_std=test_norm and test_norm["std"])
    (path / "stages").mkdir(parents=True)
    (path / "stages" / "tokenize_images.py").write_text((ROOT / "stages" / "tokenize_images.py").read_text())
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "stages/tokenize_images.py"], cwd=path, env=stage_env(path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return {name: np.load(path / "data" / "tokens" / f"{name}.npy") for name in ("train", "val", "test", "test_unknown")}


def read_pngs(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in list_images(folder)])


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    """The same images and VQGAN tokenized twice: data.test_mean/test_std null, and the lab5 preset's."""
    lab = yaml.safe_load(LAB5.read_text())["data"]
    assert {"mean": lab["mean"], "std": lab["std"]} == TRAIN_NORM
    vq_config = {**tiny_params()["vqgan"], "num_codebook_vectors": 256}
    torch.manual_seed(0)
    vqgan = VQGAN(vq_config).eval()
    root = tmp_path_factory.mktemp("tokenized")
    return {"vqgan": vqgan, "lab_test": {"mean": lab["test_mean"], "std": lab["test_std"]}, "lab": root / "lab",
            "unset": tokenize_project(root / "unset", vqgan, vq_config, None),
            "lab_tokens": tokenize_project(root / "lab", vqgan, vq_config, {"mean": lab["test_mean"],
                                                                             "std": lab["test_std"]})}


def test_test_normalisation_changes_the_test_tokens_only_and_as_the_lab(tokenized):
    vqgan, unset, lab_run = tokenized["vqgan"], tokenized["unset"], tokenized["lab_tokens"]
    masked = read_pngs(tokenized["lab"] / "data" / "prepared" / "test" / "masked_image")
    with torch.no_grad():
        as_lab = vqgan.encode_to_tokens(lab_normalise(masked, **tokenized["lab_test"])).numpy()
        as_training = vqgan.encode_to_tokens(lab_normalise(masked, **TRAIN_NORM)).numpy()
    np.testing.assert_array_equal(lab_run["test"], as_lab)
    np.testing.assert_array_equal(unset["test"], as_training)
    assert (lab_run["test"] != unset["test"]).any()  # the two normalisations give other tokens here
    for name in ("train", "val", "test_unknown"):
        np.testing.assert_array_equal(lab_run[name], unset[name])


def test_the_runner_encodes_as_the_tokens_and_decodes_with_the_training_norm(tokenized, monkeypatch):
    """Pixel guidance encodes the masked test images as the tokenizer did (the lab's
    test normalisation); the decoded images go back to pixels with the training
    normalisation, and the known pixels pasted into them come out as they went in."""
    project = tokenized["lab"]
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["inpaint"].update(pixel_guidance=10, composite="paste", batch_size=8, precision="fp32")
    monkeypatch.chdir(project)
    torch.manual_seed(0)
    transformer = BidirectionalTransformer(params["vqgan"]["num_codebook_vectors"], 256, params["transformer"])
    save_transformer(paths.TRANSFORMER, transformer, params["transformer"])
    seen, decoded, real_prior, real_composite = [], [], runner.pixel_prior, runner.composite

    def prior_spy(vqgan, masked_input, known, guidance):
        seen.append(masked_input.cpu())
        return real_prior(vqgan, masked_input, known, guidance)

    def composite_spy(images, *args):
        decoded.append(images.float().cpu())
        return real_composite(images, *args)

    monkeypatch.setattr(runner, "pixel_prior", prior_spy)
    monkeypatch.setattr(runner, "composite", composite_spy)
    decoding = Decoding(schedule="cosine", total_iter=2, sweet_spot=2,
                        choice_temperature=params["inpaint"]["choice_temperature"])
    runner.run_inpainting(params, project / "out", decoding, history_images=0, desc="test")
    masked = read_pngs(project / "data" / "prepared" / "test" / "masked_image")
    torch.testing.assert_close(torch.cat(seen), lab_normalise(masked, **tokenized["lab_test"]), rtol=0, atol=0)
    known = np.stack([np.asarray(Image.open(p).convert("L")) >= 128
                      for p in list_images(project / "data" / "prepared" / "test" / "mask64")])
    out = read_pngs(project / "out" / "images")
    np.testing.assert_array_equal(out[known], masked[known])
    mean, std = (torch.tensor(TRAIN_NORM[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    expected = (torch.cat(decoded) * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(out[~known], expected.numpy()[~known])
