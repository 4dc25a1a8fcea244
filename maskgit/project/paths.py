"""Every path the pipeline reads or writes, relative to the project root, written once.

dvc.yaml names the same paths as the stages' deps and outs; tests/test_paths.py
checks that every pipeline path here is one dvc.yaml names.
"""

from pathlib import Path

PREPARED = Path("data/prepared")  # train/ val/ test/{gt,masked_image,mask64}/
TEST = PREPARED / "test"
TOKENS = Path("data/tokens")  # <split>.npy and test_unknown.npy
TEST_TOKENS = TOKENS / "test.npy"
TEST_UNKNOWN = TOKENS / "test_unknown.npy"

VQGAN = Path("models/vqgan.pt")
TRANSFORMER = Path("models/transformer.pt")

INPAINT = Path("outputs/inpaint")  # <schedule>/images/ and the per-step arrays
BASELINES = Path("outputs/baselines")  # onestep/ recon/ harmonic/
GT_FEATURES = Path("outputs/fid/gt_features.npy")
# per-image evidence of every scored set, <set>.npz: names, Inception features,
# PSNR/SSIM over the image and inside the hole, missing-pixel fraction
EVIDENCE_BASELINES = Path("outputs/fid/baselines")
EVIDENCE_DECODERS = Path("outputs/fid/decoders")

# one stage per inpaint.mask_families entry (family@<name>): the test images under that
# family's masks, filled and scored: test/, tokens/, inpaint/<order>/<schedule>/,
# baselines/<name>/, evidence/<set>.npz (the layout: maskgit.project.grid.TestSet)
FAMILIES = Path("outputs/families")
FID_DECODERS = Path("metrics/fid_decoders.json")
FID_BASELINES = Path("metrics/fid_baselines.json")
EVALUATION = Path("metrics/evaluation.json")  # bootstrap intervals and paired verdicts (stage evaluate)

LIVE_VQGAN = Path("dvclive/vqgan")
LIVE_TRANSFORMER = Path("dvclive/transformer")

REPORTS = Path("reports")  # report.md, figures/, tables/
EVALUATION_FIGURES = REPORTS / "evaluation"  # mask_area.png (stage evaluate)
TIMINGS = Path("timings")  # <stage>.json, wall times: never part of a cached output
CHECKPOINTS = Path("checkpoints")  # resumable training state, outside DVC's outputs
CONFIGS = Path("configs")  # the presets
STUDY = REPORTS / "study.json"  # written by maskgit.tune
EXPERIMENTS_PAGE = REPORTS / "experiments.md"  # written by maskgit.experiments
EXPERIMENTS_FIGURES = REPORTS / "experiments"  # its figures: no stage writes here


def tokens(split: str) -> Path:
    return TOKENS / f"{split}.npy"


def split_images(split: str) -> Path:
    return PREPARED / split

