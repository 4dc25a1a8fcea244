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
from PIL import Image, ImageOps

from maskgit.project.errors import InputError
from maskgit.project.files import IMAGE_SUFFIXES, list_images
from maskgit.project.params import MIN_TEST_IMAGES
from maskgit.data.procedural import apply_mask

# A mask pixel >= 128 is known (white), < 128 missing (black). A mask is accepted as
# binary when at most this share of its pixels is gray (between 16 and 239): JPEG or
# resampling leaves a thin gray rim, a soft or grayscale mask is not a mask.
GRAY_SHARE_MAX = 0.02


# Known pixels of a masked image may differ from its ground truth by this much (mean
# absolute difference, 0-255 gray levels) and still count as the same pixels: JPEG at
# quality 75 stays well under it, another image or a shifted one lands far above.
KNOWN_DIFF_MAX = 10.0


def _folder(path, param: str) -> list[Path]:
    if path is None:
        raise InputError(f"{param} is not set (needed with prepare.source: folders)")
    # a file the reader would skip is named, not silently left out of the set (and a
    # folder of only such files is not called empty)
    others = sorted(p for p in Path(path).iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_SUFFIXES) \
        if Path(path).is_dir() else []
    if others:
        raise InputError(f"{others[0]}: {param} holds a file the reader cannot take ({others[0].suffix or 'no extension'}; "
                         f"images must be {' '.join(IMAGE_SUFFIXES)}): convert it or move it out")
    try:
        return list_images(path)
    except InputError as e:
        raise InputError(f"{param}: {e}") from None


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()  # decodes every byte: a truncated file fails here, not later
            # as a viewer shows it: a photo stored sideways with an EXIF orientation tag
            # is turned upright, or it no longer lines up with its mask
            return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable or truncated image ({e})") from None


def to_rgb(im: Image.Image, path: Path, convert: bool) -> Image.Image:
    """An 8-bit RGB image as a viewer shows it, or InputError saying why not.
    Lossless conversions (palette without transparency, opaque alpha) always happen;
    lossy or guessed ones (grayscale, 16-bit, CMYK) only with prepare.convert_mode;
    transparent pixels are refused (what lies under them is not part of the image)."""
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode == "RGB":
            return im
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(im.getchannel("A"))
        if (alpha < 255).any():
            raise InputError(f"{path}: image has transparent pixels ({(alpha < 255).mean():.0%}); "
                             f"flatten it onto a background first")
    if not convert:
        kind = {"L": "grayscale", "1": "black and white", "CMYK": "CMYK", "YCbCr": "YCbCr", "RGBA": "opaque alpha",
                "LA": "grayscale, opaque alpha", "PA": "opaque alpha"}.get(im.mode, "high bit depth")
        raise InputError(f"{path}: image mode {im.mode}, expected RGB ({kind}; set prepare.convert_mode: true to convert)")
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # PIL's own convert clips these at 255; scale the full range to 8 bits instead
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode != "F" and arr.max() > 255 else (1.0 if im.mode == "F" and arr.max() <= 1 else 255.0)
        gray = np.clip(np.rint(arr / top * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    return im.convert("RGB")


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
        im = to_rgb(_open(path), path, convert)
        out.append(np.asarray(_sized(im, path, size, resize, "image", Image.BICUBIC)))
    return np.stack(out), [p.name for p in files]


def read_mask_folder(folder, param: str, size: int, resize: bool = False):
    """Masks of a folder, sorted by name -> (bool (N, size, size) True = known, names)."""
    files = _folder(folder, param)
    out = []
    for path in files:
        im = _open(path)
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit: white is 65535, not 255
            im = to_rgb(im, path, convert=True)
        gray = np.asarray(_sized(im.convert("L"), path, size, resize, "mask", Image.NEAREST))
        n_gray, allowed = int(((gray > 15) & (gray < 240)).sum()), int(GRAY_SHARE_MAX * gray.size)
        if n_gray > allowed:
            # in pixels, not a rounded share: 2.3% printed as "2%" reads as a mask within a 2% limit
            raise InputError(f"{path}: mask is not black and white ({n_gray} of its {gray.size} pixels gray, "
                             f"at most {allowed} ({GRAY_SHARE_MAX:.0%}) allowed; white >= 128 = known, "
                             f"black = missing)")
        known = gray >= 128
        if known.all():
            raise InputError(f"{path}: mask masks nothing (all white = all known)")
        if not known.any():
            raise InputError(f"{path}: mask masks everything (all black = nothing known)")
        out.append(known)
    return np.stack(out), [p.name for p in files]


def check_polarity(known: np.ndarray, names: list[str], param: str = "prepare.test_mask_dir") -> None:
    """Refuse a mask set that looks inverted (white = missing): in most files the
    'missing' region covers most of the image and most of its border. Inpainting
    masks are holes inside a known image; their inverse is a known blob in a hole."""
    missing = ~known
    border = np.concatenate([missing[:, 0], missing[:, -1], missing[:, :, 0], missing[:, :, -1]], axis=1)
    looks_inverted = (missing.mean(axis=(1, 2)) > 0.5) & (border.mean(axis=1) > 0.5)
    if looks_inverted.mean() > 0.5:
        first = names[int(np.argmax(looks_inverted))]
        raise InputError(f"{param}: masks look inverted: in {looks_inverted.sum()} of {len(names)} (first {first}) "
                         f"the missing (black) region covers most of the image and its border; "
                         f"white (>= 128) must be known, black missing: invert the masks")


def check_known_pixels(masked: np.ndarray, gt: np.ndarray, known: np.ndarray, names: list[str]) -> None:
    """A masked image's known pixels are its ground truth's (within KNOWN_DIFF_MAX);
    the first that is not stops with what is likely wrong."""
    for i, name in enumerate(names):
        k = known[i]
        d_known = _mean_diff(masked[i], gt[i], k)
        if d_known <= KNOWN_DIFF_MAX:
            continue
        where = f"prepare.test_masked_dir/{name}"
        what = f"its known pixels differ from its ground truth by {d_known:.0f} gray levels on average"
        if (~k).any() and _mean_diff(masked[i], gt[i], ~k) <= KNOWN_DIFF_MAX:
            raise InputError(f"{where}: {what}, but its missing pixels match: the mask polarity looks inverted "
                             f"(white >= 128 must be known, black missing)")
        # another image's known pixels meet this mask only in part: most, not all, agree
        others = [j for j in range(len(gt)) if j != i and _median_diff(masked[i], gt[j], k) <= KNOWN_DIFF_MAX]
        if others:
            raise InputError(f"{where}: {what}, but match the ground truth paired with {names[others[0]]}: "
                             f"the folders pair off by one or are sorted differently")
        raise InputError(f"{where}: {what}: another image, or shifted, rotated or resized against its ground truth")


def _mean_diff(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16))[where].mean())


def _median_diff(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.median(np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)[where]))


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
    if len(gt) < MIN_TEST_IMAGES:
        raise InputError(f"prepare.test_gt_dir: {len(gt)} test images, KID needs at least {MIN_TEST_IMAGES} "
                         f"(subsets of half the set, 2 images each)")
    if p["test_masks"] != "builtin":  # a standard family, one mask per test image in name order
        known = family_test_masks(p, len(gt), size)
        masked = np.stack([apply_mask(g, k) for g, k in zip(gt, known)])
        return {"train": train, "val": val, "gt": gt, "known": known, "masked": masked,
                "names": _png_names(gt_names)}
    known, mask_names = read_mask_folder(p["test_mask_dir"], "prepare.test_mask_dir", size, resize)
    check_pairs(mask_names, "prepare.test_mask_dir", gt_names, "prepare.test_gt_dir")
    if p["test_masked_dir"] is not None:
        masked, masked_names = read_image_folder(p["test_masked_dir"], "prepare.test_masked_dir", size, resize, convert)
        check_pairs(masked_names, "prepare.test_masked_dir", mask_names, "prepare.test_mask_dir")
        check_known_pixels(masked, gt, known, masked_names)
        names = masked_names
    else:  # the lab's masked images: the holes filled with gray
        check_polarity(known, mask_names)
        masked = np.stack([apply_mask(g, k) for g, k in zip(gt, known)])
        names = gt_names
    return {"train": train, "val": val, "gt": gt, "known": known, "masked": masked, "names": _png_names(names)}


def _png_names(names: list[str]) -> list[str]:
    out = [Path(n).stem + ".png" for n in names]
    if len(set(out)) != len(out):
        raise InputError("prepare.test_gt_dir: two test images share a name once written as PNG")
    return out


def family_test_masks(p: dict, n: int, size: int, family: str | None = None) -> np.ndarray:
    """The n test masks of `family` (default prepare.test_masks; maskgit.data.masks), mask i
    seeded by (prepare.seed, i) alone: the same test image gets the same mask whatever else
    changes, as the main test set or as a stage of inpaint.mask_families."""
    from maskgit.data import masks

    return masks.family_masks(p["seed"] + 3000, family or p["test_masks"], n, size)
