"""Reading a dataset that users assembled by hand (prepare.source: folders).

Every file is checked before the prepare stage writes anything, and the first
problem stops the run with one line naming the file or the param: a missing or
empty folder, an unreadable or truncated image, a wrong size or mode, masks that
are not black and white or that mask nothing or everything, and test folders whose
counts or sorted names do not pair (the lab pairs masked images and masks by sorted
file name). The user's folders are only read, never written.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from maskgit.pipeline.errors import InputError
from maskgit.pipeline.files import list_images
from maskgit.data.procedural import apply_mask

# A mask pixel >= 128 is known (white), < 128 missing (black). A mask is accepted as
# binary when at most this share of its pixels is gray (between 16 and 239): JPEG or
# resampling leaves a thin gray rim, a soft or grayscale mask is not a mask.
GRAY_SHARE_MAX = 0.02


def _folder(path, param: str) -> list[Path]:
    if path is None:
        raise InputError(f"{param} is not set (needed with prepare.source: folders)")
    try:
        return list_images(path)
    except InputError as e:
        raise InputError(f"{param}: {e}") from None


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()  # decodes every byte: a truncated file fails here, not later
            return im.copy()
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable or truncated image ({e})") from None


def _sized(im: Image.Image, path: Path, size: int, resize: bool, what: str, resample) -> Image.Image:
    if im.size == (size, size):
        return im
    if not resize:
        raise InputError(f"{path}: {what} is {im.size[0]}x{im.size[1]}, expected {size}x{size} "
                         f"(data.image_size; set prepare.resize: true to resize)")
    return im.resize((size, size), resample)


def read_image_folder(folder, param: str, size: int, resize: bool = False, convert: bool = False):
    """RGB images of a folder, sorted by name -> (uint8 (N, size, size, 3), names)."""
    files = _folder(folder, param)
    out = []
    for path in files:
        im = _open(path)
        if im.mode != "RGB":
            if not convert:
                raise InputError(f"{path}: image mode {im.mode}, expected RGB (set prepare.convert_mode: true to convert)")
            im = im.convert("RGB")
        out.append(np.asarray(_sized(im, path, size, resize, "image", Image.BICUBIC)))
    return np.stack(out), [p.name for p in files]


def read_mask_folder(folder, param: str, size: int, resize: bool = False):
    """Masks of a folder, sorted by name -> (bool (N, size, size) True = known, names)."""
    files = _folder(folder, param)
    out = []
    for path in files:
        im = _open(path)
        gray = np.asarray(_sized(im.convert("L"), path, size, resize, "mask", Image.NEAREST))
        share = float(((gray > 15) & (gray < 240)).mean())
        if share > GRAY_SHARE_MAX:
            raise InputError(f"{path}: mask is not black and white ({share:.0%} of pixels gray; "
                             f"white >= 128 = known, black = missing)")
        known = gray >= 128
        if known.all():
            raise InputError(f"{path}: mask masks nothing (all white = all known)")
        if not known.any():
            raise InputError(f"{path}: mask masks everything (all black = nothing known)")
        out.append(known)
    return np.stack(out), [p.name for p in files]


def _key(name: str) -> str:
    """What must agree between paired files: the last number in the name when
    there is one (img_007.png pairs with mask_007.png), else the whole stem."""
    stem = Path(name).stem
    numbers = re.findall(r"\d+", stem)
    return str(int(numbers[-1])) if numbers else stem


def check_pairs(names_a: list[str], param_a: str, names_b: list[str], param_b: str) -> None:
    if len(names_a) != len(names_b):
        raise InputError(f"{param_a} has {len(names_a)} images but {param_b} has {len(names_b)}: "
                         f"they are paired by sorted file name")
    for a, b in zip(names_a, names_b):
        if _key(a) != _key(b):
            raise InputError(f"{param_a}/{a} pairs with {param_b}/{b} by sorted name, but the names do not match")


def load_folders(p: dict, data: dict, rng: np.random.Generator) -> dict:
    """The whole user dataset, checked: {train, val, gt, known, masked, names}."""
    size, resize, convert = data["image_size"], p["resize"], p["convert_mode"]
    train, _ = read_image_folder(p["train_dir"], "prepare.train_dir", size, resize, convert)
    if p["val_dir"] is not None:
        val, _ = read_image_folder(p["val_dir"], "prepare.val_dir", size, resize, convert)
    else:  # a seeded split, so that the same params give the same split
        n_val = max(1, round(len(train) * p["val_fraction"]))
        if n_val >= len(train):
            raise InputError(f"prepare.train_dir: {len(train)} images are too few to split off "
                             f"prepare.val_fraction {p['val_fraction']}")
        order = rng.permutation(len(train))
        train, val = train[order[n_val:]], train[order[:n_val]]
    gt, gt_names = read_image_folder(p["test_gt_dir"], "prepare.test_gt_dir", size, resize, convert)
    known, mask_names = read_mask_folder(p["test_mask_dir"], "prepare.test_mask_dir", size, resize)
    check_pairs(mask_names, "prepare.test_mask_dir", gt_names, "prepare.test_gt_dir")
    if p["test_masked_dir"] is not None:
        masked, masked_names = read_image_folder(p["test_masked_dir"], "prepare.test_masked_dir", size, resize, convert)
        check_pairs(masked_names, "prepare.test_masked_dir", mask_names, "prepare.test_mask_dir")
        names = masked_names
    else:  # the lab's masked images: the holes filled with gray
        masked = np.stack([apply_mask(g, k) for g, k in zip(gt, known)])
        names = gt_names
    names = [Path(n).stem + ".png" for n in names]
    if len(set(names)) != len(names):
        raise InputError("prepare.test_gt_dir: two test images share a name once written as PNG")
    return {"train": train, "val": val, "gt": gt, "known": known, "masked": masked, "names": names}
