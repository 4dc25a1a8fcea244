"""tools/gpu_check.py, the prepared GPU check, on a CPU: its dry run takes every path
that needs no CUDA (docs/gpu.md, "The prepared GPU check"), so that a lent GPU
machine's few minutes are not spent finding a bug in it. What tools/gpu_prepare.py
makes here (the weight parts, the calls that carry them, the wheels), the copy of the
project without git and a phase stopped at its budget are checked apart, in seconds."""

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest

from conftest import ROOT

MIB = 1 << 20


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # gpu_check imports gpu_prepare by its name, found in tools/ when run as a script
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_prepare = load_tool("gpu_prepare")
gpu_check = load_tool("gpu_check")


def tool(name, *args, timeout=1200):
    env = {k: v for k, v in os.environ.items() if k != "MASKGIT_DEBUG"}
    return subprocess.run([sys.executable, str(ROOT / "tools" / f"{name}.py"), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def fake_weights(tmp_path, size=3 * MIB + 123):
    path = tmp_path / "weights.pth"
    path.write_bytes(os.urandom(size))
    return path


# -- the weights in parts ----------------------------------------------------------------

def test_split_parts_join_to_the_same_bytes_and_a_joined_file_is_reused(tmp_path):
    source = fake_weights(tmp_path)
    manifest = gpu_prepare.split_weights(source, tmp_path / "parts", MIB)
    sizes = [p["size"] for p in manifest["parts"]]
    assert len(sizes) == 4 and set(sizes[:-1]) == {MIB} and manifest["size"] == source.stat().st_size
    joined, info = gpu_check.join_weights(tmp_path / "parts")
    assert joined.read_bytes() == source.read_bytes() and info["joined"] == "joined now"
    assert gpu_check.join_weights(tmp_path / "parts")[1]["joined"] == "already joined"


@pytest.mark.parametrize("damage", ["flip", "missing"])
def test_a_damaged_or_missing_part_is_refused_in_one_line_before_anything_runs(tmp_path, damage):
    parts = tmp_path / "parts"
    assert tool("gpu_prepare", "split", fake_weights(tmp_path), "--into", parts, "--part-mib", 1).returncode == 0
    part = parts / "weights.pth.gz.part-01"
    if damage == "flip":
        data = bytearray(part.read_bytes())
        data[1000] ^= 1
        part.write_bytes(bytes(data))
    else:
        part.unlink()
    result = tool("gpu_check", "run", "--dry-run", "--out", tmp_path / "out", "--weights-parts", parts, "--work",
                  tmp_path / "w")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: gpu_check: ") and "part-01" in lines[0], lines
    assert ("damaged" if damage == "flip" else "missing") in lines[0]
    assert not (tmp_path / "out" / "gpu_check.json").exists()
    assert not (parts / "weights.pth").exists()  # nothing joined from a bad part


# -- what travels ------------------------------------------------------------------------------

def test_the_calls_carry_every_part_once_within_the_limits():
    # this checkout, the wheels and the weights compressed, as prepared on 2026-12-07
    tree, wheels, weights = int(4.4 * MIB), int(27.2 * MIB), int(77.3 * MIB)
    size = gpu_prepare.best_part_size(weights, tree, wheels)
    parts = [(f".gpu/inception/w.part-{i:02d}", min(size, weights - i * size)) for i in range(-(-weights // size))]
    calls = gpu_prepare.plan_calls(tree, wheels, parts, ".gpu/inception/manifest.json")
    assert len(calls) == 2 and size <= 40 * MIB  # fewer cannot carry 104.5 MiB at 57.6 a call
    carried = [path for call in calls for path in call["carry"]]
    assert sorted(p for p in carried if ".part-" in p) == sorted(p for p, _ in parts)
    assert {".gpu/wheels", ".gpu/inception/manifest.json"} <= set(calls[-1]["carry"])
    for call in calls:
        assert tree + call["bytes"] <= 64 * MIB and len(call["carry"]) <= 8
    # heavier wheels: a third call, still within the limit each
    calls = gpu_prepare.plan_calls(tree, 45 * MIB, parts, "m")
    assert len(calls) == 3 and all(tree + c["bytes"] <= 64 * MIB for c in calls)
    with pytest.raises(gpu_prepare.UserError, match="cannot travel"):
        gpu_prepare.plan_calls(tree, wheels, [("huge", 60 * MIB)], "m")


def test_the_wheels_are_each_dependency_once_and_none_the_machine_has():
    pins = gpu_prepare.wheel_pins()
    names = [p.split("==")[0] for p in pins]
    assert len(names) == len(set(names)) and all("==" in p for p in pins)
    assert {"dvc", "dvclive", "torch-fidelity", "ruamel-yaml", "lpips", "dvc-data", "scmrepo"} <= set(names)
    assert not set(names) & gpu_prepare.MACHINE_PACKAGES


def test_the_copy_lists_without_git_what_git_lists():
    # the GPU machine's copy of the tree may come without .git: the .gitignore files
    # then say what is the project and what a run left
    assert gpu_prepare.project_files(ROOT, use_git=False) == gpu_prepare.project_files(ROOT)


# -- budgets ----------------------------------------------------------------------------------

def test_a_command_past_its_deadline_is_stopped_with_its_children(tmp_path):
    run = gpu_check.Runner(dict(os.environ))
    pid_file = tmp_path / "child.pid"
    cmd = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; echo started; wait"]
    start = time.monotonic()
    outcome = run(cmd, tmp_path, tmp_path / "log", time.monotonic() + 1.5)
    assert outcome["cut"] and outcome["returncode"] is None and time.monotonic() - start < 15
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{child}") or "zombie" in open(f"/proc/{child}/status").read().lower()
    log = (tmp_path / "log").read_text()
    assert "started" in log and "stopped at the budget" in log


def test_a_phase_with_no_time_left_is_reported_cut_and_the_check_fails(tmp_path):
    parts = tmp_path / "parts"
    gpu_prepare.split_weights(fake_weights(tmp_path), parts, MIB)
    out = tmp_path / "out"
    result = tool("gpu_check", "run", "--dry-run", "--only", "cuda_tests", "--budget", "setup=0", "--budget",
                  "tests=0", "--out", out, "--weights-parts", parts, "--work", tmp_path / "w")
    assert result.returncode == 1, result.stderr
    written = json.loads((out / "gpu_check.json").read_text())
    assert written["parts"]["setup"]["status"] == "ok" and written["parts"]["cuda_tests"]["status"] == "cut"
    assert not written["ok"] and set(written["parts"]) == {"setup", "cuda_tests"}
    assert "| cuda_tests | cut |" in (out / "gpu_check.md").read_text()


def test_the_gpu_budgets_fit_eight_minutes_and_the_summary_reads_a_gpu_benchmark():
    assert sum(gpu_check.BUDGETS.values()) <= 8 * 60
    # the device call that runs the check (planned by gpu_prepare) outlasts every budget
    assert sum(gpu_check.BUDGETS.values()) < gpu_prepare.RUN_TIMEOUT <= 600
    # the inpainting section runs on a GPU only: its rows as the H200 run committed them
    bench = json.loads((ROOT / "reports" / "h200" / "benchmark.json").read_text())
    sections = {s: {"status": "ok", "seconds": 1.0, "rows": bench[s]} for s in ("flops", "inpainting")}
    result = {"command": "python tools/gpu_check.py run --out OUT", "mode": "GPU", "revision": "r",
              "started_utc": "t", "seconds": 1.0, "budgets_s": gpu_check.BUDGETS, "phases": {},
              "parts": {"bench": {"status": "ok", "seconds": 2.0, "sections": sections}}}
    text = gpu_check.summary_markdown(result)
    assert "| lab5 | bf16 | 747 | 10 | 2.695 |" in text and "| lab5 | bf16 | 64 |" in text
    assert "| bench | ok | 2 | flops ok, inpainting ok |" in text


# -- the dry run ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, fid_weights):
    tmp = tmp_path_factory.mktemp("gpu_check")
    parts = tmp / "parts"
    split = tool("gpu_prepare", "split", fid_weights, "--into", parts, "--part-mib", 30)
    assert split.returncode == 0, split.stderr
    out, work = tmp / "out", tmp / "work"
    started = time.monotonic()
    result = tool("gpu_check", "run", "--dry-run", "--out", out, "--weights-parts", parts, "--work", work)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return {"out": out, "work": work, "parts": parts, "seconds": time.monotonic() - started,
            "result": json.loads((out / "gpu_check.json").read_text()), "stdout": result.stdout}


@pytest.mark.pipeline
def test_the_dry_run_completes_every_phase_and_returns_what_the_device_can_send_back(dry_run):
    result = dry_run["result"]
    assert result["mode"] == "CPU dry run" and result["ok"]
    assert list(result["parts"]) == ["setup", "cuda_tests", "tiny", "lab", "bench"]
    assert all(part["status"] == "ok" for part in result["parts"].values())
    manifest = json.loads((dry_run["parts"] / "manifest.json").read_text())
    weights = result["parts"]["setup"]["weights"]
    assert weights["sha256"] == manifest["sha256"] and weights["parts"] == 3 and weights["joined"] == "joined now"
    cuda = result["parts"]["cuda_tests"]
    assert cuda["counts"].get("skipped", 0) >= 5 and not cuda["counts"].get("failed") and "CPU" in cuda["note"]
    # what comes back from the GPU machine: at most 8 files of at most 16 MiB, no deeper than 2 folders
    files = sorted(p.name for p in dry_run["out"].iterdir())
    assert files == ["gpu_check.json", "gpu_check.md", "logs.tar.gz"]
    assert all((dry_run["out"] / f).stat().st_size < 16 * MIB for f in files)
    with tarfile.open(dry_run["out"] / "logs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"logs/tiny-a.log", "logs/tiny-b.log", "logs/lab.log", "logs/cuda_tests.log", "logs/bench.log",
            "tiny-a/dvc.lock", "tiny-b/dvc.lock", "lab/dvc.lock", "lab/timings/fid-decoders.json",
            "bench-flops/benchmark.json", "bench-flops/benchmark.md"} <= names
    summary = (dry_run["out"] / "gpu_check.md").read_text()
    for heading in ("## Parts", "## The tiny DAG twice", "## The lab-size run", "## Benchmark sections"):
        assert heading in summary
    assert "FID (random VQGAN: the numbers only show that the stages ran): cosine " in summary
    assert "(dvc repro up to train_vqgan) |" in summary and "(dvc repro up to fid) |" in summary
    print(f"dry run: {dry_run['seconds']:.0f} s")


@pytest.mark.pipeline
def test_the_two_tiny_runs_ran_to_their_target_and_gave_the_same_bytes(dry_run):
    # the dry run's tiny pair stops after train_vqgan (the lab run goes through every stage)
    tiny = dry_run["result"]["parts"]["tiny"]
    comparison = tiny["comparison"]
    assert comparison["identical"] and not comparison["only_in_one"], comparison
    assert comparison["outputs_compared"] == 3  # data/prepared, models/vqgan.pt, dvclive/vqgan: folders and a file
    for run in tiny["runs"]:
        assert list(run["stage_walls"]) == ["prepare", "train_vqgan"]
        assert run["timings"]["train_vqgan"]["device"].startswith("cpu")
    # the comparison reads the bytes, not only the locks: an output changed after its run is found
    work = dry_run["work"]
    image = sorted((work / "tiny-b" / "data" / "prepared").rglob("*.png"))[0]
    original = image.read_bytes()
    try:
        image.write_bytes(original + b"\0")
        changed = gpu_check.compare_runs(work / "tiny-a", work / "tiny-b")
    finally:
        image.write_bytes(original)
    assert not changed["identical"] and not changed["lock_hashes_differ"]
    assert list(changed["bytes_differ"]) == ["prepare data/prepared"]


@pytest.mark.pipeline
def test_the_lab_format_run_goes_through_the_fid_stages(dry_run):
    # the dry run's lab run: one decoder, up to its FID stage; on the GPU the lab5 preset's
    # three schedules and every stage to the report
    lab = dry_run["result"]["parts"]["lab"]
    assert lab["presets"][:2] == ["lab5", "gpu-check-lab"] and lab["sizes"]["test"] == 4
    assert set(lab["stage_walls"]) == {"prepare", "train_vqgan", "tokenize", "train_transformer",
                                       "inpaint@cosine-confidence", "fid_reference", "fid"}
    assert all(lab["timings"][stage]["seconds"] > 0 for stage in lab["stage_walls"])
    assert list(lab["fid_decoders"]) == ["cosine"] and "fid_baselines" not in lab
    assert lab["inputs"]["images"]["masked_image"] == 4
    log = (dry_run["work"] / "logs" / "lab.log").read_text()
    assert "train_vqgan: no training, using" in log  # the lab-format VQGAN.pt, used as is
    bench = dry_run["result"]["parts"]["bench"]["sections"]
    assert all(0 < row["fraction_of_peak"] for row in bench["flops"]["rows"])
