"""Portable mode (params.yaml `reproducibility`): its settings are in force before the
numeric libraries load, in the stage's process, and the provenance names them
(maskgit.verify, which reads them, is tests/test_verify.py's)."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskgit.pipeline import numerics
from maskgit.project.errors import ParamError
from maskgit.project.params import check_params, load_params

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


NUMPY_FIRST = """
import os, sys
sys.path.insert(0, {root!r})
import numpy  # a stage that loads numpy before the pin: its OpenBLAS has picked its kernels already
from maskgit.pipeline import numerics
numerics.pin_numerics()
numerics.enter()
import threadpoolctl
print([i["architecture"] for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"],
      os.environ.get(numerics._RESTARTED), flush=True)
"""


def test_a_stage_whose_process_loaded_numpy_first_is_restarted_with_openblas_pinned(tmp_path):
    params_file(tmp_path, "portable", threads=1)
    script = tmp_path / "numpy_first.py"
    script.write_text(NUMPY_FIRST.format(root=str(ROOT)))
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**clean_env(), "OPENBLAS_CORETYPE": "Zen"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # printed once, by the restarted process, whose numpy loaded with the pin in force
    assert out.stdout.splitlines() == ["['Haswell'] 1"], out.stdout


MATMUL = """
import hashlib, os, sys
sys.path.insert(0, {root!r})
if {pin}:
    from maskgit.pipeline import numerics
    numerics.pin_numerics()
import torch
torch.manual_seed(0)
a, b = torch.randn(256, 768), torch.randn(768, 768)  # the transformer's shapes: MKL's sgemm
print(os.environ.get("MKL_CBWR"), hashlib.sha256((a @ b).numpy().tobytes()).hexdigest())
"""


def matmul_bytes(tmp_path, env, pin: bool) -> tuple[str, str]:
    script = tmp_path / f"matmul_{pin}.py"
    script.write_text(MATMUL.format(root=str(ROOT), pin=pin))
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return tuple(out.stdout.split())


def test_the_pin_puts_mkl_on_its_vendor_neutral_branch(tmp_path):
    # on a non-Intel CPU MKL takes a CPU-specific branch (AVX2) for its AUTO one, and so
    # does an unset MKL_CBWR: the pin must put MKL on COMPATIBLE, whose products differ
    params_file(tmp_path, "portable", threads=1)
    pinned = matmul_bytes(tmp_path, clean_env(), pin=True)
    others = {k: v for k, v in numerics.portable_env(1).items() if k != "MKL_CBWR"}
    compatible = matmul_bytes(tmp_path, {**clean_env(), **others, "MKL_CBWR": "COMPATIBLE"}, pin=False)
    unset = matmul_bytes(tmp_path, {**clean_env(), **others}, pin=False)
    assert pinned == compatible and pinned[0] == "COMPATIBLE"
    assert unset[1] != compatible[1], "MKL gave COMPATIBLE's bytes without it: this check sees nothing here"


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
