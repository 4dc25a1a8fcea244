"""Stage inpaint@<schedule>-<order>: fill the masked test set by iterative decoding.

    python stages/inpaint.py cosine halton

Writes outputs/inpaint/<order>/<schedule>/images/*.png (one per test image, same
names), steps_masked.npy / steps_images.npy (the latent mask and the decoded image
at every step for the first inpaint.n_figure_images images, the lab's figures) and
info.json (the settings). Timings go to timings/inpaint-<schedule>-<order>.json.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import sys

from maskgit.algorithms.decoding import Decoding
from maskgit.project.grid import MAIN, Decoder
from maskgit.pipeline.runtime import run_stage
from maskgit.project.params import ParamError, load_params
from maskgit.pipeline.runner import run_inpainting


def main():
    params = load_params()
    if len(sys.argv) != 3:
        raise ParamError("usage: python stages/inpaint.py <schedule> <order> (of inpaint.schedules, inpaint.orders)")
    schedule, order = sys.argv[1:]
    ip = params["inpaint"]
    for key, value in (("schedules", schedule), ("orders", order)):
        if value not in ip[key]:
            raise ParamError(f"params.yaml: {value!r} is not in inpaint.{key} {ip[key]}")
    decoder = Decoder(schedule, order)
    return run_inpainting(params, MAIN.decoder_folder(decoder), Decoding.from_params(ip, schedule, order),
                          history_images=ip["n_figure_images"], desc=f"inpaint {decoder.name}")


if __name__ == "__main__":
    run_stage(main, "inpaint-" + ("-".join(sys.argv[1:3]) if len(sys.argv) > 2 else "unknown"), keep_memory=True)
