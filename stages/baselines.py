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

import torch
from tqdm import tqdm

from maskgit.pipeline import paths
from maskgit.pipeline.vqgan_checkpoint import load_vqgan
from maskgit.pipeline.runtime import resolve_device, run_stage
from maskgit.algorithms.compositing import harmonic_fill
from maskgit.algorithms.decoding import reconstruct_in_fixed_chunks
from maskgit.pipeline.files import image_folder, to_tensor, to_uint8
from maskgit.pipeline.params import load_params, test_normalisation
from maskgit.pipeline.runner import PreparedTestSet, run_inpainting

OUT = paths.BASELINES


def main():
    params = load_params()
    ip = params["inpaint"]
    # with total_iter 1 the only step is the last one, which never evaluates gamma:
    # the schedule named here does not matter, so the stage does not depend on the list
    onestep = run_inpainting(params, OUT / "onestep", schedule="cosine", total_iter=1, sweet_spot=1,
                             history_images=0, desc="one-step")

    device = resolve_device(params["device"])
    vqgan, norm = load_vqgan(paths.VQGAN, device)
    test = PreparedTestSet(params)
    batch_size = ip["batch_size"]
    # the ground truth is encoded as the masked test images are (data.test_mean/test_std),
    # so the floor is that of the inpainting's own tokens; decoding uses the training norm
    encode_norm = test_normalisation(params, norm)
    with image_folder(OUT / "recon" / "images") as write, image_folder(OUT / "harmonic" / "images") as write_harmonic, \
            torch.no_grad():
        for start in tqdm(range(0, len(test), batch_size), desc="reconstruction, harmonic fill", unit="batch"):
            batch = slice(start, min(start + batch_size, len(test)))
            gt = to_tensor(test.images("gt", batch), encode_norm["mean"], encode_norm["std"]).to(device)
            recon = reconstruct_in_fixed_chunks(vqgan, gt).float().cpu()
            write(test.finish(recon, batch, norm, ip["composite"]), test.names[batch])
            masked = to_tensor(test.images("masked_image", batch), norm["mean"], norm["std"])
            write_harmonic(to_uint8(harmonic_fill(masked, test.known(batch)), norm["mean"], norm["std"]),
                           test.names[batch])
    return {f"onestep_{key}": value for key, value in onestep.items()}


if __name__ == "__main__":
    run_stage(main, "baselines")
