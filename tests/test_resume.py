"""Interrupted training continues where it stopped; a diverging run stops cleanly.

The transformer stage runs as a subprocess in a scratch project on synthetic
token grids (the stage reads only data/tokens/{train,val}.npy and params.yaml).
"""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, stage_env
from maskgit.project.files import write_images
from maskgit.data.procedural import make_dataset
from maskgit.pipeline.resume import Resumable, TrainingDiverged, fingerprint

# per stage: steps, checkpoint_every, eval/log interval
RUNS = {"train_transformer": (240, 20, 40), "train_vqgan": (60, 10, 10)}


def tiny_params(**train_changes) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["reproducibility"]["threads"] = 1  # the suite gives each xdist worker one core
    params["vqgan"].update(num_codebook_vectors=16, enc_channels=[16, 16, 16, 16], dec_channels=[16, 16, 16],
                           latent_dim=8, norm_groups=4)
    params["transformer"].update(dim=32, n_layers=2, n_heads=2, mlp_dim=64, dropout=0.1)  # dropout: global RNG used
    steps, every, log = RUNS["train_transformer"]
    params["train_transformer"].update({**dict(steps=steps, batch_size=8, warmup_steps=5, eval_every=log,
                                               checkpoint_every=every, precision="fp32"), **train_changes})
    # the codebook's k-means init (step 16) and restarts (every 10) happen on both sides of the kill
    steps, every, log = RUNS["train_vqgan"]
    params["train_vqgan"].update(steps=steps, batch_size=4, continuous_steps=15, log_every=log, restart_every=10,
                                 checkpoint_every=every)
    return params


def make_project(path, params, stage="train_transformer"):
    rng = np.random.default_rng(0)
    if stage == "train_transformer":
        (path / "data" / "tokens").mkdir(parents=True)
        # learnable structure: every row of a grid repeats one token
        for split, n in (("train", 64), ("val", 16)):
            rows = rng.integers(0, 16, size=(n, 16, 1))
            grids = np.repeat(rows, 16, axis=2).reshape(n, 256).astype(np.int16)
            np.save(path / "data" / "tokens" / f"{split}.npy", grids)
    else:
        images = make_dataset(0, 40, palette_size=8)
        write_images(path / "data" / "prepared" / "train", images[:32])
        write_images(path / "data" / "prepared" / "val", images[32:])
    (path / "stages").mkdir()
    (path / "stages" / f"{stage}.py").write_text((ROOT / "stages" / f"{stage}.py").read_text())
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    return path


def run_stage(project, tmp_path, stage="train_transformer"):
    return subprocess.Popen([sys.executable, f"stages/{stage}.py"], cwd=project, env=stage_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def saved_step(project, stage):
    path = project / "checkpoints" / stage / "last.pt"
    try:
        return torch.load(path, weights_only=False)["step"]
    except Exception:  # not there yet (the save is atomic, so never half-written)
        return 0


def final_weights(project, stage):
    name = "transformer" if stage == "train_transformer" else "vqgan"
    return torch.load(project / "models" / f"{name}.pt", weights_only=False)["state_dict"]


@pytest.mark.parametrize("stage", list(RUNS))
def test_killed_run_resumes_to_the_same_weights(tmp_path, stage):
    steps, every, log = RUNS[stage]
    params = tiny_params()
    whole = make_project(tmp_path / "whole", params, stage)
    proc = run_stage(whole, tmp_path, stage)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert not (whole / "checkpoints" / stage / "last.pt").exists(), "a finished run leaves no checkpoint"

    broken = make_project(tmp_path / "broken", params, stage)
    proc = run_stage(broken, tmp_path, stage)
    deadline = time.monotonic() + 600
    while saved_step(broken, stage) < 2 * every and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # in the middle of the run, no chance to clean up
    proc.communicate()
    killed_at = saved_step(broken, stage)
    assert 0 < killed_at < steps and not (broken / "models").exists(), "the kill came too late"
    name = stage.removeprefix("train_")
    assert not (broken / "dvclive" / name).exists(), "a killed run published curves"

    proc = run_stage(broken, tmp_path, stage)  # the same command again
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert f"resuming after step {killed_at}" in out
    a, b = final_weights(whole, stage), final_weights(broken, stage)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the curves are complete: one row per log, none repeated or lost
    assert not (broken / "dvclive" / f".{name}.partial").exists()
    for tsv in sorted((whole / "dvclive" / name / "plots" / "metrics").rglob("*.tsv")):
        ref = tsv.read_text().strip().splitlines()
        got = (broken / tsv.relative_to(whole)).read_text().strip().splitlines()
        assert [r.split("\t")[1:] for r in got] == [r.split("\t")[1:] for r in ref], tsv.name
    loss = (broken / "dvclive" / name / "plots" / "metrics" / "train" / "loss.tsv").read_text().strip().splitlines()
    assert len(loss) == steps // log + 1  # header + one row per log


def test_checkpoint_of_other_params_is_not_resumed(tmp_path, capsys):
    r = Resumable("train_transformer", "key-a", every=5, root=tmp_path)
    r.save(5, {"model": {}})
    assert Resumable("train_transformer", "key-a", 5, root=tmp_path).load()["step"] == 5
    assert Resumable("train_transformer", "key-b", 5, root=tmp_path).load() is None
    assert "starting afresh" in capsys.readouterr().out
    assert fingerprint({"lr": 1e-3}) != fingerprint({"lr": 2e-3}) and fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert r.due(10) and not r.due(11) and not Resumable("x", "k", 0, root=tmp_path).due(10)


@pytest.mark.parametrize("damage", ["truncated", "empty", "not torch", "a tensor"])
def test_an_unreadable_checkpoint_is_set_aside_with_one_line(tmp_path, capsys, damage):
    r = Resumable("train_transformer", "key-a", every=5, root=tmp_path)
    r.save(5, {"model": {"w": torch.zeros(1000)}})
    data = r.path.read_bytes()
    if damage == "a tensor":
        torch.save(torch.zeros(3), r.path)
    else:
        r.path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "not torch": b"hello"}[damage])
    assert r.load() is None  # a fresh start, not a traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(r.path) in err[0] and "unreadable" in err[0] and "starting afresh" in err[0], err
    assert not r.path.exists() and r.path.with_name("last.pt.unreadable").is_file()


def test_nan_loss_stops_with_step_and_last_checkpoint(tmp_path):
    r = Resumable("train_transformer", "k", every=5, root=tmp_path)
    r.check_finite(torch.tensor(1.5), 3)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 4; nothing written; last good checkpoint: none"):
        r.check_finite(torch.tensor(float("nan")), 3)
    r.save(5, {})
    with pytest.raises(TrainingDiverged, match=r"at step 8; .*last.pt \(step 5\)"):
        r.check_finite(torch.tensor(float("inf")), 7)


def test_diverging_stage_exits_with_one_line_and_no_model(tmp_path):
    # an absurd learning rate drives the weights to inf within a few steps
    project = make_project(tmp_path / "p", tiny_params(lr=1.0e30, grad_clip=0.0, warmup_steps=1))
    proc = run_stage(project, tmp_path)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: train_transformer: loss is") and "at step" in line and "Traceback" not in err
    assert not (project / "models" / "transformer.pt").exists()


@pytest.mark.parametrize("change, expected", [
    ({"codebook_size": 32}, "predicts 32 codes but the tokenizer has 16 (vqgan.num_codebook_vectors)"),
    ({"num_tokens": 64}, "takes 64 tokens per image but the tokenizer gives 256"),
    (None, "is not a transformer.pt written by this project"),
])
def test_transformer_checkpoint_must_fit_the_tokenizer(tmp_path, change, expected):
    from maskgit.models.transformer import BidirectionalTransformer

    params = tiny_params()
    cfg = params["transformer"]
    good = {"config": cfg, "codebook_size": 16, "num_tokens": 256,
            "state_dict": BidirectionalTransformer(16, 256, cfg).state_dict()}
    if change is None:
        ckpt = {"weights": good["state_dict"]}
    else:
        ckpt = {**good, **change}
        ckpt["state_dict"] = BidirectionalTransformer(ckpt["codebook_size"], ckpt["num_tokens"], cfg).state_dict()
    torch.save(ckpt, tmp_path / "elsewhere.pt")
    params["transformer"]["checkpoint"] = str(tmp_path / "elsewhere.pt")
    project = make_project(tmp_path / "p", params)
    proc = run_stage(project, tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: train_transformer: transformer.checkpoint: ") and expected in line, line
    assert not (project / "models").exists()

    torch.save(good, tmp_path / "elsewhere.pt")  # the matching one is used as is, nothing trained
    proc = run_stage(project, tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    used = torch.load(project / "models/transformer.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(used[k], good["state_dict"][k]) for k in used)
    assert not (project / "dvclive").exists()


def test_equal_checkpoints_are_equal_bytes(tmp_path):
    """Models are saved under a temporary name and moved: the bytes must not depend
    on that name, or DVC sees a changed model after every identical run."""
    from maskgit.project.files import save_torch

    state = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "steps": 3}
    save_torch(tmp_path / "a.pt", state)
    save_torch(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt")["state_dict"]["w"], state["state_dict"]["w"])
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    """A crash while a file is written (here: an object torch cannot pickle, after
    some bytes went out) must leave the previous file intact and nothing beside it."""
    from maskgit.project.files import atomic_file, save_torch

    target = tmp_path / "model.pt"
    save_torch(target, {"steps": 1})
    before = target.read_bytes()
    with pytest.raises(Exception):
        save_torch(target, {"steps": 2, "bad": lambda: None})
    assert target.read_bytes() == before
    with pytest.raises(RuntimeError, match="disk"):
        with atomic_file(tmp_path / "new.npy") as f:
            f.write(b"partial")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_an_image_folder_that_fails_halfway_keeps_the_old_folder(tmp_path):
    """Image folders are written a batch at a time (inpainting streams): a crash
    after some batches went out leaves the previous folder as it was and no
    temporary sibling; a finished build replaces it whole (stale files gone)."""
    from maskgit.project.files import image_folder, read_images, write_images

    folder = tmp_path / "images"
    old = np.zeros((2, 8, 8, 3), np.uint8)
    write_images(folder, old, ["a.png", "b.png"])
    with pytest.raises(RuntimeError, match="killed"):
        with image_folder(folder) as write:
            write(np.full((1, 8, 8, 3), 255, np.uint8), ["a.png"])
            raise RuntimeError("killed between batches")
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png"]
    assert np.array_equal(read_images(folder), old)
    new = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    with image_folder(folder) as write:
        write(new[:1], ["c.png"])
        write(new[1:], ["d.png"])
    assert sorted(p.name for p in folder.iterdir()) == ["c.png", "d.png"]
    assert np.array_equal(read_images(folder), new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


@pytest.mark.parametrize("stage", list(RUNS))
def test_a_batch_that_cannot_fit_is_refused_before_any_allocation(tmp_path, stage):
    section = stage
    params = tiny_params()
    params[section]["batch_size"] = 10**9
    project = make_project(tmp_path / "p", params, stage)
    proc = run_stage(project, tmp_path, stage)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{section}.batch_size 1000000000 needs at least" in lines[0] and "GiB free" in lines[0]
    assert not (project / "models").exists() and not (project / "dvclive").exists()
