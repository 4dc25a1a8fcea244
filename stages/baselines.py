"""Stage baselines: the reference points every report compares against.

- onestep: one-step decoding (total_iter 1): every unknown token at once;
- recon: the VQGAN reconstruction of the ground truth, the floor that token
  inpainting cannot beat (composited like the schedules, as inpaint.composite says);
- harmonic: the holes filled by Laplace interpolation of their border, no model:
  what a learned inpainter has to beat to be worth its training.
The masked input as is, the last baseline, needs no computation.
Writes outputs/baselines/{onestep,recon,harmonic}/images/*.png.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

from maskgit.pipeline.runtime import run_stage
from maskgit.project.params import load_params
from maskgit.pipeline.runner import run_baselines


def main():
    onestep = run_baselines(load_params())
    return {f"onestep_{key}": value for key, value in onestep.items()}


if __name__ == "__main__":
    run_stage(main, "baselines")
