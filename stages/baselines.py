"""Stage baselines: the reference points every report compares against.

- onestep: one-step decoding (total_iter 1): every unknown token at once;
- recon: the VQGAN reconstruction of the ground truth, the floor that token
  inpainting cannot beat (composited like the schedules when inpaint.composite).
The third baseline, the masked input as is, needs no computation.
Writes outputs/baselines/{onestep,recon}/images/*.png.
"""

from pathlib import Path

import torch
from tqdm import tqdm

from maskgit.checkpoints import load_vqgan
from maskgit.cli import resolve_device, run_stage
from maskgit.inpaint import composite
from maskgit.io import read_images, to_tensor, to_uint8, write_images
from maskgit.params import load_params
from maskgit.testset import TEST, load_test_set, run_inpainting

OUT = Path("outputs/baselines")


def main():
    params = load_params()
    ip, size = params["inpaint"], params["data"]["image_size"]
    # with total_iter 1 the only step is the last one, which never evaluates gamma:
    # the schedule named here does not matter, so the stage does not depend on the list
    run_inpainting(params, OUT / "onestep", schedule="cosine", total_iter=1, sweet_spot=1,
                   history_images=0, desc="one-step")

    device = resolve_device(params["device"])
    vqgan, norm = load_vqgan("models/vqgan.pt", device)
    gt = to_tensor(read_images(TEST / "gt", size), norm["mean"], norm["std"])
    with torch.no_grad():
        recon = torch.cat([
            vqgan.decode_tokens(vqgan.encode_to_tokens(gt[i : i + ip["batch_size"]].to(device))).float().cpu()
            for i in tqdm(range(0, len(gt), ip["batch_size"]), desc="reconstruction", unit="batch")
        ])
    _, _, masked, known, names = load_test_set(params)
    if ip["composite"]:
        recon = composite(recon, to_tensor(masked, norm["mean"], norm["std"]), known)
    write_images(OUT / "recon" / "images", to_uint8(recon, norm["mean"], norm["std"]), names)


if __name__ == "__main__":
    run_stage(main, "baselines")
