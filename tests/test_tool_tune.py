"""maskgit.tune under run_tool: bad input is one line and exit 2, before any trial where
it can be; a bug inside the study keeps its traceback (tune once turned every
ValueError into a one-line exit, hiding bugs)."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, stage_env
from maskgit import tune


def run_tune(tmp_path, *args):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    env = stage_env(tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "maskgit.tune", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, expected", [
    (["--param", "train_transformer.lrr"], "error: tune: --param: unknown param train_transformer.lrr; known in "
                                           "train_transformer: "),
    (["--set", "inpaint.total_iter"], "error: tune: --set inpaint.total_iter: expected KEY=VALUE"),
    (["--low", "0.1", "--high", "0.01"], "error: tune: --low 0.1 --high 0.01: need 0 < low < high"),
    (["--objective", "psnr"], "error: tune: --objective psnr: expected val_loss | fid:<decoder>"),
    (["--jobs", "0"], "error: tune: --jobs 0: must be >= 1"),
    (["--high", "inf"], "error: tune: --low 0.0001 --high inf: need 0 < low < high"),
])
def test_bad_flags_are_one_line_and_exit_2_before_anything_runs(tmp_path, args, expected):
    result = run_tune(tmp_path, *args)
    assert result.returncode == 2 and result.stderr.splitlines()[0].startswith(expected), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "reports").exists() and not (tmp_path / ".sweep").exists(), "nothing written"


@pytest.mark.parametrize("args, expected", [
    # the value DVC would refuse inside its matrix, in the middle of the study
    (["--set", "inpaint.schedules=cosine"], "error: tune: params.yaml with train_transformer.lr=0.0001 "
                                            "inpaint.schedules=cosine: inpaint.schedules"),
    # a float range for an integer param: every trial would fail the stage's check
    (["--param", "inpaint.total_iter", "--low", "2", "--high", "9"],
     "error: tune: params.yaml with inpaint.total_iter=2.0: inpaint.total_iter"),
])
def test_a_trial_value_params_yaml_would_refuse_is_one_line_before_any_trial(tmp_path, args, expected):
    result = run_tune(tmp_path, *args)
    assert result.returncode == 2 and result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_failed_trial_is_one_line_not_optunas_traceback(tmp_path):
    # not a DVC project: the trial's `dvc exp run` fails. Optuna's optimize() would log
    # the trial's exception with its traceback before the study's own error line
    result = run_tune(tmp_path, "--trials", "2", "--study", "t")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tune: trial t-0: `dvc exp run --name t-0 -S "), lines
    assert "Traceback" not in result.stderr and not (tmp_path / "reports").exists()


@pytest.fixture
def no_dvc(monkeypatch, tmp_path):
    """tune in an empty folder with the trial's `dvc exp run` replaced by nothing: each
    trial then reads whatever objective file the test left."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.delenv("MASKGIT_DEBUG", raising=False)
    ran = []
    monkeypatch.setattr(tune, "run_trial", lambda name, param, value, extra: ran.append(name))
    return ran


def test_a_bug_in_a_trial_keeps_its_traceback(no_dvc, monkeypatch):
    def bug(objective):
        raise ValueError("a bug in reading the objective")

    monkeypatch.setattr(tune, "read_objective", bug)
    with pytest.raises(ValueError, match="a bug in reading the objective"):
        tune.main(["--trials", "2", "--study", "b"])
    assert no_dvc == ["b-0"]  # the study stopped at the first trial


def test_a_missing_key_in_the_objective_is_a_bug_with_its_traceback(no_dvc, tmp_path):
    path = tmp_path / "dvclive/transformer/metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"loss": 1.0}))  # the stage writes val_loss: its absence is this code's bug
    with pytest.raises(KeyError, match="val_loss"):
        tune.main(["--trials", "1"])


@pytest.mark.parametrize("objective, text, expected", [
    ("val_loss", '{"val_loss": 1.', "dvclive/transformer/metrics.json: not JSON"),
    ("fid:nosuch", json.dumps({"cosine": {"fid": 60.0}}), "--objective fid:nosuch: no FID for decoder 'nosuch' "
                                                          "(have cosine)"),
])
def test_a_bad_objective_file_or_schedule_is_one_line(no_dvc, tmp_path, capsys, objective, text, expected):
    path = tmp_path / tune.objective_path(objective)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(SystemExit) as stop:
        tune.main(["--trials", "1", "--objective", objective])
    lines = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: tune: {expected}"), lines
    assert not (tmp_path / "reports").exists()


def test_the_study_runs_every_trial_and_writes_its_table(no_dvc, tmp_path, monkeypatch):
    # the "here" executor without Optuna's optimize(): every trial asked, run, told
    losses = iter([3.0, 1.0, 2.0])
    monkeypatch.setattr(tune, "read_objective", lambda objective: next(losses))
    built = []
    monkeypatch.setattr(tune, "build_page", lambda **kw: built.append(kw))
    tune.main(["--trials", "3", "--study", "s"])
    study = json.loads((tmp_path / "reports/study.json").read_text())
    assert no_dvc == ["s-0", "s-1", "s-2"] and [t["val_loss"] for t in study["trials"]] == [3.0, 1.0, 2.0]
    assert study["best"]["experiment"] == "s-1" and built == [{"pull": False, "git_remote": None}]


def test_the_users_params_yaml_comes_back_after_the_study(no_dvc, tmp_path, monkeypatch, capsys):
    # each `dvc exp run` in the workspace leaves its trial's value (DVC rewrites the file)
    mine = (ROOT / "params.yaml").read_text() + "# my own comment\n"
    (tmp_path / "params.yaml").write_text(mine)
    monkeypatch.setattr(tune, "run_trial", lambda name, param, value, extra: (tmp_path / "params.yaml").write_text(
        f"train_transformer:\n  lr: {value}\n"))
    losses = iter([3.0, 1.0])
    monkeypatch.setattr(tune, "read_objective", lambda objective: next(losses))
    monkeypatch.setattr(tune, "build_page", lambda **kw: None)
    tune.main(["--trials", "2", "--study", "p"])
    assert (tmp_path / "params.yaml").read_text() == mine
    assert "params.yaml: put back as it was before the study" in capsys.readouterr().err


def test_a_damaged_journal_is_one_line_naming_it(tmp_path):
    journal = tmp_path / "study.journal"
    journal.write_text('{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}\n{"op_code": 1')
    result = run_tune(tmp_path, "--storage", str(journal), "--trials", "1", "--study", "s")
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0] == (f"error: tune: {journal}: line 2 is not an Optuna journal operation (a damaged or "
                        "foreign file); pass another --storage or move it away"), lines


def test_without_optuna_the_extra_is_named(no_dvc, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an install without the extra gives
    with pytest.raises(SystemExit) as stop:
        tune.main(["--trials", "1"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: tune: maskgit.tune needs optuna, an optional extra: pip install -e '.[tune]'"]


def test_an_interrupted_trial_leaves_gits_index_as_the_study_found_it(no_dvc, tmp_path, monkeypatch, capsys):
    # a `dvc exp run` stopped by Ctrl-C was seen to leave its trial's params.yaml and
    # dvc.lock staged, so the user's next `git commit` committed the trial; the user's own
    # staged file stays staged as it was
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / "notes.txt").write_text("mine\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run")
    (tmp_path / "notes.txt").write_text("mine, edited and staged\n")
    git("add", "notes.txt")
    before = git("ls-files", "--stage")

    def interrupted_trial(name, param, value, extra):
        (tmp_path / "params.yaml").write_text((tmp_path / "params.yaml").read_text() + f"# trial {value}\n")
        (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
        (tmp_path / "notes.txt").write_text("changed by the trial\n")
        git("add", "params.yaml", "dvc.lock", "notes.txt")
        raise KeyboardInterrupt

    monkeypatch.setattr(tune, "run_trial", interrupted_trial)
    with pytest.raises(SystemExit) as stop:
        tune.main(["--trials", "1", "--study", "i"])
    assert stop.value.code == 130
    assert git("ls-files", "--stage") == before  # the index: HEAD's params.yaml and dvc.lock, the user's notes.txt
    err = capsys.readouterr().err
    assert "git index: dvc.lock, notes.txt, params.yaml put back as staged before the study" in err
