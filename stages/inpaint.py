"""Stage inpaint@<schedule>: fill the masked test set by iterative decoding.

    python stages/inpaint.py cosine

Writes outputs/inpaint/<schedule>/images/*.png (one per test image, same names),
steps_masked.npy / steps_images.npy (the latent mask and the decoded image at
every step for the first inpaint.n_figure_images images, the lab's figures) and
info.json (the settings). Timings go to timings/inpaint-<schedule>.json.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import sys

from maskgit.pipeline import paths
from maskgit.pipeline.runtime import run_stage
from maskgit.pipeline.params import ParamError, load_params
from maskgit.pipeline.runner import run_inpainting


def main():
    params = load_params()
    if len(sys.argv) < 2:
        raise ParamError("usage: python stages/inpaint.py <schedule> (one of inpaint.schedules)")
    schedule = sys.argv[1]
    ip = params["inpaint"]
    if schedule not in ip["schedules"]:
        raise ParamError(f"params.yaml: schedule {schedule!r} is not in inpaint.schedules {ip['schedules']}")
    return run_inpainting(params, paths.INPAINT / schedule, schedule=schedule, total_iter=ip["total_iter"],
                   sweet_spot=ip["sweet_spot"], history_images=ip["n_figure_images"], desc=f"inpaint {schedule}")


if __name__ == "__main__":
    run_stage(main, f"inpaint-{sys.argv[1] if len(sys.argv) > 1 else 'unknown'}")
