"""maskgit.verify reads the bytes: a small DVC project whose stages write files, run and
committed, then changed the ways a reproduction can go wrong (a file edited, deleted
or added, a metric edited, params edited without a run, a run under other numerics).
Nothing here trusts a lock file: each case leaves dvc.lock as the run wrote it."""

import json
import re
import subprocess

import pytest
import yaml

from conftest import ROOT, stage_env
from maskgit import verify

# Each stage writes its outputs from its input and a flavour (FLAVOUR: what another
# machine's numerics would change), and records its numerics in timings/ as
# run_stage does.
STAGE = """import json, os, pathlib, sys
name = sys.argv[1]
flavour = os.environ.get("FLAVOUR", "a")
numerics = {"mode": "portable", "aten_capability": "AVX2" if flavour == "a" else "AVX512", "torch_threads": 2}
pathlib.Path("timings").mkdir(exist_ok=True)
pathlib.Path(f"timings/{name}.json").write_text(json.dumps({"stage": name, "numerics": numerics}))
if name == "prepare":
    pathlib.Path("data/prepared").mkdir(parents=True, exist_ok=True)
    for i in range(3):
        pathlib.Path(f"data/prepared/{i}.txt").write_text(f"image {i}")
elif name == "train":
    pathlib.Path("models").mkdir(exist_ok=True)
    text = "".join(p.read_text() for p in sorted(pathlib.Path("data/prepared").glob("*.txt")))
    pathlib.Path("models/model.bin").write_text(text + flavour)
    pathlib.Path("metrics").mkdir(exist_ok=True)
    pathlib.Path("metrics/score.json").write_text(json.dumps({"fid": len(text)}))
else:
    pathlib.Path("reports").mkdir(exist_ok=True)
    pathlib.Path("reports/report.md").write_text(f"made at commit {os.environ.get('COMMIT', 'x')}")
    provenance = {s: json.loads(pathlib.Path(f"timings/{s}.json").read_text())["numerics"] for s in ("prepare", "train")}
    pathlib.Path("reports/provenance.json").write_text(json.dumps({"stages": provenance}))
"""


def run(cmd, cwd, env, check=True):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, f"{cmd}: {result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A project after `dvc repro`, committed with its lock: the reference run."""
    tmp = tmp_path_factory.mktemp("verify")
    env = stage_env(tmp)
    root = tmp / "repo"
    root.mkdir()
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (root / "stage.py").write_text(STAGE)
    # stages listed downstream first: run order comes from what each reads
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "report": {"cmd": "python stage.py report", "deps": ["stage.py", "models/model.bin"],
                   "outs": [{"reports/report.md": {"cache": False}}, {"reports/provenance.json": {"cache": False}}],
                   "metrics": [{"timings/report.json": {"cache": False}}]},
        "train": {"cmd": "python stage.py train", "deps": ["stage.py", "data/prepared"],
                  "params": ["inpaint.seed", "inpaint.sweet_spot"],
                  "outs": ["models/model.bin"], "metrics": [{"metrics/score.json": {"cache": False}},
                                                            {"timings/train.json": {"cache": False}}]},
        "prepare": {"cmd": "python stage.py prepare", "deps": ["stage.py"], "params": ["prepare.seed"],
                    "outs": ["data/prepared"], "metrics": [{"timings/prepare.json": {"cache": False}}]},
    }}, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "t"], ["git", "config", "user.email", "t@t"],
                ["dvc", "init", "-q"], ["dvc", "repro", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "run"]):
        run(cmd, root, env)
    return root, env


@pytest.fixture
def project(committed, tmp_path):
    """A clone of the reference run's workspace, files, cache and all, to change."""
    root, env = committed
    clone = tmp_path / "clone"
    subprocess.run(["cp", "-a", str(root), str(clone)], check=True)
    return clone, env


def verify_cli(root, env, *args):
    return run(["python", "-m", "maskgit.verify", "--repo", str(root), *args], root, env, check=False)


def test_an_untouched_run_is_identical_and_exits_0(project):
    root, env = project
    result = verify_cli(root, env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["prepare: identical", "train: identical"]  # run order, not dvc.yaml's order
    assert lines[-1] == "every promised output matches HEAD's dvc.lock, bit for bit, as read from disk"


def test_an_edited_file_in_a_folder_is_named_though_the_lock_still_holds_the_old_hash(project):
    root, env = project
    (root / "data/prepared/1.txt").write_text("image 1, brighter")
    lock_before = (root / "dvc.lock").read_text()
    result = verify_cli(root, env)
    assert (root / "dvc.lock").read_text() == lock_before  # the lock is stale; verify reads the files
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "prepare: differs"
    assert lines[1].startswith("  data/prepared: edited 1.txt; dvc.lock here records HEAD's hash: changed since")
    assert "train: identical" in lines  # its model was made from the files before the edit
    assert lines[-1] == "first difference: prepare"


def test_a_missing_and_an_extra_file_are_named(project):
    root, env = project
    (root / "data/prepared/0.txt").unlink()
    (root / "data/prepared/9.txt").write_text("stray")
    result = verify_cli(root, env)
    assert result.returncode == 1
    assert "  data/prepared: missing 0.txt; extra 9.txt;" in result.stdout


def test_an_edited_metric_and_a_deleted_model_differ(project):
    root, env = project
    (root / "metrics/score.json").write_text(json.dumps({"fid": 1.0}))
    (root / "models/model.bin").unlink()
    result = verify_cli(root, env)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "train: differs" in lines
    assert "  models/model.bin: not here: `dvc repro` (or `dvc pull`) first" in lines
    assert any(line.startswith("  metrics/score.json: its bytes differ") for line in lines)
    assert lines[-1] == "first difference: train"


def test_the_report_and_wall_times_are_not_promised(project):
    # a reproduction made at another commit on another machine must pass
    root, env = project
    (root / "reports/report.md").write_text("made at commit 1234567 on another machine")
    (root / "timings/train.json").write_text(json.dumps({"stage": "train", "seconds": 99}))
    result = verify_cli(root, env)
    assert result.returncode == 0, result.stdout
    assert "report: nothing promised (it writes the report, or wall times)" in result.stdout


def test_params_edited_without_a_run_are_named_and_fail(project):
    root, env = project
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("  seed: 0", "  seed: 7", 1).replace("sweet_spot: 8 ", "sweet_spot: 4 "))
    result = verify_cli(root, env)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "params that differ from HEAD's run (`git diff HEAD -- params.yaml`):"
    assert "  inpaint.sweet_spot: 8 there, 4 here" in lines
    assert "  prepare.seed: 0 there, 7 here" in lines
    assert lines[-1].startswith("every promised output matches HEAD's dvc.lock, but params.yaml is not")


def test_a_param_only_one_side_sets_is_named(project):
    root, env = project
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    dvc_yaml["stages"]["train"]["params"].append("inpaint.total_iter")
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    result = verify_cli(root, env)
    assert result.returncode == 1
    assert "  inpaint.total_iter: not set there, 8 here" in result.stdout.splitlines()


def test_a_stage_that_stops_declaring_a_param_at_its_value_changes_no_param(project):
    # the reference run recorded inpaint.sweet_spot for train; today's train reads only
    # the seed, and params.yaml still holds the same sweet spot: no param differs
    root, env = project
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    dvc_yaml["stages"]["train"]["params"] = ["inpaint.seed"]
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    result = verify_cli(root, env)
    assert not any("params that differ" in line or "sweet_spot" in line for line in result.stdout.splitlines())
    assert result.returncode == 0, result.stdout
    # the same declaration with the value changed in params.yaml is named, from the file
    params = root / "params.yaml"
    params.write_text(re.sub(r"(?m)^(  sweet_spot: )\d+", r"\g<1>7", params.read_text(), count=1))
    lines = verify_cli(root, env).stdout.splitlines()
    assert any(line.startswith("  inpaint.sweet_spot: ") and line.endswith(", 7 here") for line in lines), lines


def test_a_run_under_other_numerics_names_the_first_stage_that_wrote_the_difference_and_why(project):
    root, env = project
    run(["dvc", "repro", "-f", "-q", "train"], root, {**env, "FLAVOUR": "b"})
    result = verify_cli(root, env)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    # prepare's folder is what train reads: the stage named is the one that wrote the difference
    assert lines[:3] == ["prepare: identical", "train: differs", "  models/model.bin: its bytes differ"]
    assert "    aten_capability: 'AVX2' there, 'AVX512' here" in lines
    assert not any("torch_threads" in line for line in lines)  # the same on both sides
    assert lines[-1] == "first difference: train"


def test_run_order_puts_the_writer_of_a_folder_before_its_readers():
    lock = {"tokenize": {"deps": [{"path": "data/prepared"}], "outs": [{"path": "data/tokens"}]},
            "train": {"deps": [{"path": "data/tokens/train.npy"}], "outs": [{"path": "models/t.pt"}]},
            "prepare": {"deps": [{"path": "stages/prepare.py"}], "outs": [{"path": "data/prepared"}]},
            "vqgan": {"deps": [{"path": "data/prepared/train"}], "outs": [{"path": "models/v.pt"}]}}
    order = verify.run_order(lock)
    assert order.index("prepare") < order.index("tokenize") < order.index("train")
    assert order.index("prepare") < order.index("vqgan")


@pytest.mark.parametrize("args, message", [
    (["--repo", "/nonexistent/project"], "error: verify: /nonexistent/project: no such folder"),
    (["--rev", "no-such-tag"], "error: verify: no-such-tag: not a revision of the git repository at"),
])
def test_a_missing_repository_or_revision_is_one_line_exit_2(project, args, message):
    root, env = project
    result = run(["python", "-m", "maskgit.verify", *args], root, env, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr


def test_a_revision_without_a_lock_is_one_line(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "empty",
                    "--allow-empty"], check=True)
    with pytest.raises(SystemExit) as stop:
        verify.main(["--repo", str(tmp_path)])
    assert stop.value.code == 2


def test_libraries_listed_in_another_load_order_are_the_same_field():
    there = {"blas": "openblas 0.3.31 (Haswell, 1 threads); openblas 0.3.30 (Haswell, 1 threads)"}
    here = {"blas": "openblas 0.3.30 (Haswell, 1 threads); openblas 0.3.31 (Haswell, 1 threads)"}
    assert verify.differing_fields(there, here) == []
    here["blas"] = "openblas 0.3.30 (SkylakeX, 1 threads); openblas 0.3.31 (Haswell, 1 threads)"
    assert len(verify.differing_fields(there, here)) == 1


def test_a_scalar_where_dvc_expects_a_list_is_one_line_naming_the_param(project):
    root, env = project
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("  schedules: [cosine, linear, square]", "  schedules: cosine"))
    result = verify_cli(root, env)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: verify: ") and "inpaint.schedules" in result.stderr


# the shapes of the lines verify writes (maskgit/verify.py): a stage, a file under it,
# the numerics header and its fields, a param, the verdict lines
VERIFY_LINE = re.compile(
    r"^(?:[\w@.-]+: (?:identical|differs|nothing promised \(.*\)|not in \S+ run \(not compared\))"
    r"|  \S+: (?:its bytes differ|not here: .*|(?:edited|missing|extra) .*|\S+'s file list is not in the DVC cache .*)"
    r"|  what decided its bits, committed run against this one:"
    r"|    \w+: .+ there, .+ here"
    r"|  [\w.]+: .+ there, .+ here"
    r"|params that differ from \S+ run .*"
    r"|first difference: [\w@.-]+"
    r"|every promised output matches .*)$")


def test_the_documented_example_has_the_lines_verify_writes(project):
    doc = (ROOT / "docs" / "reproducibility.md").read_text()
    section = doc[doc.index("## Checking a run"):]
    example = re.search(r"^```\n(.*?)^```", section, flags=re.S | re.M).group(1).splitlines()
    assert example and all(VERIFY_LINE.match(line) for line in example), \
        [line for line in example if not VERIFY_LINE.match(line)]
    # and the pattern is no wider than verify: its own lines on a run that differs match it
    root, env = project
    run(["dvc", "repro", "-f", "-q", "train"], root, {**env, "FLAVOUR": "b"})
    written = verify_cli(root, env).stdout.splitlines()
    assert written and all(VERIFY_LINE.match(line) for line in written), written
    assert not VERIFY_LINE.match("train: fine") and not VERIFY_LINE.match("  models/model.bin: changed")
