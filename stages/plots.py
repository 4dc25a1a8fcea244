"""Stage plots: the tables and figures of the report.

reports/tables/   fid.csv (raw numbers), fid.md (formatted, with intervals; the best or
                  tied-for-best schedules marked as the evaluate stage's verdicts say)
reports/figures/  fid.png, gamma.png, training.png, comparison.png,
                  grid_<schedule>.png, steps_<schedule>.png (when the inpaint stage
                  kept per-step arrays, i.e. inpaint.n_figure_images > 0)

Both folders are built in temporary siblings and moved into place at the end, so
an interrupted run never leaves a half-drawn set.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from maskgit.pipeline import paths, plotting, sets
from maskgit.pipeline.runtime import run_stage
from maskgit.pipeline.files import list_images, make_tmp_dir, replace_dir
from maskgit.pipeline.params import load_params
from maskgit.pipeline.errors import InputError

TEST, INPAINT, REPORTS = paths.TEST, paths.INPAINT, paths.REPORTS
N_GRID = 8  # rows of grid_<schedule>.png
N_COMPARISON = 6  # rows of comparison.png


def read_json(path):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found (run the stage that writes it first)")
    return json.loads(path.read_text())


def image_column(folder: Path, names: list[str]) -> list[np.ndarray]:
    """The images of `names` from `folder`; every set uses the test set's file names."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise InputError(f"{folder}: {missing[0]} missing (every image set must have the test set's names)")
    return [plotting.load_rgb(folder / n) for n in names]


def image_figures(params, table, names, out: Path) -> None:
    schedules = sets.decoders(params["inpaint"])
    # a schedule is singled out only where the verdicts say so: alone best, or tied with some but not all
    tied = set(table.loc[table["tied_for_best"], "name"])
    mark = {}
    if len(tied) < len(schedules):
        mark = {s: " (best FID)" if len(tied) == 1 else " (tied for best)" for s in tied}

    grid_names = names[:N_GRID]
    masked, gt = image_column(TEST / "masked_image", grid_names), image_column(TEST / "gt", grid_names)
    masks = [plotting.load_mask(TEST / "mask64" / n) for n in grid_names]
    for s in schedules:
        plotting.image_grid(
            [("masked input", masked), ("mask (white = known)", masks),
             (f"inpainted ({s})", image_column(sets.inpaint_dir(s) / "images", grid_names)), ("ground truth", gt)],
            grid_names, out / f"grid_{s}.png", title=f"Inpainting with the {sets.describe(s)}",
        )

    # spread over the test set rather than the first few: more variety of masks
    picked = [names[i] for i in plotting.spread_indices(len(names), N_COMPARISON)]
    columns = [("masked input", image_column(TEST / "masked_image", picked))]
    columns += [(s + mark.get(s, ""), image_column(sets.inpaint_dir(s) / "images", picked)) for s in schedules]
    columns += [(sets.BASELINES[b].short, image_column(sets.BASELINES[b].images, picked)) for b in sets.GRID]
    columns += [("ground truth", image_column(TEST / "gt", picked))]
    plotting.image_grid(columns, picked, out / "comparison.png", title="Schedules against the baselines")

    for s in schedules:
        steps_masked, steps_images = sets.inpaint_dir(s) / "steps_masked.npy", sets.inpaint_dir(s) / "steps_images.npy"
        arrays = [np.load(p) for p in (steps_masked, steps_images) if p.is_file()]
        if len(arrays) < 2 or len(arrays[0]) == 0:
            print(f"plots: no per-step arrays for {s} (inpaint.n_figure_images 0?): no steps_{s}.png", file=sys.stderr)
            continue
        info = read_json(sets.inpaint_dir(s) / "info.json")
        plotting.steps_figure(
            *arrays, names, out / f"steps_{s}.png",
            title=f"Decoding step by step, {sets.describe(s)} (total_iter {info['total_iter']}, "
                  f"sweet spot {info['sweet_spot']}): latent mask (white = masked) and decoded image",
        )


def main():
    params = load_params()
    ip = params["inpaint"]
    table = plotting.fid_table(read_json(paths.FID_SCHEDULES), read_json(paths.FID_BASELINES),
                               sets.decoders(ip), read_json(paths.EVALUATION))
    names = [p.name for p in list_images(TEST / "masked_image")]

    REPORTS.mkdir(parents=True, exist_ok=True)
    tables, figures = make_tmp_dir(REPORTS / "tables"), make_tmp_dir(REPORTS / "figures")
    try:
        table.to_csv(tables / "fid.csv", index=False)
        (tables / "fid.md").write_text(plotting.fid_markdown(table))

        steps = min(ip["sweet_spot"], ip["total_iter"])
        plotting.fid_figure(table, figures / "fid.png",
                            subtitle=f"{len(names)} test images, {steps} of total_iter {ip['total_iter']} steps run")
        plotting.gamma_figure(ip["schedules"], params["train_transformer"]["gamma"], ip["total_iter"],
                              ip["sweet_spot"], figures / "gamma.png")
        # dvclive counts one step per log line, not per training step: say how many
        every_vq, every_tf = params["train_vqgan"]["log_every"], params["train_transformer"]["eval_every"]
        plotting.training_figure({
            "transformer": (plotting.read_dvclive_metrics(paths.LIVE_TRANSFORMER),
                            f"dvclive step (one per {every_tf} training steps)"),
            "VQGAN": (plotting.read_dvclive_metrics(paths.LIVE_VQGAN), f"dvclive step (one per {every_vq} training steps)"),
        }, figures / "training.png")
        image_figures(params, table, names, figures)

        replace_dir(tables, REPORTS / "tables")
        replace_dir(figures, REPORTS / "figures")
    finally:
        shutil.rmtree(tables, ignore_errors=True)
        shutil.rmtree(figures, ignore_errors=True)
    print(f"plots: {len(list((REPORTS / 'figures').glob('*.png')))} figures in {REPORTS / 'figures'}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main, "plots")
