"""The mask families inpainting papers evaluate on, as seeded numpy generators.

Five families, in the papers' own words:

- ``thin``, ``medium``, ``thick``: LaMa's random masks (Suvorov et al., 2022, *Resolution-robust
  Large Mask Inpainting with Fourier Convolutions*), from its data-generation configs
  ``random_{thin,medium,thick}_256.yaml`` and its mask generator. A mask is either irregular
  strokes (each stroke a start point and 1 to 5 straight segments, drawn with a round brush,
  in one of four directions) or, with weight ``box_proba`` against ``irregular_proba``, a few
  axis-aligned boxes; a mask with more than ``max_tamper_area`` (half) of the image missing
  is thrown away and drawn again. Thin: many narrow short strokes; medium: a few wider, longer
  ones or small boxes; thick: one to six broad, long strokes or large boxes.
- ``small``, ``large``: MAT's masks (Li et al., 2022, *MAT: Mask-Aware Transformer for Large
  Hole Image Inpainting*), which are Co-Mod-GAN's free-form generator (Zhao et al., 2021)
  with fewer tries: a few random rectangles of up to half and up to the full image side,
  then ``RandomBrush`` strokes (a zigzag polyline of 4 to 17 segments, round joints), the
  whole brush layer flipped at random. A mask whose hole ratio is not strictly inside
  ``hole_range`` is drawn again. MAT's ``small`` generator has fewer rectangles and strokes
  than its ``large`` one; the hole range of both is the generators' own, (0, 1): MAT's code
  sets no narrower one (its evaluation masks are files it ships).

The parameters (``LAMA``, ``MAT``) are the sources' values at their native size, 256 pixels
for LaMa and 512 for MAT, under the sources' own keys. Scaling: every mask is drawn on a
canvas of the native size with the source's integer draws (positions, lengths, widths, box
sizes in native pixels) and then rasterised at the requested size: a native point p (a pixel
centre) lands at (p + 0.5) * size / native and a width w becomes w * size / native, so every
length scales linearly and the distribution of the missing fraction does not depend on the
size beyond the rasterisation of the edges. A stroke is the union of capsules (a segment
thickened by the brush radius, round ends), drawn by a squared-distance test at pixel
centres; a box covers the pixels whose centres lie inside it.

Convention as in :mod:`maskgit.data.procedural`: a mask is bool (size, size), True = known
pixel, False = missing. Item ``i`` of family ``f`` depends only on ``(seed, f, i)``. Every
mask has at least one missing and one known pixel: a candidate outside its family's bounds
is drawn again, at most ``MAX_DRAWS`` times in all (LaMa's own bound: 10 attempts of 5
variants each); after that the mask is a fixed fallback, a centred square hole of side
size // 2 (a quarter of the image), the same for every seed and family, valid for all of them.

The same bytes on every machine, as in procedural.py: the arrays use only +, -, *, /,
comparisons and integer arithmetic; the angles' sines and cosines come from procedural's
polynomial ``sin`` and ``cos`` of maskgit.data.portable; Python's ``math`` only touches single scalars (MAT's normal
draws). tests/test_portable_data.py checks the bytes under several BLAS core types, numpy
SIMD levels and thread counts against tests/fingerprints/masks.json.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from maskgit.choices import MASK_FAMILIES
from maskgit.data import portable
from maskgit.data.procedural import missing_fraction

__all__ = ["FAMILIES", "LAMA", "MAT", "MAX_DRAWS", "make_family_mask", "family_mask", "family_masks"]

FAMILIES = MASK_FAMILIES  # the names, defined once in maskgit.choices (prepare.test_masks)

# LaMa (Suvorov et al., 2022): advimman/lama, configs/data_gen/random_{thin,medium,thick}_256.yaml
# (mask_generator_kwargs and max_tamper_area), at 256 x 256 pixels; the keys are the configs'.
LAMA = {
    "thin": {
        "size": 256,
        "irregular_proba": 1.0,
        "irregular_kwargs": {"min_times": 4, "max_times": 50, "max_width": 10, "max_angle": 4, "max_len": 40},
        "box_proba": 0.0,
        "box_kwargs": None,
        "max_tamper_area": 0.5,
    },
    "medium": {
        "size": 256,
        "irregular_proba": 1.0,
        "irregular_kwargs": {"min_times": 4, "max_times": 5, "max_width": 50, "max_angle": 4, "max_len": 100},
        "box_proba": 0.3,
        "box_kwargs": {"margin": 0, "bbox_min_size": 10, "bbox_max_size": 50, "min_times": 1, "max_times": 5},
        "max_tamper_area": 0.5,
    },
    "thick": {
        "size": 256,
        "irregular_proba": 1.0,
        "irregular_kwargs": {"min_times": 1, "max_times": 5, "max_width": 100, "max_angle": 4, "max_len": 200},
        "box_proba": 0.3,
        "box_kwargs": {"margin": 10, "bbox_min_size": 30, "bbox_max_size": 150, "min_times": 1, "max_times": 3},
        "max_tamper_area": 0.5,
    },
}

# MAT (Li et al., 2022): fenglinglwb/MAT, datasets/mask_generator_512_small.py (small) and
# datasets/mask_generator_512.py (large), at 512 x 512 pixels. RandomMask draws up to
# fill_half_tries rectangles of side < size // 2, up to fill_full_tries of side < size, then
# RandomBrush(brush_tries) with the brush keywords below (RandomBrush's defaults); each tries
# count is multiplied by min(hole_range[0] + hole_range[1], 1), which is 1 here.
_MAT_BRUSH = {"min_num_vertex": 4, "max_num_vertex": 18, "mean_angle": 2 * math.pi / 5,
              "angle_range": 2 * math.pi / 15, "min_width": 12, "max_width": 48}
MAT = {
    "small": {"size": 512, "hole_range": (0.0, 1.0), "fill_half_tries": 3, "fill_full_tries": 2,
              "brush_tries": 4, "brush": dict(_MAT_BRUSH)},
    "large": {"size": 512, "hole_range": (0.0, 1.0), "fill_half_tries": 5, "fill_full_tries": 3,
              "brush_tries": 9, "brush": dict(_MAT_BRUSH)},
}

MAX_DRAWS = 50  # candidates per mask before the fallback (LaMa: 10 attempts of 5 variants)

# Stream tags keep the families' masks independent of each other and of procedural.py's data.
_STREAMS = {"thin": 0x7A01, "medium": 0x7A02, "thick": 0x7A03, "small": 0x7A04, "large": 0x7A05}


# ---------------------------------------------------------------------------
# rasterising native-canvas shapes at the output size
# ---------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _centres(size: int) -> np.ndarray:
    """Pixel-centre coordinates 0.5, 1.5, ..., size - 0.5 (float64, read-only)."""
    a = np.arange(size, dtype=np.float64) + 0.5
    a.flags.writeable = False
    return a


class _Canvas:
    """A bool hole layer of `size` pixels on which shapes given in native pixels are drawn."""

    __slots__ = ("size", "native", "scale", "missing")

    def __init__(self, size: int, native: int):
        self.size, self.native = size, native
        self.scale = size / native
        self.missing = np.zeros((size, size), dtype=bool)

    def segment(self, p0: tuple, p1: tuple, width: float) -> None:
        """A round-ended stroke of `width` native pixels between native pixel centres p0 and p1:
        the pixels whose centres lie within width / 2 of the segment."""
        s, size = self.scale, self.size
        x0, y0 = (p0[0] + 0.5) * s, (p0[1] + 0.5) * s
        x1, y1 = (p1[0] + 0.5) * s, (p1[1] + 0.5) * s
        r = 0.5 * width * s
        c0, c1 = max(int(math.floor(min(x0, x1) - r)), 0), min(int(math.ceil(max(x0, x1) + r)) + 1, size)
        r0, r1 = max(int(math.floor(min(y0, y1) - r)), 0), min(int(math.ceil(max(y0, y1) + r)) + 1, size)
        if c0 >= c1 or r0 >= r1:
            return
        ax = _centres(size)
        wx, wy = ax[None, c0:c1] - x0, ax[r0:r1, None] - y0
        ex, ey = x1 - x0, y1 - y0
        length2 = ex * ex + ey * ey
        if length2 > 0.0:
            t = np.minimum(np.maximum((wx * ex + wy * ey) * (1.0 / length2), 0.0), 1.0)
            dx, dy = wx - ex * t, wy - ey * t
        else:
            dx, dy = wx, wy
        self.missing[r0:r1, c0:c1] |= dx * dx + dy * dy <= r * r

    def _span(self, lo: int, hi: int) -> tuple:
        """The output pixels j whose centres lie in the native interval [lo, hi):
        lo <= (j + 0.5) * native / size < hi, in integers (exact at any size)."""
        n, size = self.native, self.size
        first = -((n - 2 * lo * size) // (2 * n))  # ceil((2 lo size - n) / 2n)
        stop = -((n - 2 * hi * size) // (2 * n))
        return min(max(first, 0), size), min(max(stop, 0), size)

    def box(self, x: int, y: int, w: int, h: int) -> None:
        """The native pixels [x, x + w) x [y, y + h) (clipped to the canvas)."""
        c0, c1 = self._span(max(x, 0), min(x + w, self.native))
        r0, r1 = self._span(max(y, 0), min(y + h, self.native))
        self.missing[r0:r1, c0:c1] = True


@lru_cache(maxsize=64)
def _sin_cos(angle: float) -> tuple:
    """(sin, cos) of one angle by maskgit.data.portable's polynomials (no libm, the same bits everywhere)."""
    return float(portable.sin(angle)), float(portable.cos(angle))


# ---------------------------------------------------------------------------
# LaMa
# ---------------------------------------------------------------------------


def _lama_strokes(d: portable.Draws, canvas: _Canvas, kw: dict) -> None:
    """LaMa's irregular mask: `times` strokes, each a start point and 1 to 5 segments. A
    segment's angle is 0.01 + an integer below max_angle (radians), mirrored (2 pi - angle) on
    even strokes; its length 10 + an integer below max_len; its brush 5 + an integer below
    max_width, in native pixels. An end point is truncated to an integer and clipped to the
    canvas. LaMa's generator passes max_times + 1 as the upper bound of its inclusive draw,
    so a mask has min_times to max_times + 1 strokes."""
    n = canvas.native
    for i in range(d.integers(kw["min_times"], kw["max_times"] + 2)):
        start = (d.integers(0, n), d.integers(0, n))
        for _ in range(1 + d.integers(0, 5)):
            angle = 0.01 + d.integers(0, kw["max_angle"])
            if i % 2 == 0:
                angle = 2.0 * math.pi - angle
            length = 10 + d.integers(0, kw["max_len"])
            brush = 5 + d.integers(0, kw["max_width"])
            sin, cos = _sin_cos(angle)
            end = (min(max(int(start[0] + length * sin), 0), n), min(max(int(start[1] + length * cos), 0), n))
            canvas.segment(start, end, brush)
            start = end


def _lama_boxes(d: portable.Draws, canvas: _Canvas, kw: dict) -> None:
    """LaMa's rectangle mask: min_times to max_times boxes, each side from bbox_min_size to
    bbox_max_size (LaMa's generator passes bbox_max_size + 1 as the exclusive bound), kept
    `margin` pixels inside the canvas."""
    n, margin = canvas.native, kw["margin"]
    upper = min(kw["bbox_max_size"] + 1, n - 2 * margin)
    for _ in range(d.integers(kw["min_times"], kw["max_times"] + 1)):
        w, h = d.integers(kw["bbox_min_size"], upper), d.integers(kw["bbox_min_size"], upper)
        x, y = d.integers(margin, n - margin - w + 1), d.integers(margin, n - margin - h + 1)
        canvas.box(x, y, w, h)


def _lama(d: portable.Draws, size: int, p: dict) -> np.ndarray:
    canvas = _Canvas(size, p["size"])
    if d.random() * (p["irregular_proba"] + p["box_proba"]) < p["irregular_proba"]:
        _lama_strokes(d, canvas, p["irregular_kwargs"])
    else:
        _lama_boxes(d, canvas, p["box_kwargs"])
    return canvas.missing


def _lama_accepts(p: dict, known: np.ndarray) -> bool:
    return 0.0 < missing_fraction(known) <= p["max_tamper_area"]


# ---------------------------------------------------------------------------
# MAT
# ---------------------------------------------------------------------------


def _mat_fill(d: portable.Draws, canvas: _Canvas, tries: int, max_size: int) -> None:
    """MultiFill: up to tries - 1 rectangles with sides below max_size, which may run up to
    half their size off the canvas."""
    n = canvas.native
    for _ in range(d.integers(0, tries)):
        w, h = d.integers(0, max_size), d.integers(0, max_size)
        x, y = d.integers(-(w // 2), n - w + w // 2), d.integers(-(h // 2), n - h + h // 2)
        canvas.box(x, y, w, h)


def _mat_brush(d: portable.Draws, size: int, tries: int, kw: dict, native: int) -> np.ndarray:
    """RandomBrush: up to tries - 1 strokes. A stroke has 4 to 17 segments whose angles zigzag
    around mean_angle (every other one mirrored to 2 pi - angle) within a range drawn per stroke,
    lengths normal around a radius of an eighth of the canvas diagonal (sd half of it, floored;
    clipped to [0, twice it]), vertices truncated to integers and clipped to the canvas, and one
    width; joints are round. The whole layer is flipped up-down and left-right at random. The
    source's per-stroke flips discard their results and are left out."""
    canvas = _Canvas(size, native)
    radius = math.sqrt(2.0 * native * native) / 8.0
    spread = radius // 2
    for _ in range(d.integers(0, tries)):
        vertices = d.integers(kw["min_num_vertex"], kw["max_num_vertex"])
        lo = kw["mean_angle"] - d.uniform(0.0, kw["angle_range"])
        hi = kw["mean_angle"] + d.uniform(0.0, kw["angle_range"])
        angles = [2.0 * math.pi - d.uniform(lo, hi) if k % 2 == 0 else d.uniform(lo, hi) for k in range(vertices)]
        cos, sin = portable.cos(angles).tolist(), portable.sin(angles).tolist()
        points = [(d.integers(0, native), d.integers(0, native))]
        for k in range(vertices):
            r = min(max(d.normal(radius, spread), 0.0), 2.0 * radius)
            x, y = points[-1]
            points.append((int(min(max(x + r * cos[k], 0.0), native)), int(min(max(y + r * sin[k], 0.0), native))))
        width = int(d.uniform(kw["min_width"], kw["max_width"]))
        for a, b in zip(points[:-1], points[1:]):
            canvas.segment(a, b, width)
    brush = canvas.missing
    if d.random() > 0.5:
        brush = brush[::-1]
    if d.random() > 0.5:
        brush = brush[:, ::-1]
    return brush


def _mat(d: portable.Draws, size: int, p: dict) -> np.ndarray:
    n = p["size"]
    coef = min(p["hole_range"][0] + p["hole_range"][1], 1.0)
    canvas = _Canvas(size, n)
    _mat_fill(d, canvas, int(p["fill_half_tries"] * coef), n // 2)
    _mat_fill(d, canvas, int(p["fill_full_tries"] * coef), n)
    return canvas.missing | _mat_brush(d, size, int(p["brush_tries"] * coef), p["brush"], n)


def _mat_accepts(p: dict, known: np.ndarray) -> bool:
    lo, hi = p["hole_range"]
    return lo < missing_fraction(known) < hi


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def _family(family: str) -> tuple:
    """(maker, acceptance test, parameters) of a family; ValueError in one line if unknown."""
    if family in LAMA:
        return _lama, _lama_accepts, LAMA[family]
    if family in MAT:
        return _mat, _mat_accepts, MAT[family]
    raise ValueError(f"unknown mask family {family!r}; choose one of {', '.join(FAMILIES)}")


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"mask size must be an integer >= 2, got {size!r}")
    return int(size)


def _fallback(size: int) -> np.ndarray:
    known = np.ones((size, size), dtype=bool)
    side = size // 2
    start = (size - side) // 2
    known[start : start + side, start : start + side] = False
    return known


def make_family_mask(family: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One mask of `family` (one of FAMILIES), bool (size, size): True = known, False = missing.

    Candidates are drawn from `rng` until one lies within the family's bounds (LaMa: at most
    max_tamper_area missing; MAT: a hole ratio strictly inside hole_range) and has a missing
    and a known pixel; after MAX_DRAWS candidates, the centred square fallback (module doc)."""
    maker, accepts, params = _family(family)
    size = _check_size(size)
    d = portable.Draws(rng)
    for _ in range(MAX_DRAWS):
        known = ~maker(d, size, params)
        if accepts(params, known) and known.any() and not known.all():
            return known
    return _fallback(size)


def family_mask(seed: int, family: str, i: int, size: int = 64) -> np.ndarray:
    """Mask i of `family` for `seed`: depends only on (seed, family, i) (and the size)."""
    _family(family)
    return make_family_mask(family, portable.item_rng(seed, _STREAMS[family], i), size)


def family_masks(seed: int, family: str, n: int, size: int = 64) -> np.ndarray:
    """Masks 0 .. n - 1 of `family` for `seed`, bool (n, size, size), True = known."""
    _family(family)
    size = _check_size(size)
    out = np.empty((int(n), size, size), dtype=bool)
    for i in range(int(n)):
        out[i] = family_mask(seed, family, i, size)
    return out
