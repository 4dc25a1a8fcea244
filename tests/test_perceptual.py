"""LPIPS per image (maskgit.metrics.perceptual) on a randomly initialised AlexNet saved to
a file, against torchmetrics' LPIPS fed the same backbone and its own linear heads."""

import numpy as np
import pytest

from conftest import every_metric
import torch
import torchvision

from maskgit.metrics import perceptual
from maskgit.project.errors import InputError
from maskgit.project.lpips_weights import find_backbone, load_lpips


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("alexnet") / perceptual.BACKBONE_FILE
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def images(n, seed, size=64):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_whole_image_lpips_equals_torchmetrics_with_the_same_backbone(backbone):
    from torchmetrics.functional.image.lpips import _LPIPS

    ours = perceptual.from_backbone(torch.load(backbone, weights_only=True))
    other = _LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()
    state = torch.load(backbone, weights_only=True)
    other.net.load_state_dict({name: state[f"features.{name.split('.', 2)[1]}.{name.split('.', 2)[2]}"]
                               for name in other.net.state_dict()})
    a, b = images(6, 1), images(6, 2)
    known = np.ones((6, 64, 64), bool)
    known[:, 20:40, 10:50] = False
    got = perceptual.per_image(ours, a, b, known, batch_size=4)["lpips"]  # two batches, the last short
    with torch.no_grad():
        want = other(*(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1 for x in (a, b)))
    np.testing.assert_allclose(got, want.flatten().double().numpy(), rtol=1e-5)
    assert (got > 0).all()


def test_hole_lpips_reads_the_distance_inside_the_hole(backbone):
    model = perceptual.from_backbone(torch.load(backbone, weights_only=True))
    gt = images(4, 3)
    known = np.ones((4, 64, 64), bool)
    known[:, 16:48, 16:48] = False
    known[3] = True  # no hole
    filled = gt.copy()
    filled[:3, 16:48, 16:48] = images(3, 4)[:, 16:48, 16:48]  # differ only inside the hole
    got = perceptual.per_image(model, filled, gt, known)
    assert np.isnan(got["hole_lpips"][3]) and got["lpips"][3] == 0.0  # identical images, no hole
    # the distance map is concentrated where the images differ: read there it is larger
    assert (got["hole_lpips"][:3] > got["lpips"][:3]).all()
    same = perceptual.per_image(model, gt, gt, known)
    assert np.allclose(same["lpips"], 0) and np.allclose(same["hole_lpips"][:3], 0)


def test_the_backbone_comes_from_the_param_or_torchs_cache_never_a_download(tmp_path, monkeypatch, backbone):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    path, reason = find_backbone(None)
    assert path is None and "fid.lpips_backbone" in reason and perceptual.BACKBONE_FILE in reason
    cached = tmp_path / "hub" / "checkpoints" / perceptual.BACKBONE_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(backbone.read_bytes())
    assert find_backbone(None) == (cached, "")
    assert find_backbone(str(backbone)) == (backbone, "")
    with pytest.raises(InputError, match="fid.lpips_backbone points to a missing file"):
        find_backbone(str(tmp_path / "absent.pth"))


def test_a_file_that_is_not_an_alexnet_is_refused_naming_it(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save({"classifier.0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(InputError, match="fid.lpips_backbone: .*vgg.pth: not a torchvision AlexNet state dict"):
        load_lpips(path, "cpu")


@pytest.mark.parametrize("content", ["random", "truncated"])
def test_random_bytes_or_a_truncated_backbone_are_one_line_naming_the_file(tmp_path, backbone, content):
    # torch.load's own error on these is a 27-line traceback that never names the file
    path = tmp_path / "alexnet.pth"
    data = backbone.read_bytes()
    path.write_bytes(np.random.default_rng(0).bytes(5000) if content == "random" else data[: len(data) // 3])
    with pytest.raises(InputError) as e:
        load_lpips(path, "cpu")
    message = str(e.value)
    assert message.startswith(f"fid.lpips_backbone: {path} cannot be read as torch weights (") and "\n" not in message


def test_evidence_keeps_lpips_when_computed_and_evaluate_gives_it_intervals(tmp_path):
    from maskgit.metrics.evaluation import Settings, summarise
    from maskgit.project.evidence import read_evidence, write_evidence

    rng = np.random.default_rng(5)
    n = 40
    base = every_metric(dict(names=np.array([f"{i}.png" for i in range(n)]), features=rng.normal(size=(n, 4)),
                             psnr=rng.normal(20, 1, n), ssim=rng.uniform(size=n), hole_psnr=rng.normal(18, 1, n),
                             hole_ssim=rng.uniform(size=n), missing_fraction=rng.uniform(0.1, 0.5, n)))
    write_evidence(tmp_path / "a.npz", **base, lpips=rng.uniform(0.1, 0.2, n), hole_lpips=rng.uniform(0.3, 0.4, n))
    write_evidence(tmp_path / "b.npz", **base)
    a, b = read_evidence("a.npz", tmp_path), read_evidence("b.npz", tmp_path)
    assert "hole_lpips" in a and "lpips" not in b
    settings = Settings(replicates=100, confidence=0.95, seed=0, mask_buckets=(0.0, 1.0), kid_min_images=4)
    point, _, table, verdicts = summarise({"a": a, "b": b}, rng.normal(size=(n, 4)), settings, pairs=[("a", "b")])
    lo, hi = table["a"]["hole_lpips"]["interval"]
    assert 0.3 < lo <= point["a"]["hole_lpips"] <= hi < 0.4
    assert "lpips" not in table["b"] and not any(v["metric"] == "lpips" for v in verdicts)
