"""Stages keep freed memory (maskgit.algorithms.devices.keep_freed_memory): a training step's large
temporaries reuse pages already mapped instead of faulting them in afresh.

Measured in child processes, each with a fresh allocator: mallopt changes the process
for good, and the test process's own allocations would blur the counts."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, stage_env
from maskgit.algorithms.devices import glibc

CHILD = """
import resource, sys
import torch
from maskgit.models.transformer import BidirectionalTransformer
from maskgit.algorithms.devices import keep_freed_memory

said = keep_freed_memory() if sys.argv[1] == "keep" else "default"
torch.manual_seed(0)
# narrow, but at the real sequence length and batch: each layer's attention scores, 32 x 4
# heads x 256 x 256 float32, pass glibc's largest mmap threshold (32 MiB) as in training
model = BidirectionalTransformer(16, 256, {"dim": 32, "n_layers": 2, "n_heads": 4, "mlp_dim": 64, "dropout": 0.0,
                                           "attention": "manual", "norm_first": False, "pos_init": "sincos"})
tokens = torch.randint(0, 16, (32, 256))

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def step():
    model(tokens).sum().backward()

for _ in range(3):  # the heap grows to the step's peak once
    step()
before = faults()
for _ in range(2):
    step()
print(faults() - before, said)
"""


def faults_of(setting: str) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-c", CHILD, setting], capture_output=True, text=True, check=True)
    count, said = out.stdout.strip().split(" ", 1)
    return int(count), said


@pytest.mark.skipif(glibc() is None, reason="mallopt is glibc's; other C libraries keep their own policy")
def test_freed_memory_is_reused_without_page_faults():
    default, _ = faults_of("default")
    kept, said = faults_of("keep")
    # glibc's default maps the scores afresh every step: a fault per page touched (fewer
    # where the kernel backs them with huge pages); kept, the steps reuse the heap's pages
    assert default > 0
    assert kept * 10 < default, (kept, default)
    assert said.endswith("freed memory kept") and said.startswith("glibc")


def test_other_c_libraries_keep_their_policy(monkeypatch):
    from maskgit.algorithms import devices

    monkeypatch.setattr(devices, "glibc", lambda: None)
    assert devices.keep_freed_memory() == "system default (not glibc)"


STAGE = """import sys
from maskgit.pipeline.runtime import run_stage

run_stage(lambda: None, sys.argv[1], keep_memory=sys.argv[2] == "keep")
"""


@pytest.mark.skipif(glibc() is None, reason="mallopt is glibc's; other C libraries keep their own policy")
@pytest.mark.parametrize("setting", ["keep", "default"])
def test_a_stage_records_the_malloc_it_ran_under(tmp_path, setting):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "stage.py").write_text(STAGE)
    env = {**stage_env(tmp_path), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "stage.py", "probe", setting], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    malloc = json.loads((tmp_path / "timings/probe.json").read_text())["malloc"]
    assert malloc.endswith("freed memory kept") if setting == "keep" else malloc == "default"
