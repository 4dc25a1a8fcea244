"""The whole DAG on the tiny preset in a temporary git repo, then an experiment that
changes only the sweet spot. Never touches the developer's checkout."""

import json
import math
import subprocess
import time

import pytest

from conftest import FID_WEIGHTS, SHARED, copy_project, stage_env

pytestmark = pytest.mark.pipeline

TRAINING_STAGES = ["prepare", "train_vqgan", "tokenize", "train_transformer"]


def run(cmd, cwd, env, timeout=900):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def tiny_repro(tmp, customise=None):
    """A copy of the project on the tiny preset, in its own git repo, after `dvc repro`.
    customise(project) may write a preset and return its name, applied after tiny."""
    if not FID_WEIGHTS.is_file():
        pytest.skip("../shared/fid is absent: no offline Inception weights for the FID stages")
    project = copy_project(tmp / "project")
    env = stage_env(tmp)
    (project / "configs/shared-fid.yaml").write_text(f"fid:\n  inception_weights: {FID_WEIGHTS}\n")
    presets = ["tiny", "shared-fid"] + ([customise(project)] if customise is not None else [])
    run(["python", "-m", "maskgit.preset", *presets], project, env)
    for old in (project / "metrics").glob("*.json"):  # the checkout's default-run metrics: not this run's
        old.unlink()
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "test"],
                ["git", "config", "user.email", "test@example.com"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "tiny"]):
        run(cmd, project, env)
    out = run(["dvc", "repro"], project, env)
    return project, env, out


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    return tiny_repro(tmp_path_factory.mktemp("pipeline"))


def read_json(path):
    return json.loads(path.read_text())


def test_repro_runs_every_stage_and_writes_the_report(tiny_project):
    project, env, out = tiny_project
    for stage in TRAINING_STAGES + ["inpaint@cosine", "inpaint@linear", "inpaint@square", "baselines",
                                    "fid_reference", "fid_baselines", "fid", "plots", "report"]:
        assert f"Running stage '{stage}'" in out
    fid = read_json(project / "metrics/fid_schedules.json")
    assert list(fid) == ["cosine", "linear", "square"]
    baselines = read_json(project / "metrics/fid_baselines.json")
    assert set(baselines) == {"masked_input", "harmonic", "onestep", "recon"}
    for entry in [*fid.values(), *baselines.values()]:
        assert math.isfinite(entry["fid"]) and entry["fid"] >= 0
    report = (project / "reports/report.md").read_text()
    for schedule in fid:
        assert schedule in report
    assert (project / "reports/figures").is_dir() and any((project / "reports/figures").glob("*.png"))
    # images in, images out, one per test image
    n_test = len(list((project / "data/prepared/test/gt").glob("*.png")))
    assert len(list((project / "outputs/inpaint/cosine/images").glob("*.png"))) == n_test
    assert "up to date" in run(["dvc", "status"], project, env).lower()


def test_two_runs_on_cpu_are_identical(tiny_project, tmp_path_factory):
    # a second, independent run of the same params and seeds: same tokens, the same
    # inpainted images bit for bit, the same FID (runs before the experiment below
    # changes the first project's outputs)
    first, _, _ = tiny_project
    second, _, _ = tiny_repro(tmp_path_factory.mktemp("again"))
    for name in ("train.npy", "val.npy", "test.npy", "test_unknown.npy"):
        assert (first / "data/tokens" / name).read_bytes() == (second / "data/tokens" / name).read_bytes(), name
    for schedule in ("cosine", "linear", "square"):
        a = sorted((first / "outputs/inpaint" / schedule / "images").glob("*.png"))
        b = sorted((second / "outputs/inpaint" / schedule / "images").glob("*.png"))
        assert [p.name for p in a] == [p.name for p in b] and a
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b)), schedule
    for name in ("fid_schedules.json", "fid_baselines.json"):
        assert read_json(first / "metrics" / name) == read_json(second / "metrics" / name)


def test_a_rerun_that_writes_the_same_images_does_not_rerun_fid(tiny_project):
    # timings go to timings/ (uncached), never into a stage's cached outputs: forced
    # re-runs of inpainting and the baselines write the same bytes, the output hashes
    # do not move, and DVC skips FID and plots (only the report shows the new timings)
    project, env, _ = tiny_project
    run(["dvc", "repro", "--force", "--single-item", "inpaint@cosine", "baselines"], project, env)
    out = run(["dvc", "repro"], project, env)
    for stage in ["fid_baselines", "fid", "plots"]:
        assert f"Running stage '{stage}'" not in out, f"{stage} re-ran after an identical re-run"
    assert "Running stage 'report'" in out
    timing = read_json(project / "timings/inpaint-cosine.json")
    assert timing["decode_seconds"] > 0 and "seconds" not in read_json(project / "outputs/inpaint/cosine/info.json")


def test_a_fixed_typo_costs_no_training(tiny_project):
    # a bad param fails the stage after DVC deleted its outputs; fixed, the earlier
    # result comes back from DVC's run cache (every non-metric output is cached) and
    # nothing trains again
    project, env, _ = tiny_project
    params = project / "params.yaml"
    good, model = params.read_text(), (project / "models/transformer.pt").read_bytes()
    head, tail = good.split("train_transformer:\n", 1)
    params.write_text(head + "train_transformer:\n" + tail.replace("  steps: ", "  steps: -", 1))
    failed = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert failed.returncode != 0
    assert "train_transformer.steps must be an integer >= 1" in failed.stdout + failed.stderr
    assert not (project / "models/transformer.pt").exists()  # DVC removed it before running
    params.write_text(good)
    out = run(["dvc", "repro"], project, env)
    assert "Stage 'train_transformer' is cached - skipping run" in out
    assert "Running stage" not in out, out
    assert (project / "models/transformer.pt").read_bytes() == model
    assert (project / "dvclive/transformer/metrics.json").is_file()
    assert (project / "timings/train_transformer.json").is_file()


def test_sweet_spot_experiment_reruns_only_inpainting(tiny_project):
    project, env, _ = tiny_project
    out = run(["dvc", "exp", "run", "-S", "inpaint.sweet_spot=2"], project, env)
    for stage in TRAINING_STAGES + ["baselines", "fid_reference", "fid_baselines"]:
        assert f"Running stage '{stage}'" not in out, f"{stage} re-ran"
    for stage in ["inpaint@cosine", "inpaint@linear", "inpaint@square", "fid", "plots", "report"]:
        assert f"Running stage '{stage}'" in out
    info = read_json(project / "outputs/inpaint/cosine/info.json")
    assert info["sweet_spot"] == 2
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=project, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    text = json.dumps(json.loads(shown.stdout))
    # every schedule's FID is listed per experiment
    assert "fid_schedules.json" in text and '"cosine"' in text and '"square"' in text



def test_lab_folders_with_the_pretrained_vqgan(tmp_path_factory):
    # a user's lab5-format folders and a pretrained lab-architecture VQGAN (the golden
    # file): the tokenizer is used as is, and FID comes out per schedule
    golden = SHARED / "lab5" / "vqgan_golden_small.pt"
    if not golden.is_file():
        pytest.skip(f"{golden} absent (../shared is not beside the project)")
    import numpy as np
    import torch
    import yaml
    from PIL import Image

    from maskgit.data.procedural import make_dataset, make_masks

    tmp = tmp_path_factory.mktemp("lab5")
    data = tmp / "lab5_dataset"
    images, known = make_dataset(7, 60), make_masks(8, 12)
    gt = images[48:]
    for folder, arrays in (("train", images[:40]), ("val", images[40:48]), ("gt", gt), ("mask64", known),
                           ("masked_image", np.where(known[..., None], gt, np.uint8(128)))):
        (data / folder).mkdir(parents=True)
        for i, a in enumerate(arrays):
            Image.fromarray(a.astype(np.uint8) * 255 if a.dtype == bool else a).save(data / folder / f"{i:04d}.png")
    config = torch.load(golden, weights_only=True)["config"]
    overrides = {
        "prepare": {"source": "folders", **{f"{k}_dir": str(data / v) for k, v in (
            ("train", "train"), ("val", "val"), ("test_masked", "masked_image"), ("test_mask", "mask64"),
            ("test_gt", "gt"))}},
        "vqgan": {**config, "norm_groups": 32, "checkpoint": str(golden)},
    }

    def customise(project):
        (project / "configs/user.yaml").write_text(yaml.safe_dump(overrides))
        return "user"

    project, env, out = tiny_repro(tmp, customise)
    assert "train_vqgan: no training, using" in out
    assert not (project / "dvclive/vqgan/plots").exists(), "no stage-1 training curves: nothing was trained"
    used = torch.load(project / "models/vqgan.pt", weights_only=False)["state_dict"]
    given = torch.load(golden, weights_only=True)["state_dict"]
    assert used.keys() == given.keys() and all(torch.equal(used[k], given[k]) for k in used)
    fid = read_json(project / "metrics/fid_schedules.json")
    assert list(fid) == ["cosine", "linear", "square"] and all(math.isfinite(v["fid"]) for v in fid.values())
    assert len(list((project / "data/prepared/test/gt").glob("*.png"))) == 12


def wait_for_queue(project, env, timeout=1200):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project, env)
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(3)
    raise AssertionError(f"the queue did not drain:\n{status}")


def test_queued_sweep_and_optuna_study_build_the_experiments_page(tiny_project):
    project, env, _ = tiny_project
    run(["dvc", "exp", "run", "--queue", "-S", "inpaint.total_iter=2,3,4", "-S", "inpaint.sweet_spot=4"], project, env)
    run(["dvc", "queue", "start", "-j", "1"], project, env)
    status = wait_for_queue(project, env)
    assert status.count("Success") >= 3 and "Failed" not in status, status
    # three trials of a learning-rate search, each a real experiment
    out = run(["python", "-m", "maskgit.tune", "--trials", "3", "--param", "train_transformer.lr",
               "--low", "1e-4", "--high", "1e-2", "--objective", "val_loss", "--study", "lr",
               "--set", "inpaint.sweet_spot=4"], project, env)
    assert out.count("trial ") >= 3
    page = (project / "reports/experiments.md").read_text()
    assert "## FID against inpaint.total_iter" in page and "**best**" in page
    section = page.split("## FID against inpaint.total_iter")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and "---" not in line][1:]
    assert sorted(int(r.split("|")[2]) for r in rows) == [2, 3, 4]  # one row per swept value
    assert (project / "reports/figures/experiments_inpaint_total_iter.png").is_file()
    study = read_json(project / "reports/study.json")
    assert len(study["trials"]) == 3 and "## Optuna study: train_transformer.lr (3 trials)" in page
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=project, env=env, capture_output=True, text=True)
    names = json.dumps(json.loads(shown.stdout))
    assert all(t["experiment"] in names for t in study["trials"])
    assert min(t["val_loss"] for t in study["trials"]) == study["best"]["objective"]
