"""The run's grid, named once: its decoders (a mask schedule decoded in an order:
params.yaml's inpaint.schedules x inpaint.orders), the baselines every decoder is judged
against, and the test sets all of them are scored on (the main one, and one per mask
family of inpaint.mask_families).

A decoder's *name* is the name of its set of images in every metric file and page: its
schedule alone with the confidence order (the paper's and the lab's decoding, "cosine"),
`<schedule>-<order>` with another ("cosine-halton"). Its *key* is `<schedule>-<order>`
whatever the order: dvc.yaml's matrix names its stage inpaint@<key>, and its timings
file is timings/inpaint-<key>.json.

Adding a baseline: its entry in BASELINES (and in TABLE, and in JUDGED_AGAINST or GRID
if it belongs there), and the code in maskgit/pipeline/runner.py (run_baselines) that
writes its images. The FID stages score it, the evaluate stage gives it intervals and
verdicts, the plots and report stages draw and label it, compare reads it: all from here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from maskgit.project import paths


@dataclass(frozen=True)
class Decoder:
    """One decoder of the grid: `schedule` (how many tokens a step reveals) decoded in
    `order` (which ones)."""

    schedule: str
    order: str = "confidence"

    @classmethod
    def parse(cls, name: str) -> Decoder:
        """The decoder whose set is called `name`."""
        schedule, _, order = name.partition("-")
        return cls(schedule, order or "confidence")

    @property
    def name(self) -> str:
        return self.schedule if self.order == "confidence" else f"{self.schedule}-{self.order}"

    @property
    def key(self) -> str:
        return f"{self.schedule}-{self.order}"

    @property
    def stage(self) -> str:
        return f"inpaint@{self.key}"

    def describe(self) -> str:
        """In a sentence: "cosine schedule", "cosine schedule, halton order"."""
        return f"{self.schedule} schedule" + ("" if self.order == "confidence" else f", {self.order} order")


def decoders(inpaint: dict) -> list[Decoder]:
    """Every decoder of a run, order by order, schedules in params order within each: the
    confidence order's first, as the sets every other is set beside. A run from before
    inpaint.orders decoded in the confidence order alone."""
    return [Decoder(s, o) for o in inpaint.get("orders", ["confidence"]) for s in inpaint["schedules"]]


def decoder_names(inpaint: dict) -> list[str]:
    """The names of the sets of decoders(inpaint), in that order."""
    return [d.name for d in decoders(inpaint)]


@dataclass(frozen=True)
class Baseline:
    label: str  # rows of the FID table, legends
    short: str  # column titles and result tables
    style: tuple  # (colour, line style) of its reference line in the FID figure


# In this order: scored, stored, and drawn in the FID figure's legend. Each test set
# holds every baseline's images (TestSet.images): the masked input is the set's own.
BASELINES: dict[str, Baseline] = {
    "masked_input": Baseline("masked input (baseline)", "masked input", ("tab:red", "--")),
    "onestep": Baseline("one-step T=1 (baseline)", "one-step (T=1)", ("tab:orange", "-.")),
    "recon": Baseline("VQGAN reconstruction (floor)", "VQGAN recon.", ("0.25", ":")),
    "harmonic": Baseline("harmonic fill, no model (baseline)", "harmonic fill", ("tab:purple", (0, (5, 1, 1, 1)))),
}
COMPUTED = ("onestep", "recon", "harmonic")  # the baselines run_baselines writes
TABLE = ("masked_input", "harmonic", "onestep", "recon")  # rows of the FID table: from no model to the floor
JUDGED_AGAINST = ("onestep", "harmonic", "masked_input")  # each decoder's paired verdicts, in this order
GRID = ("onestep", "harmonic", "recon")  # columns of the side-by-side figure, after the decoders
# the span every decoder sits in: doing nothing against the best the VQGAN can do
SPAN = ("masked_input", "recon")


def set_names(decoder_names: list[str]) -> list[str]:
    """Every set a run scores: its decoders in params order, then the baselines."""
    return [*decoder_names, *BASELINES]


def label(name: str) -> str:
    """A set's name in tables: the baseline's short label, a decoder's own name."""
    return BASELINES[name].short if name in BASELINES else name


def pairs_to_compare(decoder_names: list[str]) -> list[tuple[str, str]]:
    """The decoders' sets along each axis of the grid: the schedules of one order
    against each other, and the orders of one schedule against each other (a cosine
    Halton set is compared with the cosine confidence one, not with linear random);
    each decoder against the baselines it is judged against; and the span's two
    ends against each other. With one order: every schedule against every other."""
    grid = [Decoder.parse(n) for n in decoder_names]
    out = [(a.name, b.name) for i, a in enumerate(grid) for b in grid[i + 1:]
           if a.schedule == b.schedule or a.order == b.order]
    out += [(d, b) for d in decoder_names for b in JUDGED_AGAINST]
    return out + [SPAN]


@dataclass(frozen=True)
class TestSet:
    """Where one test set's files lie: the main one (family None), or a mask family's,
    which its stage writes under outputs/families/<family>/ (at `root` instead while the
    stage builds it, a temporary folder that takes that name at the end). Every test set
    shares the prepared ground truth."""

    family: str | None = None
    root: Path | None = None
    __test__ = False  # a name pytest would otherwise collect

    @property
    def folder(self) -> Path | None:
        """A family's own folder (None for the main set, whose files lie in the stages' folders)."""
        if self.family is None:
            return None
        return self.root or paths.FAMILIES / self.family

    def at(self, root: Path) -> TestSet:
        return replace(self, root=root)

    @property
    def masked_image(self) -> Path:
        return paths.TEST / "masked_image" if self.family is None else self.folder / "test" / "masked_image"

    @property
    def mask64(self) -> Path:
        return paths.TEST / "mask64" if self.family is None else self.folder / "test" / "mask64"

    @property
    def gt(self) -> Path:
        return paths.TEST / "gt"

    @property
    def tokens(self) -> Path:
        return paths.TEST_TOKENS if self.family is None else self.folder / "tokens" / "test.npy"

    @property
    def unknown(self) -> Path:
        return paths.TEST_UNKNOWN if self.family is None else self.folder / "tokens" / "test_unknown.npy"

    @property
    def baselines(self) -> Path:
        """The folder run_baselines writes: <baseline>/images/ for each of COMPUTED."""
        return paths.BASELINES if self.family is None else self.folder / "baselines"

    def decoder_folder(self, decoder: Decoder) -> Path:
        """What one decoder's inpainting writes: images/, info.json, the per-step arrays."""
        top = paths.INPAINT if self.family is None else self.folder / "inpaint"
        return top / decoder.order / decoder.schedule

    def images(self, name: str) -> Path:
        """The PNGs of set `name`, a decoder's or a baseline's."""
        if name == "masked_input":
            return self.masked_image
        if name in BASELINES:
            return self.baselines / name / "images"
        return self.decoder_folder(Decoder.parse(name)) / "images"

    def evidence(self, name: str) -> Path:
        """Set `name`'s per-image evidence, which the FID stages (a family's stage) write."""
        if self.family is not None:
            return self.folder / "evidence" / f"{name}.npz"
        return (paths.EVIDENCE_BASELINES if name in BASELINES else paths.EVIDENCE_DECODERS) / f"{name}.npz"

    @property
    def label(self) -> str:
        return "main test set" if self.family is None else f"{self.family} masks"


MAIN = TestSet()


def matrix_stages(inpaint: dict) -> set[str]:
    """The names of the matrix stages dvc.yaml expands from `inpaint`: inpaint@<key> per
    decoder, family@<family> per mask family."""
    return {d.stage for d in decoders(inpaint)} | {f"family@{f}" for f in inpaint.get("mask_families", [])}


def stale_matrix_stages(inpaint: dict, lock: dict) -> list[str]:
    """The matrix stages dvc.lock (parsed) still holds that `inpaint` no longer asks for:
    DVC keeps their entries and outputs, and `dvc status` does not mention them."""
    wanted = matrix_stages(inpaint)
    return [name for name in (lock or {}).get("stages", {})
            if name.startswith(("inpaint@", "family@")) and name not in wanted]
