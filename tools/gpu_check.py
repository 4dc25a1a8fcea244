"""The prepared GPU check: what a lent GPU machine is asked, in one command that ends
within its budget and writes everything it measured into one folder (docs/gpu.md,
"The prepared GPU check"). What travels there (the wheels, the Inception weights in
parts) is prepared here by tools/gpu_prepare.py, whose helpers this imports.

    python3 tools/gpu_check.py run --out $OUT          # there, from the repository root (the last call)
    python tools/gpu_check.py run --dry-run --out DIR --weights-parts DIR   # here, on a CPU (CI)

`run` goes through its phases in order, each with a budget in seconds; a phase that
runs past its budget is stopped and reported, and the next one starts (time a phase
leaves unused goes to the later ones):

  setup   the carried wheels installed where DVC is missing; the weight parts joined
          and checked against their sha256 (a damaged or missing part stops the run
          in one line, before any GPU time is spent on it); the machine described
  tests   pytest tests/test_cuda.py, beside the tiny preset's whole DAG run twice with
          `dvc repro` in two fresh copies of the project, the FID stages included;
          every promised output of the two runs compared, lock hash and bytes
  lab     a lab-size run: the lab5 preset's architectures on lab-format folders made
          on the spot (747 test images) and a lab-architecture VQGAN.pt with random
          weights, short training, inpainting under the three schedules, the FID
          stages, evaluate, plots and report; each stage's wall time
  bench   the benchmark's GPU sections: the decoding forward's share of the fp32 and
          bf16 matmul peak (`--only flops`), decoding the 747 lab5 images at
          total_iter 10 (`--only inpainting`)

--dry-run takes every path of this script that needs no CUDA, on a CPU with small
sizes (device cpu), each stage at most once: the weights are still joined from parts,
the CUDA tests skip themselves, the tiny pair stops after train_vqgan, the lab run
after the FID stage of its one schedule, and the benchmark runs its flops section only
(its inpainting section's smallest run decodes with the lab5 models: minutes on a CPU).
The output folder gets gpu_check.json (every measurement), gpu_check.md (the
summary) and logs.tar.gz (each phase's log, the runs' locks, params, timings and
metrics, the benchmark's pages), rewritten after every phase, so that a command
stopped from outside still returns what was measured. Exit status: 0 when every
phase completed, 1 when one failed or was stopped at its budget, 2 on bad input.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from pathlib import Path

# gpu_prepare first: it puts the project's root on sys.path (the GPU machine runs the
# project from its folder, not installed); this script's folder, tools/, is there already
from gpu_prepare import (GPU_DIR, MANIFEST, MIB, NEEDED_MODULES, ROOT, WEIGHT_PARTS, WHEELS, git_revision,
                         project_files, sha256, write_json)

from maskgit.project.errors import InputError, UserError  # light: no torch
from maskgit.project.tool import run_tool

SITE = GPU_DIR / "site"  # where the GPU machine installs the wheels (kept while the machine stays warm)

PHASES = ("setup", "tests", "lab", "bench")
PHASE_PARTS = {"tests": ("cuda_tests", "tiny"), "lab": ("lab",), "bench": ("bench",)}
SELECTABLE = ("cuda_tests", "tiny", "lab", "bench")
# Seconds per phase: on a GPU together the 8 minutes a command there may take, with the
# machine's start and the transfers around it, inside the 10-minute limit. Estimated from
# the H100 and H200 runs (docs/benchmarks.md): a stage there costs a few seconds of start-up
# before its work; the tiny runs are 17 stages each, side by side; the lab run is 14 stages,
# three of them decoding 747 images in fp32 (about 12 s each on the H100) and the FID stages
# scoring 8 sets of 747; the benchmark's inpainting section also times the lab loop over 64
# images, which its command line cannot leave out (146 to 192 s at 3 repeats on the H200).
# The lab run, never run on a GPU, gets the most; what a phase leaves goes to the next.
BUDGETS = {"setup": 30, "tests": 140, "lab": 200, "bench": 110}
DRY_BUDGETS = {"setup": 60, "tests": 420, "lab": 300, "bench": 180}
# Installing the wheels is not cut at the setup's budget (without them nothing runs): what
# it overruns comes out of the later phases' time.
PIP_TIMEOUT = 120

# The lab's test set (lab5 FORMAT: 747 masked images); its training set's size is stated
# nowhere, and the prepare and tokenize stages' cost per image is what the run measures, so
# the training folders are sized to what the lab phase's budget holds.
LAB_SIZES = {"train": 2000, "val": 200, "test": 747}
DRY_LAB_SIZES = {"train": 40, "val": 8, "test": 4}
LAB_STEPS = 200  # "short training": the time per step is what is measured, not the model
CHUNK = 250  # images per generator seed: the folders do not depend on the number of processes

# The dry run proves the check's own code paths on 2 CPU cores in well under two minutes;
# the stages' own paths are the test suite's (tests/test_pipeline.py, and on lab-format
# folders with a VQGAN.pt used as is, tests/test_pipeline_lab5.py). Here a stage's process
# costs 3 to 5 s before its work, and each set an FID stage scores 5 to 8 s (torch-fidelity's
# 2048 x 2048 eigenproblem, whatever the number of images). So each stage runs at most once,
# as small as its checks allow, and only as far as the check's paths need: the tiny pair
# up to train_vqgan, whose outputs (a folder, a file, a dvclive folder) take every path of
# the comparison; the lab-format run up to the FID stage of its one decoder, whose scores
# the check reads back. The stages after it would add only stage processes: the check
# reads their files as it reads the others' (fid_baselines.json as fid_decoders.json).
DRY_TINY_TARGETS = ("train_vqgan",)
DRY_LAB_TARGETS = ("fid",)
DRY_TINY = {
    "prepare": {"n_train": 48, "n_val": 8, "n_test": 12},
    "train_vqgan": {"steps": 6, "continuous_steps": 3, "log_every": 3, "restart_every": 3, "checkpoint_every": 0},
}
DRY_LAB = {
    "reproducibility": {"threads": 1},
    "vqgan": {"enc_channels": [16, 16, 16, 16], "dec_channels": [16, 16, 16], "latent_dim": 8,
              "num_codebook_vectors": 32, "norm_groups": 4},
    "transformer": {"dim": 32, "n_layers": 2, "n_heads": 2, "mlp_dim": 64},
    # portable mode stops bf16 on a CPU (no bf16 matmul under AVX2)
    "train_transformer": {"precision": "fp32", "batch_size": 8},
    # one schedule: the other two run the same stage's code with another param
    "inpaint": {"schedules": ["cosine"], "total_iter": 2, "sweet_spot": 2, "batch_size": 16, "n_figure_images": 1},
}
DRY_LAB_STEPS = 4


# -- small helpers ------------------------------------------------------------------

def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def say(msg: str) -> None:
    print(f"gpu_check: {msg}", flush=True)

# -- the Inception weights joined from their parts ------------------------------------------

def join_weights(parts_dir: Path) -> tuple[Path, dict]:
    """The weights file joined from the parts in parts_dir and decompressed (beside them),
    every part and the whole checked against manifest.json. A file joined earlier and
    still matching is used as it is. A missing or damaged part is one line naming it."""
    manifest_path = parts_dir / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{rel(manifest_path)}: no manifest of the weight parts: run `python tools/gpu_prepare.py` "
                         f"where the weights are and carry {rel(parts_dir)} (docs/gpu.md)")
    try:
        manifest = json.loads(manifest_path.read_text())
        name, size, whole, parts = manifest["name"], manifest["size"], manifest["sha256"], manifest["parts"]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{rel(manifest_path)}: not a manifest written by tools/gpu_prepare.py") from None
    joined = parts_dir / name
    if joined.is_file() and joined.stat().st_size == size and sha256(joined) == whole:
        return joined, {"sha256": whole, "parts": len(parts), "joined": "already joined"}
    for part in parts:  # every part checked before anything is written
        path = parts_dir / part["file"]
        if not path.is_file():
            raise InputError(f"{rel(path)}: weight part missing (a machine given back between two calls keeps "
                             "nothing: carry the parts again, each call right after the one before)")
        got = sha256(path)
        if got != part["sha256"]:
            raise InputError(f"{rel(path)}: sha256 {got[:12]}... differs from the manifest's "
                             f"{part['sha256'][:12]}...: the part is damaged; carry it again")
    tmp = parts_dir / f".{name}.joining"
    inflate = zlib.decompressobj(wbits=31)  # the gzip format
    with open(tmp, "wb") as out:
        for part in parts:
            out.write(inflate.decompress((parts_dir / part["file"]).read_bytes()))
        out.write(inflate.flush())
    got = sha256(tmp)
    if got != whole:
        tmp.unlink()
        raise InputError(f"{rel(joined)}: the joined parts' sha256 {got[:12]}... differs from the manifest's "
                         f"{whole[:12]}...: split the weights again")
    tmp.replace(joined)
    return joined, {"sha256": whole, "parts": len(parts), "joined": "joined now"}


# -- the project's copies, commands with a deadline ------------------------------------------

def copy_project(dest: Path, root: Path = ROOT) -> Path:
    """The project's files (not its run outputs) copied into dest."""
    for name in project_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    return dest


class Runner:
    """Runs commands each in a process group of its own, the output streamed into a log
    with the seconds since the command started, stopped (the whole group: DVC's stages,
    pytest's children) at a deadline. Remembers the running groups, so that an interrupted
    check leaves none behind."""

    def __init__(self, env: dict):
        self.env = env
        self.running: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False  # set on Ctrl-C: nothing new starts

    def __call__(self, cmd: list[str], cwd: Path, log: Path, deadline: float, on_line=None, env=None) -> dict:
        start = time.monotonic()
        if deadline - start <= 0 or self.stopping:
            return {"returncode": None, "seconds": 0.0, "cut": True, "tail": ["(not started: no time left)"]}
        tail: list[str] = []
        with open(log, "a") as out:
            out.write(f"$ {' '.join(cmd)}    (in {cwd})\n")
            out.flush()
            proc = subprocess.Popen(cmd, cwd=cwd, env=env or self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", start_new_session=True)
            with self.lock:
                self.running.add(proc)

            def pump():
                for line in proc.stdout:
                    elapsed = time.monotonic() - start
                    out.write(f"[{elapsed:7.1f} s] {line}")
                    out.flush()
                    tail.append(line.rstrip("\n"))
                    del tail[:-40]
                    if on_line is not None:
                        on_line(line.rstrip("\n"), elapsed)

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            cut = False
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                cut = True
                self.stop(proc)
            reader.join(timeout=10)
            with self.lock:
                self.running.discard(proc)
            seconds = time.monotonic() - start
            out.write(f"--- exit {proc.returncode}{' (stopped at the budget)' if cut else ''} after {seconds:.1f} s\n")
        return {"returncode": None if cut else proc.returncode, "seconds": round(seconds, 2), "cut": cut,
                "tail": tail[-15:]}

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        """SIGTERM to the group (the stages and DVC end cleanly on it), SIGKILL 10 s later."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        self.stopping = True
        with self.lock:
            running = list(self.running)
        for proc in running:
            self.stop(proc)


def child_env(work: Path, site: Path | None) -> dict:
    """The environment of everything the check starts: this Python first on PATH as
    `python` (DVC's stage commands call it so), the project and the carried packages on
    PYTHONPATH, no telemetry, nothing downloaded, a cache of its own."""
    shim = work / "bin"
    shim.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        # a script, not a link: a virtual environment's Python finds its packages from
        # where it is started, and a link elsewhere would start it outside them
        (shim / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (shim / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "MASKGIT_DEBUG"}
    path = [str(ROOT)] + ([str(site)] if site else []) + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.update(PATH=f"{shim}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=os.pathsep.join(path),
               DVC_NO_ANALYTICS="1", MASKGIT_OFFLINE="1", MASKGIT_CACHE=str(work / "cache"), PYTHONUNBUFFERED="1")
    return env


# -- a DVC run in a fresh copy of the project --------------------------------------------

STAGE_LINE = re.compile(r"Running stage '([^']+)'")
FAILED_LINE = re.compile(r"failed to reproduce '([^']+)'")


def dvc_run(run, name: str, work: Path, presets: dict[str, dict], base: list[str], deadline: float,
            before_repro=None, targets: tuple[str, ...] = ()) -> dict:
    """A copy of the project in work/name, its own git repository, params.yaml from the
    presets `base` and then `presets` (written into its configs/), then `dvc repro` (of
    `targets` and the stages before them, when given; else of every stage).
    before_repro(project, log, deadline) -> dict may add inputs first (the lab's folders).
    Each stage's wall time is DVC's: from its 'Running stage' line to the next one's."""
    log = work / "logs" / f"{name}.log"
    project = copy_project(work / name)
    # the copy's own package first: its stages run the code DVC hashed as their deps
    env = {**run.env, "PYTHONPATH": os.pathsep.join([str(project), run.env["PYTHONPATH"]])}
    result = {"project": str(project), "status": "failed", "steps": {}, "targets": list(targets)}
    for preset, values in presets.items():
        (project / "configs" / f"{preset}.yaml").write_text(json.dumps(values, indent=1) + "\n")  # JSON is YAML
    # the checkout's own run's lock and metrics: a run stopped half-way would otherwise
    # leave the rest of the checkout's lock in its own, as if it had run those stages
    (project / "dvc.lock").unlink(missing_ok=True)
    for old in (project / "metrics").glob("*.json"):
        old.unlink()

    def step(key, cmd, on_line=None):
        outcome = run(cmd, project, log, deadline, on_line, env)
        result["steps"][key] = round(result["steps"].get(key, 0) + outcome["seconds"], 2)
        if outcome["returncode"] != 0:
            result.update(status="cut" if outcome["cut"] else "failed", failed_step=key, tail=outcome["tail"])
            return False
        return True

    if not step("preset", [sys.executable, "-m", "maskgit.preset", *base, *presets]):
        return result
    if before_repro is not None:
        started = time.monotonic()
        extra = before_repro(project, log, deadline)
        result["steps"]["inputs"] = round(time.monotonic() - started, 2)
        result.update(extra)
        if extra.get("status") in ("failed", "cut"):
            return result
    if shutil.which("git"):
        identity = ["-c", "user.name=gpu-check", "-c", "user.email=gpu-check@localhost"]
        for cmd in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-qm", f"gpu check: {name}"]):
            if not step("git", ["git", *cmd]):
                return result
    else:  # DVC runs without git when told so; the report then says the revision is unknown
        config = project / ".dvc" / "config"
        text = config.read_text() if config.is_file() else ""
        config.write_text(text.replace("[core]\n", "[core]\n    no_scm = true\n", 1) if "[core]\n" in text
                          else text + "[core]\n    no_scm = true\n")
        result["note"] = "no git on this machine: DVC ran with core.no_scm"
    starts: list[tuple[str, float]] = []
    failed: list[str] = []

    def on_line(line, elapsed):
        if m := STAGE_LINE.search(line):
            starts.append((m.group(1), elapsed))
        elif m := FAILED_LINE.search(line):
            failed.append(m.group(1))

    if step("repro", [sys.executable, "-m", "dvc", "repro", *targets], on_line):
        result["status"] = "ok"
    elif result["failed_step"] == "repro":
        result["stopped_in"] = failed[0] if failed else (starts[-1][0] if starts else None)
    ends = [t for _, t in starts[1:]] + [result["steps"].get("repro", 0)]
    result["stage_walls"] = {stage: round(end - t, 2) for (stage, t), end in zip(starts, ends)}
    result["timings"] = stage_timings(project)
    return result


def stage_timings(project: Path) -> dict:
    """{stage: its timings file} of a run, by the timings/*.json each stage of its
    dvc.lock writes: the stage's own seconds (from its start to its end, process start-up
    left out), the device it ran on, and the numbers it timed."""
    from maskgit.project.yamlio import parse_yaml
    from maskgit.verify import TIMINGS

    lock = project / "dvc.lock"
    stages = (parse_yaml(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}
    out = {}
    for stage, entry in stages.items():
        for o in entry.get("outs", []):
            path = project / o["path"]
            if o["path"].startswith(TIMINGS) and path.is_file():
                data = json.loads(path.read_text())
                out[stage] = {k: v for k, v in data.items() if k in ("seconds", "device")
                              or (isinstance(v, (int, float)) and not isinstance(v, bool))}
    return out


def promised_outputs(project: Path) -> dict[str, str]:
    """{'<stage> <path>': hash} of every output in the run's dvc.lock that is promised to
    repeat (maskgit.verify.UNPROMISED left out: wall times, the report, its provenance)."""
    from maskgit.project.yamlio import parse_yaml
    from maskgit.verify import UNPROMISED

    lock = project / "dvc.lock"
    stages = (parse_yaml(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}
    return {f"{stage} {o['path']}": o.get("md5") or o.get("hash") for stage, entry in stages.items()
            for o in entry.get("outs", []) if not o["path"].startswith(UNPROMISED)}


def file_digests(path: Path) -> dict[str, str]:
    if path.is_file():
        return {"": sha256(path)}
    return {p.relative_to(path).as_posix(): sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}


def compare_runs(a: Path, b: Path, named: int = 10) -> dict:
    """Every promised output of two runs, by the hash each lock recorded and by the bytes
    on disk (a lock against a lock says only what was recorded). Outputs of stages one
    run did not reach are counted apart."""
    outs_a, outs_b = promised_outputs(a), promised_outputs(b)
    both = sorted(set(outs_a) & set(outs_b))
    lock_differs = [k for k in both if outs_a[k] != outs_b[k]]
    bytes_differ = {}
    for key in both:
        path = key.split(" ", 1)[1]
        da, db = file_digests(a / path), file_digests(b / path)
        if da != db:
            files = sorted(f for f in set(da) | set(db) if da.get(f) != db.get(f))
            bytes_differ[key] = {"files": len(files), "first": files[:named]}
    return {"outputs_compared": len(both), "only_in_one": sorted(set(outs_a) ^ set(outs_b)),
            "lock_hashes_differ": lock_differs, "bytes_differ": bytes_differ,
            "identical": bool(both) and not lock_differs and not bytes_differ}


# -- the lab-size inputs -----------------------------------------------------------------

def _images_chunk(args):
    from maskgit.data.procedural import make_dataset, make_masks

    kind, seed, n = args
    return make_masks(seed, n) if kind == "masks" else make_dataset(seed, n, palette_size=16, blur=1.2)


def _generated(kind: str, seed: int, n: int, pool):
    import numpy as np

    sizes = [min(CHUNK, n - start) for start in range(0, n, CHUNK)]
    chunks = pool.map(_images_chunk, [(kind, seed + i, size) for i, size in enumerate(sizes)])
    return np.concatenate(chunks)


def lab_inputs(params_path: Path, into: Path, sizes: dict) -> dict:
    """Lab-format folders (lab5 FORMAT: train/, val/, gt/, mask64/ with white = known,
    masked_image/ with the holes gray) of the built-in procedural images at `sizes`, and
    a lab-format VQGAN.pt (a plain state dict) of the architecture in params.yaml's vqgan
    section, randomly initialised: the lab's own weights are 283 MB and speed does not
    depend on them. Drawn on every core, the same bytes whatever their number."""
    import multiprocessing

    import numpy as np

    from maskgit.project.files import write_images
    from maskgit.project.yamlio import parse_yaml

    seconds = {}
    start = time.perf_counter()
    data = into / "lab5_dataset"
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:  # forked before torch loads
        gt = _generated("images", 3000, sizes["test"], pool)
        known = _generated("masks", 4000, sizes["test"], pool)
        folders = {"train": _generated("images", 1000, sizes["train"], pool),
                   "val": _generated("images", 2000, sizes["val"], pool),
                   "gt": gt, "mask64": known, "masked_image": np.where(known[..., None], gt, np.uint8(128))}
    seconds["draw"] = time.perf_counter() - start
    for folder, arrays in folders.items():
        write_images(data / folder, arrays)
    seconds["write"] = time.perf_counter() - start - seconds["draw"]
    start = time.perf_counter()
    import torch

    from maskgit.models.vqgan import VQGAN

    config = {k: v for k, v in parse_yaml(params_path.read_text())["vqgan"].items() if k != "checkpoint"}
    torch.manual_seed(0)
    vqgan = VQGAN(config)
    with torch.no_grad():  # spread the codes, as maskgit.bench does, so that the tokens vary
        vqgan.codebook.embedding.weight.normal_(0, 1)
    torch.save(vqgan.state_dict(), into / "VQGAN.pt")
    seconds["vqgan"] = time.perf_counter() - start
    return {"seconds": {k: round(v, 2) for k, v in seconds.items()},
            "vqgan_parameters": sum(p.numel() for p in vqgan.parameters()),
            "images": {k: len(v) for k, v in folders.items()}}


# -- the phases --------------------------------------------------------------------------

class Check:
    """One run of the check: its phases in order, its result written after each."""

    def __init__(self, args):
        self.args = args
        self.dry = args.dry_run
        self.out = args.out
        self.work = args.work
        self.budgets = dict(DRY_BUDGETS if self.dry else BUDGETS)
        self.budgets.update(dict(args.budget or []))
        self.selected = set(args.only.split(",")) if args.only else set(SELECTABLE)
        self.result = {
            "check": "tools/gpu_check.py", "mode": "CPU dry run" if self.dry else "GPU",
            "command": "python tools/gpu_check.py " + " ".join(args.argv),
            "revision": args.revision or git_revision(),
            "started_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "budgets_s": {p: self.budgets[p] for p in PHASES}, "phases": {}, "parts": {}}
        self.start = time.monotonic()
        self.runner: Runner | None = None
        self.weights: Path | None = None
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def deadline(self, phase: str) -> float:
        """The start plus the budgets up to and including this phase's: a phase that ends
        early leaves its time to the ones after it."""
        return self.start + sum(self.budgets[p] for p in PHASES[: PHASES.index(phase) + 1])

    def setup(self) -> dict:
        """Everything the parts need, or one line saying what is missing: the packages, the
        weights, torch (and on a GPU, CUDA)."""
        info: dict = {}
        # the weights first: a damaged part stops the run before anything is installed
        if self.args.weights:
            if not self.args.weights.is_file():
                raise InputError(f"{self.args.weights}: no such weights file")
            self.weights = self.args.weights.resolve()
            info["weights"] = {"file": str(self.weights), "sha256": sha256(self.weights)}
        else:
            self.weights, joined = join_weights(self.args.weights_parts)
            self.weights = self.weights.resolve()
            info["weights"] = {"file": rel(self.weights), **joined}
        site = None
        missing = [m for m in NEEDED_MODULES if not _importable(m)]
        if missing:
            wheels = sorted((ROOT / WHEELS).glob("*.whl"))
            if not wheels:
                raise UserError(f"{', '.join(missing)} not installed and no wheels in {WHEELS}: run `python "
                                "tools/gpu_prepare.py` where pip works and carry .gpu/wheels (docs/gpu.md)")
            site = ROOT / SITE
            started = time.monotonic()
            try:
                subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                "--upgrade", "--target", str(site), *map(str, wheels)], check=True, capture_output=True,
                               text=True, timeout=PIP_TIMEOUT)
            except subprocess.CalledProcessError as e:
                raise UserError(f"installing {WHEELS} failed: {(e.stderr.strip().splitlines() or ['?'])[-1]}") from None
            except subprocess.TimeoutExpired:
                raise UserError(f"installing {WHEELS} took more than {PIP_TIMEOUT} s") from None
            sys.path.insert(1, str(site))  # for this process's own reading of the runs (ruamel.yaml)
            info["wheels"] = {"installed": len(wheels), "into": str(SITE), "were_missing": missing,
                              "seconds": round(time.monotonic() - started, 2)}
        else:
            info["wheels"] = "not needed: every package is installed"
        self.runner = Runner(child_env(self.work, site))
        probe = subprocess.run([sys.executable, "-c", MACHINE_PROBE], env=self.runner.env, capture_output=True,
                               text=True, timeout=120)
        if probe.returncode != 0:
            raise UserError(f"torch does not load here: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
        self.result["machine"] = json.loads(probe.stdout)
        if not self.dry and not self.result["machine"]["cuda"]:
            raise UserError("no CUDA device here: on a CPU, run the dry run (--dry-run)")
        return info

    def guarded(self, part: str) -> dict:
        """A part's result; a part that breaks is reported failed, with its traceback in its
        log, and the check goes on with the others."""
        try:
            return getattr(self, part)()
        except Exception as e:  # noqa: BLE001 - one part's bug must not cost the others their GPU time
            import traceback

            with open(self.logs / f"{part}.error.log", "w") as f:
                traceback.print_exc(file=f)
            return {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0]}

    def phase(self, name: str) -> None:
        started = time.monotonic()
        parts = [p for p in PHASE_PARTS.get(name, ()) if p in self.selected]
        if name != "setup" and not parts:
            return
        say(f"{name}: budget {self.budgets[name]:.0f} s, until {self.deadline(name) - self.start:.0f} s in")
        if name == "setup":
            info = self.setup()
            self.result["parts"]["setup"] = {"status": "ok", "seconds": round(time.monotonic() - started, 2), **info}
            parts = ["setup"]
        else:
            pool = concurrent.futures.ThreadPoolExecutor(len(parts))
            try:
                futures = {p: pool.submit(self.guarded, p) for p in parts}
                self.result["parts"].update({p: f.result() for p, f in futures.items()})
            except BaseException:  # Ctrl-C or SIGTERM: stop the parts' processes before waiting for them
                self.runner.stop_all()
                raise
            finally:
                pool.shutdown(wait=True)
        seconds = round(time.monotonic() - started, 2)
        self.result["phases"][name] = {"seconds": seconds, "budget_s": self.budgets[name],
                                       "past_its_deadline": time.monotonic() > self.deadline(name)}
        for part in parts:
            say(f"{part}: {self.result['parts'][part]['status']}")
        self.write()

    def cuda_tests(self) -> dict:
        log = self.logs / "cuda_tests.log"
        # addopts off: xdist's options in pyproject.toml may be newer than the machine's xdist
        cmd = [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", "-rs",
               "tests/test_cuda.py"]
        outcome = self.runner(cmd, ROOT, log, self.deadline("tests"))
        summary = next((line for line in reversed(outcome["tail"]) if re.search(r"\d+ (passed|failed|skipped|error)",
                                                                                  line)), "")
        counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", summary)}
        status = "cut" if outcome["cut"] else ("ok" if outcome["returncode"] == 0 else "failed")
        part = {"status": status, "seconds": outcome["seconds"], "summary": summary.strip("= "), "counts": counts,
                "command": "pytest -q tests/test_cuda.py"}
        if self.dry:
            part["note"] = "CPU: test_cuda.py's tests skip themselves without CUDA"
        if status != "ok":
            part["tail"] = outcome["tail"]
        return part

    def tiny(self) -> dict:
        presets = {"gpu-check-tiny": {"device": "cpu" if self.dry else "cuda",
                                      "fid": {"inception_weights": str(self.weights)}}}
        targets = DRY_TINY_TARGETS if self.dry else ()
        if self.dry:
            presets["gpu-check-dry"] = DRY_TINY
        deadline = self.deadline("tests")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda name: dvc_run(self.runner, name, self.work, presets, ["tiny"], deadline,
                                                      targets=targets), ["tiny-a", "tiny-b"]))
        part = {"runs": runs, "seconds": max(sum(r["steps"].values()) for r in runs),
                "presets": ["tiny", *presets]}
        part["comparison"] = compare_runs(Path(runs[0]["project"]), Path(runs[1]["project"]))
        statuses = {r["status"] for r in runs}
        part["status"] = "ok" if statuses == {"ok"} else ("cut" if "cut" in statuses else "failed")
        return part

    def lab(self) -> dict:
        sizes = dict(DRY_LAB_SIZES if self.dry else LAB_SIZES)
        sizes.update({k: v for k, v in (("train", self.args.lab_train), ("test", self.args.lab_test)) if v})
        inputs = self.work / "lab-inputs"
        data = inputs / "lab5_dataset"
        lab = {"device": "cpu" if self.dry else "cuda",
               "prepare": {f"{key}_dir": str(data / folder) for key, folder in (
                   ("train", "train"), ("val", "val"), ("test_masked", "masked_image"), ("test_mask", "mask64"),
                   ("test_gt", "gt"))},
               "vqgan": {"checkpoint": str(inputs / "VQGAN.pt")},
               # a budget in steps, not the preset's 50 epochs; a warm-up, validation and
               # no resumable state (0.9 GB a save at this size) to match
               "train_transformer": {"steps": DRY_LAB_STEPS if self.dry else LAB_STEPS, "epochs": None,
                                     "warmup_steps": 20, "eval_every": 100, "checkpoint_every": 0},
               "inpaint": {"orders": ["confidence"]},  # the lab's decoding order, under its three schedules
               "fid": {"inception_weights": str(self.weights)}}
        presets = {"gpu-check-lab": lab, **({"gpu-check-dry": DRY_LAB} if self.dry else {})}

        def make_inputs(project, log, deadline):
            inputs.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "lab-inputs", "--params",
                   str(project / "params.yaml"), "--into", str(inputs),
                   *[arg for k, v in sizes.items() for arg in (f"--{k}", str(v))]]
            outcome = self.runner(cmd, ROOT, log, deadline)
            if outcome["returncode"] != 0:
                return {"status": "cut" if outcome["cut"] else "failed", "failed_step": "inputs",
                        "tail": outcome["tail"]}
            # its last line of JSON: what it made and how long each step took
            return {"inputs": json.loads(next(line for line in reversed(outcome["tail"]) if line.startswith("{")))}

        run = dvc_run(self.runner, "lab", self.work, presets, ["lab5"], self.deadline("lab"), make_inputs,
                      targets=DRY_LAB_TARGETS if self.dry else ())
        run.update(sizes=sizes, presets=["lab5", *presets], seconds=round(sum(run["steps"].values()), 2))
        project = Path(run["project"])
        for name in ("fid_decoders", "fid_baselines"):
            path = project / "metrics" / f"{name}.json"
            if path.is_file():
                run[name] = json.loads(path.read_text())
        live = project / "dvclive" / "transformer" / "metrics.json"
        if live.is_file():
            run["training"] = json.loads(live.read_text())
        return run

    def bench(self) -> dict:
        # two invocations, two folders: the flops section is kept when the inpainting
        # section runs past the budget. The inpainting section's smallest run (--quick)
        # still builds and decodes with the lab5 models: minutes on a CPU, so GPU only
        # (tests/test_gpu_check.py reads its rows from a GPU run's benchmark.json instead)
        part, deadline = {"sections": {}}, self.deadline("bench")
        if self.dry:
            part["note"] = "CPU: the inpainting section is left to the GPU (its --quick run takes minutes here)"
        for section, repeats in (("flops", 3), ("inpainting", 1))[: 1 if self.dry else 2]:
            folder = self.work / f"bench-{section}"
            sizing = ["--quick", "--device", "cpu"] if self.dry else ["--repeats", str(repeats)]
            cmd = [sys.executable, "-m", "maskgit.bench", "--only", section, *sizing, "--out", str(folder)]
            outcome = self.runner(cmd, ROOT, self.logs / "bench.log", deadline)
            entry = {"seconds": outcome["seconds"],
                     "status": "cut" if outcome["cut"] else ("ok" if outcome["returncode"] == 0 else "failed")}
            if (folder / "benchmark.json").is_file() and entry["status"] == "ok":
                entry["rows"] = json.loads((folder / "benchmark.json").read_text())[section]
            else:
                entry["tail"] = outcome["tail"]
            part["sections"][section] = entry
        statuses = {s["status"] for s in part["sections"].values()}
        part["status"] = "ok" if statuses == {"ok"} else ("cut" if "cut" in statuses else "failed")
        part["seconds"] = round(sum(s["seconds"] for s in part["sections"].values()), 2)
        return part

    def write(self) -> None:
        self.result["seconds"] = round(time.monotonic() - self.start, 2)
        self.result["ok"] = all(p.get("status") == "ok" for p in self.result["parts"].values())
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "gpu_check.json", self.result)
        (self.out / "gpu_check.md").write_text(summary_markdown(self.result))
        pack_logs(self.work, self.out / "logs.tar.gz")

    def run(self) -> int:
        try:
            for name in PHASES:
                self.phase(name)
        finally:
            if self.runner is not None:
                self.runner.stop_all()
        say(f"{'every phase completed' if self.result['ok'] else 'not every phase completed'} in "
            f"{self.result['seconds']:.0f} s: {self.out / 'gpu_check.md'}")
        return 0 if self.result["ok"] else 1


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


MACHINE_PROBE = """
import json, os, platform, subprocess, torch
cpu = platform.processor()
for line in open('/proc/cpuinfo'):
    if line.startswith('model name'):
        cpu = line.split(':', 1)[1].strip()
        break
cuda = torch.cuda.is_available()
info = {'cuda': cuda, 'torch': torch.__version__, 'python': platform.python_version(), 'cpu': cpu,
        'cores': os.cpu_count(), 'gpu': torch.cuda.get_device_name(0) if cuda else None,
        'cuda_version': torch.version.cuda, 'cudnn': torch.backends.cudnn.version() if cuda else None}
if cuda:
    try:
        query = ['nvidia-smi', '--query-gpu=driver_version,memory.total', '--format=csv,noheader']
        info['driver'] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        info['driver'] = 'nvidia-smi not found'
print(json.dumps(info))
"""


# -- what it writes --------------------------------------------------------------------------

def pack_logs(work: Path, dest: Path) -> None:
    """The logs, and each run's small text records (lock, params, timings, metrics, the
    report, the benchmark's pages): no images, no models."""
    keep = ("dvc.lock", "params.yaml", "timings/*.json", "metrics/*.json", "dvclive/*/metrics.json",
            "reports/report.md", "configs/gpu-check-*.yaml", "benchmark.json", "benchmark.md")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted((work / "logs").glob("*.log")):
            tar.add(path, arcname=f"logs/{path.name}")
        for folder in sorted(p for p in work.iterdir() if p.is_dir() and p.name not in ("logs", "bin", "cache",
                                                                                          "lab-inputs")):
            for pattern in keep:
                for path in sorted(folder.glob(pattern)):
                    if path.is_file() and path.stat().st_size < 4 * MIB:
                        tar.add(path, arcname=f"{folder.name}/{path.relative_to(folder).as_posix()}")
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(dest)


def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *["| " + " | ".join(cell(v) for v in row) + " |" for row in rows], ""]


def summary_markdown(result: dict) -> str:
    m = result.get("machine", {})
    parts = result["parts"]
    lines = ["# GPU check", "", f"`{result['command']}` ({result['mode']}), revision {result['revision']}, "
             f"started {result['started_utc']} UTC, {result.get('seconds', 0):.0f} s of the "
             f"{sum(result['budgets_s'].values())} s budget.", ""]
    if m:
        lines += [f"Machine: {m.get('gpu') or 'no GPU'} ({m.get('driver', '')}), {m.get('cpu')}, {m.get('cores')} "
                  f"cores; torch {m.get('torch')} (CUDA {m.get('cuda_version')}), Python {m.get('python')}.", ""]
    rows = []
    for name, part in parts.items():
        rows.append([name, part.get("status"), part.get("seconds"), _what(name, part)])
    lines += ["## Parts", "", *_table(["part", "status", "seconds", "what"], rows)]
    lines += ["Budgets per phase (s): " + ", ".join(f"{k} {v}" for k, v in result["budgets_s"].items()) + "; "
              "phases: " + ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in result["phases"].items()) + ".", ""]
    tiny = parts.get("tiny", {})
    if "comparison" in tiny:
        c = tiny["comparison"]
        lines += ["## The tiny DAG twice", "",
                  f"Presets {' '.join(tiny['presets'])}. {c['outputs_compared']} promised outputs compared (lock "
                  f"hash and bytes): {'identical' if c['identical'] else 'NOT identical'}."
                  + (f" Lock hashes differ: {', '.join(c['lock_hashes_differ'])}." if c["lock_hashes_differ"] else "")
                  + (f" Only in one run: {', '.join(c['only_in_one'])}." if c["only_in_one"] else ""), ""]
        for key, diff in c["bytes_differ"].items():
            lines.append(f"- {key}: {diff['files']} files differ, first {', '.join(diff['first'])}")
        stages = list(dict.fromkeys(s for r in tiny["runs"] for s in r.get("stage_walls", {})))
        lines += ["", *_table(["stage", "run A wall (s)", "run B wall (s)", "in-stage A (s)", "device"],
                              [[s, tiny["runs"][0].get("stage_walls", {}).get(s),
                                tiny["runs"][1].get("stage_walls", {}).get(s),
                                _timing(tiny["runs"][0], s, "seconds"), _timing(tiny["runs"][0], s, "device")]
                               for s in stages])]
    lab = parts.get("lab", {})
    if "steps" in lab:
        lines += ["## The lab-size run", "",
                  f"Presets {' '.join(lab['presets'])}; folders of {lab['sizes']['train']} training, "
                  f"{lab['sizes']['val']} validation and {lab['sizes']['test']} test images made on the spot, a "
                  f"lab-architecture VQGAN with random weights; steps: "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in lab["steps"].items()) + ".", "",
                  *_table(["stage", "wall (s, DVC)", "in-stage (s)", "device"],
                          [[s, w, _timing(lab, s, "seconds"), _timing(lab, s, "device")]
                           for s, w in lab.get("stage_walls", {}).items()])]
        fids = {**lab.get("fid_decoders", {}), **lab.get("fid_baselines", {})}
        if fids:
            lines += ["FID (random VQGAN: the numbers only show that the stages ran): "
                      + ", ".join(f"{k} {v.get('fid', float('nan')):.2f}" for k, v in fids.items()) + ".", ""]
    bench = parts.get("bench", {})
    if "sections" in bench:
        lines += ["## Benchmark sections", ""]
        flops = bench["sections"].get("flops", {}).get("rows", [])
        if flops:
            lines += _table(["size", "precision", "batch", "achieved GFLOP/s", "matmul peak GFLOP/s",
                             "fraction of peak"],
                            [[r["size"], r["precision"], r["batch"], r["achieved_gflops"], r["matmul_peak_gflops"],
                              r["fraction_of_peak"]] for r in flops])
        inpainting = bench["sections"].get("inpainting", {}).get("rows", [])
        if inpainting:
            lines += _table(["size", "precision", "images", "total_iter", "ours (s)", "speedup over the lab loop",
                             "tokens identical"],
                            [[r["size"], r["precision"], r["images"], r["total_iter"], r["ours_s_total"],
                              r["speedup"], r["tokens_identical"]] for r in inpainting])
    for name, part in parts.items():
        if part.get("status") != "ok" and part.get("tail"):
            lines += [f"## {name}: the end of its output", "", "```", *part["tail"], "```", ""]
        for run in part.get("runs", []):
            if run.get("status") != "ok" and run.get("tail"):
                lines += [f"## {Path(run['project']).name}: the end of its output", "", "```", *run["tail"], "```", ""]
        for section, entry in part.get("sections", {}).items():
            if entry.get("status") != "ok" and entry.get("tail"):
                lines += [f"## bench {section}: the end of its output", "", "```", *entry["tail"], "```", ""]
    return "\n".join(lines) + "\n"


def _timing(run: dict, stage: str, key: str):
    return run.get("timings", {}).get(stage, {}).get(key)


def _stopped(run: dict) -> str:
    return f"{run['status']} in {run.get('stopped_in') or run.get('failed_step')}"


def _up_to(run: dict) -> str:
    return f" (dvc repro up to {', '.join(run['targets'])})" if run.get("targets") else ""


def _what(name: str, part: dict) -> str:
    if "error" in part:  # a part that broke: its exception, the traceback in logs/<part>.error.log
        return part["error"]
    if name == "setup":
        w = part.get("weights", {})
        wheels = part.get("wheels")
        return (f"wheels: {wheels if isinstance(wheels, str) else str(wheels.get('installed')) + ' installed'}; "
                f"weights sha256 {str(w.get('sha256'))[:12]}... ({w.get('joined', 'given whole')})")
    if name == "cuda_tests":
        return part.get("summary") + (f" ({part['note']})" if part.get("note") else "")
    if name == "tiny":
        c = part["comparison"]
        return (f"2 runs; {c['outputs_compared']} outputs compared: {'identical' if c['identical'] else 'differ'}"
                + "".join(f"; {Path(r['project']).name} {_stopped(r)}" for r in part["runs"] if r["status"] != "ok")
                + _up_to(part["runs"][0]))
    if name == "lab":
        return (f"{len(part.get('stage_walls', {}))} stages" + (f"; {_stopped(part)}" if part["status"] != "ok" else "")
                + _up_to(part))
    if name == "bench":
        return ", ".join(f"{k} {v['status']}" for k, v in part["sections"].items()) + (
            f" ({part['note']})" if part.get("note") else "")
    return ""


# -- the command line ------------------------------------------------------------------------

def _budget(text: str):
    phase, _, seconds = text.partition("=")
    if phase not in PHASES or not seconds.replace(".", "", 1).isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected PHASE=SECONDS, PHASE one of {', '.join(PHASES)}")
    return phase, float(seconds)


def _only(text: str) -> str:
    unknown = sorted(set(text.split(",")) - set(SELECTABLE))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown part {unknown[0]!r}; known: {', '.join(SELECTABLE)}")
    return text


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of images, at least 2")
    return int(text)


def cli(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="the check (on the GPU machine; --dry-run on a CPU)")
    p.add_argument("--out", type=Path, required=True, help="the folder it writes its results into")
    p.add_argument("--dry-run", action="store_true", help="on a CPU, small sizes: every path that needs no CUDA")
    p.add_argument("--weights-parts", type=Path, default=ROOT / WEIGHT_PARTS,
                   help=f"the weight parts and their manifest (default {WEIGHT_PARTS})")
    p.add_argument("--weights", type=Path, help="the Inception weights whole, instead of parts")
    p.add_argument("--work", type=Path, help="scratch folder, kept (default: a temporary one, removed)")
    p.add_argument("--only", type=_only, help=f"these parts only (setup always runs): {','.join(SELECTABLE)}")
    p.add_argument("--budget", type=_budget, action="append", metavar="PHASE=SECONDS",
                   help=f"another budget for a phase ({', '.join(PHASES)})")
    p.add_argument("--lab-train", type=_count, help=f"training images of the lab-size run ({LAB_SIZES['train']})")
    p.add_argument("--lab-test", type=_count, help=f"test images of the lab-size run ({LAB_SIZES['test']})")
    p.add_argument("--revision", help="the revision to record (the GPU machine's copy may have no .git)")
    p = sub.add_parser("lab-inputs", help="a step of `run`: the lab-format folders and VQGAN.pt")
    p.add_argument("--params", type=Path, required=True)
    p.add_argument("--into", type=Path, required=True)
    for split in ("train", "val", "test"):
        p.add_argument(f"--{split}", type=_count, required=True)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    if args.command == "lab-inputs":
        print(json.dumps(lab_inputs(args.params, args.into, {"train": args.train, "val": args.val,
                                                             "test": args.test})))
        return 0
    temporary = args.work is None
    args.work = Path(tempfile.mkdtemp(prefix="gpu-check-")) if temporary else args.work.resolve()
    args.out = args.out.resolve()
    try:
        return Check(args).run()
    finally:
        if temporary:
            shutil.rmtree(args.work, ignore_errors=True)


def main(argv=None) -> None:
    status = 0

    def body():
        nonlocal status
        status = cli(argv)

    run_tool(body, "gpu_check")
    sys.exit(status)


if __name__ == "__main__":
    main()
