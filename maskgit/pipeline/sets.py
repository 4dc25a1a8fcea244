"""The image sets a run scores: one per decoder, a (schedule, order) pair of
params.yaml's inpaint.schedules x inpaint.orders, and the baselines every decoder is
judged against, registered here once.

A decoder's set is named after its schedule alone with the confidence order (the
paper's and the lab's decoding: "cosine"), and `<schedule>-<order>` with another
("cosine-halton"). Its stage is inpaint@<schedule>-<order> whatever the order, as
dvc.yaml's matrix names it, and its images lie in outputs/inpaint/<order>/<schedule>.

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


def decoder_name(schedule: str, order: str) -> str:
    """The set of `schedule` decoded in `order`."""
    return schedule if order == "confidence" else f"{schedule}-{order}"


def decoders(inpaint: dict) -> list[str]:
    """Every decoder's set of a run, order by order, schedules in params order within each:
    the confidence order's first, as the sets every other is set beside."""
    orders = inpaint.get("orders", ["confidence"])
    return [decoder_name(s, o) for o in orders for s in inpaint["schedules"]]


def decoder(name: str) -> tuple[str, str]:
    """(schedule, order) of a decoder's set."""
    schedule, _, order = name.partition("-")
    return schedule, order or "confidence"


def stage_key(name: str) -> str:
    """`<schedule>-<order>` of a decoder's set: its stage's name after `inpaint@`, and
    its timings file's after `inpaint-`."""
    return "-".join(decoder(name))


def inpaint_dir(name: str) -> Path:
    """The folder the inpaint stage of a decoder's set writes (images/, info.json, steps)."""
    schedule, order = decoder(name)
    return paths.INPAINT / order / schedule


def matrix_stages(inpaint: dict) -> set[str]:
    """The names of the matrix stages dvc.yaml expands from `inpaint`: inpaint@<key> per
    decoder, family@<family> per mask family."""
    return ({f"inpaint@{stage_key(d)}" for d in decoders(inpaint)}
            | {f"family@{f}" for f in inpaint.get("mask_families", [])})


def stale_matrix_stages(inpaint: dict, lock: dict) -> list[str]:
    """The matrix stages dvc.lock (parsed) still holds that `inpaint` no longer asks for:
    DVC keeps their entries and outputs, and `dvc status` does not mention them."""
    wanted = matrix_stages(inpaint)
    return [name for name in (lock or {}).get("stages", {})
            if name.startswith(("inpaint@", "family@")) and name not in wanted]


def describe(name: str) -> str:
    """A decoder's set in a sentence: "cosine schedule", "cosine schedule, halton order"."""
    schedule, order = decoder(name)
    return f"{schedule} schedule" + ("" if order == "confidence" else f", {order} order")


def label(name: str) -> str:
    """A set's name in tables: the baseline's short label, a schedule's own name."""
    return BASELINES[name].short if name in BASELINES else name


def pairs_to_compare(schedules: list[str]) -> list[tuple[str, str]]:
    """The decoders' sets along each axis of the grid: the schedules of one order
    against each other, and the orders of one schedule against each other (a cosine
    Halton set is compared with the cosine confidence one, not with linear random);
    each decoder against the baselines it is judged against; and the span's two
    ends against each other. With one order: every schedule against every other."""
    out = [(a, b) for i, a in enumerate(schedules) for b in schedules[i + 1:]
           if decoder(a)[0] == decoder(b)[0] or decoder(a)[1] == decoder(b)[1]]
    out += [(s, b) for s in schedules for b in JUDGED_AGAINST]
    return out + [SPAN]
