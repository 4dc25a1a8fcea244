"""The evaluate stage (stages/evaluate.py) on made-up evidence: the main test set and each
mask family judged on their own evidence, and a family params no longer list named with
the command that removes it."""

import json

import numpy as np
import pytest
import yaml

from conftest import ROOT, load_stage, every_metric
from maskgit.project import paths
from maskgit.project.evidence import write_evidence
from maskgit.project.grid import TestSet, decoder_names, set_names, stale_matrix_stages

N = 12


def write_run(root, params, family=None, hole_psnr=15.0, fraction=0.2, seed=0):
    rng = np.random.default_rng(seed)
    gt = np.load(root / paths.GT_FEATURES)
    for name in set_names(decoder_names(params["inpaint"])):
        path = root / TestSet(family).evidence(name)
        write_evidence(path, **every_metric(dict(
            names=np.array([f"{i:03d}.png" for i in range(N)]), features=gt + rng.normal(size=gt.shape),
            psnr=rng.normal(25, 1, N), ssim=rng.uniform(0.5, 1, N), hole_psnr=rng.normal(hole_psnr, 1, N),
            hole_ssim=rng.uniform(0, 1, N), missing_fraction=np.full(N, fraction))))


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["inpaint"]["mask_families"] = ["thin"]
    params["evaluate"].update(replicates=100, kid_min_images=4)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / paths.GT_FEATURES).parent.mkdir(parents=True)
    np.save(tmp_path / paths.GT_FEATURES, np.random.default_rng(9).normal(size=(N, 16)))
    # the family's holes are larger and filled worse than the main set's
    write_run(tmp_path, params, hole_psnr=20.0, fraction=0.2, seed=1)
    write_run(tmp_path, params, family="thin", hole_psnr=10.0, fraction=0.45, seed=2)
    return tmp_path, params


def test_each_mask_family_is_judged_on_its_own_evidence(project):
    root, params = project
    load_stage("evaluate").main()
    result = json.loads((root / paths.EVALUATION).read_text())
    family = result["mask_families"]["thin"]
    assert result["missing_fraction"]["mean"] == pytest.approx(0.2)
    assert family["missing_fraction"]["mean"] == pytest.approx(0.45)
    for name in set_names(decoder_names(params["inpaint"])):
        main = np.load(root / TestSet().evidence(name))["hole_psnr"].mean()
        own = np.load(root / TestSet("thin").evidence(name))["hole_psnr"].mean()
        assert result["sets"][name]["hole_psnr"]["value"] == pytest.approx(main)
        assert family["sets"][name]["hole_psnr"]["value"] == pytest.approx(own)
    assert (root / "reports/evaluation/families.png").is_file()


def test_a_family_params_no_longer_list_is_named_with_the_command_that_removes_it(project, capsys):
    root, params = project
    lock = {"stages": {"family@thin": {"outs": [{"path": "outputs/families/thin"}]},
                       "family@large": {"outs": [{"path": "outputs/families/large"}]},
                       "inpaint@cubic-confidence": {}, "inpaint@cosine-confidence": {}, "evaluate": {}}}
    assert stale_matrix_stages(params["inpaint"], lock) == ["family@large", "inpaint@cubic-confidence"]
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    load_stage("evaluate").main()
    err = capsys.readouterr().err
    assert ("evaluate: dvc.lock keeps family@large, inpaint@cubic-confidence, which params.yaml no longer asks for, "
            "and their outputs stay in the workspace: `python -m maskgit.prune --remove` removes them") in err
