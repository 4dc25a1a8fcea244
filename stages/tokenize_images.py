"""Stage tokenize: encode every image once with the VQGAN.

(Not named tokenize.py: the script folder is on sys.path and would shadow the
standard library module of that name.)

Training then reads token grids and never runs the encoder per batch. Writes
data/tokens/{train,val,test}.npy (uint16/int32 (N, h*w)) and test_unknown.npy
(bool (N, h*w), the lab's token mask of each test image).
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

from maskgit.project import paths
from maskgit.project.vqgan_checkpoint import load_vqgan
from maskgit.pipeline.runtime import resolve_device, run_stage
from maskgit.project.files import read_images, read_masks, save_npy
from maskgit.project.params import load_params
from maskgit.project.errors import InputError
from maskgit.pipeline.tokens import encode, test_tokens


def main():
    params = load_params()
    size = params["data"]["image_size"]
    device = resolve_device(params["device"])
    vqgan, norm = load_vqgan(paths.VQGAN, device)
    for split in ("train", "val"):
        save_npy(paths.tokens(split), encode(vqgan, read_images(paths.split_images(split), size), norm, device, split))
    masked = read_images(paths.TEST / "masked_image", size)
    known = read_masks(paths.TEST / "mask64", size)
    if len(masked) != len(known):
        raise InputError(f"{paths.TEST}: {len(masked)} masked images but {len(known)} masks")
    tokens, unknown = test_tokens(vqgan, norm, params, masked, known, device)
    save_npy(paths.TEST_TOKENS, tokens)
    save_npy(paths.TEST_UNKNOWN, unknown)


if __name__ == "__main__":
    run_stage(main, "tokenize", keep_memory=True)
