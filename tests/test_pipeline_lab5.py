"""The tiny DAG on a user's lab5-format folders with a pretrained lab VQGAN, in a
temporary git repo. Its own file, apart from test_pipeline.py's shared tiny run, so
that pytest-xdist can run the two on different workers."""

import math

import pytest

from conftest import NEEDS_LAB5, SHARED
from test_pipeline import read_json, tiny_repro

pytestmark = pytest.mark.pipeline


def test_lab_folders_with_the_pretrained_vqgan(tmp_path_factory, fid_weights):
    # a user's lab5-format folders and a pretrained lab-architecture VQGAN (the golden
    # file): the tokenizer is used as is, and FID comes out per schedule
    golden = SHARED / "lab5" / "vqgan_golden_small.pt"
    if not golden.is_file():
        pytest.skip(NEEDS_LAB5)
    import numpy as np
    import torch
    import yaml
    from PIL import Image

    from maskgit.data.procedural import make_dataset, make_masks

    tmp = tmp_path_factory.mktemp("lab5")
    data = tmp / "lab5_dataset"
    images, known = make_dataset(7, 60), make_masks(8, 12)
    gt = images[48:]
    for folder, arrays in (("train", images[:40]), ("val", images[40:48]), ("gt", gt), ("mask64", known),
                           ("masked_image", np.where(known[..., None], gt, np.uint8(128)))):
        (data / folder).mkdir(parents=True)
        for i, a in enumerate(arrays):
            Image.fromarray(a.astype(np.uint8) * 255 if a.dtype == bool else a).save(data / folder / f"{i:04d}.png")
    config = torch.load(golden, weights_only=True)["config"]
    overrides = {
        "prepare": {"source": "folders", **{f"{k}_dir": str(data / v) for k, v in (
            ("train", "train"), ("val", "val"), ("test_masked", "masked_image"), ("test_mask", "mask64"),
            ("test_gt", "gt"))}},
        "vqgan": {**config, "norm_groups": 32, "checkpoint": str(golden)},
    }

    def customise(project):
        (project / "configs/user.yaml").write_text(yaml.safe_dump(overrides))
        return "user"

    project, env, out = tiny_repro(tmp, fid_weights, customise)
    assert "train_vqgan: no training, using" in out
    assert not (project / "dvclive/vqgan/plots").exists(), "no stage-1 training curves: nothing was trained"
    used = torch.load(project / "models/vqgan.pt", weights_only=False)["state_dict"]
    given = torch.load(golden, weights_only=True)["state_dict"]
    assert used.keys() == given.keys() and all(torch.equal(used[k], given[k]) for k in used)
    fid = read_json(project / "metrics/fid_decoders.json")
    assert list(fid) == ["cosine", "linear", "square", "cosine-halton", "linear-halton", "square-halton"] and all(math.isfinite(v["fid"]) for v in fid.values())
    assert len(list((project / "data/prepared/test/gt").glob("*.png"))) == 12
