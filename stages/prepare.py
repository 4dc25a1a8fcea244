"""Stage prepare: write the dataset in the lab5 layout.

data/prepared/
  train/, val/            64x64 RGB PNGs
  test/masked_image/      test images with the holes filled with gray
  test/mask64/            masks, white = known, black = missing
  test/gt/                the unmasked test images (ground truth)
"""

import shutil
import sys
from pathlib import Path

from maskgit import procedural
from maskgit.cli import run_stage
from maskgit.io import make_tmp_dir, replace_dir, write_images
from maskgit.params import load_params

OUT = Path("data/prepared")


def main():
    params = load_params()
    p, size = params["prepare"], params["data"]["image_size"]
    seed = p["seed"]
    tmp = make_tmp_dir(OUT)
    try:
        # different seeds per split so that no test image is also a training image
        style = dict(palette_size=p["palette_size"], blur=p["blur"])
        write_images(tmp / "train", procedural.make_dataset(seed, p["n_train"], size, **style))
        write_images(tmp / "val", procedural.make_dataset(seed + 1000, p["n_val"], size, **style))
        gt = procedural.make_dataset(seed + 2000, p["n_test"], size, **style)
        known = procedural.make_masks(seed + 3000, p["n_test"], size)
        masked = [procedural.apply_mask(img, k) for img, k in zip(gt, known)]
        write_images(tmp / "test" / "gt", gt)
        write_images(tmp / "test" / "mask64", known)
        write_images(tmp / "test" / "masked_image", masked)
        replace_dir(tmp, OUT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"prepare: {p['n_train']} train, {p['n_val']} val, {p['n_test']} test images in {OUT}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main, "prepare")
