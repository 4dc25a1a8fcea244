"""Stage prepare: write the dataset in the lab5 layout, from the built-in
procedural source or from the user's folders (prepare.source), checked first.

data/prepared/
  train/, val/            64x64 RGB PNGs
  test/masked_image/      test images with the holes filled with gray
  test/mask64/            masks, white = known, black = missing
  test/gt/                the unmasked test images (ground truth)
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import shutil
import sys

import numpy as np

from maskgit.project import paths
from maskgit.data import procedural
from maskgit.project.folders import family_test_masks, load_folders
from maskgit.pipeline.runtime import run_stage
from maskgit.project.files import make_tmp_dir, replace_dir, write_images
from maskgit.project.params import load_params

OUT = paths.PREPARED


def main():
    params = load_params()
    p, size = params["prepare"], params["data"]["image_size"]
    if p["source"] == "folders":
        # everything is read and checked before anything is written
        d = load_folders(p, params["data"], np.random.default_rng(p["seed"]))
    else:
        d = procedural_dataset(p, size)
    tmp = make_tmp_dir(OUT)
    try:
        write_images(tmp / "train", d["train"])
        write_images(tmp / "val", d["val"])
        write_images(tmp / "test" / "gt", d["gt"], d["names"])
        write_images(tmp / "test" / "mask64", d["known"], d["names"])
        write_images(tmp / "test" / "masked_image", d["masked"], d["names"])
        replace_dir(tmp, OUT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"prepare: {len(d['train'])} train, {len(d['val'])} val, {len(d['gt'])} test images "
          f"({p['source']}) in {OUT}", file=sys.stderr)


def procedural_dataset(p, size):
    seed = p["seed"]
    # different seeds per split so that no test image is also a training image
    style = dict(palette_size=p["palette_size"], blur=p["blur"])
    gt = procedural.make_dataset(seed + 2000, p["n_test"], size, **style)
    known = family_test_masks(p, len(gt), size) if p["test_masks"] != "builtin" else \
        procedural.make_masks(seed + 3000, p["n_test"], size)
    return {
        "train": procedural.make_dataset(seed, p["n_train"], size, **style),
        "val": procedural.make_dataset(seed + 1000, p["n_val"], size, **style),
        "gt": gt,
        "known": known,
        "masked": np.stack([procedural.apply_mask(img, k) for img, k in zip(gt, known)]),
        "names": [f"{i:05d}.png" for i in range(len(gt))],
    }


if __name__ == "__main__":
    run_stage(main, "prepare")
