"""Stage family@<family>: the test images filled and scored under one standard mask
family (inpaint.mask_families), beside the main test set.

    python stages/family.py thin

The ground truth of data/prepared/test/gt gets the family's masks (maskgit.data.masks,
mask i seeded by prepare.seed and i, the very masks `prepare.test_masks: <family>` would
give it), tokenized with the run's VQGAN, filled by every decoder of inpaint.schedules x
inpaint.orders and by the baselines, and scored as the FID stages score the main set.
Writes outputs/families/<family>/ whole or not at all:
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
from maskgit.pipeline import paths, sets
from maskgit.pipeline.files import list_images, make_tmp_dir, read_images, replace_dir, save_npy, write_images
from maskgit.pipeline.folders import family_test_masks
from maskgit.pipeline.params import ParamError, load_params
from maskgit.pipeline.runner import TestSetFiles, run_baselines, run_inpainting
from maskgit.pipeline.runtime import resolve_device, run_stage
from maskgit.pipeline.scoring import Scorer
from maskgit.pipeline.tokens import test_tokens
from maskgit.pipeline.vqgan_checkpoint import load_vqgan


def main():
    params = load_params()
    if len(sys.argv) != 2:
        raise ParamError("usage: python stages/family.py <family> (of inpaint.mask_families)")
    family, ip = sys.argv[1], params["inpaint"]
    if family not in ip["mask_families"]:
        raise ParamError(f"params.yaml: {family!r} is not in inpaint.mask_families {ip['mask_families']}")
    size = params["data"]["image_size"]
    gt = read_images(paths.TEST / "gt", size)
    names = [p.name for p in list_images(paths.TEST / "gt")]
    known = family_test_masks(params["prepare"], len(gt), size, family)
    out = paths.family_dir(family)
    tmp = make_tmp_dir(out)  # the folder appears whole or not at all
    try:
        files = TestSetFiles.family(tmp)
        masked = np.stack([apply_mask(g, k) for g, k in zip(gt, known)])
        write_images(files.mask64, known, names)
        write_images(files.masked_image, masked, names)
        device = resolve_device(params["device"])
        vqgan, norm = load_vqgan(paths.VQGAN, device)
        # the array just written: PNG is lossless, so the tokens are those of the files
        tokens, unknown = test_tokens(vqgan, norm, params, masked, known, device, desc=f"{family}: tokenize")
        del vqgan
        save_npy(files.tokens, tokens)
        save_npy(files.unknown, unknown)
        image_sets = {}
        for name in sets.decoders(ip):
            schedule, order = sets.decoder(name)
            folder = tmp / "inpaint" / order / schedule
            run_inpainting(params, folder, Decoding.from_params(ip, schedule, order), history_images=0,
                           desc=f"{family}: inpaint {name}", files=files)
            image_sets[name] = folder / "images"
        run_baselines(params, tmp / "baselines", files)
        image_sets["masked_input"] = files.masked_image
        image_sets.update({b: tmp / "baselines" / b / "images" for b in sets.BASELINES if b != "masked_input"})
        scorer = Scorer(params, device, len(gt))
        # the evidence only: the evaluate stage gives every FID and KID, with its interval
        scorer.score(image_sets, np.load(paths.GT_FEATURES), files.gt, files.mask64, tmp / "evidence",
                     prefix=f"{family}: ", point_values=False)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(f"family {family}: {len(image_sets)} sets of {len(gt)} images scored in {out / 'evidence'}", file=sys.stderr)
    return {"images": len(gt), **scorer.used}


if __name__ == "__main__":
    run_stage(main, "family-" + (sys.argv[1] if len(sys.argv) > 1 else "unknown"), keep_memory=True)
