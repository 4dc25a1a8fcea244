"""Figures and the area table of the standard mask families (maskgit/data/masks.py), for
docs/masks.md:

    python tools/mask_families.py                 # docs/masks/{families,areas}.png, table to stdout
    python tools/mask_families.py --n 1000 --size 64 --seed 0 --out docs/masks

families.png: one row per family, its first 8 masks (white = known, black = hole).
areas.png: the distribution of the missing fraction per family over n masks, in 10% bins.
The markdown table printed gives the mean and the quantiles of the missing fraction.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from maskgit.data import masks as M  # noqa: E402
from maskgit.data.procedural import missing_fraction  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = 8
QUANTILES = (5, 25, 50, 75, 95)


def source(family: str) -> str:
    return "LaMa" if family in M.LAMA else "MAT"


def grid(seed: int, size: int, path: Path) -> None:
    fig, axes = plt.subplots(len(M.FAMILIES), EXAMPLES, figsize=(EXAMPLES * 1.1 + 1.2, len(M.FAMILIES) * 1.15))
    for row, family in enumerate(M.FAMILIES):
        for col, mask in enumerate(M.family_masks(seed, family, EXAMPLES, size)):
            ax = axes[row, col]
            ax.imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(f"{family}\n({source(family)})", rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(f"Standard mask families, {size}x{size}, seed {seed} (white = known, black = hole)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def histograms(areas: dict, size: int, path: Path) -> None:
    bins = np.linspace(0.0, 1.0, 11)
    fig, axes = plt.subplots(len(areas), 1, figsize=(6.4, 1.5 * len(areas) + 0.6), sharex=True, sharey=True)
    for ax, (family, a) in zip(axes, areas.items()):
        ax.hist(a, bins=bins, weights=np.full(len(a), 1.0 / len(a)), color="0.45", edgecolor="white")
        ax.axvline(a.mean(), color="C3", lw=1.2, label=f"mean {a.mean():.2f}")
        if family in M.LAMA:
            ax.axvline(M.LAMA[family]["max_tamper_area"], color="0.2", ls="--", lw=0.8, label="LaMa's cap")
        ax.set_ylabel(f"{family}\n({source(family)})", rotation=0, ha="right", va="center")
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    axes[-1].set_xticks(bins)
    axes[-1].set_xlabel(f"missing fraction of the image ({len(next(iter(areas.values())))} masks per family, {size} px)")
    fig.text(0.01, 0.99, "share of masks per 10% bin", va="top", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(areas: dict) -> str:
    head = ["family", "source", "mean"] + [f"{q}%" for q in QUANTILES] + ["min", "max"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for family, a in areas.items():
        cells = [family, source(family), f"{a.mean():.3f}"] + [f"{v:.3f}" for v in np.percentile(a, QUANTILES)]
        cells += [f"{a.min():.3f}", f"{a.max():.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="masks per family for the areas (default 1000)")
    parser.add_argument("--size", type=int, default=64, help="mask size in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "masks", help="folder of the figures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid(args.seed, args.size, args.out / "families.png")
    areas = {f: np.array([missing_fraction(m) for m in M.family_masks(args.seed, f, args.n, args.size)])
             for f in M.FAMILIES}
    histograms(areas, args.size, args.out / "areas.png")
    print(table(areas))


if __name__ == "__main__":
    main()
