"""The plots and report stages on a tiny fake set of their inputs.

The fake numbers are chosen so every derived figure is easy to check by hand:
linear (listed second) is the best schedule, so "best" cannot mean "first".
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import load_stage

REPO = Path(__file__).resolve().parents[1]
SCHEDULES = ["cosine", "linear"]
NAMES = [f"{i:05d}.png" for i in range(10)]
K, T, TOKENS = 2, 8, 256  # per-step arrays: images, steps, 16x16 tokens

FID_SCHEDULES = {
    "cosine": {"fid": 50.0, "kid": 0.05, "kid_std": 0.01},
    "linear": {"fid": 40.0, "kid": 0.04, "kid_std": 0.002},
}
FID_BASELINES = {
    "masked_input": {"fid": 100.0, "kid": 0.12, "kid_std": 0.01},
    "harmonic": {"fid": 42.5, "kid": 0.044, "kid_std": 0.004},
    "onestep": {"fid": 45.0, "kid": 0.045, "kid_std": 0.005},
    "recon": {"fid": 20.0, "kid": 0.01, "kid_std": 0.001},
}
# linear vs masked input: (40 - 100) / 100 = -60 %; gap to floor 40 - 20 = 20 FID = 100 % of
# the floor; closes (100 - 40) / (100 - 20) = 75 % of the distance; beats one-step by 5 = 11.1 %
# and the harmonic fill by 2.5
def cell(value, lo, hi):
    return {"value": value, "interval": [lo, hi], "low": lo, "high": hi}


def pair(a, b, metric, diff, lo, hi, verdict):
    return {"a": a, "b": b, "metric": metric, "diff": diff, "interval": [lo, hi], "verdict": verdict}


# what the evaluate stage writes, with hand-chosen intervals: linear and cosine tied for
# the best FID, linear better than cosine inside the hole
EVALUATION = {
    "images": 10, "replicates": 1000, "confidence": 0.95, "seed": 0,
    "sets": {name: {"fid": cell(v["fid"], v["fid"] - 8, v["fid"] + 9), "kid": cell(v["kid"], 0.0, 0.2),
                    "hole_psnr": cell(20.0, 19.0, 21.0), "hole_ssim": cell(0.5, 0.4, 0.6),
                    "psnr": cell(30.0, 29.0, 31.0), "ssim": cell(0.9, 0.8, 0.95)}
             for name, v in {"cosine": {"fid": 50.0, "kid": 0.05}, "linear": {"fid": 40.0, "kid": 0.04},
                             "masked_input": {"fid": 100.0, "kid": 0.12}, "onestep": {"fid": 45.0, "kid": 0.045},
                             "recon": {"fid": 20.0, "kid": 0.01}, "harmonic": {"fid": 42.5, "kid": 0.044}}.items()},
    "pairs": [pair("cosine", "linear", "fid", 10.0, -2.5, 21.25, "indistinguishable"),
              pair("cosine", "linear", "hole_psnr", -1.5, -2.0, -1.0, "worse"),
              pair("linear", "masked_input", "fid", -60.0, -75.0, -50.0, "better"),
              pair("masked_input", "recon", "fid", 80.0, 70.0, 90.0, "worse")],
    "tied_for_best": {"fid": ["linear", "cosine"], "hole_psnr": ["linear"]},
    "decisive": {"a": "cosine", "b": "linear", "width": 23.75, "images_for_1_fid": 5641},
    "mask_buckets": [{"low": 0.0, "high": 0.3, "images": 4, "kid": False,
                      "sets": {"linear": {"hole_psnr": cell(22.0, 21.0, 23.0), "hole_ssim": cell(0.6, 0.5, 0.7)}}},
                     {"low": 0.3, "high": 1.0, "images": 6, "kid": True,
                      "sets": {"linear": {"hole_psnr": cell(18.0, 17.0, 19.0), "hole_ssim": cell(0.4, 0.3, 0.5),
                                          "kid": cell(0.05, 0.01, 0.09)}}}],
    "images_outside_buckets": 0,
}
TIMINGS = {"prepare": 1.5, "train_vqgan": 60.0, "inpaint-cosine-confidence": 10.0, "inpaint-linear-confidence": 8.5,
           "inpaint-square-confidence": 999.0, "fid-decoders": 20.0}  # inpaint-square: stale, not in the params


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in zip(NAMES, images):
        Image.fromarray(image).save(folder / name)


def write_tsv(path, values, timestamp=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"step": range(len(values)), path.stem: values})
    if timestamp:
        table["timestamp"] = 1_700_000_000 + table["step"]
    table.to_csv(path, sep="\t", index=False)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["inpaint"]["schedules"] = SCHEDULES
    params["inpaint"]["orders"] = ["confidence"]
    params["inpaint"]["n_figure_images"] = K
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (len(NAMES), 64, 64, 3), dtype=np.uint8)
    known = np.ones((len(NAMES), 64, 64), dtype=bool)
    known[:, 16:40, 20:52] = False  # a rectangular hole
    masked = np.where(known[..., None], gt, 128).astype(np.uint8)
    test = tmp_path / "data/prepared/test"
    write_pngs(test / "gt", gt)
    write_pngs(test / "masked_image", masked)
    write_pngs(test / "mask64", known.astype(np.uint8) * 255)
    for folder in [*(f"outputs/inpaint/confidence/{s}/images" for s in SCHEDULES), "outputs/baselines/onestep/images",
                   "outputs/baselines/recon/images", "outputs/baselines/harmonic/images"]:
        write_pngs(tmp_path / folder, np.clip(gt.astype(int) + rng.integers(-30, 30, gt.shape), 0, 255).astype(np.uint8))
    for s in SCHEDULES:
        write_json(tmp_path / f"outputs/inpaint/confidence/{s}/info.json", {
            "schedule": s, "total_iter": 8, "sweet_spot": 8, "images": len(NAMES), "seconds": 1.0,
            "seconds_per_image": 0.1, "device": "cpu"})
    # per-step arrays for cosine only: linear stands for a run with n_figure_images 0
    still = np.array([int(TOKENS * 0.6 * (1 - (t + 1) / T)) for t in range(T)])
    steps_masked = np.arange(TOKENS)[None, None, :] < still[None, :, None]
    np.save(tmp_path / "outputs/inpaint/confidence/cosine/steps_masked.npy", np.broadcast_to(steps_masked, (K, T, TOKENS)).copy())
    np.save(tmp_path / "outputs/inpaint/confidence/cosine/steps_images.npy",
            rng.integers(0, 256, (K, T, 64, 64, 3), dtype=np.uint8))

    write_json(tmp_path / "metrics/fid_decoders.json", FID_SCHEDULES)
    write_json(tmp_path / "metrics/fid_baselines.json", FID_BASELINES)
    write_json(tmp_path / "metrics/evaluation.json", EVALUATION)

    steps = np.arange(10)
    tf = tmp_path / "dvclive/transformer/plots/metrics"
    write_tsv(tf / "train/loss.tsv", 5.0 / (steps + 1), timestamp=True)
    write_tsv(tf / "val/loss.tsv", 5.5 / (steps + 1))
    write_tsv(tf / "train/accuracy.tsv", 0.05 * steps)
    write_tsv(tf / "val/accuracy.tsv", 0.045 * steps)
    write_tsv(tf / "lr.tsv", 1e-3 * np.ones(10))
    write_json(tmp_path / "dvclive/transformer/metrics.json",
               {"train": {"loss": 0.5}, "val": {"loss": 0.55}, "step": 9, "val_loss": 0.55, "val_accuracy": 0.41,
                "params": 1234567})
    vq = tmp_path / "dvclive/vqgan/plots/metrics/train"
    for name, values in {"loss": 1.0 / (steps + 1), "q_loss": 0.1 / (steps + 1), "l1": 0.3 / (steps + 1),
                         "perplexity": 20.0 * (steps + 1), "lr": 1e-3 * np.ones(10)}.items():
        write_tsv(vq / f"{name}.tsv", values)
    write_json(tmp_path / "dvclive/vqgan/metrics.json",
               {"train": {"loss": 0.1}, "step": 9, "val_psnr": 27.125, "codes_used": 200, "dead_codes": 56})

    for name, seconds in TIMINGS.items():
        write_json(tmp_path / f"timings/{name}.json", {"stage": name, "seconds": seconds})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.width > 100 and im.height > 100, f"{path.name} is {im.size}"


def test_plots_and_report(workdir):
    load_stage("plots").main()

    table = pd.read_csv(workdir / "reports/tables/fid.csv")
    assert list(table["name"]) == SCHEDULES + ["masked_input", "harmonic", "onestep", "recon"]
    expected = {**FID_SCHEDULES, **FID_BASELINES}
    for r in table.to_dict("records"):
        for field in ("fid", "kid", "kid_std"):
            assert r[field] == pytest.approx(expected[r["name"]][field])
        assert r["change_vs_masked_input_pct"] == pytest.approx((r["fid"] - 100.0) / 100.0 * 100)
        assert r["gap_to_floor"] == pytest.approx(r["fid"] - 20.0)
        cell = EVALUATION["sets"][r["name"]]["fid"]
        assert (r["fid_low"], r["fid_high"]) == (cell["low"], cell["high"])
    # linear has the lowest FID, but the verdicts tie it with cosine: neither is "best"
    assert list(table.loc[table["tied_for_best"], "name"]) == SCHEDULES and not table["best"].any()

    md = (workdir / "reports/tables/fid.md").read_text()
    for text in ["**cosine** (tied for best)", "**linear** (tied for best)", "masked input (baseline)",
                 "one-step T=1 (baseline)", "harmonic fill, no model (baseline)", "VQGAN reconstruction (floor)",
                 "40.00", "[32.00, 49.00]", "-60.0 %", "-50.0 %", "+20.00", "0.0400 ± 0.0020"]:
        assert text in md, text
    assert "(best)" not in md

    figures = workdir / "reports/figures"
    expected_figures = {"fid.png", "gamma.png", "training.png", "comparison.png", "grid_cosine.png",
                        "grid_linear.png", "steps_cosine.png"}
    assert {p.name for p in figures.iterdir()} == expected_figures  # no steps_linear.png: its arrays are missing
    for name in expected_figures:
        assert_png(figures / name)
    assert not list((workdir / "reports").glob(".*")), "temporary folders left behind"

    report_stage = load_stage("report")
    report_stage.main()
    report = (workdir / "reports/report.md").read_text()
    for text in ["Each set of 10 scored test images", "FID and KID (lower is better)",
                 "| **linear** (tied for best) ", "40.00 [32.00, 49.00]", "40.00 [0.00, 200.00]",
                 # the first screen's row per metric: both tied on FID, linear alone inside the hole
                 "| **FID** (lower is better)", "| both decoders ", "nothing decided (1 compared)",
                 "| **linear**, better than the other decoder ",
                 "cosine worse than linear, dhole PSNR -1.50 [-2.00, -1.00]", "masked input: better (linear)",
                 "- cosine vs linear: **indistinguishable**, dFID +10.00 [-2.50, +21.25] "
                 "(worse, dhole PSNR -1.50 [-2.00, -1.00]).",
                 "- masked input vs VQGAN recon.: **worse**, dFID +80.00 [+70.00, +90.00].",
                 "about **5,641** test images would make it 1 FID wide", "(cosine vs linear)",
                 "0-30% (4 img)", "22.00 [21.00, 23.00]", "KID only where a bucket holds enough images; none for 0-30%",
                 "## Provenance", "`inpaint.seed` 0", "`train_vqgan.seed` 0", "Packages: torch ", "torch-fidelity 0.4.0",
                 "Inception weights (sha256): not recorded",
                 "figures/fid.png", "figures/steps_cosine.png", "figures/grid_linear.png", "](verdicts.png)",
                 "val_psnr", "27.12", "1,234,567", "inpaint-linear-confidence"]:
        assert text in report, text
    assert "Best schedule" not in report and "(best)" not in report  # two tied: no single best
    assert_png(workdir / "reports/verdicts.png")
    assert len(report.splitlines()) <= 250  # issue 43: the record stays readable end to end
    assert "steps_linear" not in report
    assert "inpaint-square" not in report  # stale timing of a schedule no longer in params
    assert "**100.0**" in report  # total seconds: 1.5 + 60 + 10 + 8.5 + 20

    # generated from files only: a second run gives the same text (git state included, same tree)
    report_stage.main()
    assert (workdir / "reports/report.md").read_text() == report


def test_report_counts_the_scored_images_not_n_test(workdir):
    # user folders: prepare.n_test does not apply; the report says how many were scored
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["prepare"]["n_test"] = 150
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_json(workdir / "metrics/evaluation.json", {**EVALUATION, "images": 747})
    load_stage("plots").main()
    load_stage("report").main()
    report = (workdir / "reports/report.md").read_text()
    assert "Each set of 747 scored test images" in report and "150 scored" not in report


def test_report_without_the_evaluation_is_a_one_line_error(workdir):
    load_stage("plots").main()
    (workdir / "metrics/evaluation.json").unlink()
    with pytest.raises(ValueError, match="metrics/evaluation.json: not found"):
        load_stage("report").main()


def test_one_best_schedule_is_marked_best_and_alone(workdir):
    evaluation = {**EVALUATION, "tied_for_best": {**EVALUATION["tied_for_best"], "fid": ["linear"]}}
    write_json(workdir / "metrics/evaluation.json", evaluation)
    load_stage("plots").main()
    table = pd.read_csv(workdir / "reports/tables/fid.csv")
    assert list(table.loc[table["best"], "name"]) == ["linear"]
    md = (workdir / "reports/tables/fid.md").read_text()
    assert md.count("(best)") == 1 and "**linear** (best)" in md and "tied for best" not in md


def test_plots_without_the_evaluation_is_a_one_line_error(workdir):
    # the FID figure draws the intervals and the tie: without them it is not drawn at all
    (workdir / "metrics/evaluation.json").unlink()
    with pytest.raises(ValueError, match="metrics/evaluation.json: not found"):
        load_stage("plots").main()


def test_missing_schedule_metrics_is_a_one_line_error(workdir):
    write_json(workdir / "metrics/fid_decoders.json", {"cosine": FID_SCHEDULES["cosine"]})
    with pytest.raises(ValueError, match="fid_decoders.json: no complete entry for 'linear'"):
        load_stage("plots").main()
    assert not (workdir / "reports/figures").exists()
