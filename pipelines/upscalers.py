"""The ``Upscaler`` protocol and the classical interpolation baselines.

Anything that turns an LR image into an SR image is an ``Upscaler``: a name, a version (for neural models: a hash
of the weights, so cached outputs are invalidated when the weights change), an integer scale, and
``upscale(rgb) -> rgb`` on HxWx3 uint8 arrays. The benchmark harness (pipelines.evaluate) and, later, the candidate
runners use nothing else. Models are looked up by name in the explicit ``UPSCALERS`` dict below.
"""

from __future__ import annotations

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


_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
UPSCALERS = tuple(_INTERPOLATIONS)


def get_upscaler(name: str, scale: int) -> Upscaler:
    """The upscaler registered as ``name``; a clear error listing what exists otherwise."""
    if name in _INTERPOLATIONS:
        return Interpolation(name, _INTERPOLATIONS[name], scale)
    raise ValueError(f"unknown model {name!r}; available here: {', '.join(UPSCALERS)}")
