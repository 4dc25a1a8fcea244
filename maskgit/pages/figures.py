"""Tables and figures of the plots and report stages.

Figures are drawn on bare `Figure` objects with the Agg canvas instead of pyplot:
no global figure registry to leak memory across a dozen figures, and no display
backend to pick on a headless machine.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator
from PIL import Image

from maskgit.metrics.registry import BY_AREA, HEADLINE, METRICS, POINT_VALUES, axis_title
from maskgit.project import paths
from maskgit.project import grid
from maskgit.pages.markdown import FLIPPED, markdown_table
from maskgit.project.grid import BASELINES, TABLE, Decoder
from maskgit.project.files import atomic_write_bytes
from maskgit.algorithms.schedules import gamma
from maskgit.project.errors import InputError


# ---------------------------------------------------------------- tables


def fid_table(decoder_metrics: dict, baseline_metrics: dict, decoders: list[str], evaluation: dict) -> pd.DataFrame:
    """One row per decoder (in params order), then the baselines.

    Columns: name, label, kind ("schedule" for a decoder, as reports/tables/fid.csv has
    always said, | "baseline"), fid, kid, kid_std, fid_low and fid_high (the FID's
    interval, metrics/evaluation.json), change_vs_masked_input_pct (negative = better than
    the masked input), gap_to_floor (FID above the VQGAN reconstruction), tied_for_best (no
    other decoder has a better FID: the evaluate stage's corrected verdicts), best (tied
    for best, and alone there).
    """
    rows = []
    for kind, source, metrics, labels in (
        ("schedule", paths.FID_DECODERS, decoder_metrics, {d: d for d in decoders}),
        ("baseline", paths.FID_BASELINES, baseline_metrics, {b: BASELINES[b].label for b in TABLE}),
    ):
        for key, label in labels.items():
            entry = metrics.get(key)
            if not isinstance(entry, dict) or any(f not in entry for f in POINT_VALUES):
                raise InputError(f"{source}: no complete entry for {key!r} (needs {', '.join(POINT_VALUES)})")
            cell = ((evaluation.get("sets") or {}).get(key) or {}).get(HEADLINE)
            if not cell:
                raise InputError(f"{paths.EVALUATION}: no FID interval for {key!r} (re-run the evaluate stage)")
            rows.append({"name": key, "label": label, "kind": kind, **{f: float(entry[f]) for f in POINT_VALUES},
                         "fid_low": float(cell["low"]), "fid_high": float(cell["high"])})
    df = pd.DataFrame(rows)
    masked = baseline_metrics["masked_input"]["fid"]
    floor = baseline_metrics["recon"]["fid"]
    df["change_vs_masked_input_pct"] = (df["fid"] - masked) / masked * 100
    df["gap_to_floor"] = df["fid"] - floor
    tied = set((evaluation.get("tied_for_best") or {}).get(HEADLINE) or [])
    df["tied_for_best"] = df["name"].isin(tied) & (df["kind"] == "schedule")
    df["best"] = df["tied_for_best"] & (len(tied) == 1)
    return df


def row(df: pd.DataFrame, name: str) -> pd.Series:
    return df.loc[df["name"] == name].iloc[0]


def fid_markdown(df: pd.DataFrame) -> str:
    header = ["setting", "FID", "95% interval", "KID (mean ± std)", "vs masked input", "gap to floor (FID)"]
    rows = []
    for r in df.to_dict("records"):
        label = (f"**{r['label']}** (best)" if r["best"] else
                 f"**{r['label']}** (tied for best)" if r["tied_for_best"] else r["label"])
        # a row compared with itself would read "+0.0 %": show a dash instead
        change = "—" if r["name"] == "masked_input" else f"{r['change_vs_masked_input_pct']:+.1f} %"
        gap = "—" if r["name"] == "recon" else f"{r['gap_to_floor']:+.2f}"
        rows.append([label, f"{r['fid']:.2f}", f"[{r['fid_low']:.2f}, {r['fid_high']:.2f}]",
                     f"{r['kid']:.4f} ± {r['kid_std']:.4f}", change, gap])
    return markdown_table(header, rows, "lrrrrr")


# ---------------------------------------------------------------- inputs


def read_dvclive_metrics(folder: str | Path) -> dict[str, pd.DataFrame]:
    """Every curve under <folder>/plots/metrics as {"train/loss": DataFrame(step, value)}.
    Globbed rather than listed: the training stages may log other names."""
    root = Path(folder) / "plots" / "metrics"
    curves = {}
    for path in sorted(root.rglob("*.tsv")):
        try:
            table = pd.read_csv(path, sep="\t")
        except pd.errors.EmptyDataError:
            continue  # created but never written to: nothing to draw
        values = [c for c in table.columns if c not in ("step", "timestamp")]
        if "step" not in table.columns or not values or table.empty:
            continue  # not a dvclive curve: nothing to draw
        name = path.relative_to(root).with_suffix("").as_posix()
        curves[name] = pd.DataFrame({"step": table["step"], "value": table[values[-1]]})
    return curves


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_mask(path: str | Path) -> np.ndarray:
    """bool (H, W), True = known (white), the same threshold as maskgit.project.files.read_masks."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) >= 128


def spread_indices(total: int, n: int) -> list[int]:
    """n indices spread evenly over range(total), first and last included."""
    if total <= n:
        return list(range(total))
    return sorted({round(i * (total - 1) / (n - 1)) for i in range(n)}) if n > 1 else [0]


# ---------------------------------------------------------------- figures


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, dpi: int = 110) -> None:
    # no "Software" chunk: the PNG bytes then depend on the data only, not on the
    # matplotlib version, so DVC sees an unchanged figure as unchanged; written
    # atomically like every other output
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())


def fid_figure(df: pd.DataFrame, path: str | Path, subtitle: str = "") -> None:
    """Bars: FID per decoder with its interval, green where the verdicts call it best or
    tied for best (all of them when all are tied); lines and bands: the baselines and
    their intervals."""
    sched = df[df["kind"] == "schedule"]
    fig = new_figure(max(9.0, 1.2 * len(sched) + 3.0), 5.0)
    ax = fig.add_subplot()
    colors = ["tab:green" if t else "tab:blue" for t in sched["tied_for_best"]]
    err = [sched["fid"] - sched["fid_low"], sched["fid_high"] - sched["fid"]]
    # the values go under the bars' names: on the bars they would collide with the reference lines
    ax.bar([f"{n}\nFID {v:.2f}" for n, v in zip(sched["label"], sched["fid"])], sched["fid"], color=colors, width=0.6,
           yerr=err, capsize=6, error_kw={"elinewidth": 1.2})
    for name, spec in BASELINES.items():
        (color, style), b = spec.style, row(df, name)
        ax.axhspan(b["fid_low"], b["fid_high"], color=color, alpha=0.08, linewidth=0)
        ax.axhline(b["fid"], color=color, linestyle=style, linewidth=1.8, label=f"{b['label']}: {b['fid']:.2f}")
    ax.set_ylim(0, max(df["fid_high"].max(), df["fid"].max()) * 1.08)
    tied = int(sched["tied_for_best"].sum())
    # with more than the confidence order the bars are named <schedule>-<order> (grid.py)
    orders = any(Decoder.parse(n).order != "confidence" for n in sched["name"])
    what, many = ("decoder: schedule[-order], no order = confidence", "decoders") if orders else \
        ("mask schedule", "schedules")
    ax.set_xlabel(f"{what}; green: " + (f"the best FID (better than every other of the {many})" if tied == 1 else
                                        f"tied for the best FID ({tied} {many})"))
    ax.set_ylabel("FID to the ground truth (lower is better)")
    ax.set_title(f"Inpainting FID per {'decoder' if orders else 'mask schedule'}, with 95% intervals"
                 + (f"\n{subtitle}" if subtitle else ""))
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8.5)
    save(fig, path)


def gamma_figure(schedules: list[str], train_gamma: str, total_iter: int, steps: int, path: str | Path) -> None:
    """gamma(r) of each schedule, with a marker per decode step at r = (t + 1) / T.

    The markers follow the decoder (maskgit.algorithms.decoding): after step t a fraction
    gamma(r) of the unknown tokens stays masked (floor(N0 * gamma) of N0), and the
    last step run, `steps` (the sweet spot or T: Decoding.steps), reveals everything at once (0)."""
    curves = list(schedules) + ([train_gamma] if train_gamma not in schedules else [])
    fig = new_figure(10.5, 5.0)
    ax = fig.add_subplot()
    r = np.linspace(0.0, 1.0, 201)
    for i, name in enumerate(curves):
        color = f"C{i}"
        label = name + (" (training masks)" if name == train_gamma else "")
        if name not in schedules:  # drawn only because training used it: no decode markers
            ax.plot(r, [gamma(name, x) for x in r], color="0.5", linestyle="--", label=label + ", not decoded")
            continue
        ax.plot(r, [gamma(name, x) for x in r], color=color, linewidth=1.8, label=label)
        rs = [(t + 1) / total_iter for t in range(steps)]
        still = [gamma(name, x) for x in rs[:-1]] + [0.0]
        ax.plot(rs, still, "o", color=color, markersize=6, markeredgecolor="white")
    ticks = [(t + 1) / total_iter for t in range(total_iter)]
    every = math.ceil(total_iter / 16)  # at most ~16 step labels on the top axis
    top = ax.secondary_xaxis("top")
    top.set_xticks(ticks[every - 1 :: every], labels=[str(t) for t in range(every, total_iter + 1, every)])
    top.set_xlabel(f"decode step (total_iter T = {total_iter})")
    if steps < total_iter:
        ax.axvline(steps / total_iter, color="0.3", linestyle=":", label=f"sweet spot: stop after step {steps}")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("r = (t + 1) / T")
    ax.set_ylabel("fraction of unknown tokens still masked")
    ax.set_title("Mask schedules γ(r); dots: after each decode step")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper")  # inside, it would hide a curve whatever the corner
    save(fig, path)


def _panel(name: str) -> str:
    """Which training panel a curve goes to, from its leaf name."""
    leaf = name.rsplit("/", 1)[-1].lower()
    if leaf in ("lr", "learning_rate") or leaf.endswith("_lr"):
        return "lr"
    if "acc" in leaf or "perplex" in leaf or "codes" in leaf:
        return "quality"
    return "loss"


def training_figure(runs: dict[str, tuple[dict[str, pd.DataFrame], str]], path: str | Path) -> None:
    """One row per training run ({title: (curves, x label)}), columns: losses,
    accuracy or codebook perplexity, learning rate. train/ solid, val/ dashed,
    the same colour for the same leaf name so train and val pair up."""
    panels = {"loss": "losses", "quality": "accuracy / perplexity", "lr": "learning rate"}
    fig = new_figure(15.0, 4.2 * len(runs))
    axes = fig.subplots(len(runs), len(panels), squeeze=False)
    for (title, (curves, xlabel)), axrow in zip(runs.items(), axes):
        for ax, (panel, ylabel) in zip(axrow, panels.items()):
            chosen = {n: c for n, c in curves.items() if _panel(n) == panel}
            if not chosen:
                ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes, color="0.4")
                ax.set_axis_off()
                ax.set_title(f"{title}: {ylabel}")
                continue
            leaves = sorted({n.rsplit("/", 1)[-1] for n in chosen})
            if panel == "quality":  # name it after what is there: accuracy, or perplexity
                ylabel = " / ".join(leaves)
            # dots only for short runs: a few points joined by lines hide where the data are
            marker = "o" if max(len(c) for c in chosen.values()) <= 30 else None
            for name, curve in chosen.items():
                split, leaf = name.rsplit("/", 1) if "/" in name else ("", name)
                style = {"train": "-", "val": "--"}.get(split, "-.")
                ax.plot(curve["step"], curve["value"], style, color=f"C{leaves.index(leaf)}", label=name,
                        linewidth=1.6, marker=marker, markersize=3.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # dvclive steps are whole numbers
            values = pd.concat([c["value"] for c in chosen.values()])
            # losses of different terms span decades: a log axis keeps all readable
            if panel in ("loss", "lr") and (values > 0).all() and values.max() / values.min() > 20:
                ax.set_yscale("log")
            ax.set_title(f"{title}: {ylabel}")
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    save(fig, path)


def _to_cell(image: np.ndarray, cell: int) -> np.ndarray:
    """uint8 RGB or bool (white = True) image -> RGB of cell x cell pixels. Nearest
    neighbour: any smoothing would blur 64x64 pixels (and 16x16 tokens) into a smear."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    mode = "L" if image.ndim == 2 else "RGB"
    return np.asarray(Image.fromarray(image, mode).convert("RGB").resize((cell, cell), Image.NEAREST))


def _montage_figure(cells: list[list[np.ndarray]], col_titles: list[str], row_labels: list[str], title: str,
                    path: str | Path, cell: int, captions: list[list[str]] | None = None) -> None:
    """A grid of images drawn as ONE picture at one screen pixel per picture pixel.

    Pasting the cells into a single array instead of one matplotlib axes per cell
    keeps the upscaling an exact nearest-neighbour repeat (no resampling by the
    renderer) and draws a 60-cell grid in a fraction of the time. Each cell gets a
    gray frame: a white (masked) token grid would vanish on the white page.
    """
    dpi, gap, fontsize = 100, 8, 9
    caption_h = 14 if captions else 0
    n_rows, n_cols = len(cells), len(cells[0])
    width = n_cols * cell + (n_cols + 1) * gap
    height = n_rows * (cell + caption_h) + (n_rows + 1) * gap
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    origins = [[(gap + i * (cell + caption_h + gap), gap + j * (cell + gap)) for j in range(n_cols)]
               for i in range(n_rows)]
    for i, line in enumerate(cells):
        for j, image in enumerate(line):
            y, x = origins[i][j]
            canvas[y - 1 : y + cell + 1, x - 1 : x + cell + 1] = 160  # the frame
            canvas[y : y + cell, x : x + cell] = _to_cell(image, cell)

    # margins in pixels, sized from the longest label: DejaVu Sans averages about
    # 0.6 em per character, and one point is dpi / 72 pixels
    em = fontsize * dpi / 72
    label_chars = max(len(part) for label in row_labels for part in label.split("\n"))
    left, right, bottom = int(label_chars * 0.65 * em) + 14, 8, 6
    title_lines = textwrap.wrap(title, max(30, int((width + left) / (0.65 * em * 11 / fontsize))))
    top = 22 * len(title_lines) + 18 * max(t.count("\n") + 1 for t in col_titles) + 6
    fig_w, fig_h = width + left + right, height + top + bottom
    fig = Figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, width / fig_w, height / fig_h))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for j, text in enumerate(col_titles):
        ax.text(origins[0][j][1] + cell / 2, 2, text, ha="center", va="bottom", fontsize=fontsize)
    for i, text in enumerate(row_labels):
        ax.text(-6, origins[i][0][0] + cell / 2, text, ha="right", va="center", fontsize=fontsize - 1)
    for i, line in enumerate(captions or []):
        for j, text in enumerate(line):
            y, x = origins[i][j]
            ax.text(x + cell / 2, y + cell + 2, text, ha="center", va="top", fontsize=7, color="0.25")
    fig.text(0.5, 1 - 6 / fig_h, "\n".join(title_lines), ha="center", va="top", fontsize=11)
    save(fig, path, dpi=dpi)


def image_grid(columns: list[tuple[str, list[np.ndarray]]], row_labels: list[str], path: str | Path,
               title: str, cell: int = 192) -> None:
    """columns = [(column title, one image per row)]: uint8 (H, W, 3) or bool (H, W).
    cell 192 = 3x a 64x64 image."""
    cells = [[images[i] for _, images in columns] for i in range(len(row_labels))]
    _montage_figure(cells, [t for t, _ in columns], row_labels, title, path, cell)


def steps_figure(masked: np.ndarray, images: np.ndarray, names: list[str], path: str | Path, title: str,
                 max_columns: int = 12, cell: int = 128) -> None:
    """The lab's per-step figure: per image one row of the latent mask after every
    step (white = still masked) and one row of the image decoded from the tokens
    chosen at that step. masked: bool (k, T, n_tokens); images: uint8 (k, T, H, W, 3)."""
    if masked.shape[:2] != images.shape[:2]:
        raise InputError(f"steps_masked.npy {masked.shape} and steps_images.npy {images.shape}: k and T differ")
    k, total = masked.shape[:2]
    side = math.isqrt(masked.shape[2])
    if side * side != masked.shape[2]:
        raise InputError(f"steps_masked.npy: {masked.shape[2]} tokens is not a square grid")
    columns = spread_indices(total, max_columns)  # a long decode would not fit the page
    cells, labels, captions = [], [], []
    for i in range(k):
        grids = [masked[i, t].reshape(side, side).astype(bool) for t in columns]
        name = names[i] if i < len(names) else f"image {i}"
        cells += [grids, [images[i, t] for t in columns]]
        labels += [f"{name}\ntokens", f"{name}\ndecoded"]
        captions += [[f"{int(g.sum())} masked" for g in grids], ["" for _ in columns]]
    _montage_figure(cells, [f"step {t + 1}" for t in columns], labels, title, path, cell, captions)


def mask_area_figure(buckets: list[dict], set_names: list[str], path: str | Path, confidence: float) -> None:
    """Each per-image metric summarised by mask area (hole PSNR, hole SSIM) against the
    bucket of missing-pixel fraction, one line per set, with the bootstrap interval of
    each bucket as error bars (metrics/evaluation.json)."""
    fig = new_figure(11.0, 4.5)
    labels = [f"{b['low'] * 100:.0f}-{b['high'] * 100:.0f}%\n({b['images']} img)" for b in buckets]
    panels = [m for m in BY_AREA if METRICS[m].per_image]  # KID per bucket is in the report's tables
    for k, metric in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for j, name in enumerate(set_names):
            xs, ys, err = [], [], [[], []]
            for i, b in enumerate(buckets):
                cell = b["sets"].get(name, {}).get(metric)
                if cell is None or not np.isfinite(cell["value"]):
                    continue
                lo, hi = cell["interval"]
                xs.append(i + (j - len(set_names) / 2) * 0.04)
                ys.append(cell["value"])
                err[0].append(cell["value"] - lo)
                err[1].append(hi - cell["value"])
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=2, label=grid.label(name))
        ax.set_xticks(range(len(buckets)), labels, fontsize=8)
        ax.set_xlabel("missing-pixel fraction of the test image")
        ax.set_title(axis_title(metric))
        ax.grid(alpha=0.3)
    fig.suptitle(f"Inside the hole, by mask area ({confidence:.0%} bootstrap intervals)")
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(set_names), 7), fontsize=8.5)
    save(fig, path)


def families_figure(by_family: dict[str, dict], path: str | Path, confidence: float) -> None:
    """Every set's FID on each test set (the main one, then each mask family's), with its
    bootstrap interval as an error bar: the families side by side (metrics/evaluation.json).
    Nothing is singled out: which sets are tied is the report's tables' to say."""
    fig = new_figure(11.0, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    families = list(by_family)
    set_names = list(next(iter(by_family.values()))["sets"])
    for j, name in enumerate(set_names):
        xs, ys, err = [], [], [[], []]
        for i, f in enumerate(families):
            cell = by_family[f]["sets"].get(name, {}).get(HEADLINE)
            if cell is None or not np.isfinite(cell["value"]):
                continue
            lo, hi = cell["interval"]
            xs.append(i + (j - (len(set_names) - 1) / 2) * 0.07)
            ys.append(cell["value"])
            err[0].append(cell["value"] - lo)
            err[1].append(hi - cell["value"])
        ax.errorbar(xs, ys, yerr=err, marker="o", linestyle="none", capsize=2, label=grid.label(name))
    ax.set_xticks(range(len(families)),
                  [f"{f}\n({by_family[f]['images']} img, {by_family[f]['missing_fraction']['mean']:.0%} missing)"
                   for f in families], fontsize=8.5)
    ax.set_xlabel("test masks")
    ax.set_ylabel("FID (lower is better)")
    ax.grid(alpha=0.3)
    fig.suptitle(f"FID per mask family ({confidence:.0%} bootstrap intervals)")
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(set_names), 5), fontsize=8.5)
    save(fig, path)


# ---------------------------------------------------------------- the verdicts at a glance

# what a cell of the verdict matrix can say: its colour and the mark drawn in it (the mark
# keeps the figure readable without colour); None: the pair was not compared
VERDICT_STYLE = {
    None: ("#ffffff", ""),
    "indistinguishable": ("#dcdcdc", "≈"),
    "better": ("#4dac26", "+"),
    "worse": ("#d01c8b", "−"),
    "identical": ("#92c5de", "="),
}


def verdict_matrix(evaluation: dict) -> tuple[list[str], dict[str, list[list[str | None]]]]:
    """The sets of evaluation.json and, per metric, the sets-by-sets matrix of its verdicts
    (after the page's correction): cell [i][j] is set i's verdict against set j, so a
    stored pair (a, b) fills [a][b] with its verdict and [b][a] with the verdict turned
    round; a pair never compared (and the diagonal) is None. Metrics in the registry's order."""
    names = list(evaluation["sets"])
    for p in evaluation["pairs"]:  # a set only a pair names still gets its row
        names += [s for s in (p["a"], p["b"]) if s not in names]
    index = {name: i for i, name in enumerate(names)}
    by_metric: dict[str, list[list[str | None]]] = {}
    for p in evaluation["pairs"]:
        grid = by_metric.setdefault(p["metric"], [[None] * len(names) for _ in names])
        i, j = index[p["a"]], index[p["b"]]
        grid[i][j] = p["verdict"]
        grid[j][i] = FLIPPED.get(p["verdict"], p["verdict"])
    return names, {m: by_metric[m] for m in METRICS if m in by_metric}


def verdict_figure(evaluation: dict, path: str | Path) -> None:
    """One panel per metric, sets by sets, each cell the row's verdict against the column
    (verdict_matrix): better, worse, indistinguishable after the correction, identical
    files marked, blank where a pair was not compared."""
    names, matrices = verdict_matrix(evaluation)
    if not matrices:
        raise InputError(f"{paths.EVALUATION}: no paired verdicts to draw (re-run the evaluate stage)")
    codes = list(VERDICT_STYLE)
    cmap = ListedColormap([VERDICT_STYLE[c][0] for c in codes])
    columns = min(2, len(matrices))
    rows = math.ceil(len(matrices) / columns)
    side = 1.6 + 0.42 * len(names)
    fig = new_figure(columns * side + 0.6, rows * side + 1.0)
    labels = [grid.label(n) for n in names]
    for k, (metric, matrix) in enumerate(matrices.items()):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow([[codes.index(v) for v in line] for line in matrix], cmap=cmap, vmin=0, vmax=len(codes) - 1)
        for i, line in enumerate(matrix):
            for j, verdict in enumerate(line):
                mark = "" if i == j else VERDICT_STYLE[verdict][1]
                ax.text(j, i, mark, ha="center", va="center", fontsize=9,
                        color="white" if verdict in ("better", "worse") else "0.25")
        # thin white lines between the cells; the diagonal (a set against itself) in dark gray
        ax.set_xticks(np.arange(len(names) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(names) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
        for i in range(len(names)):
            ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, color="0.55"))
        ax.set_xticks(range(len(names)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), labels, fontsize=8)
        ax.set_title(axis_title(metric), fontsize=10)
    legend = [Patch(facecolor=VERDICT_STYLE[c][0], edgecolor="0.6", label=f"{VERDICT_STYLE[c][1]} {c}".strip())
              for c in ("better", "worse", "indistinguishable", "identical")]
    legend.append(Patch(facecolor="white", edgecolor="0.6", label="not compared"))
    c = evaluation.get("correction")
    after = (f"after Holm's correction over {c['comparisons']} comparisons" if c and c["method"] == "holm"
             else "after the page's correction")
    fig.suptitle(f"Each row's verdict against each column ({evaluation['confidence']:.0%} paired intervals, {after})",
                 fontsize=11)
    fig.legend(handles=legend, loc="outside lower center", ncols=len(legend), fontsize=9)
    save(fig, path)
