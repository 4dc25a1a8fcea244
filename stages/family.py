"""Stage family@<family>: the test images filled and scored under one standard mask
family (inpaint.mask_families), beside the main test set.

    python stages/family.py thin

The ground truth of data/prepared/test/gt gets the family's masks (maskgit.data.masks,
mask i seeded by prepare.seed and i, the very masks `prepare.test_masks: <family>` would
give it), tokenized with the run's VQGAN, filled by every decoder of inpaint.schedules x
inpaint.orders and by the baselines, and scored as the FID stages score the main set.
Writes outputs/families/<family>/ whole or not at all (maskgit.project.grid.TestSet):
  test/{masked_image,mask64}/   the family's masked test images and masks
  tokens/                       test.npy, test_unknown.npy
  inpaint/<order>/<schedule>/images/, baselines/{onestep,recon,harmonic}/images/
  evidence/<set>.npz            per-image evidence, read by the evaluate stage
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import shutil
import sys

import numpy as np

from maskgit.algorithms.decoding import Decoding
from maskgit.data.procedural import apply_mask
from maskgit.project import paths
from maskgit.project.files import list_images, make_tmp_dir, read_images, replace_dir, save_npy, write_images
from maskgit.project.folders import family_test_masks
from maskgit.project.params import ParamError, load_params
from maskgit.project.grid import MAIN, TestSet, decoder_names, decoders, set_names
from maskgit.pipeline.runner import run_baselines, run_inpainting
from maskgit.pipeline.runtime import resolve_device, run_stage
from maskgit.pipeline.scoring import Scorer
from maskgit.pipeline.tokens import test_tokens
from maskgit.project.vqgan_checkpoint import load_vqgan


def main():
    params = load_params()
    if len(sys.argv) != 2:
        raise ParamError("usage: python stages/family.py <family> (of inpaint.mask_families)")
    family, ip = sys.argv[1], params["inpaint"]
    if family not in ip["mask_families"]:
        raise ParamError(f"params.yaml: {family!r} is not in inpaint.mask_families {ip['mask_families']}")
    size = params["data"]["image_size"]
    gt = read_images(MAIN.gt, size)
    names = [p.name for p in list_images(MAIN.gt)]
    known = family_test_masks(params["prepare"], len(gt), size, family)
    out = TestSet(family).folder
    tmp = make_tmp_dir(out)  # the folder appears whole or not at all
    try:
        test = TestSet(family, root=tmp)
        masked = np.stack([apply_mask(g, k) for g, k in zip(gt, known)])
        write_images(test.mask64, known, names)
        write_images(test.masked_image, masked, names)
        device = resolve_device(params["device"])
        vqgan, norm = load_vqgan(paths.VQGAN, device)
        # the array just written: PNG is lossless, so the tokens are those of the files
        tokens, unknown = test_tokens(vqgan, norm, params, masked, known, device, desc=f"{family}: tokenize")
        del vqgan
        save_npy(test.tokens, tokens)
        save_npy(test.unknown, unknown)
        for decoder in decoders(ip):
            run_inpainting(params, test.decoder_folder(decoder), Decoding.from_params(ip, decoder.schedule, decoder.order),
                           history_images=0, desc=f"{family}: inpaint {decoder.name}", test_set=test)
        run_baselines(params, test)
        scorer = Scorer(params, device, len(gt))
        # the evidence only: the evaluate stage gives every FID and KID, with its interval
        image_sets = {name: test.images(name) for name in set_names(decoder_names(ip))}
        scorer.score(image_sets, np.load(paths.GT_FEATURES), test, test.folder / "evidence", prefix=f"{family}: ",
                     with_point_values=False)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(f"family {family}: {len(image_sets)} sets of {len(gt)} images scored in {out / 'evidence'}", file=sys.stderr)
    return {"images": len(gt), **scorer.used}


if __name__ == "__main__":
    run_stage(main, "family-" + (sys.argv[1] if len(sys.argv) > 1 else "unknown"), keep_memory=True)
