"""prepare.test_masks: a standard mask family (maskgit.data.masks) for the built-in test
set or for a folder of ground-truth images without masks."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskgit.data import masks
from maskgit.data.procedural import apply_mask
from maskgit.project.folders import load_folders
from maskgit.project.params import ParamError, check_params, defaults

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
import prepare  # noqa: E402  (the stage script: its procedural_dataset)


def folders(tmp_path, n_test=5):
    rng = np.random.default_rng(0)
    for sub, n in (("train", 12), ("gt", n_test)):
        (tmp_path / sub).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / sub / f"{i:03d}.jpg")
    return {"train_dir": str(tmp_path / "train"), "val_dir": None, "val_fraction": 0.2,
            "test_gt_dir": str(tmp_path / "gt"), "test_mask_dir": None, "test_masked_dir": None,
            "resize": False, "convert_mode": False, "seed": 4, "test_masks": "thick"}


def test_a_ground_truth_folder_without_masks_gets_the_familys_masks_and_gray_holes(tmp_path):
    p = folders(tmp_path)
    out = load_folders(p, {"image_size": 64}, np.random.default_rng(0))
    want = masks.family_masks(4 + 3000, "thick", 5, 64)
    assert np.array_equal(out["known"], want)
    assert np.array_equal(out["masked"], np.stack([apply_mask(g, k) for g, k in zip(out["gt"], want)]))
    assert out["names"] == [f"{i:03d}.png" for i in range(5)]
    other = load_folders({**p, "test_masks": "large"}, {"image_size": 64}, np.random.default_rng(0))
    assert not np.array_equal(other["known"], out["known"])


def test_the_built_in_test_set_takes_a_family_and_keeps_its_images():
    p = {**defaults()["prepare"], "n_train": 2, "n_val": 2, "n_test": 6}
    builtin = prepare.procedural_dataset(p, 64)
    thin = prepare.procedural_dataset({**p, "test_masks": "thin"}, 64)
    assert np.array_equal(thin["gt"], builtin["gt"]) and np.array_equal(thin["train"], builtin["train"])
    assert np.array_equal(thin["known"], masks.family_masks(p["seed"] + 3000, "thin", 6, 64))
    assert not np.array_equal(thin["known"], builtin["known"])


@pytest.mark.parametrize("change,message", [
    ({"test_masks": "thick", "test_mask_dir": "/some/masks"},
     "prepare.test_mask_dir must be null with prepare.test_masks: thick"),
    ({"test_masks": "builtin", "test_mask_dir": None}, "prepare.test_mask_dir must be set"),
    ({"test_masks": "square"}, "prepare.test_masks"),
])
def test_params_that_cannot_go_together_stop_with_one_line(change, message, tmp_path):
    params = defaults()
    params["prepare"].update({"source": "folders", "train_dir": str(tmp_path), "test_gt_dir": str(tmp_path),
                              "test_mask_dir": str(tmp_path), **change})
    with pytest.raises(ParamError, match=message):
        check_params(params, "params.yaml")
    params["prepare"].update(test_masks="large", test_mask_dir=None)
    check_params(params, "params.yaml")  # a family and no mask folder: fine
