"""P-IDS and U-IDS (Zhao et al., 2021, Co-Mod-GAN; reported by MAT and later inpainting
papers), per image, so that their intervals and paired verdicts come from the same
bootstrap as the other per-image metrics.

A linear SVM (scikit-learn's LinearSVC, the primal solver) is fitted to tell the
ground truth's Inception pool features (label 1) from the filled images' (label 0),
and scored on the same features, as the papers do:

- U-IDS, the unpaired score: the SVM's error rate over both sets. Image i contributes
  the mean of its two errors (its real and its filled image misclassified or not), so
  the mean over images is the error rate.
- P-IDS, the paired score: the share of images whose filled version the SVM finds
  more real than its own ground truth, f(filled_i) > f(real_i); a tie counts one half
  (identical features give identical scores, and such a pair is neither side's).

Both are higher-is-better and at most about 0.5, reached when the SVM cannot tell the
sets apart. The intervals hold the fitted SVM fixed and resample images: they leave out
the SVM's own fitting noise. A linear SVM separates any two sets of fewer images than
feature dimensions (2048), where both scores are 0 whatever the images: the evaluate
stage computes them only from evaluate.ids_min_images test images on, and even there
they sit below 0.5 for two sets from one distribution (docs/evaluation.md measures how
far below).
"""

from __future__ import annotations

import warnings

import numpy as np


def per_image(real: np.ndarray, filled: np.ndarray) -> dict[str, np.ndarray]:
    """{"u_ids": (n,), "p_ids": (n,)} for features of the same n images, rows paired."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    real, filled = np.asarray(real, np.float64), np.asarray(filled, np.float64)
    if real.shape != filled.shape or real.ndim != 2:
        raise ValueError(f"features must be two (n, d) arrays of one shape, got {real.shape} and {filled.shape}")
    n = len(real)
    svm = LinearSVC(dual=False)
    with warnings.catch_warnings():
        # the primal solver stops at its iteration cap on nearly separable sets; the papers'
        # scores are those of the SVM it returns
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(np.concatenate([real, filled]), np.r_[np.ones(n), np.zeros(n)])
    score_real, score_filled = svm.decision_function(real), svm.decision_function(filled)
    # label 1 = real: a real image is misclassified when its score is not above 0
    # (LinearSVC predicts class 1 for a score > 0), a filled one when it is
    u_ids = ((score_real <= 0).astype(np.float64) + (score_filled > 0)) / 2
    p_ids = (score_filled > score_real) + 0.5 * (score_filled == score_real)
    return {"u_ids": u_ids, "p_ids": p_ids.astype(np.float64)}
