"""The experiments page reads the last commit's experiments by default, every
commit's with --all-commits: in a clone of this project the history holds the
project's own default runs, which must not count as a user's sweep."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import ROOT, stage_env
from maskgit.pages.experiments import FID, render


def git_dvc_repo_with_two_runs(root, env):
    root.mkdir()
    (root / "metrics").mkdir()
    (root / "dvc.yaml").write_text("metrics:\n  - metrics/fid_schedules.json\nparams:\n  - params.yaml\n")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "t"], ["git", "config", "user.email", "t@t"],
                ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    for sweet_spot, fid in ((8, 50.0), (4, 40.0)):  # an older commit, then the current one
        (root / "params.yaml").write_text(yaml.safe_dump({"inpaint": {"sweet_spot": sweet_spot}}))
        (root / "metrics/fid_schedules.json").write_text(json.dumps({"cosine": {"fid": fid, "kid": 0.0,
                                                                                 "kid_std": 0.0}}))
        for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", f"run {sweet_spot}"]):
            subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)


def build_page(root, env, *flags):
    result = subprocess.run([sys.executable, "-m", "maskgit.experiments", *flags], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return (root / "reports/experiments.md").read_text()


def test_only_the_last_commit_unless_all_commits(tmp_path):
    env = stage_env(tmp_path)
    root = tmp_path / "repo"
    git_dvc_repo_with_two_runs(root, env)
    page = build_page(root, env)
    assert "1 experiments; swept: nothing." in page and "40" in page and "50" not in page
    page = build_page(root, env, "--all-commits")
    assert "2 experiments; swept: inpaint.sweet_spot." in page
    assert "## FID against inpaint.sweet_spot" in page


def test_tied_experiments_are_all_marked_best_in_every_table(tmp_path):
    # the main table lists experiments in dvc's order, the sweep table by value: with
    # one winner per table a tie would name different experiments in the two
    frame = pd.DataFrame({"experiment": ["c", "a", "b"], "inpaint.total_iter": [8, 4, 6],
                          f"{FID}cosine": [172.15, 172.15, 172.15], f"{FID}linear": [180.0, 175.0, 190.0]})
    page = render(frame, tmp_path / "reports/experiments.md")
    rows = [line for line in page.splitlines() if line.startswith("|") and "172.15" in line]
    assert len(rows) == 6 and all("**best**" in r for r in rows)

    frame.loc[1, f"{FID}cosine"] = 172.14
    page = render(frame, tmp_path / "reports/experiments.md")
    best = [line for line in page.splitlines() if "**best**" in line]
    assert len(best) == 2 and all("a" in [cell.strip() for cell in line.split("|")] for line in best)


def test_seeds_are_grouped_and_paired_marks_replace_the_precision_rule(tmp_path):
    frame = pd.DataFrame({"experiment": ["s0", "s1", "s2", "t4"], "inpaint.seed": [0, 1, 2, 0],
                          "inpaint.total_iter": [8, 8, 8, 4], f"{FID}cosine": [60.0, 62.0, 64.0, 70.0]})
    page = render(frame, tmp_path / "reports/experiments.md",
                  marks={"s0": "**best**", "s1": "tied", "s2": "", "t4": "no evidence"})
    seeds = page.split("## Seeds")[1].split("##")[0]
    assert "s0, s1, s2" in seeds and "0, 1, 2" in seeds and "62.00 ± 2.00" in seeds  # sd of 60, 62, 64
    assert "t4" not in seeds  # its params differ beyond the seed
    main = page.split("## FID per decoder")[1].split("##")[0]
    rows = {line.split("|")[2].strip(): line.split("|")[1].strip() for line in main.splitlines()
            if line.startswith("|") and "---" not in line and "experiment" not in line}
    assert rows == {"s0": "**best**", "s1": "tied", "s2": "", "t4": "no evidence"}


def test_figures_go_beside_the_page_never_into_a_stage_output(tmp_path):
    # reports/figures belongs to the plots stage: a figure there makes `dvc status`
    # report the pipeline changed, and the next repro deletes it under the page's link
    frame = pd.DataFrame({"experiment": ["a", "b"], "inpaint.total_iter": [4, 8],
                          f"{FID}cosine": [170.0, 160.0]})
    page = render(frame, tmp_path / "reports/experiments.md")
    assert not (tmp_path / "reports/figures").exists()
    assert (tmp_path / "reports/experiments/inpaint_total_iter.png").is_file()
    assert "](experiments/inpaint_total_iter.png)" in page


@pytest.mark.parametrize("tool, argv, expected", [
    ("tune", ["--param", "train_transformer.lrr"], "unknown param train_transformer.lrr; known in train_transformer"),
    ("tune", ["--set", "inpant.total_iter=4"], "unknown param inpant.total_iter (params.yaml has no 'inpant' section"),
    ("bench", ["--only", "decodee"], "--only: unknown section 'decodee'"),
])
def test_tools_refuse_unknown_names_before_writing(tmp_path, monkeypatch, capsys, tool, argv, expected):
    import importlib

    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(f"maskgit.{tool}").main
    with pytest.raises(SystemExit) as exit_:
        main(argv + (["--out", str(tmp_path / "out")] if tool == "bench" else []))
    lines = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {tool}: ") and expected in lines[0]
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


def test_intervals_come_from_the_scalars_dvc_exp_show_keeps(tmp_path):
    # dvc exp show drops lists from metrics: the evaluation's low/high scalars carry the interval
    from maskgit.pages.experiments import experiments_frame

    def exp(name, fid, low, high):
        return {"name": name, "rev": "0" * 40, "data": {
            "params": {"params.yaml": {"data": {"inpaint": {"sweet_spot": fid}}}},
            "metrics": {"metrics/fid_schedules.json": {"data": {"cosine": {"fid": fid}}},
                        "metrics/evaluation.json": {"data": {"sets": {"cosine": {"fid": {
                            "value": fid, "low": low, "high": high}}}}}}}}

    frame = experiments_frame([{"rev": "workspace", "data": {}},
                               {"rev": "a" * 40, "data": {}, "experiments": [{"revs": [exp("x", 60.0, 55.5, 66.25)]},
                                                                           {"revs": [exp("y", 61.0, 57.0, 67.0)]}]}])
    assert list(frame["interval cosine"]) == ["[55.50, 66.25]", "[57.00, 67.00]"]
    page = render(frame, tmp_path / "reports/experiments.md", marks={"x": "**best**", "y": "tied"})
    assert "[55.50, 66.25]" in page and "| tied" in page


def test_fids_come_from_the_evaluation_git_keeps_when_the_fid_files_were_not_pulled(tmp_path):
    # the FID stages' files are in the DVC cache (a sweep point takes an unchanged FID stage
    # from the run cache); a machine that pulled only the experiment refs has
    # metrics/evaluation.json alone, and the page reads every FID from it
    from maskgit.pages.experiments import experiments_frame

    def fid(value):
        return {"fid": {"value": value, "low": value - 5, "high": value + 5}}

    sets = {"cosine": fid(60.0), "linear-halton": fid(58.5), "recon": fid(20.0), "masked_input": fid(100.0)}
    pulled = {"name": "x", "rev": "1" * 40, "data": {
        "params": {"params.yaml": {"data": {"inpaint": {"sweet_spot": 4}}}},
        "metrics": {"metrics/evaluation.json": {"data": {"images": 150, "sets": sets}}}}}
    local = {"name": "y", "rev": "2" * 40, "data": {  # both files: the evaluation's value wins
        "params": {"params.yaml": {"data": {"inpaint": {"sweet_spot": 8}}}},
        "metrics": {"metrics/fid_schedules.json": {"data": {"cosine": {"fid": 99.0}}},
                    "metrics/evaluation.json": {"data": {"images": 150, "sets": {"cosine": fid(61.0)}}}}}}
    frame = experiments_frame([{"rev": "a" * 40, "data": {}, "experiments": [{"revs": [pulled]}, {"revs": [local]}]}])
    x, y = frame.set_index("experiment").loc["x"], frame.set_index("experiment").loc["y"]
    assert (x["FID cosine"], x["FID linear-halton"], x["interval linear-halton"]) == (60.0, 58.5, "[53.50, 63.50]")
    assert (x["baseline FID recon"], x["baseline FID masked_input"]) == (20.0, 100.0)
    assert "FID recon" not in frame.columns  # a baseline is not a decoder
    assert y["FID cosine"] == 61.0


@pytest.mark.parametrize("dvc, expected", [
    (None, "error: experiments: dvc is not on PATH"),
    ("echo 'ERROR: you are not inside of a DVC repository' >&2; exit 1",
     "error: experiments: dvc exp show failed: ERROR: you are not inside of a DVC repository"),
    ("echo 'WARNING: a plugin speaks on stdout'; echo '[]'",
     "error: experiments: `dvc exp show --json` printed no JSON (Expecting value at line 1): WARNING: a plugin"),
])
def test_what_dvc_says_or_fails_to_say_is_one_line(tmp_path, dvc, expected):
    # dvc's failures and output are the page's input, not bugs of the page: one line each
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    if dvc is not None:
        (bin_ / "dvc").write_text(f"#!/bin/sh\n{dvc}\n")
        (bin_ / "dvc").chmod(0o755)
    env = {"PATH": str(bin_), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "maskgit.experiments"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), result.stderr
    assert not (tmp_path / "reports").exists()


def test_the_sweep_plot_draws_each_fid_with_its_interval(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from maskgit.pages import experiments as page

    frame = pd.DataFrame({"experiment": ["a", "b", "c"], "inpaint.sweet_spot": [2, 4, 8],
                          "FID cosine": [70.0, 69.0, 71.5],
                          "interval cosine": ["[62.00, 78.00]", "[61.50, 77.00]", "[63.00, 80.00]"]})
    table = page.sweep_table(frame, "inpaint.sweet_spot", [])
    assert "interval cosine" in table.columns  # the table beside the plot carries the intervals too
    drawn = []
    original = Axes.errorbar
    monkeypatch.setattr(Axes, "errorbar", lambda self, x, y, yerr=None, **kw: drawn.append(yerr) or original(
        self, x, y, yerr=yerr, **kw))
    page.plot_sweep(table, "inpaint.sweet_spot", tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").is_file() and len(drawn) == 1
    low, high = drawn[0]
    assert list(low) == [8.0, 7.5, 8.5] and list(high) == [8.0, 8.0, 8.5]


def test_the_image_count_stands_beside_every_fid_and_a_mixed_count_is_said_plainly(tmp_path):
    from maskgit.pages.experiments import experiments_frame

    def entry(name, fid, images):
        return {"name": name, "rev": name, "data": {
            "params": {"params.yaml": {"data": {"inpaint": {"total_iter": 8 if images == 150 else 4}}}},
            "metrics": {"metrics/fid_schedules.json": {"data": {"cosine": {"fid": fid}}},
                        "metrics/evaluation.json": {"data": {"images": images, "sets": {}}}}}}

    shown = [{"rev": "workspace", "name": None, "experiments": [{"revs": [entry("e150", 70.0, 150)]},
                                                                 {"revs": [entry("e747", 40.0, 747)]}]}]
    frame = experiments_frame(shown)
    assert list(frame["images"]) == [150, 747]
    page = render(frame, tmp_path / "reports/experiments.md")
    assert "scored different numbers of test images (150, 747)" in page
    header = next(line for line in page.splitlines() if line.startswith("|") and "experiment" in line)
    assert "images" in header and "images" not in page.split("swept:")[1].splitlines()[0]
    same = render(frame.assign(images=[150, 150]), tmp_path / "reports/experiments.md")
    assert "different numbers of test images" not in same


def test_failed_queued_and_running_experiments_are_listed_not_scored(tmp_path):
    # built with the installed DVC's own serialisation (what `dvc exp show --json` prints):
    # a failed queued experiment is collected at its stash commit, whose metrics are the
    # baseline's, so its FID would be the baseline's under the experiment's params
    from dvc.commands.experiments.show import _format_json
    from dvc.repo.experiments.serialize import ExpExecutor, ExpRange, ExpState, SerializableError

    from maskgit.pages.experiments import experiments_frame

    def data(sweet_spot, fid):
        return {"params": {"params.yaml": {"data": {"inpaint": {"sweet_spot": sweet_spot}}}},
                "metrics": {"metrics/fid_schedules.json": {"data": {"cosine": {"fid": fid}}}}}

    def ran(name, state, sweet_spot, error=None):
        rev = ExpState(rev=name * 40, name=name, data=data(sweet_spot, 40.0), error=error)
        return ExpRange([rev], executor=ExpExecutor(state), name=name)

    baseline = ExpState(rev="b" * 40, data=data(8, 40.0), experiments=[
        ran("d", "success", 4), ran("e", "failed", 99, SerializableError("Experiment run failed")),
        ran("f", "queued", 5), ran("c", "running", 6)])
    shown = json.loads(json.dumps([ExpState(rev="workspace", data=data(8, 40.0)).dumpd(), baseline.dumpd()],
                                  default=_format_json))
    frame = experiments_frame(shown)
    assert sorted(frame["experiment"]) == ["bbbbbbb", "d"]
    page = render(frame, tmp_path / "reports/experiments.md")
    assert "Not scored (3): e (failed), f (queued), c (running)." in page
    assert "99" not in page.split("Not scored")[1].split("\n", 1)[1]


def test_no_baseline_is_read_as_a_decoder_or_crowned_best_the_harmonic_fill_included(tmp_path):
    # the harmonic fill scores the lowest FID here: it stays a baseline column, and the
    # best FID and its mark go to the decoders alone, read from the evaluation or, for a
    # commit from before it, from the FID stages' own files
    from maskgit.pages.experiments import experiments_frame
    from maskgit.project.grid import BASELINES

    def fid(value):
        return {"fid": {"value": value, "low": value - 5, "high": value + 5}}

    baselines = {"masked_input": 100.0, "onestep": 70.0, "recon": 20.0, "harmonic": 30.0}
    new = {"name": "new", "rev": "1" * 40, "data": {
        "params": {"params.yaml": {"data": {"inpaint": {"sweet_spot": 4}}}},
        "metrics": {"metrics/evaluation.json": {"data": {"images": 150, "sets": {
            "cosine": fid(60.0), "cosine-halton": fid(58.0), **{b: fid(v) for b, v in baselines.items()}}}}}}}
    old = {"name": "old", "rev": "2" * 40, "data": {
        "params": {"params.yaml": {"data": {"inpaint": {"sweet_spot": 8}}}},
        "metrics": {"metrics/fid_schedules.json": {"data": {"cosine": {"fid": 62.0}}},
                    "metrics/fid_baselines.json": {"data": {b: {"fid": v} for b, v in baselines.items()}}}}}
    frame = experiments_frame([{"rev": "a" * 40, "data": {}, "experiments": [{"revs": [new]}, {"revs": [old]}]}])
    assert sorted(c for c in frame.columns if c.startswith(FID)) == ["FID cosine", "FID cosine-halton"]
    assert set(BASELINES) == {"masked_input", "onestep", "recon", "harmonic"}
    for b, v in baselines.items():
        assert list(frame[f"baseline FID {b}"]) == [v, v]
    page = render(frame, tmp_path / "reports/experiments.md")
    best = [line for line in page.splitlines() if line.startswith("| **best**")]
    assert len(best) >= 1 and all("| new " in line and "58" in line for line in best), page
    assert "| 30 " not in page.split("## FID against")[0]  # the harmonic fill's FID is nobody's best FID
