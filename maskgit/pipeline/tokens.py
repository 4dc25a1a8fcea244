"""Images to token grids with the run's VQGAN: the tokenize stage's work, and a mask
family's stage's for its own test set."""

import numpy as np
import torch
from tqdm import tqdm

from maskgit.algorithms.masking import token_unknown_from_pixel_mask
from maskgit.project.files import to_tensor
from maskgit.project.params import test_normalisation, token_patch


@torch.no_grad()
def encode(vqgan, images: np.ndarray, norm: dict, device, desc: str, batch_size: int = 100) -> np.ndarray:
    """uint8 (N, H, W, 3) images -> uint16 (int32 past 65,536 codes) (N, h*w) tokens."""
    x = to_tensor(images, norm["mean"], norm["std"])
    out = [vqgan.encode_to_tokens(x[i : i + batch_size].to(device)).cpu()
           for i in tqdm(range(0, len(x), batch_size), desc=desc, unit="batch")]
    tokens = torch.cat(out).numpy()
    return tokens.astype(np.uint16 if vqgan.num_codebook_vectors <= 65536 else np.int32)


def test_tokens(vqgan, norm: dict, params: dict, masked: np.ndarray, known: np.ndarray, device,
                desc: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The tokens of a masked test set and its token mask (True: unknown). As the lab: the
    masked image (holes filled with gray) is encoded with the test images' own
    normalisation (data.test_mean/test_std), and a token is kept wherever its whole patch
    is known."""
    tokens = encode(vqgan, masked, test_normalisation(params, norm), device, desc)
    unknown = token_unknown_from_pixel_mask(torch.from_numpy(known), token_patch(params))
    return tokens, unknown.numpy()
