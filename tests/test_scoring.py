"""maskgit.pipeline.scoring with Inception replaced by a stand-in: the memory a stage asks
for, and which image is scored against which ground truth."""

import numpy as np
import pytest
import yaml

from conftest import ROOT
from maskgit.metrics.fid import inception_chunk
from maskgit.pipeline import scoring
from maskgit.project.errors import InputError
from maskgit.project.evidence import read_evidence
from maskgit.project.files import write_images
from maskgit.project.grid import MAIN
from maskgit.pipeline.memory import inception_batch_bytes


class FakeInception:
    """Features that are the images' mean colour: equal images, equal features."""

    def __init__(self, weights, device="cpu", batch_size=32):
        pass

    def __call__(self, images, desc=""):
        return images.float().mean(dim=(2, 3)).repeat(1, 4).double().numpy()


@pytest.fixture
def scorer_parts(monkeypatch):
    asked = []
    monkeypatch.setattr(scoring, "check_fits", lambda need, device, what: asked.append((need, what)))
    monkeypatch.setattr(scoring, "resolve_inception_weights", lambda path, cache: (None, "test"))
    monkeypatch.setattr(scoring, "InceptionFeatures", FakeInception)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return params, asked


@pytest.mark.parametrize("n_images", [1, 3, 150])
def test_the_memory_check_sizes_one_forward_of_at_most_the_test_sets_images(scorer_parts, n_images):
    params, asked = scorer_parts
    scoring.Scorer(params, "cpu", n_images, lpips=False)
    per_forward = min(inception_chunk(params["fid"]["batch_size"], "cpu"), n_images)
    [(need, what)] = asked
    assert need == inception_batch_bytes(per_forward) and f"({per_forward} images per forward)" in what


def images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_a_sets_images_are_paired_with_the_ground_truth_by_name_not_by_count(scorer_parts, tmp_path, monkeypatch):
    params, _ = scorer_parts
    monkeypatch.chdir(tmp_path)
    scorer = scoring.Scorer(params, "cpu", 4, lpips=False)
    gt = images(4, 0)
    names = [f"{i:03d}.png" for i in range(4)]
    known = np.ones((4, 64, 64), bool)
    known[:, 20:40, 20:40] = False
    write_images(MAIN.gt, gt, names)
    write_images(MAIN.mask64, known, names)
    write_images(tmp_path / "good", gt[::-1], names[::-1])  # written in another order: read back by name
    write_images(tmp_path / "renamed", gt, [f"img{i}.png" for i in range(4)])  # as many images, other names
    features = scorer.features("gt", gt)
    scorer.score({"good": tmp_path / "good"}, features, MAIN, tmp_path / "out", with_point_values=False)
    evidence = read_evidence("out/good.npz", tmp_path)
    assert list(evidence["names"]) == names and np.isinf(evidence["hole_psnr"]).all()  # each image its own truth
    with pytest.raises(InputError, match="renamed: 4 images whose names differ from the 4 of"):
        scorer.score({"renamed": tmp_path / "renamed"}, features, MAIN, tmp_path / "out", with_point_values=False)
