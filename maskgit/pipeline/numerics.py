"""What decides the bits of a result, and the portable mode that pins it
(params.yaml `reproducibility`; docs/reproducibility.md).

On CPU the last bits of a float result depend on the kernels the numeric libraries
pick for the CPU they find: ATen's vector width, oneDNN's ISA, MKL's and OpenBLAS's
BLAS kernels, numpy's SIMD loops, and the intra-op thread count (a parallel sum adds
its parts in an order that depends on it). Training amplifies a last bit into another
model. `native` lets every library use the best the CPU has; `portable` caps them all
at AVX2 (MKL on its vendor-neutral COMPATIBLE branch) and fixes the threads, so that the
same params give the same bytes whichever x86-64 CPU with AVX2 runs them: checked
between AMD EPYC machines so far (docs/reproducibility.md says where).

The libraries read these settings when they load, so they must be in the environment
before numpy or torch is imported, in every process: a stage script calls
`pin_numerics()` before its other imports (tests/test_stage_deps.py checks it), and
`run_stage` re-starts a stage whose process loaded them first (`enter`). Child
processes (torchrun workers, DataLoader workers) inherit the environment.

No numpy or torch import at module level: this module runs before them.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from maskgit.choices import REPRODUCIBILITY as MODES
from maskgit.project.errors import ParamError
from maskgit.project.yamlio import parse_yaml

# numpy's dispatch groups above AVX2 (numpy >= 2.4 names, then older ones): disabled,
# numpy runs its AVX2 (x86-64-v3) loops on every CPU that has AVX2
_NUMPY_ABOVE_AVX2 = ("X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX "
                     "AVX512_CLX AVX512_CNL AVX512FP16")

# set by pin_numerics / enter once the environment below is in force for this process
MARKER = "MASKGIT_NUMERICS"

_RESTARTED = "MASKGIT_NUMERICS_RESTARTED"

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def portable_env(threads: int) -> dict[str, str]:
    """The environment of portable mode: every numeric library capped at AVX2, the
    thread count fixed. Each variable is read when its library loads."""
    return {
        "ATEN_CPU_CAPABILITY": "avx2",          # ATen's vectorised CPU kernels
        "ONEDNN_MAX_CPU_ISA": "AVX2",           # convolutions and matmuls through oneDNN
        "DNNL_MAX_CPU_ISA": "AVX2",             # the same, oneDNN's older name
        # MKL's conditional numerical reproducibility, on its COMPATIBLE branch (SSE2
        # without the approximate rcpps/rsqrtps): Intel documents that a CPU-specific
        # branch such as AVX2 falls back to AUTO on a non-Intel CPU, so Intel and AMD
        # would run different kernels (docs/reproducibility.md)
        "MKL_CBWR": "COMPATIBLE",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",         # numpy's and scipy's OpenBLAS: the AVX2 kernels
        "NPY_DISABLE_CPU_FEATURES": _NUMPY_ABOVE_AVX2,
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",    # deterministic cuBLAS (read at the first CUDA matmul)
        **{var: str(threads) for var in THREAD_VARS},
    }


def read_setting(params_path: str | Path = "params.yaml") -> dict:
    """The `reproducibility` section of params.yaml, without checking the rest (the
    stage's load_params does that): {'mode', 'threads'}. A missing or unreadable
    file or section reads as native, and the stage's own check then says what is wrong."""
    try:
        section = parse_yaml(Path(params_path).read_text()).get("reproducibility")
        mode, threads = section["mode"], section["threads"]
    except Exception:  # noqa: BLE001 - any problem is reported by load_params, with its file and key
        return {"mode": "native", "threads": None}
    if mode not in MODES or isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        return {"mode": "native", "threads": None}
    return {"mode": mode, "threads": threads}


def wanted_env(setting: dict) -> dict[str, str]:
    return portable_env(setting["threads"]) if setting["mode"] == "portable" else {}


def _in_force(setting: dict) -> bool:
    return all(os.environ.get(k) == v for k, v in wanted_env(setting).items())


def pin_numerics(params_path: str | Path = "params.yaml") -> None:
    """Put portable mode's environment in place for this process and its children,
    when params.yaml asks for it and numpy and torch are not loaded yet. Called by
    every stage script before its other imports; later, `enter` checks the result."""
    if "numpy" in sys.modules or "torch" in sys.modules:
        return  # too late in this process: enter() re-starts it
    setting = read_setting(params_path)
    os.environ.update(wanted_env(setting))
    os.environ[MARKER] = setting["mode"]


def enter(params_path: str | Path = "params.yaml") -> None:
    """At the start of a stage (run_stage): if portable mode's environment is not in
    force, because a library loaded before pin_numerics ran, start the same command
    again with it; then apply the settings torch takes at run time."""
    setting = read_setting(params_path)
    if not _in_force(setting):
        argv = getattr(sys, "orig_argv", [])
        # re-startable: this process is `python ... <the stage script> ...`, once
        if sys.argv[0] in argv[1:] and not os.environ.get(_RESTARTED):
            env = {**os.environ, **wanted_env(setting), MARKER: setting["mode"], _RESTARTED: "1"}
            sys.stdout.flush()
            sys.stderr.flush()
            os.execve(sys.executable, [sys.executable, *argv[1:]], env)
        # run inside another program (runpy in a test): it cannot be re-started
        print(f"reproducibility: {setting['mode']} mode could not be put in force in this process "
              "(numpy or torch loaded first); its numerics are native", file=sys.stderr)
        setting = {"mode": "native", "threads": None}
    _torch_settings(setting)
    os.environ[MARKER] = setting["mode"]


def check_precision(precision: str, device, key: str) -> None:
    """bf16 on CPU in portable mode stops with one line: capped at AVX2, torch has no
    bf16 matmul kernel and runs an emulated one, far slower than fp32
    (docs/reproducibility.md). On CUDA bf16 is as deterministic as fp32."""
    if precision == "bf16" and device.type == "cpu" and os.environ.get(MARKER) == "portable":
        raise ParamError(f"params.yaml: {key} is bf16 on CPU in portable mode (reproducibility.mode): capped at "
                         "AVX2, bf16 matmuls run an emulated kernel far slower than fp32; use fp32, or mode native")


def _torch_settings(setting: dict) -> None:
    import torch

    if setting["mode"] != "portable":
        return
    torch.set_num_threads(setting["threads"])
    # on CUDA: the deterministic kernels (and an error for an op that has none). Only
    # there: on CPU every kernel this project uses is deterministic already, and the call
    # imports torch's compiler, a second or more for every stage process
    if torch.cuda.is_available():
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    # TF32 rounds float32 matmul inputs to 10 mantissa bits, on Ampere and later only
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


# ---------------------------------------------------------------------------
# provenance: the fields that decide the bits, recorded by every stage
# ---------------------------------------------------------------------------

_ISA_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
              "avx512_fp16", "amx_tile", "amx_bf16")
# every package that computes or writes a byte of a result (pinned in pyproject.toml)
_PACKAGES = ("torch", "numpy", "scipy", "pillow", "torchvision", "torch-fidelity", "torchmetrics", "matplotlib",
             "pandas", "dvclive", "threadpoolctl")


def _cpu() -> tuple[str, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model, flags = "unknown", []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            have = set(value.split())
            flags = [f for f in _ISA_FLAGS if f in have]
    return model, flags


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def environment() -> dict:
    """Every field that decides the bits of this process's results, as found now."""
    import threadpoolctl
    import torch

    cpu_model, flags = _cpu()
    blas = [{k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"]
    env = {
        "mode": os.environ.get(MARKER, "native"),
        "cpu": cpu_model,
        "cpu_flags": " ".join(flags),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "uncapped"),
        "mkl_cbwr": os.environ.get("MKL_CBWR", "unset"),
        "numpy_disabled_features": os.environ.get("NPY_DISABLE_CPU_FEATURES", "none"),
        # sorted: the libraries are listed in the order they were loaded, which varies by stage
        "blas": "; ".join(sorted(f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} threads)"
                                 for b in blas)) or "none found",
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        **_versions(),
    }
    if torch.cuda.is_initialized():
        env.update(gpu=torch.cuda.get_device_name(torch.cuda.current_device()), cuda=torch.version.cuda,
                   cudnn=str(torch.backends.cudnn.version()), tf32=torch.backends.cuda.matmul.allow_tf32)
    return env
