"""Hole metrics and IDS against formulas written out here: SSIM as Wang et al. (2004)
define it (Gaussian window 11 wide, sigma 1.5, K1 = 0.01, K2 = 0.03, the image's
data range L = 255, mirrored at the borders), averaged over the hole's pixels and
channels; PSNR over the hole's values alone; P-IDS and U-IDS from the SVM the test fits
itself (maskgit.metrics.image, maskgit.metrics.ids)."""

import numpy as np
import pytest
from scipy.ndimage import correlate1d
from sklearn.svm import LinearSVC

from maskgit.metrics import ids
from maskgit.metrics.image import missing_fraction
from maskgit.metrics.registry import per_image_metrics


def ssim_map(x, y, data_range=255.0):
    """(H, W, C) images -> (C, H, W) SSIM map, the statistics under a normalised Gaussian window."""
    t = np.arange(11) - 5
    g = np.exp(-t**2 / (2 * 1.5**2))
    g /= g.sum()

    def blur(a):
        return correlate1d(correlate1d(a, g, axis=0, mode="mirror"), g, axis=1, mode="mirror")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = []
    for ch in range(x.shape[2]):
        a, b = x[..., ch].astype(float), y[..., ch].astype(float)
        mx, my = blur(a), blur(b)
        vx, vy, cxy = blur(a * a) - mx**2, blur(b * b) - my**2, blur(a * b) - mx * my
        out.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return np.stack(out)


def toy_images():
    rng = np.random.default_rng(0)
    # smooth images with mild errors, where SSIM's constants (and so its data range) matter
    yy, xx = np.mgrid[:24, :20]
    base = 60 + 4 * yy[None, ..., None] + 3 * xx[None, ..., None] + 40 * np.arange(3)[:, None, None, None]
    gt = np.clip(base + rng.normal(0, 3, (3, 24, 20, 3)), 0, 255).astype(np.uint8)
    images = gt.copy()
    known = np.ones((3, 24, 20), bool)
    known[0, 6:14, 4:12] = False                   # a square hole inside the image
    known[1, :5, 13:] = False                       # a hole at the border
    known[1, 20:, :3] = False                       # and a second one, elsewhere
    known[2, 10:12, 9:11] = False                   # a small hole
    noisy = np.clip(gt.astype(int) + rng.normal(0, 6, gt.shape), 0, 255).astype(np.uint8)
    images[~known] = noisy[~known]
    # the known region changed too (as a decoder's re-encoding does): the hole metrics must not see it
    images[0, :3] = 255 - gt[0, :3]
    images[1, 10:14] = 0
    return images, gt, known


def test_hole_ssim_is_the_mean_of_the_ssim_map_over_the_hole_at_the_image_s_data_range():
    images, gt, known = toy_images()
    got = per_image_metrics(images, gt, known)
    for i in range(len(gt)):
        full = ssim_map(images[i], gt[i])
        expected = full[:, ~known[i]].mean()
        assert got["hole_ssim"][i] == pytest.approx(expected, rel=1e-9), i
        assert not got["hole_ssim"][i] == pytest.approx(full.mean(), rel=1e-3)  # not the whole image's
        # at a data range of 1 the constants vanish next to 8-bit values: another number
        assert not got["hole_ssim"][i] == pytest.approx(ssim_map(images[i], gt[i], 1.0)[:, ~known[i]].mean(),
                                                        rel=1e-3)


def test_hole_psnr_is_over_the_hole_s_values_alone():
    images, gt, known = toy_images()
    got = per_image_metrics(images, gt, known)
    assert missing_fraction(known) == pytest.approx([64 / 480, (35 + 12) / 480, 4 / 480], rel=1e-12)
    for i in range(len(gt)):
        err = (images[i][~known[i]].astype(float) - gt[i][~known[i]]) ** 2
        assert got["hole_psnr"][i] == pytest.approx(10 * np.log10(255**2 / err.mean()), rel=1e-7)
        whole = ((images[i].astype(float) - gt[i]) ** 2).mean()
        assert got["psnr"][i] == pytest.approx(10 * np.log10(255**2 / whole), rel=1e-7)


def test_an_exact_hole_in_a_changed_image_has_hole_ssim_of_its_windows_only():
    # the hole reproduced exactly, the known region not: SSIM's windows reach across the
    # hole's edge, so hole SSIM is below 1 near the edge, as the formula says
    images, gt, known = toy_images()
    images[0][~known[0]] = gt[0][~known[0]]
    images[0, 5:15, 3:13][known[0, 5:15, 3:13]] = 0
    got = per_image_metrics(images[:1], gt[:1], known[:1])
    expected = ssim_map(images[0], gt[0])[:, ~known[0]].mean()
    assert got["hole_ssim"][0] == pytest.approx(expected, rel=1e-9) and expected < 0.99
    assert got["hole_psnr"][0] == np.inf


def test_p_ids_and_u_ids_image_by_image_from_the_svm_fitted_here():
    rng = np.random.default_rng(6)
    n, d = 120, 6
    real = rng.normal(size=(n, d))
    filled = real.copy()
    filled[n // 2:] += 0.8 + rng.normal(size=(n - n // 2, d))  # half the images filled exactly, half not
    svm = LinearSVC(dual=False).fit(np.concatenate([real, filled]), np.r_[np.ones(n), np.zeros(n)])
    s_real, s_filled = svm.decision_function(real), svm.decision_function(filled)
    got = ids.per_image(real, filled)
    # P-IDS: 1 where the filled image looks more real than its own ground truth, 0 where less, 1/2 on a tie
    p = np.where(s_filled > s_real, 1.0, np.where(s_filled < s_real, 0.0, 0.5))
    assert got["p_ids"].tolist() == p.tolist()
    assert (got["p_ids"][: n // 2] == 0.5).all()  # the exact fills tie with their ground truth
    assert got["p_ids"].mean() < 0.5  # the other half is told apart
    # U-IDS: each image's share of its two misclassifications (a real one at score <= 0, a filled one above)
    u = ((s_real <= 0).astype(float) + (s_filled > 0)) / 2
    assert got["u_ids"].tolist() == u.tolist()
    labels = np.r_[np.ones(n), np.zeros(n)]
    assert got["u_ids"].mean() == pytest.approx(1 - svm.score(np.concatenate([real, filled]), labels), abs=1e-12)


def test_ssim_and_hole_ssim_share_a_map_only_for_the_same_images():
    from maskgit.metrics import image

    rng = np.random.default_rng(4)
    gt = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    a = np.clip(gt.astype(int) + rng.integers(-40, 40, gt.shape), 0, 255).astype(np.uint8)
    b = np.clip(gt.astype(int) + rng.integers(-10, 10, gt.shape), 0, 255).astype(np.uint8)
    known = np.ones((3, 16, 16), bool)
    known[:, 4:12, 4:12] = False
    image._SSIM_LAST.clear()
    fresh_b = image.ssim(b, gt, known), image.hole_ssim(b, gt, known)
    image._SSIM_LAST.clear()
    image.ssim(a, gt, known)
    after_a = image.ssim(b, gt, known), image.hole_ssim(b, gt, known)
    assert not np.allclose(image.ssim(a, gt, known), fresh_b[0])
    assert np.array_equal(after_a[0], fresh_b[0]) and np.array_equal(after_a[1], fresh_b[1])
    a[0, 0, 0] ^= 1  # the same array object, changed in place: not the cached images any more
    changed = image.ssim(a, gt, known)
    image._SSIM_LAST.clear()
    assert np.array_equal(changed, image.ssim(a, gt, known))


def test_ssim_one_image_at_a_time_is_the_whole_set_s_ssim_bit_for_bit():
    # the stage computes SSIM an image per call for speed; the published numbers are
    # torchmetrics' over the whole set at once, which must be the same bits
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    from maskgit.metrics import image

    rng = np.random.default_rng(5)
    gt = rng.integers(0, 256, (7, 32, 24, 3), dtype=np.uint8)
    images = np.clip(gt.astype(int) + rng.integers(-60, 60, gt.shape), 0, 255).astype(np.uint8)
    known = np.ones((7, 32, 24), bool)
    known[:, 8:20, 6:18] = False
    x, y = (torch.from_numpy(a).permute(0, 3, 1, 2).double() for a in (images, gt))
    whole, whole_map = structural_similarity_index_measure(x, y, data_range=255.0, reduction="none",
                                                           return_full_image=True)
    image._SSIM_LAST.clear()
    assert np.array_equal(image.ssim(images, gt, known), whole.numpy())
    hole = ~torch.from_numpy(known)
    assert np.array_equal(image.hole_ssim(images, gt, known),
                          np.array([float(whole_map[i][:, hole[i]].mean()) for i in range(7)]))
