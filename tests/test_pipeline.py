"""The whole DAG on the tiny preset in a temporary git repo, then an experiment that
changes only the sweet spot. Never touches the developer's checkout."""

import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import copy_project, stage_env
from maskgit import verify

pytestmark = pytest.mark.pipeline

TRAINING_STAGES = ["prepare", "train_vqgan", "tokenize", "train_transformer"]


def run(cmd, cwd, env, timeout=900):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def tiny_repro(tmp, fid_weights, customise=None):
    """A copy of the project on the tiny preset, in its own git repo, after `dvc repro`.
    fid_weights: the Inception weights (conftest's fixture: ../shared's, or converted).
    customise(project) may write a preset and return its name, applied after tiny."""
    project = copy_project(tmp / "project")
    env = stage_env(tmp)
    (project / "configs/test-fid.yaml").write_text(f"fid:\n  inception_weights: {fid_weights}\n")
    presets = ["tiny", "test-fid"] + ([customise(project)] if customise is not None else [])
    run(["python", "-m", "maskgit.preset", *presets], project, env)
    for old in (project / "metrics").glob("*.json"):  # the checkout's default-run metrics: not this run's
        old.unlink()
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "test"],
                ["git", "config", "user.email", "test@example.com"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "tiny"]):
        run(cmd, project, env)
    out = run(["dvc", "repro"], project, env)
    return project, env, out


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory, fid_weights):
    return tiny_repro(tmp_path_factory.mktemp("pipeline"), fid_weights)


def read_json(path):
    return json.loads(path.read_text())


def test_repro_runs_every_stage_and_writes_the_report(tiny_project):
    project, env, out = tiny_project
    for stage in TRAINING_STAGES + ["inpaint@cosine-confidence", "inpaint@linear-confidence", "inpaint@square-confidence", "inpaint@cosine-halton", "baselines",
                                    "fid_reference", "fid_baselines", "fid", "evaluate", "plots", "report"]:
        assert f"Running stage '{stage}'" in out
    fid = read_json(project / "metrics/fid_decoders.json")
    assert list(fid) == ["cosine", "linear", "square", "cosine-halton", "linear-halton", "square-halton"]
    baselines = read_json(project / "metrics/fid_baselines.json")
    assert set(baselines) == {"masked_input", "harmonic", "onestep", "recon"}
    for entry in [*fid.values(), *baselines.values()]:
        assert math.isfinite(entry["fid"]) and entry["fid"] >= 0
    report = (project / "reports/report.md").read_text()
    for schedule in fid:
        assert schedule in report
    assert (project / "reports/figures").is_dir() and any((project / "reports/figures").glob("*.png"))
    # images in, images out, one per test image
    n_test = len(list((project / "data/prepared/test/gt").glob("*.png")))
    assert len(list((project / "outputs/inpaint/confidence/cosine/images").glob("*.png"))) == n_test
    assert "up to date" in run(["dvc", "status"], project, env).lower()


def test_the_masked_input_is_judged_worse_than_the_reconstruction_and_every_pair_has_a_verdict(tiny_project):
    project, _, _ = tiny_project
    evaluation = read_json(project / "metrics/evaluation.json")
    n_test = len(list((project / "data/prepared/test/gt").glob("*.png")))
    assert evaluation["images"] == n_test
    for name in ("cosine", "masked_input", "recon"):
        assert (project / f"outputs/fid/{'decoders' if name == 'cosine' else 'baselines'}/{name}.npz").is_file()
    pairs = {(p["a"], p["b"], p["metric"]): p for p in evaluation["pairs"]}
    # a clearly worse setting: the holes left gray against the VQGAN reconstruction of the truth
    for metric in ("fid", "hole_psnr"):
        worse = pairs[("masked_input", "recon", metric)]
        assert worse["verdict"] == "worse", worse
        lo, hi = worse["interval"]
        assert (lo > 0) if metric == "fid" else (hi < 0), worse
    for a, b in (("cosine", "linear"), ("cosine", "square"), ("linear", "square"), ("square", "onestep"),
                 ("cosine", "harmonic"), ("linear", "masked_input")):
        # identical is a verdict too: the tiny transformer barely reads its context, and
        # two decoders can fill every test image alike (cosine and square here)
        assert pairs[(a, b, "fid")]["verdict"] in ("better", "worse", "indistinguishable", "identical")
    for entry in evaluation["sets"].values():
        lo, hi = entry["fid"]["interval"]
        assert lo <= entry["fid"]["value"] <= hi
    report = (project / "reports/report.md").read_text()
    assert "masked input vs VQGAN recon.: **worse**" in report
    assert f"Each set of {n_test} scored test images" in report and "## Provenance" in report
    assert (project / "reports/evaluation/mask_area.png").is_file()


def test_a_rerun_that_writes_the_same_images_does_not_rerun_fid(tiny_project):
    # Determinism on CPU, checked on this run instead of a second full `dvc repro`:
    # forced re-runs of data preparation, tokenizing, inpainting and the baselines write
    # the same bytes (DVC's output hashes do not move), so nothing downstream re-runs
    # but the report (timings go to timings/, uncached, and only the report shows them).
    # Training's determinism is checked in-process (tests/test_resume.py).
    project, env, _ = tiny_project
    before = {p: p.read_bytes() for p in sorted((project / "data/tokens").glob("*.npy"))}
    run(["dvc", "repro", "--force", "--single-item", "prepare", "tokenize", "inpaint@cosine-confidence", "baselines"],
        project, env)
    assert before and all(p.read_bytes() == b for p, b in before.items())
    out = run(["dvc", "repro"], project, env)
    for stage in ["train_vqgan", "train_transformer", "fid_reference", "fid_baselines", "fid", "evaluate", "plots"]:
        assert f"Running stage '{stage}'" not in out, f"{stage} re-ran after an identical re-run"
    assert "Running stage 'report'" in out
    timing = read_json(project / "timings/inpaint-cosine-confidence.json")
    assert timing["decode_seconds"] > 0 and "seconds" not in read_json(project / "outputs/inpaint/confidence/cosine/info.json")


FINGERPRINTS = Path(__file__).parent / "fingerprints" / "tiny_portable.json"


def output_hashes(project) -> dict:
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {f"{name} {o['path']}": o["md5"] for name, stage in stages.items() for o in stage.get("outs", [])
            if not o["path"].startswith(verify.UNPROMISED)}


def test_the_tiny_portable_run_gives_the_committed_bytes(tiny_project):
    # the fingerprints were made by the same DAG on another run, committed: on any x86-64
    # CPU with AVX2 portable mode must give them (update: tools/fingerprints.py)
    project, _, _ = tiny_project
    assert read_json(project / "timings/train_transformer.json")["numerics"]["mode"] == "portable"
    committed = read_json(FINGERPRINTS)
    expected, got = committed["outputs"], output_hashes(project)
    assert set(got) == set(expected)
    differ = [k for k in expected if got[k] != expected[k]]
    here = read_json(project / "timings/train_transformer.json")["numerics"]
    versions = {k: (v, here.get(k)) for k, v in committed["made_on"].items()
                if k not in ("cpu", "cpu_flags", "blas") and here.get(k) != v}
    assert not differ, f"outputs that differ from {FINGERPRINTS.name}: {differ}; settings that differ: {versions}"


def test_portable_mode_gives_the_same_bytes_started_under_other_native_settings(tiny_project, tmp_path):
    # ATen at its plain C++ kernels, oneDNN at AVX-512, another OpenBLAS core and two
    # threads: portable mode overrides them all; the data and both trainings match
    project, env, _ = tiny_project
    other = copy_project(tmp_path / "other")
    shutil.copy(project / "params.yaml", other / "params.yaml")
    shutil.copytree(project / "configs", other / "configs", dirs_exist_ok=True)
    native = {**env, "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
              "OPENBLAS_CORETYPE": "Zen", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "other"],
                ["dvc", "repro", "train_transformer"]):
        run(cmd, other, native)
    numerics = read_json(other / "timings/train_transformer.json")["numerics"]
    assert (numerics["aten_capability"], numerics["torch_threads"]) == ("AVX2", 1)
    ran = {k: v for k, v in output_hashes(other).items() if k.split()[0] in TRAINING_STAGES}
    reference = output_hashes(project)
    assert len(ran) == 6 and all(reference[k] == v for k, v in ran.items()), ran


def test_verify_names_the_first_stage_a_native_run_changes_and_why(tiny_project, tmp_path):
    project, env, _ = tiny_project
    clone = tmp_path / "clone"
    shutil.copytree(project, clone, symlinks=True)
    run(["git", "add", "-A"], clone, env)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "the portable run"], clone, env)
    assert "every promised output matches" in run(["python", "-m", "maskgit.verify"], clone, env)
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("  mode: portable", "  mode: native", 1))
    run(["dvc", "repro", "train_vqgan"], clone, env)
    result = subprocess.run(["python", "-m", "maskgit.verify"], cwd=clone, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    # the data are the same bytes in either mode; training is where native kernels show
    assert "prepare: identical" in lines
    stage = lines.index("train_vqgan: differs")
    details = lines[stage + 1:lines.index("first difference: train_vqgan")]
    assert "  models/vqgan.pt: its bytes differ" in details, lines
    assert lines[-1] == "first difference: train_vqgan"
    assert "    mode: 'portable' there, 'native' here" in lines
    assert any(line.startswith("    aten_capability: 'AVX2' there") for line in lines)


def test_a_fixed_typo_costs_no_training(tiny_project):
    # a bad param fails the stage after DVC deleted its outputs; fixed, the earlier
    # result comes back from DVC's run cache (every non-metric output is cached) and
    # nothing trains again
    project, env, _ = tiny_project
    params = project / "params.yaml"
    good, model = params.read_text(), (project / "models/transformer.pt").read_bytes()
    head, tail = good.split("train_transformer:\n", 1)
    params.write_text(head + "train_transformer:\n" + tail.replace("  steps: ", "  steps: -", 1))
    failed = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert failed.returncode != 0
    assert "train_transformer.steps must be an integer >= 1" in failed.stdout + failed.stderr
    assert not (project / "models/transformer.pt").exists()  # DVC removed it before running
    params.write_text(good)
    out = run(["dvc", "repro"], project, env)
    assert "Stage 'train_transformer' is cached - skipping run" in out
    assert "Running stage" not in out, out
    assert (project / "models/transformer.pt").read_bytes() == model
    assert (project / "dvclive/transformer/metrics.json").is_file()
    assert (project / "timings/train_transformer.json").is_file()


def test_sweet_spot_experiment_reruns_only_inpainting(tiny_project):
    project, env, _ = tiny_project
    out = run(["dvc", "exp", "run", "-S", "inpaint.sweet_spot=2"], project, env)
    for stage in TRAINING_STAGES + ["baselines", "fid_reference", "fid_baselines"]:
        assert f"Running stage '{stage}'" not in out, f"{stage} re-ran"
    for stage in ["inpaint@cosine-confidence", "inpaint@linear-confidence", "inpaint@square-confidence", "inpaint@cosine-halton", "fid", "plots", "report"]:
        assert f"Running stage '{stage}'" in out
    # evaluate reads only the per-image evidence: it re-runs when that changed, and is
    # skipped when the tiny model's fills came out the same at both sweet spots
    evidence_same = "Stage 'evaluate' didn't change, skipping" in out
    assert evidence_same or "Running stage 'evaluate'" in out
    info = read_json(project / "outputs/inpaint/confidence/cosine/info.json")
    assert info["sweet_spot"] == 2
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=project, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    text = json.dumps(json.loads(shown.stdout))
    # every schedule's FID is listed per experiment, from the evaluation that git keeps
    assert "evaluation.json" in text and '"cosine"' in text and '"square"' in text



def wait_for_queue(project, env, timeout=1200):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project, env)
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(3)
    raise AssertionError(f"the queue did not drain:\n{status}")


def test_queued_sweep_and_optuna_study_build_the_experiments_page(tiny_project):
    project, env, _ = tiny_project
    # inpainting params only, on one decoder: every trial re-runs inpainting and FID, no training
    one, order = "inpaint.schedules=[cosine]", "inpaint.orders=[confidence]"
    run(["dvc", "exp", "run", "--queue", "-S", "inpaint.total_iter=2,4", "-S", "inpaint.sweet_spot=4", "-S", one,
         "-S", order], project, env)
    run(["dvc", "queue", "start", "-j", "1"], project, env)
    status = wait_for_queue(project, env)
    assert status.count("Success") >= 2 and "Failed" not in status, status
    # two trials of a search over the choice temperature, each a real experiment in this
    # checkout (test_sweep.py runs a study's trials as jobs)
    out = run(["python", "-m", "maskgit.tune", "--trials", "2", "--param", "inpaint.choice_temperature",
               "--low", "0.5", "--high", "4.5", "--linear", "--objective", "fid:cosine", "--study", "temperature",
               "--set", "inpaint.sweet_spot=4", "--set", one, "--set", order], project, env)
    assert out.count("trial ") >= 2
    page = (project / "reports/experiments.md").read_text()
    assert "## FID against inpaint.total_iter" in page and "**best**" in page
    section = page.split("## FID against inpaint.total_iter")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and "---" not in line][1:]
    assert sorted(int(r.split("|")[2]) for r in rows) == [2, 4]  # one row per swept value
    assert (project / "reports/experiments/inpaint_total_iter.png").is_file()
    # every FID with its interval, and the marks come from paired comparisons of stored evidence
    assert "interval cosine" in page and "No per-image evidence" not in page
    marks = [line.split("|")[1].strip() for line in section.splitlines()[1:] if line.startswith("|") and "---" not in line]
    assert set(marks[1:]) <= {"**best**", "tied", ""}
    study = read_json(project / "reports/study.json")
    assert len(study["trials"]) == 2 and "## Optuna study: inpaint.choice_temperature (2 trials)" in page
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=project, env=env, capture_output=True, text=True)
    names = json.dumps(json.loads(shown.stdout))
    assert all(t["experiment"] in names for t in study["trials"])
    assert min(t["fid:cosine"] for t in study["trials"]) == study["best"]["objective"]
    assert len({t["inpaint.choice_temperature"] for t in study["trials"]}) == 2


def test_compare_two_experiments_names_the_changed_param_and_judges_every_schedule(tiny_project):
    # runs after the queued sweep above: inpaint.total_iter 2 and 4 are experiments of HEAD
    project, env, _ = tiny_project
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], cwd=project, env=env, capture_output=True,
                                      text=True, check=True).stdout)
    names = {}
    # the experiments hang under their baseline commit, after the workspace entry
    for exp in (e for baseline in shown for e in (baseline.get("experiments") or [])):
        run_ = (exp.get("revs") or [{}])[0]
        params = (((run_.get("data") or {}).get("params") or {}).get("params.yaml") or {}).get("data") or {}
        ip = params.get("inpaint", {})
        if ip.get("sweet_spot") == 4 and ip.get("choice_temperature") == 4.5 and run_.get("name"):
            names[params["inpaint"]["total_iter"]] = run_["name"]
    a, b = names[2], names[4]
    out = run(["python", "-m", "maskgit.compare", a, b], project, env)
    page = project / out.strip().splitlines()[-1]
    text = page.read_text()
    assert page.parent.name == "compare" and "`inpaint.total_iter` | 2 | 4 |" in re.sub(r" +", " ", text)
    per_schedule = text.split("Per decoder (FID): ")[1].splitlines()[0]
    for schedule in ("cosine",):  # the sweep above ran one schedule
        assert any(f"{schedule}: B {v}" in per_schedule for v in ("better", "worse", "indistinguishable"))
    assert (page.parent / f"{a}_vs_{b}.png").is_file()
    # HEAD was committed before its first repro: it has no evidence, and says so in one line
    result = subprocess.run(["python", "-m", "maskgit.compare", "HEAD", a], cwd=project, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "HEAD: per-image evidence outputs/fid/decoders/" in result.stderr and "dvc exp apply HEAD" in result.stderr


def test_a_mask_family_is_one_more_stage_judged_on_its_own(tiny_project):
    # last in this file: it leaves the family's experiment applied in the workspace
    from maskgit.project.files import list_images, read_masks
    from maskgit.project.folders import family_test_masks
    from maskgit.project.params import load_params

    project, env, _ = tiny_project
    out = run(["dvc", "exp", "run", "-n", "fam-thick", "-S", "inpaint.mask_families=[thick]"], project, env)
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    # a family is an axis of the DAG: adding one runs its stage and what reads the evidence, nothing else
    assert ran == {"family@thick", "evaluate", "plots", "report"}, ran
    params = load_params(project / "params.yaml")
    family = project / "outputs/families/thick"
    gt_names = [p.name for p in list_images(project / "data/prepared/test/gt")]
    known = read_masks(family / "test/mask64", 64)
    # the very masks `prepare.test_masks: thick` would give the main test set, on its images
    assert [p.name for p in list_images(family / "test/mask64")] == gt_names
    assert (known == family_test_masks(params["prepare"], len(gt_names), 64, "thick")).all()
    ev = read_json(project / "metrics/evaluation.json")
    thick = ev["mask_families"]["thick"]
    assert list(thick["sets"]) == list(ev["sets"]) and thick["images"] == ev["images"] == len(gt_names)
    assert thick["missing_fraction"]["mean"] == pytest.approx(1 - known.mean())
    assert thick["correction"]["method"] == "holm" and thick["correction"]["comparisons"] > 0
    # the family's masks differ from the built-in ones, so the masked input scores otherwise
    assert thick["sets"]["masked_input"]["fid"]["value"] != ev["sets"]["masked_input"]["fid"]["value"]
    report = (project / "reports/report.md").read_text()
    assert "## Mask families" in report and "### thick masks (LaMa)" in report
    assert "the verdicts on thick masks" in report and (project / "reports/evaluation/families.png").is_file()
    # the review page judges each family apart: a run against itself, every pair identical
    page = project / run(["python", "-m", "maskgit.compare", "workspace", "fam-thick"], project, env).strip().splitlines()[-1]
    text = page.read_text()
    section = text[text.index("## Under thick masks"):]
    assert "the table on thick masks" in section and "identical, not tested" in section
    assert "better" not in section.split("Per decoder (FID): ")[1].splitlines()[0]
