"""Data-parallel training: two CPU processes (gloo) under torchrun.

The stage relaunches itself under torchrun when train_transformer.nproc_per_node > 1.
Each rank trains on its slice of the same global batch, so the replicas must agree
exactly, and the result must be the one-process run up to float summation order.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import stage_env
from test_resume import final_weights, make_project, run_stage, saved_step, tiny_params

STEPS = 12


def train(tmp_path, name, **changes):
    # no dropout: with it, N processes draw other dropout masks than one would
    params = tiny_params(steps=STEPS, eval_every=6, checkpoint_every=0, grad_accum=2, **changes)
    params["transformer"]["dropout"] = 0.0
    project = make_project(tmp_path / name, params)
    proc = run_stage(project, tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    metrics = json.loads((project / "dvclive" / "transformer" / "metrics.json").read_text())
    return project, metrics, err


def test_two_processes_agree_and_match_one(tmp_path):
    two, metrics, err = train(tmp_path, "two", nproc_per_node=2)
    assert metrics["processes"] == 2
    assert metrics["rank_max_weight_diff"] == 0.0  # every parameter of rank 1 equals rank 0's, bit for bit
    assert err.count("train_transformer: done") >= 2, "both ranks ran (each reports done)"
    one, single, _ = train(tmp_path, "one", nproc_per_node=1)
    assert single["processes"] == 1 and single["rank_max_weight_diff"] == 0.0
    a, b = final_weights(one, "train_transformer"), final_weights(two, "train_transformer")
    assert a.keys() == b.keys()
    # the same global batches and steps; only the order of float sums differs
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    assert abs(metrics["val_loss"] - single["val_loss"]) < 1e-3
    # only rank 0 writes: one model, one set of curves, no stray files from rank 1
    assert sorted(p.name for p in (two / "models").iterdir()) == ["transformer.pt"]
    timing = json.loads((two / "timings" / "train_transformer.json").read_text())
    assert timing["tokens_per_s"] > 0 and 0 < timing["mfu"] < 1 and "mfu" not in metrics


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_of_one_process_match_one_process(tmp_path):
    """Two "machines" (own folders, one process each) meet at a c10d rendezvous on
    127.0.0.1 and train with gloo, as two Slurm nodes would: one run, the weights of
    one process, written by one node only."""
    params = tiny_params(steps=STEPS, eval_every=6, checkpoint_every=0, grad_accum=2, nproc_per_node=1, nnodes=2,
                         rdzv_endpoint=f"127.0.0.1:{free_port()}")
    params["transformer"]["dropout"] = 0.0
    nodes = []
    for rank in (0, 1):
        project = make_project(tmp_path / f"node{rank}", params)
        env = {**stage_env(tmp_path), "NODE_RANK": str(rank)}
        nodes.append((project, subprocess.Popen([sys.executable, "stages/train_transformer.py"], cwd=project, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                start_new_session=True)))
    try:
        errs = [proc.communicate(timeout=600)[1] for _, proc in nodes]
    finally:
        for _, proc in nodes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert [proc.returncode for _, proc in nodes] == [0, 0], errs
    writers = [project for project, _ in nodes if (project / "models").exists()]
    assert len(writers) == 1, "exactly one node (rank 0's) writes the model"
    metrics = json.loads((writers[0] / "dvclive" / "transformer" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["rank_max_weight_diff"] == 0.0
    one, single, _ = train(tmp_path, "one", nproc_per_node=1)
    a, b = final_weights(one, "train_transformer"), final_weights(writers[0], "train_transformer")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_a_node_without_a_rank_stops_with_one_line(tmp_path):
    params = tiny_params(nnodes=2, rdzv_endpoint="127.0.0.1:1")
    project = make_project(tmp_path / "p", params)
    env = {k: v for k, v in stage_env(tmp_path).items() if k not in ("NODE_RANK", "SLURM_NODEID")}
    proc = subprocess.run([sys.executable, "stages/train_transformer.py"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "NODE_RANK" in proc.stderr.strip().splitlines()[-1] and not (project / "models").exists()


def test_run_started_on_one_process_resumes_on_two(tmp_path):
    """The checkpoint holds the one generator all ranks share, so moving a run
    from one process to two (or from 1 GPU to N) continues the same run."""
    params = tiny_params(steps=80, eval_every=20, checkpoint_every=20, nproc_per_node=1)
    params["transformer"]["dropout"] = 0.0
    whole = make_project(tmp_path / "whole", params)
    assert run_stage(whole, tmp_path).wait(timeout=600) == 0

    moved = make_project(tmp_path / "moved", params)
    proc = run_stage(moved, tmp_path)
    deadline = time.monotonic() + 600
    while saved_step(moved, "train_transformer") < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = saved_step(moved, "train_transformer")
    assert 0 < killed_at < 80 and not (moved / "models").exists(), "the kill came too late"
    (moved / "params.yaml").write_text(yaml.safe_dump({**params, "train_transformer": {
        **params["train_transformer"], "nproc_per_node": 2}}))
    proc = run_stage(moved, tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert f"resuming after step {killed_at}" in out and out.count("resuming") == 1  # rank 0 alone says it
    a, b = final_weights(whole, "train_transformer"), final_weights(moved, "train_transformer")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_batch_that_does_not_split_evenly_stops_before_work(tmp_path):
    params = tiny_params(batch_size=9, nproc_per_node=2)
    project = make_project(tmp_path / "p", params)
    proc = run_stage(project, tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "error: train_transformer: params.yaml: train_transformer.batch_size (9) must be divisible by "
        "train_transformer.nproc_per_node (2): each process takes an equal slice")
    assert not (project / "models").exists() and not (project / "dvclive").exists()


def test_a_failure_on_one_rank_stops_the_run_instead_of_hanging(tmp_path):
    """Rank 0 alone writes checkpoints; when that write fails, rank 1 is already in
    the next step's all-reduce. The failing rank must not wait for the others at
    teardown (they would never arrive): the run stops, nothing is written."""
    params = tiny_params(steps=40, eval_every=10, checkpoint_every=5, nproc_per_node=2)
    params["transformer"]["dropout"] = 0.0
    project = make_project(tmp_path / "p", params)
    (project / "checkpoints").mkdir()
    (project / "checkpoints" / "train_transformer").write_text("a file where the checkpoint folder goes")
    # own session: if the run hangs, the test kills torchrun and both ranks with it
    proc = subprocess.Popen([sys.executable, "stages/train_transformer.py"], cwd=project, env=stage_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("a failure on rank 0 left the run hanging")
    assert proc.returncode != 0
    assert "rank      : 0" in err  # torchrun names rank 0 as the root cause
    assert not (project / "models").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the NCCL backend and one GPU per rank")
def test_two_processes_on_gpus_agree(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    _, metrics, _ = train(tmp_path, "gpu", nproc_per_node=2)
    assert metrics["processes"] == 2 and metrics["rank_max_weight_diff"] == 0.0
