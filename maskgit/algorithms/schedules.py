"""Mask schedules gamma(r): the fraction of the initially unknown tokens that is
still masked after a fraction r in [0, 1] of the decoding steps.

gamma(0) = 1 (everything unknown is masked) and gamma(1) = 0 (nothing is), and
gamma decreases in between. Values are clipped to [1e-6, 1]: in float arithmetic
cos(pi/2) is a tiny negative number, and a zero would let ceil() in training mask
nothing.
"""

from __future__ import annotations

import math

import torch

GAMMA_MIN = 1e-6


def _cosine(r):
    return torch.cos(r * math.pi / 2) if torch.is_tensor(r) else math.cos(r * math.pi / 2)


def _linear(r):
    return 1 - r


def _square(r):
    return 1 - r**2


def _cubic(r):
    return 1 - r**3


def _sqrt(r):
    return 1 - (r**0.5)


SCHEDULES = {
    "cosine": _cosine,
    "linear": _linear,
    "square": _square,
    "cubic": _cubic,
    "sqrt": _sqrt,
}


def gamma(name: str, r):
    """gamma_name(r) clipped to [1e-6, 1]; r is a float or a tensor."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    g = SCHEDULES[name](r)
    if torch.is_tensor(g):
        return g.clamp(GAMMA_MIN, 1.0)
    return min(max(float(g), GAMMA_MIN), 1.0)
