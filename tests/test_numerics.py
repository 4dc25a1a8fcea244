"""Portable mode (params.yaml `reproducibility`): its settings are in force before the
numeric libraries load, in the stage's process; the provenance names them; verify
finds the first stage whose outputs differ from a committed run and says why."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskgit import verify
from maskgit.pipeline import numerics
from maskgit.pipeline.errors import ParamError
from maskgit.pipeline.params import check_params, load_params

ROOT = Path(__file__).resolve().parents[1]
STAGES = sorted((ROOT / "stages").glob("*.py"))


def clean_env() -> dict:
    pinned = set(numerics.portable_env(1)) | {numerics.MARKER, numerics._RESTARTED}
    return {k: v for k, v in os.environ.items() if k not in pinned}


def params_file(tmp_path, mode, threads=1) -> Path:
    params = load_params(ROOT / "params.yaml")
    params["reproducibility"] = {"mode": mode, "threads": threads}
    (tmp_path / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
    return tmp_path


PROBE = """
import os, sys
sys.path.insert(0, {root!r})
{first}
from maskgit.pipeline import numerics
numerics.{call}()
import torch
print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), os.environ.get("OPENBLAS_CORETYPE"),
      os.environ.get(numerics.MARKER), flush=True)
"""


def probe(tmp_path, first: str, call: str, env: dict) -> str:
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(root=str(ROOT), first=first, call=call))
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_portable_mode_is_in_force_before_torch_loads_whatever_the_native_settings(tmp_path):
    params_file(tmp_path, "portable", threads=1)
    # the user's own settings (AVX-512 everywhere, another BLAS core, 2 threads) are overridden
    env = {**clean_env(), "ATEN_CPU_CAPABILITY": "default", "OPENBLAS_CORETYPE": "Zen", "OMP_NUM_THREADS": "2"}
    assert probe(tmp_path, "", "pin_numerics", env).split() == ["AVX2", "1", "Haswell", "portable"]


def test_a_stage_whose_process_loaded_torch_first_is_restarted_once_with_portable_settings(tmp_path):
    params_file(tmp_path, "portable", threads=1)
    env = {**clean_env(), "ATEN_CPU_CAPABILITY": "default"}
    # torch is imported before enter(): the process starts again (the probe's line is printed once)
    lines = probe(tmp_path, "import torch", "enter", env).splitlines()
    assert lines == ["AVX2 1 Haswell portable"]


def test_native_mode_leaves_the_libraries_to_their_own_choice(tmp_path):
    params_file(tmp_path, "native")
    env = {**clean_env(), "ATEN_CPU_CAPABILITY": "default", "OPENBLAS_CORETYPE": "Zen"}
    assert probe(tmp_path, "", "pin_numerics", env).split()[::2] == ["DEFAULT", "Zen"]


def test_every_stage_pins_the_numerics_before_importing_anything_else():
    for path in STAGES:
        body = [node for node in ast.parse(path.read_text()).body if not isinstance(node, ast.Expr)
                or not isinstance(node.value, ast.Constant)]
        first, second = body[0], body[1]
        assert isinstance(first, ast.ImportFrom) and first.module == "maskgit.pipeline.numerics", path.name
        assert isinstance(second, ast.Expr) and ast.unparse(second) == "pin_numerics()", path.name


def test_bf16_on_cpu_in_portable_mode_stops_with_one_line_naming_the_param(monkeypatch):
    monkeypatch.setenv(numerics.MARKER, "portable")
    with pytest.raises(ParamError, match=r"^params.yaml: inpaint.precision is bf16 on CPU in portable mode"):
        numerics.check_precision("bf16", torch.device("cpu"), "inpaint.precision")
    numerics.check_precision("fp32", torch.device("cpu"), "inpaint.precision")
    numerics.check_precision("bf16", torch.device("cuda"), "inpaint.precision")  # deterministic there
    monkeypatch.setenv(numerics.MARKER, "native")
    numerics.check_precision("bf16", torch.device("cpu"), "inpaint.precision")


@pytest.mark.parametrize("section, message", [
    ({"mode": "fast", "threads": 2}, "reproducibility.mode must be one of native, portable"),
    ({"mode": "portable", "threads": 0}, "reproducibility.threads must be an integer >= 1"),
])
def test_a_bad_reproducibility_param_is_one_line_naming_it(section, message):
    params = load_params(ROOT / "params.yaml")
    params["reproducibility"] = section
    with pytest.raises(ParamError, match=message):
        check_params(params)


def test_the_provenance_names_every_field_that_decides_the_bits():
    env = numerics.environment()
    for field in ("mode", "cpu", "cpu_flags", "aten_capability", "onednn_max_isa", "mkl_cbwr", "blas",
                  "torch_threads", "numpy_disabled_features", "torch", "numpy", "scipy", "pillow"):
        assert field in env, field
    assert env["aten_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["torch_threads"] == torch.get_num_threads()


# ---------------------------------------------------------------------------
# verify, on a committed lock and a workspace that differs from it
# ---------------------------------------------------------------------------

def lock(prepared: str, vqgan: str, tokens: str) -> dict:
    def stage(deps, outs, timing):
        return {"cmd": "x", "deps": [{"path": d, "md5": "d"} for d in deps],
                "outs": [{"path": p, "md5": h} for p, h in outs] + [{"path": f"timings/{timing}.json", "md5": "t"}]}
    # listed out of run order, as dvc.lock may be
    return {"schema": "2.0", "stages": {
        "tokenize": stage(["models/vqgan.pt", "data/prepared"], [("data/tokens", tokens)], "tokenize"),
        "prepare": stage(["stages/prepare.py"], [("data/prepared", prepared)], "prepare"),
        "train_vqgan": stage(["data/prepared/train"], [("models/vqgan.pt", vqgan)], "train_vqgan"),
    }}


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def committed_run(tmp_path):
    repo = tmp_path / "repo"
    for path in ("data/prepared", "data/tokens", "models", "reports", "timings"):
        (repo / path).mkdir(parents=True)
    (repo / "models/vqgan.pt").write_bytes(b"")
    (repo / "dvc.lock").write_text(json.dumps(lock("p1", "v1", "t1")))
    numerics_there = {"mode": "portable", "aten_capability": "AVX2", "torch_threads": 2, "cpu": "A"}
    (repo / "reports/provenance.json").write_text(json.dumps(
        {"stages": {name: numerics_there for name in ("prepare", "train_vqgan", "tokenize")}}))
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "run", "--allow-empty")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "run")
    return repo, numerics_there


def test_verify_passes_a_clone_that_reproduces_every_stage(committed_run):
    repo, _ = committed_run
    same, lines = verify.verify(repo, "HEAD")
    assert same and lines[-1].startswith("every stage's outputs match")


def test_verify_names_the_first_differing_stage_in_run_order_and_the_field_that_differs(committed_run):
    repo, there = committed_run
    # run here natively: the same data, another VQGAN, hence other tokens
    (repo / "dvc.lock").write_text(json.dumps(lock("p1", "v2", "t2")))
    here = {**there, "mode": "native", "aten_capability": "AVX512"}
    (repo / "timings/train_vqgan.json").write_text(json.dumps({"stage": "train_vqgan", "numerics": here}))
    same, lines = verify.verify(repo, "HEAD")
    assert not same
    assert lines[:2] == ["prepare: identical", "train_vqgan: differs (models/vqgan.pt)"]
    assert lines[-1] == "first difference: train_vqgan"
    text = "\n".join(lines)
    assert "mode: 'portable' there, 'native' here" in text and "aten_capability: 'AVX2' there, 'AVX512' here" in text
    assert "cpu:" not in text and "torch_threads" not in text  # the same on both sides: not named


def test_libraries_listed_in_another_load_order_are_the_same_field():
    there = {"blas": "openblas 0.3.31 (Haswell, 1 threads); openblas 0.3.30 (Haswell, 1 threads)"}
    here = {"blas": "openblas 0.3.30 (Haswell, 1 threads); openblas 0.3.31 (Haswell, 1 threads)"}
    assert verify.differing_fields(there, here) == []
    here["blas"] = "openblas 0.3.30 (SkylakeX, 1 threads); openblas 0.3.31 (Haswell, 1 threads)"
    assert len(verify.differing_fields(there, here)) == 1


def test_verify_says_when_the_outputs_are_not_here(committed_run):
    repo, _ = committed_run
    (repo / "models/vqgan.pt").unlink()
    same, lines = verify.verify(repo, "HEAD")
    assert not same and "train_vqgan: outputs not here (models/vqgan.pt)" in lines[1]


def test_verify_without_a_committed_lock_is_one_line(tmp_path, capsys):
    git(tmp_path, "init", "-q")
    with pytest.raises(SystemExit) as e:
        verify.main(["--repo", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: verify: dvc.lock: not found at revision 'HEAD'") and "\n" not in err
