"""Stage tokenize: encode every image once with the VQGAN.

(Not named tokenize.py: the script folder is on sys.path and would shadow the
standard library module of that name.)

Training then reads token grids and never runs the encoder per batch. Writes
data/tokens/{train,val,test}.npy (uint16/int32 (N, h*w)) and test_unknown.npy
(bool (N, h*w), the lab's token mask of each test image).
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import numpy as np
import torch
from tqdm import tqdm

from maskgit.pipeline import paths
from maskgit.pipeline.vqgan_checkpoint import load_vqgan
from maskgit.pipeline.runtime import resolve_device, run_stage
from maskgit.pipeline.files import read_images, read_masks, save_npy, to_tensor
from maskgit.algorithms.masking import token_unknown_from_pixel_mask
from maskgit.pipeline.params import load_params, test_normalisation, token_patch
from maskgit.pipeline.errors import InputError


@torch.no_grad()
def encode(vqgan, images, norm, device, desc, batch_size=100):
    x = to_tensor(images, norm["mean"], norm["std"])
    out = [vqgan.encode_to_tokens(x[i : i + batch_size].to(device)).cpu()
           for i in tqdm(range(0, len(x), batch_size), desc=desc, unit="batch")]
    tokens = torch.cat(out).numpy()
    return tokens.astype(np.uint16 if vqgan.num_codebook_vectors <= 65536 else np.int32)


def main():
    params = load_params()
    size = params["data"]["image_size"]
    device = resolve_device(params["device"])
    vqgan, norm = load_vqgan(paths.VQGAN, device)
    for split in ("train", "val"):
        save_npy(paths.tokens(split), encode(vqgan, read_images(paths.split_images(split), size), norm, device, split))
    # the lab encodes the masked image (holes filled with gray), normalised with the test
    # images' own statistics (data.test_mean/test_std), and keeps its tokens wherever the
    # whole patch is known
    masked = read_images(paths.TEST / "masked_image", size)
    known = read_masks(paths.TEST / "mask64", size)
    if len(masked) != len(known):
        raise InputError(f"{paths.TEST}: {len(masked)} masked images but {len(known)} masks")
    save_npy(paths.TEST_TOKENS, encode(vqgan, masked, test_normalisation(params, norm), device, "test"))
    unknown = token_unknown_from_pixel_mask(torch.from_numpy(known), token_patch(params))
    save_npy(paths.TEST_UNKNOWN, unknown.numpy())


if __name__ == "__main__":
    run_stage(main, "tokenize", keep_memory=True)
