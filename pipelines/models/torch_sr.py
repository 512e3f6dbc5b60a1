"""Torch upscalers from local files: any spandrel-loadable SR model, any diffusers upscaling pipeline.

Nothing downloads. ``spandrel`` detects the architecture from the state dict (ESRGAN, Real-ESRGAN compact, SwinIR,
HAT, ...) and loads ``.safetensors`` with safetensors and ``.pth`` with ``torch.load(weights_only=True)``, so a
checkpoint cannot run code. The version of a model is a hash of its weight file(s), so cached candidate outputs are
invalidated exactly when the weights change. Inference runs on CUDA when available, else the CPU, under
``torch.inference_mode``; large inputs are tiled with overlap (the same scheme as the ncnn runner).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:16]


_PICKLE_FIX = (
    "sr4k loads only safetensors or plain tensors (torch.load weights_only=True); convert the file to "
    ".safetensors on a machine where you trust it, or get a .safetensors file from its author"
)


def refusal(path: str | Path, e: BaseException, what: str) -> ValueError:
    """A one-line error for a model file the loader refused or could not read: torch's refusal of pickled objects
    and diffusers' refusal of a folder's own code are several hundred lines long; the user needs the cause and fix."""
    chain, x = [], e
    while x is not None and len(chain) < 16:  # loaders wrap the refusal (diffusers: OSError "Unable to load weights")
        chain.append(x)
        x = x.__cause__ or x.__context__
    text = " ".join(f"{type(x).__name__}: {x}" for x in chain)
    if any(type(x).__name__ == "UnpicklingError" for x in chain) or "weights_only" in text:
        return ValueError(
            f"refused {path}: it holds pickled Python objects, which can run code when loaded; {_PICKLE_FIX}"
        )
    if "trust_remote_code" in text or "custom_pipeline" in text or "remote code" in text.lower():
        return ValueError(
            f"refused {path}: the folder asks to run its own Python code, which sr4k never runs; use a "
            "pipeline made of stock diffusers classes (model_index.json naming diffusers/transformers "
            "classes only)"
        )
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")[:300]
    return ValueError(f"cannot load {path} as {what}: {type(e).__name__}: {first}")


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class SpandrelUpscaler:
    name: str
    version: str
    scale: int
    model: Any  # spandrel ImageModelDescriptor
    tile: int = 512
    overlap: int = 16
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: str | Path, tile: int = 512) -> SpandrelUpscaler:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"spandrel model weights not found: {path} (no download: pass a local file)")
        from spandrel import ModelLoader

        try:
            desc = ModelLoader(device=_device()).load_from_file(str(path))
        except Exception as e:  # spandrel raises many types for unknown/corrupt files; name the file and the cause
            raise refusal(path, e, "an SR model with spandrel") from None
        desc.eval()
        return cls(f"spandrel-{path.stem}", f"spandrel:{_hash_files([path])}", int(desc.scale), desc, tile)

    def upscale(self, image: np.ndarray) -> np.ndarray:
        import torch

        with self._lock, torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255)
            x = x.to(next(self.model.model.parameters()).device)
            y = _tiled(lambda t: self.model(t), x, self.scale, self.tile, self.overlap)
            return y[0].clamp_(0, 1).mul_(255).round_().byte().permute(1, 2, 0).cpu().numpy()


def _tiled(fn, x, scale: int, tile: int, overlap: int):
    """Run ``fn`` on overlapping tiles of ``x`` (1,C,H,W) and paste each tile's centre (Real-ESRGAN tile_process)."""
    import torch

    _, c, h, w = x.shape
    if h <= tile and w <= tile:
        return fn(x)
    out = torch.zeros((1, c, h * scale, w * scale), dtype=x.dtype, device=x.device)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0, py1, px1 = max(y0 - overlap, 0), max(x0 - overlap, 0), min(y1 + overlap, h), min(x1 + overlap, w)
            t = fn(x[:, :, py0:py1, px0:px1])
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = t[
                :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
            ]
    return out


@dataclass
class DiffusersUpscaler:
    """A diffusers upscaling pipeline from a local folder (``DiffusionPipeline.from_pretrained(folder)``).

    ``LDMSuperResolutionPipeline`` takes the LR image alone; ``StableDiffusionUpscalePipeline`` also needs a prompt
    (empty here: SR of arbitrary photos has no caption). The scale is read from the pipeline (the VQ/VAE factor).
    """

    name: str
    version: str
    scale: int
    pipe: Any
    steps: int = 20
    seed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, folder: str | Path, steps: int = 20) -> DiffusersUpscaler:
        folder = Path(folder).expanduser()
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(f"no diffusers pipeline at {folder} (expected {folder / 'model_index.json'})")
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except Exception as e:  # pickled .bin weights, code in the folder, broken configs: one line naming the fix
            raise refusal(folder, e, "a diffusers pipeline") from None
        pipe = pipe.to(_device())
        pipe.set_progress_bar_config(disable=True)
        weights = [p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".json")]
        vae = getattr(pipe, "vqvae", None) or getattr(pipe, "vae", None)
        scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 4
        if type(pipe).__name__ == "StableDiffusionUpscalePipeline":
            scale = 4  # its VAE upsamples the 4x-smaller latent back, the pipeline itself is x4
        return cls(f"diffusers-{folder.name}", f"diffusers:{_hash_files(weights)}", scale, pipe, steps)

    def upscale(self, image: np.ndarray) -> np.ndarray:
        import torch
        from PIL import Image

        h, w = image.shape[:2]
        kw: dict[str, Any] = {"num_inference_steps": self.steps}
        if type(self.pipe).__name__ == "LDMSuperResolutionPipeline":
            # Its PIL path crops to a multiple of 32; a tensor in [-1, 1] keeps the exact size. Pad (reflect) to a
            # multiple of the UNet's downsampling and crop the output back, so any LR size works.
            m = 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)
            padded = np.pad(image, ((0, -h % m), (0, -w % m), (0, 0)), mode="reflect")
            kw["image"] = torch.from_numpy(padded).permute(2, 0, 1)[None].float().div(127.5).sub(1)
        else:
            kw["image"] = Image.fromarray(image)
            if type(self.pipe).__name__ == "StableDiffusionUpscalePipeline":
                kw["prompt"] = ""
        with self._lock, torch.inference_mode():
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            out = self.pipe(**kw, generator=gen, output_type="np").images[0]
        out = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)[: h * self.scale, : w * self.scale]
        if out.shape[:2] != (h * self.scale, w * self.scale):
            raise ValueError(f"{self.name} returned {out.shape} for LR {image.shape}: not x{self.scale}")
        return np.ascontiguousarray(out)
