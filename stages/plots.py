"""Stage plots: the tables and figures of the report.

reports/tables/   fid.csv (raw numbers), fid.md (formatted, with intervals; the best or
                  tied-for-best schedules marked as the evaluate stage's verdicts say)
reports/figures/  fid.png, gamma.png, training.png, comparison.png,
                  grid_<decoder>.png, steps_<decoder>.png (when the inpaint stage
                  kept per-step arrays, i.e. inpaint.n_figure_images > 0)

Both folders are built in temporary siblings and moved into place at the end, so
an interrupted run never leaves a half-drawn set.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import shutil
import sys
from pathlib import Path

import numpy as np

from maskgit.algorithms.decoding import Decoding
from maskgit.pages import figures
from maskgit.project import paths
from maskgit.project.grid import BASELINES, GRID, MAIN, decoder_names, decoders
from maskgit.pipeline.runtime import run_stage
from maskgit.project.files import list_images, make_tmp_dir, read_json, replace_dir
from maskgit.project.params import load_params
from maskgit.project.errors import InputError

REPORTS = paths.REPORTS
N_GRID = 8  # rows of grid_<decoder>.png
N_COMPARISON = 6  # rows of comparison.png



def image_column(folder: Path, names: list[str]) -> list[np.ndarray]:
    """The images of `names` from `folder`; every set uses the test set's file names."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise InputError(f"{folder}: {missing[0]} missing (every image set must have the test set's names)")
    return [figures.load_rgb(folder / n) for n in names]


def image_figures(params, table, names, out: Path) -> None:
    grid = decoders(params["inpaint"])
    # a decoder is singled out only where the verdicts say so: alone best, or tied with some but not all
    tied = set(table.loc[table["tied_for_best"], "name"])
    mark = {}
    if len(tied) < len(grid):
        mark = {d: " (best FID)" if len(tied) == 1 else " (tied for best)" for d in tied}

    grid_names = names[:N_GRID]
    masked, gt = image_column(MAIN.masked_image, grid_names), image_column(MAIN.gt, grid_names)
    masks = [figures.load_mask(MAIN.mask64 / n) for n in grid_names]
    for d in grid:
        figures.image_grid(
            [("masked input", masked), ("mask (white = known)", masks),
             (f"inpainted ({d.name})", image_column(MAIN.images(d.name), grid_names)), ("ground truth", gt)],
            grid_names, out / f"grid_{d.name}.png", title=f"Inpainting with the {d.describe()}",
        )

    # spread over the test set rather than the first few: more variety of masks
    picked = [names[i] for i in figures.spread_indices(len(names), N_COMPARISON)]
    columns = [("masked input", image_column(MAIN.masked_image, picked))]
    columns += [(d.name + mark.get(d.name, ""), image_column(MAIN.images(d.name), picked)) for d in grid]
    columns += [(BASELINES[b].short, image_column(MAIN.images(b), picked)) for b in GRID]
    columns += [("ground truth", image_column(MAIN.gt, picked))]
    figures.image_grid(columns, picked, out / "comparison.png", title="Schedules against the baselines")

    for d in grid:
        folder = MAIN.decoder_folder(d)
        arrays = [np.load(p) for p in (folder / "steps_masked.npy", folder / "steps_images.npy") if p.is_file()]
        if len(arrays) < 2 or len(arrays[0]) == 0:
            print(f"plots: no per-step arrays for {d.name} (inpaint.n_figure_images 0?): no steps_{d.name}.png",
                  file=sys.stderr)
            continue
        info = read_json(folder / "info.json")
        figures.steps_figure(
            *arrays, names, out / f"steps_{d.name}.png",
            title=f"Decoding step by step, {d.describe()} (total_iter {info['total_iter']}, "
                  f"sweet spot {info['sweet_spot']}): latent mask (white = masked) and decoded image",
        )


def main():
    params = load_params()
    ip = params["inpaint"]
    table = figures.fid_table(read_json(paths.FID_DECODERS), read_json(paths.FID_BASELINES),
                               decoder_names(ip), read_json(paths.EVALUATION))
    names = [p.name for p in list_images(MAIN.masked_image)]

    REPORTS.mkdir(parents=True, exist_ok=True)
    tables, figure_dir = make_tmp_dir(REPORTS / "tables"), make_tmp_dir(REPORTS / "figures")
    try:
        table.to_csv(tables / "fid.csv", index=False)
        (tables / "fid.md").write_text(figures.fid_markdown(table))

        decoding = Decoding.from_params(ip, ip["schedules"][0])  # T and the steps run: every decoder's
        figures.fid_figure(table, figure_dir / "fid.png", subtitle=f"{len(names)} test images, {decoding.steps} of "
                                                                 f"total_iter {decoding.total_iter} steps run")
        figures.gamma_figure(ip["schedules"], params["train_transformer"]["gamma"], decoding.total_iter, decoding.steps,
                              figure_dir / "gamma.png")
        # dvclive counts one step per log line, not per training step: say how many
        every_vq, every_tf = params["train_vqgan"]["log_every"], params["train_transformer"]["eval_every"]
        figures.training_figure({
            "transformer": (figures.read_dvclive_metrics(paths.LIVE_TRANSFORMER),
                            f"dvclive step (one per {every_tf} training steps)"),
            "VQGAN": (figures.read_dvclive_metrics(paths.LIVE_VQGAN), f"dvclive step (one per {every_vq} training steps)"),
        }, figure_dir / "training.png")
        image_figures(params, table, names, figure_dir)

        replace_dir(tables, REPORTS / "tables")
        replace_dir(figure_dir, REPORTS / "figures")
    finally:
        shutil.rmtree(tables, ignore_errors=True)
        shutil.rmtree(figure_dir, ignore_errors=True)
    print(f"plots: {len(list((REPORTS / 'figures').glob('*.png')))} figures in {REPORTS / 'figures'}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main, "plots")
