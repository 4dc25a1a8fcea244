"""Inpainting runs over the test set on disk, shared by the inpaint and baselines
stages (one-step decoding is the same run with total_iter 1).

The test set streams through memory a batch at a time (inpaint.batch_size): its
tokens are loaded whole (2 KB per image), its images and masks are read, and the
results written, per batch, so memory does not grow with the number of images."""

import time
from pathlib import Path

import numpy as np
import torch

from maskgit.pipeline import numerics
from maskgit.project import paths
from maskgit.project.grid import MAIN, TestSet
from maskgit.project.transformer_checkpoint import load_transformer
from maskgit.project.vqgan_checkpoint import load_vqgan
from maskgit.algorithms.devices import autocast
from maskgit.pipeline.memory import check_fits, transformer_step_bytes, vqgan_step_bytes
from maskgit.pipeline.runtime import resolve_device
from maskgit.algorithms.compositing import composite, harmonic_fill
from maskgit.algorithms.decoding import Decoding, decode_set, reconstruct_in_fixed_chunks
from maskgit.algorithms.guidance import pixel_prior
from maskgit.project.params import test_normalisation
from tqdm import tqdm

from maskgit.project.files import image_folder, list_images, read_image_files, read_mask_files, save_npy, to_tensor, to_uint8, write_json

class PreparedTestSet:
    """A tokenized test set: tokens in memory, images and masks read on demand."""

    def __init__(self, params, test_set: TestSet = MAIN):
        self.size = params["data"]["image_size"]
        self.tokens = torch.from_numpy(np.load(test_set.tokens).astype(np.int64))
        self.unknown = torch.from_numpy(np.load(test_set.unknown))
        self.paths = {kind: list_images(getattr(test_set, kind)) for kind in ("masked_image", "mask64", "gt")}
        self.names = [p.name for p in self.paths["masked_image"]]

    def __len__(self):
        return len(self.names)

    def images(self, kind: str, batch: slice) -> np.ndarray:
        """uint8 (n, H, W, 3) of `kind` (masked_image or gt) for the images in `batch`."""
        return read_image_files(self.paths[kind][batch], self.size)

    def known(self, batch: slice) -> torch.Tensor:
        """bool (n, H, W), True where the pixel is known, for the images in `batch`."""
        return torch.from_numpy(read_mask_files(self.paths["mask64"][batch], self.size))

    def pixel_prior_fn(self, vqgan, norm: dict, guidance: float):
        """inpaint.pixel_guidance > 0: the prior_fn that gives the decoder the known
        pixels of partly known tokens (maskgit.algorithms.guidance.pixel_prior); 0: None,
        the lab's decoding. `norm` is the test images' encoder normalisation (as the tokens')."""
        if guidance == 0:
            return None
        device = next(vqgan.parameters()).device

        def prior(batch: slice) -> torch.Tensor:
            masked = to_tensor(self.images("masked_image", batch), norm["mean"], norm["std"]).to(device)
            return pixel_prior(vqgan, masked, self.known(batch).to(device), guidance)
        return prior

    def finish(self, images: torch.Tensor, batch: slice, norm: dict, mode: str) -> np.ndarray:
        """Decoded images of `batch` -> uint8 for writing, with the known pixels of
        the masked input put back as inpaint.composite says (`mode`). `norm` is the
        decoding (training) normalisation, for the masked input too: compositing mixes
        it with the decoded images, and to_uint8 must give its known pixels back as they were."""
        if mode != "none":
            masked = to_tensor(self.images("masked_image", batch), norm["mean"], norm["std"])
            images = composite(images, masked, self.known(batch), mode)
        return to_uint8(images, norm["mean"], norm["std"])


def run_inpainting(params, out_dir: Path, decoding: Decoding, *, history_images: int, desc: str,
                   test_set: TestSet = MAIN):
    """Inpaint the whole test set with one decoder; write images/, the per-step arrays
    of the first `history_images` images, and info.json into out_dir. `decoding` says
    how tokens are chosen; params say where and how fast (device, precision, batch,
    compositing, pixel guidance, the noise's seed). Returns the timings: decoding
    (transformer and VQGAN) and image I/O apart."""
    ip = params["inpaint"]
    device = resolve_device(params["device"])
    numerics.check_precision(ip["precision"], device, "inpaint.precision")
    vqgan, norm = load_vqgan(paths.VQGAN, device)
    # eager even with compile: true: a test set is too short to pay back the compilation
    # (docs/findings.md)
    transformer = load_transformer(paths.TRANSFORMER, device)
    test = PreparedTestSet(params, test_set)
    batch, tf = min(ip["batch_size"], len(test)), transformer
    size = params["data"]["image_size"]
    check_fits(transformer_step_bytes(batch, tf.num_tokens, tf.codebook_size + 1, tf.config["dim"], tf.config["n_layers"],
                                      tf.config["n_heads"], tf.config["mlp_dim"], backward=False)
               + vqgan_step_bytes(batch, size, [vqgan.latent_dim]), device, f"inpaint.batch_size {ip['batch_size']}")
    io_seconds = 0.0
    start = time.perf_counter()
    with image_folder(out_dir / "images") as write, autocast(device, ip["precision"]):

        def write_batch(batch, _tokens, images):
            nonlocal io_seconds
            io_start = time.perf_counter()
            write(test.finish(images, batch, norm, ip["composite"]), test.names[batch])
            io_seconds += time.perf_counter() - io_start

        _, _, history = decode_set(
            vqgan, transformer, test.tokens, test.unknown, decoding,
            batch_size=ip["batch_size"], device=device, seed=ip["seed"], history_images=history_images,
            desc=desc, on_batch=write_batch,
            prior_fn=test.pixel_prior_fn(vqgan, test_normalisation(params, norm), ip["pixel_guidance"]),
        )
    # decoding alone (transformer + VQGAN decode), without reading and writing PNGs
    seconds = time.perf_counter() - start - io_seconds
    if history is not None:
        steps = to_uint8(history["images"].flatten(0, 1), norm["mean"], norm["std"])
        k, t = history["images"].shape[:2]
        save_npy(out_dir / "steps_images.npy", steps.reshape(k, t, *steps.shape[1:]))
        save_npy(out_dir / "steps_masked.npy", history["masked"].numpy())
    # what was run, and nothing that varies from run to run (see run_stage)
    write_json(out_dir / "info.json", {
        "schedule": decoding.schedule, "order": decoding.order, "total_iter": decoding.total_iter,
        "sweet_spot": decoding.sweet_spot,
        "images": len(test), "device": str(device), "precision": ip["precision"],
        "pixel_guidance": ip["pixel_guidance"],
    })
    return {"decode_seconds": round(seconds, 3), "decode_seconds_per_image": seconds / len(test),
            "io_seconds": round(io_seconds, 3)}


def run_baselines(params, test_set: TestSet = MAIN) -> dict:
    """The computed baselines of one test set, each into test_set.images(<name>): onestep
    (decoding with total_iter 1), recon (the VQGAN reconstruction of the ground truth,
    composited like the decoders) and harmonic (Laplace fill, no model). Returns the
    one-step run's timings."""
    ip = params["inpaint"]
    # with total_iter 1 the only step is the last one, which never evaluates gamma:
    # the schedule named here does not matter, so the stage does not depend on the list
    one_step = Decoding(schedule="cosine", total_iter=1, sweet_spot=1, choice_temperature=ip["choice_temperature"],
                        sampling=ip["sampling"])
    onestep = run_inpainting(params, test_set.baselines / "onestep", one_step, history_images=0, desc="one-step",
                             test_set=test_set)
    device = resolve_device(params["device"])
    vqgan, norm = load_vqgan(paths.VQGAN, device)
    test = PreparedTestSet(params, test_set)
    batch_size = ip["batch_size"]
    # the ground truth is encoded as the masked test images are (data.test_mean/test_std),
    # so the floor is that of the inpainting's own tokens; decoding uses the training norm
    encode_norm = test_normalisation(params, norm)
    with image_folder(test_set.images("recon")) as write, image_folder(test_set.images("harmonic")) as write_harmonic, \
            torch.no_grad():
        for start in tqdm(range(0, len(test), batch_size), desc="reconstruction, harmonic fill", unit="batch"):
            batch = slice(start, min(start + batch_size, len(test)))
            gt = to_tensor(test.images("gt", batch), encode_norm["mean"], encode_norm["std"]).to(device)
            recon = reconstruct_in_fixed_chunks(vqgan, gt).float().cpu()
            write(test.finish(recon, batch, norm, ip["composite"]), test.names[batch])
            masked = to_tensor(test.images("masked_image", batch), norm["mean"], norm["std"])
            write_harmonic(to_uint8(harmonic_fill(masked, test.known(batch)), norm["mean"], norm["std"]),
                           test.names[batch])
    return onestep
