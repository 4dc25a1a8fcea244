"""A seeded procedural image data set that stands in for the lab's cat faces.

Pure numpy, no file I/O (the stage scripts write the PNGs). Every image is a
plain, shaded or textured background with a few overlapping geometric objects
(ellipses, rounded rectangles, regular polygons, rings, stars, crosses,
crescents, long bars), rasterised from signed distance functions with a
one-pixel coverage ramp so that edges are clean at 64x64. Filling a hole in
such an image needs its global structure: edges and bars run on across the
hole, the shapes are symmetric, gradients and periodic textures continue.

Masks follow the lab's conventions (see FORMAT.md): True / white = known pixel,
False / black = missing, and the masked image has its hole filled with gray
(128). The mask kinds are regional like the lab's: rectangles, blobs (unions of
ellipses), thresholded smooth noise and thick brush strokes, with between
MIN_MISSING and MAX_MISSING of the pixels missing.

Item ``i`` of a data set depends only on ``(seed, i)`` (and on whether it is an
image or a mask), so changing a split's size never reshuffles other items.

The same bytes on every machine: the arrays here use only +, -, *, /, sqrt, floor and
comparisons, which IEEE 754 rounds one way everywhere (no matrix product, no vectorised
transcendental), and what needs more comes from maskgit.data.portable (the polynomial
sin and atan2, the integer blur, the seeded draws). Scalars may use Python's ``math``;
they only set a shape's parameters.
"""

from __future__ import annotations

import colorsys
import math
from functools import lru_cache

import numpy as np

from maskgit.data.portable import Draws, atan2, cos, hypot, item_rng, sin, soften

__all__ = [
    "BACKGROUND_KINDS",
    "SHAPE_KINDS",
    "MASK_KINDS",
    "MIN_MISSING",
    "MAX_MISSING",
    "make_image",
    "make_mask",
    "make_dataset",
    "make_masks",
    "apply_mask",
    "missing_fraction",
]

BACKGROUND_KINDS = ("solid", "linear", "radial", "stripes", "checker", "blobs", "dots")
SHAPE_KINDS = ("ellipse", "rect", "polygon", "ring", "star", "cross", "crescent", "bar")
MASK_KINDS = ("rect", "ellipses", "noise", "brush")

MIN_MISSING = 0.05  # the missing fraction of every mask lies in [MIN_MISSING, MAX_MISSING]
MAX_MISSING = 0.50

# Stream tags keep the images and the masks of one seed independent of each other.
_IMAGE_STREAM = 0x1A6E
_MASK_STREAM = 0x3A5C


def _cumulative(weights) -> tuple:
    w = np.asarray(weights, dtype=float)
    return tuple(np.cumsum(w / w.sum())[:-1].tolist())


# Flat and smoothly shaded backgrounds dominate, textures are a minority: a hole
# in a texture is filled by continuing the pattern, a harder task for the small
# CPU-trained models of the demo.
_BG_CUM = _cumulative([0.35, 0.20, 0.10, 0.10, 0.10, 0.05, 0.10])
_SHAPE_CUM = _cumulative([0.17, 0.15, 0.14, 0.12, 0.12, 0.10, 0.08, 0.12])

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_HALF = np.float32(0.5)


# ---------------------------------------------------------------------------
# random draws
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _axis(size: int) -> np.ndarray:
    """Pixel-centre coordinates 0.5, 1.5, ..., size - 0.5 (float32, read-only)."""
    a = np.arange(size, dtype=np.float32) + _HALF
    a.flags.writeable = False
    return a


@lru_cache(maxsize=32)
def _upsample_weights(size: int, n: int) -> tuple:
    """(index i0 (size,), weight w (size, 1)): pixel p of `size` interpolates the grid
    points i0 and i0 + 1 of an n-point grid as (1 - w) and w, with smoothstep
    weights (C1-smooth value noise, no visible creases)."""
    pos = (np.arange(size) + 0.5) / size * (n - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, n - 2)
    w = pos - i0
    w = (w * w * (3.0 - 2.0 * w)).astype(np.float32)[:, None]
    i0.flags.writeable = w.flags.writeable = False
    return i0, w


def _upsample_rows(grid: np.ndarray, size: int) -> np.ndarray:
    """Interpolate the rows of `grid` (n, m) to `size` rows: two terms a pixel, in a
    fixed order (a BLAS product would sum them in a kernel-dependent one)."""
    i0, w = _upsample_weights(size, grid.shape[0])
    return grid[i0] * (_F1 - w) + grid[i0 + 1] * w


def _smooth_noise(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """(size, size) smooth value noise from an n x n random grid, in [0, 1]."""
    rows = _upsample_rows(rng.random((n, n), dtype=np.float32), size)  # (size, n)
    return _upsample_rows(np.ascontiguousarray(rows.T), size).T


def _clip01(x):
    return np.minimum(np.maximum(x, _F0), _F1)


def _coverage(d: np.ndarray, hard: bool = False) -> np.ndarray:
    """Pixel coverage of the region d < 0 for a distance field in pixels: a
    one-pixel ramp (antialiased), or 0/1 when `hard` (flat palette images)."""
    if hard:
        return (d < _F0).astype(np.float32)
    return _clip01(_HALF - d)


def _split(t: np.ndarray, hard: bool) -> np.ndarray:
    """A blend weight in [0, 1], or its two-tone version (t >= 0.5) when `hard`."""
    return (t >= _HALF).astype(np.float32) if hard else t


def _snap(colour, palette, avoid=()) -> np.ndarray:
    """The palette colour nearest to `colour` (float RGB in [0, 1]) that is not in
    `avoid` (float RGB colours), as float32 RGB; `colour` itself without a palette."""
    colour = np.asarray(colour, dtype=np.float32)
    if palette is None:
        return colour
    diff = palette - colour
    dist = diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1] + diff[:, 2] * diff[:, 2]
    for a in avoid:
        dist[np.all(np.abs(palette - a) < 1e-6, axis=1)] = np.inf
    return palette[int(dist.argmin())] if np.isfinite(dist).any() else colour


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (h in turns) as float32 RGB in [0, 1], shape (3,)."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), dtype=np.float32)


def _rgb_to_hsv(c: np.ndarray) -> tuple:
    return colorsys.rgb_to_hsv(float(c[0]), float(c[1]), float(c[2]))


def _luma(c: np.ndarray) -> float:
    return 0.299 * float(c[0]) + 0.587 * float(c[1]) + 0.114 * float(c[2])


# ---------------------------------------------------------------------------
# signed distance functions in a shape's local (rotated) frame, in pixels
# ---------------------------------------------------------------------------


def _sd_ellipse(u, v, a, b):
    # Cheap ellipse distance: the implicit function divided by its gradient
    # length, exact on the axes and good near the boundary.
    k0 = np.sqrt((u * (1.0 / a)) ** 2 + (v * (1.0 / b)) ** 2)
    k1 = np.sqrt((u * (1.0 / (a * a))) ** 2 + (v * (1.0 / (b * b))) ** 2)
    return k0 * (k0 - _F1) / np.maximum(k1, np.float32(1e-6))


def _sd_round_box(u, v, w, h, r):
    """Box of half-sizes (w, h) with corners rounded by radius r."""
    qx = np.abs(u) - (w - r)
    qy = np.abs(v) - (h - r)
    outside = hypot(np.maximum(qx, _F0), np.maximum(qy, _F0))
    inside = np.minimum(np.maximum(qx, qy), _F0)
    return outside + inside - r


def _sd_regular_polygon(u, v, n, radius):
    """Regular n-gon with circumradius `radius`, one vertex on the -v axis."""
    apothem = radius * math.cos(math.pi / n)
    d = None
    for k in range(n):
        t = 2.0 * math.pi * (k + 0.5) / n - math.pi / 2.0
        dk = u * math.cos(t) + v * math.sin(t)
        d = dk if d is None else np.maximum(d, dk)
    return d - apothem


def _sd_star(u, v, n, r_out, r_in):
    """n-pointed star with a tip on the +u axis.

    Folds the plane into the half-sector between a tip (angle 0) and the next
    inner vertex (angle pi/n). There the boundary is the segment from the tip
    A = (r_out, 0) to the inner vertex B, and the star is the side of its line
    that holds the origin."""
    half = math.pi / n
    b = np.abs(np.mod(atan2(v, u) + half, 2.0 * half) - half)
    rho = hypot(u, v)
    qx, qy = rho * cos(b), rho * sin(b)
    ex, ey = r_in * math.cos(half) - r_out, r_in * math.sin(half)
    wx = qx - r_out
    t = _clip01((wx * ex + qy * ey) * (1.0 / (ex * ex + ey * ey)))
    dist = hypot(wx - ex * t, qy - ey * t)
    return np.where(ex * qy - ey * wx > 0.0, -dist, dist)


def _shape_sdf(shape: dict, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Distance field of `shape` at pixel coordinates X (1, w) and Y (h, 1)."""
    c, s = shape["cos"], shape["sin"]
    dx = X - shape["cx"]
    dy = Y - shape["cy"]
    u = c * dx + s * dy
    v = c * dy - s * dx
    kind, p = shape["kind"], shape["p"]
    if kind == "ellipse":
        return _sd_ellipse(u, v, p["a"], p["b"])
    if kind == "rect":
        return _sd_round_box(u, v, p["w"], p["h"], p["r"])
    if kind == "polygon":
        return _sd_regular_polygon(u, v, p["n"], p["R"])
    if kind == "ring":
        return np.abs(_sd_ellipse(u, v, p["a"], p["b"])) - p["t"]
    if kind == "star":
        return _sd_star(u, v, p["n"], p["R"], p["r"])
    if kind == "cross":
        d1 = _sd_round_box(u, v, p["L"], p["t"], p["r"])
        d2 = _sd_round_box(u, v, p["t"], p["L"], p["r"])
        return np.minimum(d1, d2)
    if kind == "crescent":
        d_out = hypot(u, v) - p["R"]
        d_cut = hypot(u - p["off"], v) - p["R2"]
        return np.maximum(d_out, -d_cut)
    if kind == "bar":
        q = np.maximum(np.abs(u) - p["L"], _F0)
        return hypot(q, v) - p["t"]
    raise ValueError(f"unknown shape kind {kind!r}")


# ---------------------------------------------------------------------------
# images (built channel-first, (3, H, W): broadcasting over a last axis of
# length 3 is several times slower in numpy)
# ---------------------------------------------------------------------------


def _background(d: Draws, size: int, kind: str, palette=None):
    """Returns (float32 image (3, size, size), lumas of its colours). With a palette
    (float (k, 3)) both colours are palette colours and blends are two-tone splits."""
    ax = _axis(size)
    X, Y = ax[None, :], ax[:, None]
    h = d.random()
    c1 = _hsv(h, d.uniform(0.15, 0.65), d.uniform(0.25, 0.92))
    # the second colour: the same or a neighbouring hue, a clear step in value
    _, s1, v1 = _rgb_to_hsv(c1)
    dv = d.uniform(0.15, 0.35) * (1.0 if _luma(c1) < 0.55 else -1.0)
    c2 = _hsv(
        h + d.pick((-1.0, 1.0)) * d.uniform(0.0, 0.18),
        min(max(s1 + d.uniform(-0.15, 0.15), 0.1), 0.8),
        min(max(v1 + dv, 0.12), 0.97),
    )
    hard = palette is not None
    c1 = _snap(c1, palette)
    if kind == "solid":
        img = np.empty((3, size, size), dtype=np.float32)
        img[:] = c1[:, None, None]
        return img, (_luma(c1),)
    theta = d.uniform(0.0, 2.0 * math.pi)
    ct, st = math.cos(theta), math.sin(theta)
    half = size / 2.0
    u = (X - half) * ct + (Y - half) * st  # coordinates rotated by theta
    if kind == "linear":
        t = u * (0.5 / (half * (abs(ct) + abs(st)))) + 0.5
        if d.chance(0.5):  # a stronger two-hue gradient
            c2 = _hsv(h + d.uniform(0.12, 0.35), d.uniform(0.3, 0.7), d.uniform(0.3, 0.9))
    elif kind == "radial":
        cx, cy = d.uniform(0.15, 0.85) * size, d.uniform(0.15, 0.85) * size
        t = hypot(X - cx, Y - cy) * (1.0 / (size * d.uniform(0.7, 1.1)))
    elif kind == "stripes":
        period = d.uniform(6.0, 16.0)
        duty = d.uniform(-0.5, 0.5)
        k = period / (2.0 * math.pi)  # unit slope at the zero crossings: ~1 px edges
        t = k * (sin(u * np.float32(1.0 / k)) - duty) + 0.5
    elif kind == "checker":
        period = d.uniform(10.0, 22.0)
        v = (Y - half) * ct - (X - half) * st
        k = period / (2.0 * math.pi)
        sx, sy = sin(u * np.float32(1.0 / k)), sin(v * np.float32(1.0 / k))
        t = k * np.minimum(np.abs(sx), np.abs(sy)) * np.sign(sx * sy) + 0.5
    elif kind == "blobs":
        n = d.integers(3, 7)
        noise = _smooth_noise(d.rng, size, n) + 0.35 * _smooth_noise(d.rng, size, 2 * n)
        lo, hi = float(noise.min()), float(noise.max())
        sharp = d.uniform(1.5, 6.0)
        t = (noise - lo) * (sharp / max(hi - lo, 1e-6)) + (0.5 - 0.5 * sharp)
    elif kind == "dots":
        period = d.uniform(7.0, 14.0)
        radius = period * d.uniform(0.18, 0.34)
        v = (Y - half) * ct - (X - half) * st
        if d.chance(0.5):  # hexagonal packing: shift every other row
            u = u + (np.floor(v * (1.0 / period)) % 2.0) * (period / 2.0)
        fu = u - period * np.round(u * (1.0 / period))
        fv = v - period * np.round(v * (1.0 / period))
        t = _HALF - (hypot(fu, fv) - radius)
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    c2 = _snap(c2, palette, avoid=(c1,))  # a texture needs two distinct colours
    t = _split(_clip01(t.astype(np.float32, copy=False)), hard)
    img = c1[:, None, None] + (c2 - c1)[:, None, None] * t[None]
    return img, (_luma(c1), _luma(c2))


def _object_colour(d: Draws, bg_lumas, used: list, palette=None) -> np.ndarray:
    """A saturated colour that stands out from the background and from the
    objects already drawn: the first of up to 12 candidates far enough from
    both, else the best of them (plain Python: the arrays are tiny). With a
    palette the candidates are snapped to it before they are judged."""
    best, best_score = None, -1.0
    for _ in range(12):
        h, r1, r2, r3 = d.random(), d.random(), d.random(), d.random()
        if r3 < 0.1:  # occasional near-white or charcoal object
            rgb = colorsys.hsv_to_rgb(h, 0.12 * r1, 0.12 + 0.13 * r2 if r3 < 0.05 else 0.88 + 0.1 * r2)
        else:
            rgb = colorsys.hsv_to_rgb(h, 0.5 + 0.42 * r1, 0.5 + 0.47 * r2)
        if palette is not None:
            rgb = tuple(float(c) for c in _snap(rgb, palette))
        lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        score = 2.0 * min(abs(lum - bl) for bl in bg_lumas)
        for u in used:
            score = min(score, abs(rgb[0] - u[0]) + abs(rgb[1] - u[1]) + abs(rgb[2] - u[2]))
        if score > best_score:
            best, best_score = rgb, score
        if score > 0.45:
            break
    return best


def _random_shape(d: Draws, size: int, kind: str, R: float) -> dict:
    """A shape of `kind` with a bounding radius of about R pixels."""
    angle = d.uniform(0.0, 2.0 * math.pi)
    p: dict = {}
    if kind == "ellipse":
        p["a"] = R
        p["b"] = R if d.chance(0.4) else R * d.uniform(0.45, 0.85)
    elif kind == "rect":
        w = R * d.uniform(0.6, 0.8)
        h = w * d.uniform(0.4, 1.0) if d.chance(0.7) else w
        p.update(w=w, h=h, r=min(w, h) * d.uniform(0.0, 0.45) if d.chance(0.5) else 0.0)
        if d.chance(0.4):
            angle = 0.0  # axis-aligned boxes are common in real scenes
    elif kind == "polygon":
        n = d.pick((3, 3, 4, 5, 6))
        p.update(n=n, R=R * (1.1 if n == 3 else 1.0))
    elif kind == "ring":
        t = max(1.5, R * d.uniform(0.12, 0.25))
        b = R if d.chance(0.6) else R * d.uniform(0.65, 0.9)
        p.update(a=R - t, b=b - t, t=t)
    elif kind == "star":
        p.update(n=d.pick((4, 5, 5, 6)), R=R * 1.05, r=R * d.uniform(0.38, 0.55))
    elif kind == "cross":
        t = R * d.uniform(0.18, 0.32)
        p.update(L=R * 0.85, t=t, r=t * d.uniform(0.0, 0.6))
        if d.chance(0.4):
            angle = 0.0
    elif kind == "crescent":
        p.update(R=R, off=R * d.uniform(0.35, 0.6), R2=R * d.uniform(0.7, 0.9))
    elif kind == "bar":
        # a long thick bar, often running off the image: its edges continue across a hole
        L = d.uniform(0.4, 0.9) * size
        t = d.uniform(2.0, 4.5) * size / 64.0
        p.update(L=L, t=t)
        R = L + t
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    return {"kind": kind, "p": p, "R": R, "cos": math.cos(angle), "sin": math.sin(angle)}


def _draw(img: np.ndarray, shape: dict, d: Draws, colour: np.ndarray, palette=None) -> None:
    """Composite `shape` into `img` (float32 (3, H, W), in place): flat or
    shaded fill, optional soft drop shadow and optional outline. With a palette:
    hard edges, two-tone shading in palette colours, and no shadow (a darkened
    copy of the background is not a palette colour)."""
    size = img.shape[1]
    ax = _axis(size)
    hard = palette is not None
    shaded = d.chance(0.2)
    shadow = d.chance(0.1) and not hard
    outline = d.chance(0.2) and shape["kind"] != "bar"
    sdx = d.uniform(1.0, 2.5) * size / 64.0 if shadow else 0.0
    sdy = d.uniform(1.0, 2.5) * size / 64.0 if shadow else 0.0
    pad = shape["R"] * 1.1 + 2.0
    cx, cy = shape["cx"], shape["cy"]
    x0 = max(int(math.floor(cx - pad)), 0)
    x1 = min(int(math.ceil(cx + pad + sdx)) + 1, size)
    y0 = max(int(math.floor(cy - pad)), 0)
    y1 = min(int(math.ceil(cy + pad + sdy)) + 1, size)
    if x0 >= x1 or y0 >= y1:
        return
    X = ax[None, x0:x1]
    Y = ax[y0:y1, None]
    patch = img[:, y0:y1, x0:x1]
    if shadow:
        ds = _shape_sdf(shape, X - np.float32(sdx), Y - np.float32(sdy))
        patch *= _F1 - _clip01(_HALF - ds * np.float32(1.0 / 1.5)) * np.float32(0.35)
    dist = _shape_sdf(shape, X, Y)
    alpha = _coverage(dist, hard)
    col = colour[:, None, None]
    if shaded:
        # a linear gradient to a lighter or darker shade across the object
        h, s, v = _rgb_to_hsv(colour)
        other = _hsv(h + d.uniform(-0.06, 0.06), s * d.uniform(0.6, 1.0), v + d.pick((-1.0, 1.0)) * d.uniform(0.25, 0.45))
        other = _snap(other, palette, avoid=(colour,))
        phi = d.uniform(0.0, 2.0 * math.pi)
        scale = 1.0 / (2.0 * max(shape["R"], 1.0))
        t = _clip01((X - cx) * np.float32(math.cos(phi) * scale) + (Y - cy) * np.float32(math.sin(phi) * scale) + _HALF)
        t = _split(t, hard)
        fill = col + (other - colour)[:, None, None] * t[None]
    else:
        fill = col
    patch += (fill - patch) * alpha
    if outline:
        # a band just inside the edge, dark on light colours, light on dark ones
        bw = d.uniform(1.0, 2.0) * size / 64.0
        band = _coverage(np.abs(dist + np.float32(bw / 2.0)) - np.float32(bw / 2.0), hard)
        line = colour * np.float32(0.3) if _luma(colour) > 0.35 else np.minimum(colour + np.float32(0.55), _F1)
        line = _snap(line, palette, avoid=(colour,))
        patch += (line[:, None, None] - patch) * band


def make_image(rng: np.random.Generator, size: int = 64, return_info: bool = False, palette=None):
    """One procedural RGB image, uint8 (size, size, 3).

    With a palette (uint8 (k, 3)) the image is drawn flat in palette colours
    only, with hard edges: no antialiasing ramp, shading ramp or shadow whose
    in-between colours a posterization would turn into stray fringe pixels.

    With return_info=True returns (image, info), info a dict with the
    background kind ("background") and the shape kinds drawn back to front
    ("shapes").
    """
    d = Draws(rng)
    if palette is not None:
        palette = np.asarray(palette, dtype=np.float32) / np.float32(255.0)
    bg_kind = d.weighted(BACKGROUND_KINDS, _BG_CUM)
    img, bg_lumas = _background(d, size, bg_kind, palette)
    n_obj = d.pick((2, 3, 3, 4, 4, 5))
    kinds = [d.weighted(SHAPE_KINDS, _SHAPE_CUM) for _ in range(n_obj)]
    if kinds.count("bar") > 1:  # at most one long bar
        first = kinds.index("bar")
        kinds = [k if (k != "bar" or i == first) else "ellipse" for i, k in enumerate(kinds)]
    # big objects first so smaller ones sit on top of them
    scales = sorted((d.uniform(0.13, 0.36) * size for _ in range(n_obj)), reverse=True)
    scales[0] = max(scales[0], 0.26 * size)
    used: list = []
    for kind, scale in zip(kinds, scales):
        if kind == "crescent":
            scale = max(scale, 0.2 * size)  # small crescents read as hooks
        shape = _random_shape(d, size, kind, scale)
        if kind == "bar":
            lo, hi = 0.2 * size, 0.8 * size
        else:  # mostly inside the image; now and then running off an edge
            inset = shape["R"] * (0.2 if d.chance(0.25) else 0.75)
            lo, hi = min(inset, 0.4 * size), max(size - inset, 0.6 * size)
        shape["cx"], shape["cy"] = d.uniform(lo, hi), d.uniform(lo, hi)
        rgb = _object_colour(d, bg_lumas, used, palette)
        used.append(rgb)
        _draw(img, shape, d, np.array(rgb, dtype=np.float32), palette)
    out = (_clip01(img.transpose(1, 2, 0)) * np.float32(255.0) + _HALF).astype(np.uint8)
    if return_info:
        return out, {"background": bg_kind, "shapes": kinds}
    return out


# ---------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------


def missing_fraction(known: np.ndarray) -> float:
    """Fraction of missing (False) pixels of a mask (or of a batch of masks)."""
    known = np.asarray(known)
    return 1.0 - np.count_nonzero(known) / known.size


def _mask_rect(d: Draws, size: int, target: float) -> np.ndarray:
    missing = np.zeros((size, size), dtype=bool)
    k = d.pick((1, 1, 1, 2, 3))
    area = target * size * size / k
    for _ in range(k):
        aspect = math.exp(d.uniform(-0.8, 0.8))
        w = int(round(min(max(math.sqrt(area * aspect), 3), size - 2)))
        h = int(round(min(max(area / w, 3), size - 2)))
        x = d.integers(0, size - w + 1)
        y = d.integers(0, size - h + 1)
        missing[y : y + h, x : x + w] = True
    return missing


def _mask_ellipses(d: Draws, size: int, target: float) -> np.ndarray:
    ax = _axis(size)
    missing = np.zeros((size, size), dtype=bool)
    cx, cy = d.uniform(0.2, 0.8) * size, d.uniform(0.2, 0.8) * size
    spread = math.sqrt(target) * size * 0.45
    base_r = math.sqrt(target * size * size / math.pi)
    goal = target * size * size
    for _ in range(12):
        a = base_r * d.uniform(0.35, 0.8)
        b = a * d.uniform(0.5, 1.0)
        th = d.uniform(0.0, math.pi)
        ex, ey = d.normal(cx, spread), d.normal(cy, spread)
        x0, x1 = max(int(ex - a) - 1, 0), min(int(ex + a) + 2, size)
        y0, y1 = max(int(ey - a) - 1, 0), min(int(ey + a) + 2, size)
        if x0 >= x1 or y0 >= y1:
            continue
        X, Y = ax[None, x0:x1] - ex, ax[y0:y1, None] - ey
        c, s = math.cos(th), math.sin(th)
        u = (X * c + Y * s) * (1.0 / a)
        v = (Y * c - X * s) * (1.0 / b)
        missing[y0:y1, x0:x1] |= u * u + v * v <= 1.0
        if np.count_nonzero(missing) >= goal:
            break
    return missing


def _mask_noise(d: Draws, size: int, target: float) -> np.ndarray:
    n = d.integers(3, 6)
    field = _smooth_noise(d.rng, size, n) + 0.3 * _smooth_noise(d.rng, size, 2 * n + 1)
    return field <= np.quantile(field, target)


def _mask_brush(d: Draws, size: int, target: float) -> np.ndarray:
    """Thick random polylines (strokes of a round brush)."""
    ax = _axis(size)
    missing = np.zeros((size, size), dtype=bool)
    width = d.uniform(2.0, 5.5) * size / 64.0 * (1.0 + 1.5 * target)  # half-width
    goal = target * size * size
    for _ in range(8):
        px, py = d.uniform(0.1, 0.9) * size, d.uniform(0.1, 0.9) * size
        heading = d.uniform(0.0, 2.0 * math.pi)
        for _ in range(d.integers(2, 6)):
            heading += d.normal(0.0, 0.9)
            length = d.uniform(0.15, 0.45) * size
            qx = min(max(px + length * math.cos(heading), 0.0), float(size))
            qy = min(max(py + length * math.sin(heading), 0.0), float(size))
            x0, x1 = max(int(min(px, qx) - width) - 1, 0), min(int(max(px, qx) + width) + 2, size)
            y0, y1 = max(int(min(py, qy) - width) - 1, 0), min(int(max(py, qy) + width) + 2, size)
            ex, ey = qx - px, qy - py
            wx, wy = ax[None, x0:x1] - px, ax[y0:y1, None] - py
            t = _clip01((wx * ex + wy * ey) * (1.0 / max(ex * ex + ey * ey, 1e-6)))
            missing[y0:y1, x0:x1] |= (wx - ex * t) ** 2 + (wy - ey * t) ** 2 <= width * width
            px, py = qx, qy
            if np.count_nonzero(missing) >= goal:
                return missing
    return missing


_MASK_MAKERS = {"rect": _mask_rect, "ellipses": _mask_ellipses, "noise": _mask_noise, "brush": _mask_brush}


def make_mask(rng: np.random.Generator, size: int = 64, return_kind: bool = False):
    """One inpainting mask, bool (size, size): True = known pixel, False = missing.

    The kind is drawn uniformly from MASK_KINDS and the target missing fraction
    uniformly from about [MIN_MISSING, MAX_MISSING]; the result always has a
    missing fraction within [MIN_MISSING, MAX_MISSING] (a kind that misses it
    eight times falls back to thresholded noise, which hits it exactly). With
    return_kind=True returns (mask, kind).
    """
    d = Draws(rng)
    kind = d.pick(MASK_KINDS)
    lo, hi = MIN_MISSING * size * size, MAX_MISSING * size * size
    missing = None
    for _ in range(8):
        cand = _MASK_MAKERS[kind](d, size, d.uniform(MIN_MISSING + 0.01, MAX_MISSING - 0.01))
        if lo <= np.count_nonzero(cand) <= hi:
            missing = cand
            break
    if missing is None:
        kind = "noise"
        missing = _mask_noise(d, size, d.uniform(MIN_MISSING + 0.02, MAX_MISSING - 0.02))
    known = ~missing
    return (known, kind) if return_kind else known


# ---------------------------------------------------------------------------
# data sets
# ---------------------------------------------------------------------------


def make_palette(n: int) -> np.ndarray:
    """n colours spread over hue and lightness (uint8 (n, 3)), always with black,
    white and a dark gray; never the mid gray (128) that fills the holes of masked images."""
    greys = [(0, 0, 0), (255, 255, 255), (64, 64, 64)]
    n_hues = max(n - len(greys), 0)
    colours = [tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(k / max(n_hues, 1), 0.75 if k % 2 else 0.55,
                                                                      0.9 if k % 3 else 0.6))
               for k in range(n_hues)]
    return np.array((greys + colours)[:n], dtype=np.uint8)


def posterize(images: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map every pixel to its nearest palette colour. Flat, few-colour images can be
    tokenized exactly by a small codebook, which the CPU-sized demo models need."""
    flat = images.reshape(-1, 3).astype(np.int32)
    dist = ((flat[:, None, :] - palette[None].astype(np.int32)) ** 2).sum(-1)
    return palette[dist.argmin(1)].reshape(images.shape)


def make_dataset(seed: int, n: int, size: int = 64, palette_size: int = 0, blur: float = 0.0) -> np.ndarray:
    """n images, uint8 (n, size, size, 3); image i depends only on (seed, i).
    With palette_size > 0 the images are drawn flat in make_palette(palette_size);
    blur > 0 softens them by a Gaussian of that std (pixels)."""
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    palette = make_palette(palette_size) if palette_size else None
    for i in range(n):
        out[i] = make_image(item_rng(seed, _IMAGE_STREAM, i), size, palette=palette)
        if palette is not None:  # a no-op up to float rounding: drawn in the palette already
            out[i] = posterize(out[i], palette)
        out[i] = soften(out[i], blur)
    return out


def make_masks(seed: int, n: int, size: int = 64, return_kinds: bool = False):
    """n masks, bool (n, size, size), True = known; mask i depends only on (seed, i).

    With return_kinds=True returns (masks, list of kinds)."""
    out = np.empty((n, size, size), dtype=bool)
    kinds = []
    for i in range(n):
        out[i], kind = make_mask(item_rng(seed, _MASK_STREAM, i), size, return_kind=True)
        kinds.append(kind)
    return (out, kinds) if return_kinds else out


def apply_mask(image: np.ndarray, known: np.ndarray, fill: int = 128) -> np.ndarray:
    """The lab's masked image: the missing pixels (known False) set to gray `fill`.

    image uint8 (..., H, W, 3), known bool (..., H, W); returns a new array."""
    image = np.asarray(image)
    known = np.asarray(known, dtype=bool)
    if image.ndim < 3 or image.shape[-1] != 3 or image.shape[:-1] != known.shape:
        raise ValueError(f"image {image.shape} and mask {known.shape} do not match")
    out = image.copy()
    out[~known] = fill
    return out
