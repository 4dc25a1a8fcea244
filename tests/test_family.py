"""The family stage (stages/family.py) on a test set of four images and untrained tiny
models: every set is filled under the family's own masks, not the main test set's, and
its evidence (hole metrics, mask areas) is read with those masks."""

import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, load_stage
from maskgit.metrics.image import missing_fraction
from maskgit.metrics.registry import per_image_metrics
from maskgit.models.transformer import BidirectionalTransformer
from maskgit.models.vqgan import VQGAN
from maskgit.project import paths
from maskgit.project.evidence import read_evidence
from maskgit.project.files import read_images, read_masks, write_images
from maskgit.project.folders import family_test_masks
from maskgit.project.presets import with_preset
from maskgit.project.grid import BASELINES, TestSet, decoders
from maskgit.project.transformer_checkpoint import save_transformer
from maskgit.project.vqgan_checkpoint import save_vqgan

N = 4
FAMILY = "thick"


@pytest.fixture(scope="module")
def family_run(tmp_path_factory, fid_weights):
    """The family stage run in a scratch project; (project, params)."""
    root = tmp_path_factory.mktemp("family")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    params, _, _ = with_preset(yaml.safe_load((ROOT / "params.yaml").read_text()), ["tiny"], ROOT / "configs")
    params["inpaint"].update(mask_families=[FAMILY], total_iter=2, sweet_spot=2, composite="paste")
    params["fid"]["inception_weights"] = str(fid_weights)
    params["device"] = "cpu"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    torch.manual_seed(0)
    cfg, data = params["vqgan"], params["data"]
    vqgan = VQGAN(cfg)
    save_vqgan(paths.VQGAN, vqgan, cfg, data["mean"], data["std"])
    transformer = BidirectionalTransformer(cfg["num_codebook_vectors"], cfg["latent_resolution"] ** 2,
                                           params["transformer"])
    save_transformer(paths.TRANSFORMER, transformer, params["transformer"])
    size = data["image_size"]
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (N, size, size, 3), dtype=np.uint8)
    names = [f"{i:03d}.png" for i in range(N)]
    # the main test set's own masks: a band along the top, unlike any LaMa mask
    main = np.ones((N, size, size), bool)
    main[:, : size // 4] = False
    write_images(paths.TEST / "gt", gt, names)
    write_images(paths.TEST / "mask64", main, names)
    write_images(paths.TEST / "masked_image", np.where(main[..., None], gt, 128).astype(np.uint8), names)
    paths.GT_FEATURES.parent.mkdir(parents=True)
    np.save(paths.GT_FEATURES, rng.normal(size=(N, 2048)))
    stage = load_stage("family")
    mp.setattr(sys, "argv", ["family.py", FAMILY])
    stage.main()
    yield root, params
    mp.undo()


def test_the_family_stage_writes_the_familys_masks(family_run):
    root, params = family_run
    size = params["data"]["image_size"]
    written = read_masks(root / TestSet(FAMILY).mask64, size)
    assert np.array_equal(written, family_test_masks(params["prepare"], N, size, FAMILY))


def test_every_set_is_filled_under_the_familys_masks(family_run):
    # paste compositing keeps the known pixels: under the family's masks they are the
    # ground truth's own, wherever the main set's mask hid them
    root, params = family_run
    size = params["data"]["image_size"]
    known = family_test_masks(params["prepare"], N, size, FAMILY)
    main = read_masks(root / paths.TEST / "mask64", size)
    assert (known & ~main).any()  # pixels only the family knows: the check below can fail
    gt = read_images(root / paths.TEST / "gt", size)
    test = TestSet(FAMILY)
    folders = [root / test.images(name) for name in [d.name for d in decoders(params["inpaint"])] + list(BASELINES)]
    # the family's own folders, each one of them (a set read from the main test set's would not be)
    assert all(test.folder in f.relative_to(root).parents for f in folders)
    for folder in folders:
        images = read_images(folder, size)
        assert np.array_equal(images[known], gt[known]), folder


def test_its_evidence_reads_holes_and_mask_areas_with_the_familys_masks(family_run):
    root, params = family_run
    size = params["data"]["image_size"]
    known = family_test_masks(params["prepare"], N, size, FAMILY)
    gt = read_images(root / paths.TEST / "gt", size)
    masked = read_images(root / TestSet(FAMILY).masked_image, size)
    evidence = read_evidence(TestSet(FAMILY).evidence("masked_input"), root)
    np.testing.assert_array_equal(evidence["missing_fraction"], missing_fraction(known))
    expected = per_image_metrics(masked, gt, known)
    np.testing.assert_allclose(evidence["hole_psnr"], expected["hole_psnr"])
    np.testing.assert_allclose(evidence["hole_ssim"], expected["hole_ssim"])
