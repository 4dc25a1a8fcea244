"""Stage runtime rules found in review: bad input is one line, a bug keeps its
traceback; a resumed training run is the same run whatever GPU index it lands on;
every package the code imports is declared."""

import ast
import errno
import os
import re
import subprocess
import sys
import tomllib

import numpy as np
import pytest
import torch

from conftest import ROOT
from maskgit.project.errors import InputError, ParamError
from maskgit.pipeline.runtime import run_stage
from maskgit.pipeline.training import run_fingerprint


@pytest.mark.parametrize("error", [ParamError("params.yaml: inpaint.total_iter must be an integer >= 1"),
                                   InputError("data/x.png: unreadable image")])
def test_bad_input_is_one_line_and_exit_2(error, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def main():
        raise error
    with pytest.raises(SystemExit) as exit_:
        run_stage(main, "x")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: x: {error}"]


@pytest.mark.parametrize("bug", [ValueError("shapes (3,) and (4,) not aligned"), FileNotFoundError("x"), KeyError("k")])
def test_a_bug_keeps_its_traceback(bug, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def main():
        raise bug
    with pytest.raises(type(bug)):
        run_stage(main, "x")


def test_the_run_fingerprint_ignores_which_gpu_a_restart_lands_on(tmp_path):
    data = tmp_path / "tokens.npy"
    data.write_bytes(b"abc")
    p = {"train_transformer": {"lr": 1e-3}}
    assert run_fingerprint(p, torch.device("cuda", 0), data) == run_fingerprint(p, torch.device("cuda", 1), data)
    assert run_fingerprint(p, torch.device("cuda", 0), data) != run_fingerprint(p, torch.device("cpu"), data)


def test_the_run_fingerprint_follows_params_and_input_bytes(tmp_path):
    data = tmp_path / "tokens.npy"
    data.write_bytes(b"abc")
    a = run_fingerprint({"lr": 1e-3}, torch.device("cpu"), data)
    assert a != run_fingerprint({"lr": 2e-3}, torch.device("cpu"), data)
    data.write_bytes(b"abd")
    assert a != run_fingerprint({"lr": 1e-3}, torch.device("cpu"), data)


# import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "torch_fidelity": "torch-fidelity", "ruamel": "ruamel.yaml",
                "dvclive": "dvclive", "optuna": "optuna", "sklearn": "scikit-learn"}
# used without an import statement: pandas' DataFrame.to_markdown imports tabulate itself
INDIRECT = {"tabulate"}


def test_every_third_party_package_the_code_imports_is_declared():
    declared = set()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]:
        declared.add(re.split(r"[<>=!\[ ;]", spec, maxsplit=1)[0].lower())
    imported = set()
    for path in list((ROOT / "maskgit").rglob("*.py")) + list((ROOT / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "maskgit"}
    missing = sorted(m for m in third_party | INDIRECT if DISTRIBUTION.get(m, m).lower().replace("_", "-") not in declared)
    assert not missing, f"pyproject.toml does not declare {missing}"


def test_ctrl_c_is_one_line_and_removes_the_temporary_folder(capsys, tmp_path, monkeypatch):
    from maskgit.project.files import image_folder

    monkeypatch.chdir(tmp_path)

    def main():
        with image_folder(tmp_path / "out") as write:
            write(np.zeros((2, 8, 8, 3), np.uint8), ["a.png", "b.png"])
            raise KeyboardInterrupt
    with pytest.raises(SystemExit) as exit_:
        run_stage(main, "x")
    assert exit_.value.code == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "x: interrupted; `dvc repro` resumes (training from its last checkpoint)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no .out.* left, no timings


@pytest.mark.parametrize("code, hint", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only file system"),
                                        (errno.EACCES, "no permission")])
def test_a_full_disk_or_read_only_folder_is_one_line_naming_the_path(code, hint, capsys, tmp_path, monkeypatch):
    from maskgit.project.files import write_json

    monkeypatch.chdir(tmp_path)
    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):  # the disk fills (or turns read-only) on write
        f = real_open(path, mode, *args, **kwargs)
        if "w" in mode:
            f.write = lambda data: (_ for _ in ()).throw(OSError(code, os.strerror(code)))
        return f

    def main():
        monkeypatch.setattr("builtins.open", failing_open)
        write_json(tmp_path / "metrics" / "fid.json", {"fid": 1.0})
    with pytest.raises(SystemExit) as exit_:
        run_stage(main, "x")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "metrics" / "fid.json") in err[0] and hint in err[0], err
    assert list((tmp_path / "metrics").iterdir()) == [], "the temporary file is removed"


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB file system (tmpfs): torch's own writer fails differently from a
    faked write(), so the checkpoint case needs a disk that really fills."""
    import shutil
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                                                       capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root (or CAP_SYS_ADMIN) and mount(8)")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_checkpoint_that_fills_the_disk_is_one_line_naming_it(small_disk, capsys, monkeypatch):
    from maskgit.project.files import save_torch

    monkeypatch.chdir(small_disk.parent)
    target = small_disk / "checkpoints" / "state.pt"
    with pytest.raises(SystemExit) as exit_:
        run_stage(lambda: save_torch(target, {"w": torch.zeros(1000, 1000)}), "x")  # 4 MB into 256 KiB
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0] and "disk is full" in err[0], err
    assert list(target.parent.iterdir()) == [], "the temporary file is removed"


def test_a_killed_run_s_temporary_files_go_when_any_stage_next_runs(capsys, tmp_path, monkeypatch):
    # a SIGKILLed prepare leaves data/.prepared.<pid>.<random>; if DVC then restores prepare
    # from its run cache, prepare never runs to clear it, so the next stage to run does
    import subprocess
    from pathlib import Path

    from maskgit.project.files import atomic_file, make_tmp_dir

    monkeypatch.chdir(tmp_path)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    live = make_tmp_dir(Path("data/prepared"))  # this process's: a build in progress, never touched
    assert live.name.startswith(f".prepared.{os.getpid()}.")
    stale = [Path(f"data/.prepared.{dead}.k2_x9abc"),
             Path(f"outputs/inpaint/confidence/cosine/.images.{dead}.abcdefgh")]
    for folder in stale:
        (folder / "test").mkdir(parents=True)
        (folder / "test" / "0.png").write_bytes(b"png")
    stale_file = Path(f"models/.vqgan.pt.{dead}.abcdefgh.tmp")
    stale_file.parent.mkdir()
    stale_file.write_bytes(b"half a checkpoint")
    kept = [Path("data/prepared/train/.x.1.png"), Path("data/.prepared.old")]  # not one of ours
    for p in kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    with atomic_file("metrics/fid.json") as f:  # written mid-stage, also this process's
        assert Path(f.name).name.startswith(f".fid.json.{os.getpid()}.")
        run_stage(lambda: None, "x", record_time=False)
        assert Path(f.name).exists()
    assert not any(p.exists() for p in [*stale, stale_file])
    assert live.is_dir() and all(p.exists() for p in kept)
    err = capsys.readouterr().err
    assert f"x: removed {stale[0]} (left by a killed run)" in err.splitlines()


STAGE_SCRIPT = """import atexit, sys
sys.path.insert(0, {root!r})
from maskgit.project.errors import InputError
from maskgit.pipeline.runtime import run_stage

atexit.register(lambda: print("teardown ran", flush=True))

def main():
    raise InputError("fid.lpips_backbone points to a missing file: /nowhere.pth")

run_stage(main, "fid-baselines", record_time=False)
"""


def test_a_stage_script_leaves_at_once_after_its_one_line(tmp_path):
    # the interpreter's teardown with torch loaded took seconds between the error line and
    # the exit status; every finally has run by then, so a stage script leaves with os._exit
    # (a test calling run_stage in-process still gets SystemExit: the test above)
    (tmp_path / "stage.py").write_text(STAGE_SCRIPT.format(root=str(ROOT)))
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = subprocess.run([sys.executable, "stage.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: fid-baselines: fid.lpips_backbone points to a missing file: /nowhere.pth"]
    assert "teardown ran" not in result.stdout
