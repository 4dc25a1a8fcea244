"""The image sets a run scores: one per schedule (params.yaml's inpaint.schedules) and
the baselines every schedule is judged against, registered here once.

Adding a baseline: its entry below (and in TABLE, and in JUDGED_AGAINST or GRID if it
belongs there), and the code in stages/baselines.py that writes its images to
`images`. The FID stage scores it, the evaluate stage gives it intervals and verdicts,
the plots and report stages draw and label it, compare reads it: all from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maskgit.pipeline import paths


@dataclass(frozen=True)
class Baseline:
    label: str  # rows of the FID table, legends
    short: str  # column titles and result tables
    images: Path  # the PNGs stages/fid.py scores
    style: tuple  # (colour, line style) of its reference line in the FID figure


# In this order: scored, stored, and drawn in the FID figure's legend.
BASELINES: dict[str, Baseline] = {
    "masked_input": Baseline("masked input (baseline)", "masked input", paths.TEST / "masked_image", ("tab:red", "--")),
    "onestep": Baseline("one-step T=1 (baseline)", "one-step (T=1)", paths.BASELINES / "onestep/images",
                        ("tab:orange", "-.")),
    "recon": Baseline("VQGAN reconstruction (floor)", "VQGAN recon.", paths.BASELINES / "recon/images", ("0.25", ":")),
    "harmonic": Baseline("harmonic fill, no model (baseline)", "harmonic fill", paths.BASELINES / "harmonic/images",
                         ("tab:purple", (0, (5, 1, 1, 1)))),
}
TABLE = ("masked_input", "harmonic", "onestep", "recon")  # rows of the FID table: from no model to the floor
JUDGED_AGAINST = ("onestep", "harmonic", "masked_input")  # each schedule's paired verdicts, in this order
GRID = ("onestep", "harmonic", "recon")  # columns of the side-by-side figure, after the schedules
# the span every schedule sits in: doing nothing against the best the VQGAN can do
SPAN = ("masked_input", "recon")


def label(name: str) -> str:
    """A set's name in tables: the baseline's short label, a schedule's own name."""
    return BASELINES[name].short if name in BASELINES else name


def pairs_to_compare(schedules: list[str]) -> list[tuple[str, str]]:
    """Each schedule against each other and against the baselines it is judged against;
    and the span's two ends against each other."""
    out = [(a, b) for i, a in enumerate(schedules) for b in schedules[i + 1:]]
    out += [(s, b) for s in schedules for b in JUDGED_AGAINST]
    return out + [SPAN]
