"""Tests of the procedural stand-in data set (images, masks, masked images)."""

import numpy as np
import pytest

from maskgit.data import procedural as P


def test_images_are_deterministic_per_seed():
    a = P.make_dataset(3, 6)
    b = P.make_dataset(3, 6)
    c = P.make_dataset(4, 6)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    # no two items of one data set are the same image
    assert len({img.tobytes() for img in a}) == len(a)


def test_masks_are_deterministic_per_seed():
    a = P.make_masks(3, 10)
    b = P.make_masks(3, 10)
    c = P.make_masks(4, 10)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_items_do_not_depend_on_n():
    assert np.array_equal(P.make_dataset(5, 3), P.make_dataset(5, 9)[:3])
    assert np.array_equal(P.make_masks(5, 4), P.make_masks(5, 11)[:4])
    assert P.make_dataset(5, 0).shape == (0, 64, 64, 3)


def test_make_image_and_make_mask_are_reproducible_from_a_generator():
    img1 = P.make_image(np.random.default_rng(11))
    img2 = P.make_image(np.random.default_rng(11))
    assert np.array_equal(img1, img2)
    m1 = P.make_mask(np.random.default_rng(11))
    m2 = P.make_mask(np.random.default_rng(11))
    assert np.array_equal(m1, m2)


@pytest.mark.parametrize("size", [32, 64, 96])
def test_shapes_and_dtypes(size):
    imgs = P.make_dataset(0, 3, size=size)
    masks = P.make_masks(0, 3, size=size)
    assert imgs.shape == (3, size, size, 3) and imgs.dtype == np.uint8
    assert masks.shape == (3, size, size) and masks.dtype == np.bool_
    img = P.make_image(np.random.default_rng(0), size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    mask = P.make_mask(np.random.default_rng(0), size)
    assert mask.shape == (size, size) and mask.dtype == np.bool_


def _n_colours(pixels: np.ndarray) -> int:
    p = pixels.reshape(-1, 3).astype(np.int64)
    return len(np.unique(p[:, 0] << 16 | p[:, 1] << 8 | p[:, 2]))


def test_images_are_not_trivial():
    imgs = P.make_dataset(1, 60)
    for img in imgs:
        assert _n_colours(img) >= 50  # background, several objects, edges
        assert img.reshape(-1, 3).astype(float).std(axis=0).max() > 15.0
        # several clearly different colours, not just anti-aliasing steps
        assert _n_colours(img // 48) >= 4
    # the data set as a whole uses the whole colour range and varies per pixel
    assert imgs.min() < 30 and imgs.max() > 225
    assert imgs.astype(float).std(axis=0).mean() > 30.0


def test_backgrounds_and_shapes_vary():
    backgrounds, shapes = set(), set()
    counts = []
    for i in range(150):
        _, info = P.make_image(np.random.default_rng([9, i]), return_info=True)
        backgrounds.add(info["background"])
        shapes.update(info["shapes"])
        counts.append(len(info["shapes"]))
    assert backgrounds == set(P.BACKGROUND_KINDS)
    assert shapes == set(P.SHAPE_KINDS)
    assert min(counts) >= 2 and max(counts) <= 5 and len(set(counts)) >= 3


def test_masks_cover_the_stated_range():
    masks, kinds = P.make_masks(2, 200, return_kinds=True)
    missing = 1.0 - masks.reshape(len(masks), -1).mean(axis=1)
    assert missing.min() >= P.MIN_MISSING and missing.max() <= P.MAX_MISSING
    # both known and missing pixels in every mask
    assert masks.reshape(len(masks), -1).any(axis=1).all()
    assert (~masks).reshape(len(masks), -1).any(axis=1).all()
    # a spread of hole sizes, small to large
    assert missing.min() < 0.12 and missing.max() > 0.42
    assert np.isclose(P.missing_fraction(masks[0]), missing[0])
    # every kind occurs, none dominates
    counts = {k: kinds.count(k) for k in P.MASK_KINDS}
    assert set(kinds) <= set(P.MASK_KINDS)
    assert min(counts.values()) >= 20, counts


def test_mask_kind_is_reported():
    mask, kind = P.make_mask(np.random.default_rng(3), return_kind=True)
    assert kind in P.MASK_KINDS
    assert np.array_equal(mask, P.make_mask(np.random.default_rng(3)))


def test_masks_are_regional_not_scattered():
    # holes are large connected regions, not salt-and-pepper: most missing
    # pixels have all four neighbours missing too
    masks = P.make_masks(8, 40)
    for known in masks:
        miss = ~known
        inner = miss[1:-1, 1:-1] & miss[:-2, 1:-1] & miss[2:, 1:-1] & miss[1:-1, :-2] & miss[1:-1, 2:]
        assert inner.sum() >= 0.5 * miss.sum()


def test_apply_mask_fills_exactly_the_missing_pixels():
    imgs = P.make_dataset(6, 4)
    masks = P.make_masks(6, 4)
    out = P.apply_mask(imgs, masks)
    assert out.dtype == np.uint8 and out.shape == imgs.shape
    assert (out[~masks] == 128).all()
    assert np.array_equal(out[masks], imgs[masks])
    # single image, another fill value; the input is not modified
    before = imgs[0].copy()
    one = P.apply_mask(imgs[0], masks[0], fill=0)
    assert (one[~masks[0]] == 0).all() and np.array_equal(one[masks[0]], imgs[0][masks[0]])
    assert np.array_equal(imgs[0], before)
    with pytest.raises(ValueError):
        P.apply_mask(imgs[0], masks[0][:32])


def test_palette_images_use_only_palette_colours():
    palette = P.make_palette(16)
    assert palette.shape == (16, 3) and len({tuple(c) for c in palette}) == 16
    images = P.make_dataset(3, 6, palette_size=16)
    colours = {tuple(c) for c in images.reshape(-1, 3)}
    assert colours <= {tuple(c) for c in palette} and len(colours) >= 4
    # flat regions: most pixels equal their right neighbour (hard edges, no ramps)
    same = (images[:, :, 1:] == images[:, :, :-1]).all(-1).mean()
    assert same > 0.8


def test_soften_blurs_edges_and_keeps_flat_colour():
    images = P.make_dataset(3, 4, palette_size=16)
    soft = P.make_dataset(3, 4, palette_size=16, blur=1.2)
    assert np.array_equal(P.soften(images[0], 0.0), images[0])
    # blur spreads edges: fewer pixels equal their neighbour, smaller steps between them
    def step(x):
        return np.abs(np.diff(x.astype(int), axis=2)).max(-1)
    assert step(soft).max() < step(images).max()
    assert (step(soft) > 0).mean() > (step(images) > 0).mean()
    # flat areas far from edges keep their colour; the mean colour is preserved
    flat = np.full((64, 64, 3), 77, np.uint8)
    assert np.array_equal(P.soften(flat, 1.2)[8:-8, 8:-8], flat[8:-8, 8:-8])
    assert abs(soft.astype(float).mean() - images.astype(float).mean()) < 2.0
