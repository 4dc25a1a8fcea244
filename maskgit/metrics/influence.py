"""FID and KID with their influence functions: the per-image first-order terms that
make a bootstrap replicate of either statistic one matrix product, at any n.

A statistic T of the paired sample z_i = (x_i, y_i) (an inpainted image's features
and its ground truth's) has, to first order, T(resample) = T + sum_i (c_i / n) IF_i,
where c_i counts how often the resample drew image i and IF_i is T's empirical
influence function (the derivative of T when the weight of z_i grows; sum_i IF_i = 0).
maskgit.metrics.bootstrap's linear route replaces each replicate of FID and KID by
that sum with the same counts every other statistic is resampled with, so paired
differences and per-image means stay exactly as in the exact route. Cost: one QR
and one SVD per set for FID, one pass over the kernel matrices in blocks for KID,
never an n x n matrix held, whatever the replicates.

FID. With centred features A = X - 1 m_x^T, B = Y - 1 m_y^T, S_x = A^T A / n,
S_y = B^T B / n and M = A B^T / n = U diag(s) W^T,

    FID = |m_x - m_y|^2 + tr S_x + tr S_y - 2 sum(s),

because tr sqrt(S_x S_y) is the nuclear norm of M. M is read through thin QR
factors A = Q_a R_a, B = Q_b R_b: M = Q_a (R_a R_b^T / n) Q_b^T, a min(n, d) square
core. d tr sqrt(S_x S_y) / d S_x = G_x = 1/2 S_y^(1/2) (...)^(-1/2) S_y^(1/2) and,
in the basis of M's singular vectors, a_i^T G_x a_i = n/2 sum_k s_k U_ik^2 (b_i and W
likewise). With dm_x = a_i, dS_x = a_i a_i^T - S_x and tr(G_x S_x) = sum(s) / 2:

    IF_i = 2 (m_x - m_y).(a_i - b_i) + |a_i|^2 - tr S_x + |b_i|^2 - tr S_y
           - n sum_k s_k (U_ik^2 + W_ik^2) + 2 sum(s).

The point value uses the n - 1 normalisation of maskgit.metrics.bootstrap (and
torch-fidelity), so both routes print the same FID.

KID (maskgit.metrics.bootstrap's definition: unbiased within each set, mean over all
pairs across sets, kernel k(x, y) = (x.y / d + 1)^3). A U-statistic's influence is
twice its kernel's mean against the other images, centred; the cross mean's is the
mean of row and column, centred, twice:

    IF_i = 2 (r_xx,i - W_xx) + 2 (r_yy,i - W_yy) - 2 ((R_xy,i + C_xy,i) / n - 2 V_xy).

tests/test_influence.py checks both against finite differences of the weighted
statistics and against the exact bootstrap.
"""

from __future__ import annotations

import numpy as np

KID_DEGREE = 3  # torch-fidelity's polynomial kernel (x.y / d + 1)^3
BLOCK_ROWS = 1024  # rows of a kernel matrix held at once: BLOCK_ROWS x n floats


def fid(f_set: np.ndarray, f_gt: np.ndarray) -> tuple[float, np.ndarray]:
    """FID(set, gt) and its influence function (n,), rows of both in test-image order."""
    x, y = np.asarray(f_set, np.float64), np.asarray(f_gt, np.float64)
    n = len(x)
    mx, my = x.mean(0), y.mean(0)
    a, b = x - mx, y - my
    qa, ra = np.linalg.qr(a)
    qb, rb = np.linalg.qr(b)
    u_core, s, wt_core = np.linalg.svd(ra @ rb.T / n)
    u, w = qa @ u_core, qb @ wt_core.T
    diff = mx - my
    sq_a, sq_b = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    tr_x, tr_y = sq_a.mean(), sq_b.mean()
    nuclear = float(s.sum())
    influence = (2 * (a - b) @ diff + sq_a - tr_x + sq_b - tr_y
                 - n * ((u * u) @ s + (w * w) @ s) + 2 * nuclear)
    value = float(diff @ diff) + (sq_a.sum() + sq_b.sum()) / (n - 1) - 2 * nuclear * n / (n - 1)
    return value, influence - influence.mean()


def kernel_sums(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row sums, column sums and the diagonal of k(x_i, y_j), BLOCK_ROWS rows at a time."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    rows, cols, diag = np.empty(len(x)), np.zeros(len(y)), np.empty(len(x))
    for start in range(0, len(x), BLOCK_ROWS):
        k = (x[start:start + BLOCK_ROWS] @ y.T / d + 1) ** KID_DEGREE
        rows[start:start + len(k)] = k.sum(1)
        cols += k.sum(0)
        diag[start:start + len(k)] = k[np.arange(len(k)), start + np.arange(len(k))]
    return rows, cols, diag


def kid(f_set: np.ndarray, f_gt: np.ndarray, gt_sums=None) -> tuple[float, np.ndarray]:
    """KID(set, gt) and its influence function (n,). gt_sums: kernel_sums(gt, gt), which
    every set shares, computed once by the caller."""
    n = len(f_set)
    rows_xx, _, diag_xx = kernel_sums(f_set, f_set)
    rows_yy, _, diag_yy = gt_sums if gt_sums is not None else kernel_sums(f_gt, f_gt)
    rows_xy, cols_xy, _ = kernel_sums(f_set, f_gt)
    r_xx, r_yy = (rows_xx - diag_xx) / (n - 1), (rows_yy - diag_yy) / (n - 1)
    w_xx, w_yy, v_xy = r_xx.mean(), r_yy.mean(), rows_xy.sum() / n**2
    influence = 2 * (r_xx - w_xx) + 2 * (r_yy - w_yy) - 2 * ((rows_xy + cols_xy) / n - 2 * v_xy)
    return float(w_xx + w_yy - 2 * v_xy), influence - influence.mean()
