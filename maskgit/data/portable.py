"""Arithmetic that rounds one way on every CPU, and seeded draws: what the built-in data
set (maskgit.data.procedural) and the standard mask families (maskgit.data.masks) are
computed with, so that both are the same bytes on every machine.

The last bits of BLAS products and of numpy's SIMD sin, cos, arctan2, exp and log depend
on the CPU's kernels, and a float rounded to uint8 (or compared with a threshold) flips
where a last bit differs. So the arrays here use only +, -, *, /, sqrt, floor and
comparisons, which IEEE 754 rounds one way everywhere: ``sin`` and ``atan2`` are
polynomials, the blur is integer arithmetic. Scalars may use Python's ``math``; they only
set a shape's parameters. tests/test_portable_data.py checks the bytes under several BLAS
core types, numpy SIMD levels and thread counts.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


class Draws:
    """Scalar draws from a Generator, fetched in blocks.

    A Python-level Generator call costs microseconds and an image needs dozens
    of scalars, so they come from a buffer refilled with ``rng.random(64)``.
    Array draws go to ``self.rng`` directly. Deterministic given the Generator.
    """

    __slots__ = ("rng", "_buf", "_i")

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self._buf: list = []
        self._i = 0

    def random(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self.rng.random(64).tolist()
            self._i = 0
        x = self._buf[self._i]
        self._i += 1
        return x

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.random()

    def integers(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi)."""
        return lo + min(int(self.random() * (hi - lo)), hi - lo - 1)

    def chance(self, p: float) -> bool:
        return self.random() < p

    def pick(self, options):
        return options[min(int(self.random() * len(options)), len(options) - 1)]

    def weighted(self, options, cum: tuple):
        x = self.random()
        for k, c in enumerate(cum):
            if x < c:
                return options[k]
        return options[len(cum)]

    def normal(self, mu: float, sigma: float) -> float:
        u1, u2 = self.random(), self.random()
        return mu + sigma * math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)




def item_rng(seed: int, stream: int, i: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream, int(i)])



def hypot(x, y):
    return np.sqrt(x * x + y * y)


def sin(x) -> np.ndarray:
    """sin of a float array, as float32, by +, -, * and floor alone (numpy's own sin
    is a SIMD kernel whose last bit depends on the CPU). Reduced to [-pi/2, pi/2],
    then the Taylor series to x^15: error below 1e-9, far under float32's step."""
    x = np.asarray(x, dtype=np.float64)
    k = np.floor(x * (1.0 / math.pi) + 0.5)
    r = x - k * math.pi
    r2 = r * r
    poly = 0.0
    for n in range(15, 0, -2):  # Horner, from the x^15 term down
        poly = (-1.0) ** (n // 2) / math.factorial(n) + r2 * poly if n > 1 else 1.0 + r2 * poly
    sign = 1.0 - 2.0 * (k - 2.0 * np.floor(k * 0.5))  # (-1)^k
    return (sign * r * poly).astype(np.float32)


def cos(x) -> np.ndarray:
    return sin(np.asarray(x, dtype=np.float64) + math.pi / 2.0)


def atan2(y, x) -> np.ndarray:
    """arctan2 of float arrays, as float64, by +, -, *, /, sqrt alone (see sin).
    atan of the smaller over the larger leg, its argument halved twice by
    atan(t) = 2 atan(t / (1 + sqrt(1 + t^2))) to |t| <= tan(pi/16), then the
    series to t^21: error below 1e-13."""
    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    ax, ay = np.abs(x), np.abs(y)
    t = np.minimum(ax, ay) / np.maximum(np.maximum(ax, ay), 1e-300)
    for _ in range(2):
        t = t / (1.0 + np.sqrt(1.0 + t * t))
    t2 = t * t
    poly = 0.0
    for n in range(21, -1, -2):
        poly = (-1.0) ** (n // 2) / n + t2 * poly
    a = 4.0 * t * poly
    a = np.where(ay > ax, math.pi / 2.0 - a, a)
    a = np.where(x < 0.0, math.pi - a, a)
    return np.where(y < 0.0, -a, a)



BLUR_BITS = 12  # fixed-point weights of the blur: each row of the kernel sums to 2**BLUR_BITS


@lru_cache(maxsize=8)
def blur_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) Gaussian blur along one axis in fixed point: int64 weights, each
    row summing to exactly 2**BLUR_BITS (edges renormalised: no dark border). The
    rounding remainder goes to the centre weight."""
    m = np.zeros((size, size), dtype=np.int64)
    for i in range(size):
        w = [math.exp(-((i - j) ** 2) / (2.0 * sigma * sigma)) for j in range(size)]
        total = sum(w)
        row = [int(round(x / total * (1 << BLUR_BITS))) for x in w]
        row[i] += (1 << BLUR_BITS) - sum(row)
        m[i] = row
    m.flags.writeable = False
    return m


def soften(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a uint8 (H, W, 3) image with std `sigma` pixels: the
    softness of a photo downsampled to 64x64, which the lab's images have.
    Integer arithmetic throughout (numpy's integer products do not go through
    BLAS), rounded half up once at the end: the same bytes on every CPU."""
    if sigma <= 0:
        return image
    m = blur_matrix(image.shape[0], float(sigma))
    x = m @ image.astype(np.int64).transpose(2, 0, 1) @ m.T  # (3, H, W): rows, then columns
    half = 1 << (2 * BLUR_BITS - 1)
    return ((x + half) >> (2 * BLUR_BITS)).astype(np.uint8).transpose(1, 2, 0)
