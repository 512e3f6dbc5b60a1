"""Real-ESRGAN second-order degradation (Wang et al. 2021) in numpy + OpenCV: the LR input for an HR crop.

The pipeline follows ``RealESRGANModel.feed_data`` (xinntao/Real-ESRGAN ``realesrgan/models/realesrgan_model.py``)
with the kernels of ``RealESRGANDataset.__getitem__`` (XPixelGroup/BasicSR ``basicsr/data/realesrgan_dataset.py``)
and the kernel/noise formulas of BasicSR ``basicsr/data/degradations.py``; the defaults are those of Real-ESRGAN
``options/train_realesrgan_x4plus.yml``::

    stage 1: blur(k1) -> resize(up/down/keep) -> noise(Gaussian | Poisson) -> JPEG
    stage 2: blur(k2, p=second_blur_prob) -> resize to (H/scale*s2, W/scale*s2) -> noise
    final:   [resize to (H//scale, W//scale) + sinc] -> JPEG   or   JPEG -> [resize + sinc]   (50/50)

Images are RGB float32 in [0, 1] between steps. As in Real-ESRGAN, values are clamped after each noise step and
before each JPEG, and the result is clamped and rounded to 8 bit at the end; nothing else is rounded.

Deliberate differences from the reference (all documented where they happen):

- JPEG uses a real codec (``cv2.imencode``/``imdecode``, libjpeg, 4:2:0) instead of ``DiffJPEG``, so the quality is an
  integer and the JPEG input is rounded to 8 bit (which a real encoder needs anyway).
- Filtering is correlation with ``BORDER_REFLECT_101`` borders, which is what BasicSR ``filter2D`` does with
  ``F.pad(mode='reflect')`` (computed separably, directly or by FFT, whichever is fastest for the kernel: see
  ``degrade_kernels.filter_image``); kernels are *not* zero-padded to 21x21 since zero taps change nothing.
- Bilinear and bicubic resizing is ``cv2.resize`` (``INTER_LINEAR``/``INTER_CUBIC``) instead of
  ``F.interpolate(align_corners=False)``: both use half-pixel centres, no antialiasing and a = -0.75 bicubic (they
  differ by float rounding, and at borders by OpenCV's replicate vs torch's clamped-index sampling, which are the
  same thing). ``area`` is :func:`area_resize`, written here because OpenCV's ``INTER_AREA`` is a different
  filter: it weights fractional pixel overlaps exactly, whereas ``F.interpolate(mode="area")`` is
  ``adaptive_avg_pool2d``, whose output cell i averages whole input pixels floor(i*n/m) .. ceil((i+1)*n/m) - 1
  with equal weights (cells overlap by a pixel when m does not divide n, and upscaling repeats pixels). On noise
  the difference is not small: INTER_AREA kept ~17 % more noise std than torch at Real-ESRGAN's down-scales.
  Matches ``torch.nn.functional.adaptive_avg_pool2d`` to float32 rounding (tested against torch).
- The gray Poisson image uses OpenCV's BT.601 weights (0.299, 0.587, 0.114) instead of torchvision's 0.2989.
- USM sharpening of the HR before degrading (Real-ESRGAN degrades ``gt_usm = USMSharp()(gt)``, radius 50,
  weight 0.5, threshold 10) is the setting ``usm_sharpen``, off by default: Real-ESRGAN pairs the LR of the
  sharpened GT with sharpened L1/perceptual targets (``l1_gt_usm``/``percep_gt_usm``: True), while these shards
  ship the unsharpened HR as the target; an LR made from a sharper picture than its target would teach the model
  to soften. A trainer that wants Real-ESRGAN's recipe sets ``usm_sharpen`` and applies :func:`usm_sharp` to the
  HR at load time. The 51-px kernel is also tuned for Real-ESRGAN's 256-400 px crops, not 4K crops.

Every random choice is drawn by :func:`sample_params` from ``np.random.Generator(np.random.PCG64(seed))``; the same
generator then draws the noise realisations, so ``(hr, scale, seed, settings)`` fixes the LR bytes.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.curate.degrade_kernels import BORDER as _BORDER
from pipelines.curate.degrade_kernels import filter_image as _filter
from pipelines.curate.degrade_noise import add_gaussian_noise, add_poisson_noise

__all__ = ["DEGRADE_VERSION", "DegradeSettings", "area_resize", "degrade", "sample_params", "seed_for", "usm_sharp"]

# 2: torch-exact area resize; 3: float32/FFT filtering (same maths); 4: OpenCV DFT tiles (same maths, other float32
# rounding) and Poisson inversion of 32-bit uniforms (same distribution, other realisations)
DEGRADE_VERSION = "realesrgan-2nd-order/4"

_KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
_UPDOWN = ("up", "down", "keep")
# F.interpolate modes used by feed_data, chosen uniformly, and their OpenCV equivalents.
_RESIZE_MODES = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
# Hard-coded in realesrgan_dataset.py: rotation of anisotropic kernels, and sinc cutoffs (smaller kernels cannot
# represent a low cutoff, hence pi/3 below size 13); the final sinc always uses [pi/3, pi].
_ROTATION_RANGE = (-math.pi, math.pi)
_SINC_CUTOFF_SMALL = (math.pi / 3, math.pi)
_SINC_CUTOFF_LARGE = (math.pi / 5, math.pi)
_SINC_SMALL_BELOW = 13
_FINAL_RESIZE_FIRST_PROB = 0.5  # feed_data: `if np.random.uniform() < 0.5` -> [resize + sinc] then JPEG


@dataclass(frozen=True, slots=True)
class DegradeSettings:
    """Degradation settings; defaults are Real-ESRGAN x4plus training (train_realesrgan_x4plus.yml).

    Ranges are ``(low, high)`` tuples and the dataclass is frozen, so settings are hashable and can key caches.
    Field names follow the yml keys; ``kernel_range`` is hard-coded in BasicSR ``realesrgan_dataset.py``.
    """

    # ---- first degradation: blur kernel (yml datasets.train) ----
    kernel_list: tuple[str, ...] = _KERNELS  # kernel families to draw from
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # probability of each family
    blur_sigma: tuple[float, float] = (0.2, 3.0)  # sigma_x / sigma_y of Gaussian-family kernels (pixels)
    betag_range: tuple[float, float] = (0.5, 4.0)  # shape beta of generalized Gaussian kernels
    betap_range: tuple[float, float] = (1.0, 2.0)  # shape beta of plateau kernels
    sinc_prob: float = 0.1  # probability that the stage-1 kernel is a 2D sinc instead
    # ---- second degradation: blur kernel ----
    kernel_list2: tuple[str, ...] = _KERNELS  # kernel families, stage 2
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # probability of each family, stage 2
    blur_sigma2: tuple[float, float] = (0.2, 1.5)  # Gaussian-family sigma range, stage 2
    betag_range2: tuple[float, float] = (0.5, 4.0)  # generalized Gaussian beta, stage 2
    betap_range2: tuple[float, float] = (1.0, 2.0)  # plateau beta, stage 2
    sinc_prob2: float = 0.1  # probability of a sinc kernel, stage 2
    # ---- final sinc and kernel sizes ----
    final_sinc_prob: float = 0.8  # probability of the final sinc filter (else identity)
    kernel_range: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)  # odd kernel sizes, drawn uniformly
    # ---- first degradation: resize, noise, JPEG (yml top level) ----
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)  # down scale from [lo, 1], up scale from [1, hi]
    gaussian_noise_prob: float = 0.5  # Gaussian noise with this probability, else Poisson
    noise_range: tuple[float, float] = (1.0, 30.0)  # Gaussian sigma, in 8-bit levels
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)  # multiplier of the Poisson noise
    gray_noise_prob: float = 0.4  # probability that the noise is the same in all channels
    jpeg_range: tuple[int, int] = (30, 95)  # JPEG quality, inclusive
    # ---- second degradation: blur probability, resize, noise, JPEG ----
    second_blur_prob: float = 0.8  # probability of applying the stage-2 blur
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)  # up, down, keep
    resize_range2: tuple[float, float] = (0.3, 1.2)  # stage-2 scale range relative to the LR size
    gaussian_noise_prob2: float = 0.5  # Gaussian (else Poisson) noise probability, stage 2
    noise_range2: tuple[float, float] = (1.0, 25.0)  # Gaussian sigma in 8-bit levels, stage 2
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)  # Poisson multiplier, stage 2
    gray_noise_prob2: float = 0.4  # gray-noise probability, stage 2
    jpeg_range2: tuple[int, int] = (30, 95)  # final JPEG quality, inclusive
    # ---- USM sharpening of the HR before degrading (RealESRGANModel: gt_usm = USMSharp()(gt)); see module doc ----
    usm_sharpen: bool = False  # degrade the USM-sharpened HR (Real-ESRGAN) instead of the HR as shipped
    usm_radius: int = 50  # Gaussian kernel size (made odd: 51), sigma from OpenCV's rule (8.0 for 51)
    usm_weight: float = 0.5  # sharp = img + weight * (img - blur)
    usm_threshold: float = 10.0  # 8-bit residual above which the sharpened value is used (mask, then blurred)

    def __post_init__(self) -> None:
        for names, probs in ((self.kernel_list, self.kernel_prob), (self.kernel_list2, self.kernel_prob2)):
            if len(names) != len(probs) or not set(names) <= set(_KERNELS) or min(probs) < 0 or sum(probs) <= 0:
                raise ValueError(f"bad kernel list/probabilities: {names} {probs}")
        if not self.kernel_range or any(k % 2 == 0 or k < 3 for k in self.kernel_range):
            raise ValueError(f"kernel sizes must be odd and >= 3: {self.kernel_range}")
        for probs in (self.resize_prob, self.resize_prob2):
            if len(probs) != 3 or min(probs) < 0 or sum(probs) <= 0:
                raise ValueError(f"resize_prob must be 3 non-negative weights (up, down, keep): {probs}")
        for lo, hi in (self.resize_range, self.resize_range2):
            if not 0 < lo <= 1 <= hi:
                raise ValueError(f"resize range must satisfy 0 < lo <= 1 <= hi: {(lo, hi)}")
        for lo, hi in (self.blur_sigma, self.blur_sigma2):
            if not 0 < lo <= hi:
                raise ValueError(f"blur sigma range must satisfy 0 < lo <= hi: {(lo, hi)}")
        for lo, hi in (self.betag_range, self.betap_range, self.betag_range2, self.betap_range2):
            if not 0 < lo <= 1 <= hi:  # BasicSR draws half the betas from [lo, 1] and half from [1, hi]
                raise ValueError(f"beta range must satisfy 0 < lo <= 1 <= hi: {(lo, hi)}")
        for lo, hi in (self.jpeg_range, self.jpeg_range2):
            if not 1 <= lo <= hi <= 100:
                raise ValueError(f"JPEG quality range must lie in [1, 100]: {(lo, hi)}")


def seed_for(key: str, base_seed: int = 0) -> int:
    """Deterministic 63-bit seed from a sample key (sha256 of f"{base_seed}:{key}").

    63 bits so the seed fits a signed int64 column; sha256 rather than ``hash()`` because the latter is salted per
    process.
    """
    digest = hashlib.sha256(f"{base_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# ----------------------------------------------------------------------------------------------------------------- #
# Parameter sampling
# ----------------------------------------------------------------------------------------------------------------- #


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _choice(rng: np.random.Generator, options: tuple, weights: tuple[float, ...] | None = None):
    # random.choices in the reference normalises the weights, so do the same.
    p = None if weights is None else np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    return options[int(rng.choice(len(options), p=p))]


def _sample_beta(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    # BasicSR random_bivariate_{generalized_Gaussian,plateau}: half the draws from [lo, 1], half from [1, hi]
    # (with betap_range = (1, 2) the first half is exactly 1).
    return _uniform(rng, (bounds[0], 1.0)) if rng.uniform() < 0.5 else _uniform(rng, (1.0, bounds[1]))


def _sample_kernel(rng: np.random.Generator, s: DegradeSettings, stage: int) -> dict:
    """One blur kernel spec as in ``RealESRGANDataset.__getitem__`` + BasicSR ``random_mixed_kernels``."""
    names, probs, sigma, betag, betap, sinc_prob = (
        (s.kernel_list, s.kernel_prob, s.blur_sigma, s.betag_range, s.betap_range, s.sinc_prob)
        if stage == 1
        else (s.kernel_list2, s.kernel_prob2, s.blur_sigma2, s.betag_range2, s.betap_range2, s.sinc_prob2)
    )
    size = int(_choice(rng, tuple(s.kernel_range)))
    if rng.uniform() < sinc_prob:
        cutoff = _SINC_CUTOFF_SMALL if size < _SINC_SMALL_BELOW else _SINC_CUTOFF_LARGE
        return {"type": "sinc", "size": size, "omega_c": _uniform(rng, cutoff)}
    kind = str(_choice(rng, tuple(names), tuple(probs)))
    sigma_x = _uniform(rng, sigma)
    if kind.endswith("aniso"):
        sigma_y, theta = _uniform(rng, sigma), _uniform(rng, _ROTATION_RANGE)
    else:
        sigma_y, theta = sigma_x, 0.0
    spec = {"type": kind, "size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "theta": theta}
    if kind.startswith("generalized"):
        spec["beta"] = _sample_beta(rng, betag)
    elif kind.startswith("plateau"):
        spec["beta"] = _sample_beta(rng, betap)
    return spec


def _sample_resize(rng: np.random.Generator, probs: tuple[float, ...], bounds: tuple[float, float]) -> dict:
    updown = str(_choice(rng, _UPDOWN, probs))
    if updown == "up":
        scale = _uniform(rng, (1.0, bounds[1]))
    elif updown == "down":
        scale = _uniform(rng, (bounds[0], 1.0))
    else:
        scale = 1.0
    return {"updown": updown, "scale": scale, "mode": str(_choice(rng, tuple(_RESIZE_MODES)))}


def _sample_noise(
    rng: np.random.Generator, gauss_prob: float, sigma: tuple[float, float], pscale: tuple[float, float], gray: float
) -> dict:
    # The pt versions draw the level first, then the gray flag (random_generate_*_noise_pt).
    if rng.uniform() < gauss_prob:
        return {"kind": "gaussian", "sigma": _uniform(rng, sigma), "gray": bool(rng.uniform() < gray)}
    return {"kind": "poisson", "scale": _uniform(rng, pscale), "gray": bool(rng.uniform() < gray)}


def _sample_quality(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    # DiffJPEG takes a float quality; libjpeg needs an integer, so draw uniformly over the inclusive integer range.
    return int(rng.integers(int(bounds[0]), int(bounds[1]), endpoint=True))


def sample_params(rng: np.random.Generator, settings: DegradeSettings) -> dict:
    """Draw every random choice of the pipeline into a JSON-serialisable dict of plain numbers/strings/bools.

    Layout (kernel specs are ``{"type", "size", ...}`` with ``sigma_x, sigma_y, theta[, beta]`` for the Gaussian
    families or ``omega_c`` for ``"sinc"``)::

        blur1:   kernel spec
        resize1: {"updown": "up"|"down"|"keep", "scale", "mode": "area"|"bilinear"|"bicubic"}
        noise1:  {"kind": "gaussian", "sigma", "gray"} | {"kind": "poisson", "scale", "gray"}
        jpeg1:   {"quality"}
        blur2:   kernel spec, or None when the second blur is skipped (p = 1 - second_blur_prob)
        resize2, noise2: as stage 1
        final:   {"order": "resize_sinc_jpeg"|"jpeg_resize_sinc", "mode", "sinc": spec or None, "quality"}

    The noise *realisation* is not stored; :func:`degrade` draws it from the same generator afterwards.
    """
    s = settings
    blur1 = _sample_kernel(rng, s, 1)
    resize1 = _sample_resize(rng, s.resize_prob, s.resize_range)
    noise1 = _sample_noise(rng, s.gaussian_noise_prob, s.noise_range, s.poisson_scale_range, s.gray_noise_prob)
    jpeg1 = {"quality": _sample_quality(rng, s.jpeg_range)}
    blur2 = _sample_kernel(rng, s, 2) if rng.uniform() < s.second_blur_prob else None
    resize2 = _sample_resize(rng, s.resize_prob2, s.resize_range2)
    noise2 = _sample_noise(rng, s.gaussian_noise_prob2, s.noise_range2, s.poisson_scale_range2, s.gray_noise_prob2)
    order = "resize_sinc_jpeg" if rng.uniform() < _FINAL_RESIZE_FIRST_PROB else "jpeg_resize_sinc"
    sinc = None
    if rng.uniform() < s.final_sinc_prob:
        size = int(_choice(rng, tuple(s.kernel_range)))
        sinc = {"type": "sinc", "size": size, "omega_c": _uniform(rng, _SINC_CUTOFF_SMALL)}
    final = {
        "order": order,
        "mode": str(_choice(rng, tuple(_RESIZE_MODES))),
        "sinc": sinc,
        "quality": _sample_quality(rng, s.jpeg_range2),
    }
    return {
        "blur1": blur1,
        "resize1": resize1,
        "noise1": noise1,
        "jpeg1": jpeg1,
        "blur2": blur2,
        "resize2": resize2,
        "noise2": noise2,
        "final": final,
    }


# ----------------------------------------------------------------------------------------------------------------- #
# Resize, JPEG, 8-bit conversion
# ----------------------------------------------------------------------------------------------------------------- #


def _resize(img: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    height, width = max(1, height), max(1, width)
    if img.shape[:2] == (height, width):
        return img  # every mode is the identity at the same size (F.interpolate with scale 1)
    if mode == "area":
        return area_resize(img, height, width)
    return cv2.resize(img, (width, height), interpolation=_RESIZE_MODES[mode])


def area_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """``F.interpolate(mode="area")`` = ``adaptive_avg_pool2d`` of an HxWxC float32 image to (height, width).

    Output cell i of an axis of n inputs and m outputs is the plain mean of inputs start_i = floor(i*n/m) to
    end_i = ceil((i+1)*n/m) (exclusive), as in ATen's ``adaptive_avg_pool2d`` (start_index/end_index). The pooling
    is separable (a mean over a rectangle is a mean of row means), so it runs per axis: over rows, then over the
    columns as rows of the transposed image (``cv2.transpose``; gathering strided columns in place cost 2-3x more).
    Per axis, the cells are grouped by width (two or three distinct widths); each group sums its ``width`` shifted
    whole rows in float64 and divides once: O(pixels) work, exact to float32 rounding. The work goes by bands of
    output rows (~2 MB), so every temporary stays small: image-sized ones cost as much again in page faults.
    Written here because no library at hand computes this pooling on numpy arrays (OpenCV's INTER_AREA weights
    partial pixels). (Until degrade version 2 this was a float64 prefix sum: equal up to one float32 ulp, 5-20x
    slower.) CPU for 3840x2144x3 on the 2-core dev VM: 0.03-0.14 s down by 0.2-0.77, 0.4 s up by 1.3 (version 3,
    columns gathered in place: 0.08-0.36 s and 0.78 s, same values).
    """
    img = np.ascontiguousarray(img)
    out = np.empty((height, width, *img.shape[2:]), np.float32)
    band = max(1, _AREA_BAND // max(1, img[0].size))
    for top in range(0, height, band):
        rows = _area_rows(img, height, top, min(height, top + band))
        out[top : top + rows.shape[0]] = cv2.transpose(_area_rows(cv2.transpose(rows), width)).reshape(
            rows.shape[0], width, *img.shape[2:]
        )
    return out


_AREA_BAND = 1 << 19  # input-row elements per band of output rows


def _area_rows(img: np.ndarray, n_out: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Cells ``lo:hi`` of adaptive_avg_pool along axis 0 (to ``n_out`` cells) of a C-contiguous array."""
    n_in, hi = img.shape[0], n_out if hi is None else hi
    if n_in == n_out:
        return img[lo:hi]
    if n_in % n_out == 0:  # disjoint equal bins: a reshape-mean
        k = n_in // n_out
        grouped = img[lo * k : hi * k].reshape(hi - lo, k, *img.shape[1:])
        return grouped.mean(axis=1, dtype=np.float64).astype(np.float32)
    i = np.arange(lo, hi, dtype=np.int64)
    start = (i * n_in) // n_out
    cell = -((-(i + 1) * n_in) // n_out) - start  # end - start
    out = np.empty((hi - lo, *img.shape[1:]), np.float32)
    for width in np.unique(cell):
        sel = np.flatnonzero(cell == width)
        if width == 1:  # upscaling: a cell of one pixel is that pixel
            out[sel] = img[start[sel]]
            continue
        acc = img[start[sel]].astype(np.float64)
        for j in range(1, int(width)):
            acc += img[start[sel] + j]
        acc /= float(width)
        out[sel] = acc
    return out


@functools.lru_cache(maxsize=4)
def _usm_kernel(radius: int) -> np.ndarray:
    radius += 1 - radius % 2  # BasicSR: an even radius becomes the next odd size
    return cv2.getGaussianKernel(radius, 0).astype(np.float32)  # sigma 0: OpenCV's rule from the size


def usm_sharp(img: np.ndarray, radius: int = 50, weight: float = 0.5, threshold: float = 10.0) -> np.ndarray:
    """BasicSR ``USMSharp`` (basicsr/utils/img_process_util.py) on an HxWx3 float32 image in [0, 1].

    blur = G * img (G: the separable Gaussian ``getGaussianKernel(radius, 0)``, outer product; reflect borders as
    BasicSR's ``filter2D``); residual = img - blur; mask = [|residual| * 255 > threshold]; soft = G * mask;
    sharp = clip(img + weight * residual, 0, 1); out = soft * sharp + (1 - soft) * img.
    """
    k = _usm_kernel(radius)
    blur = cv2.sepFilter2D(img, cv2.CV_32F, k, k, borderType=_BORDER)
    residual = img - blur
    mask = (np.abs(residual) * 255.0 > threshold).astype(np.float32)
    soft = cv2.sepFilter2D(mask, cv2.CV_32F, k, k, borderType=_BORDER)
    sharp = np.clip(img + np.float32(weight) * residual, 0.0, 1.0)
    return soft * sharp + (1.0 - soft) * img


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] and round to 8 bit (``torch.clamp((out * 255).round(), 0, 255)``); modifies ``img``."""
    np.maximum(img, 0.0, out=img)  # convertScaleAbs saturates above 255 but would mirror negatives
    return cv2.convertScaleAbs(img, alpha=255.0)  # saturate_cast rounds half to even, like torch.round


def _jpeg(img_u8: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through libjpeg (4:2:0). OpenCV assumes BGR, so swap channels for the right YCbCr transform.

    The swaps run in place (``img_u8`` is overwritten): every image-sized array spared is ~1/4 of a fresh one's page
    faults, which cost as much as the arithmetic here (kernel time was ~30 % of the degradation's CPU).
    """
    bgr = cv2.cvtColor(img_u8, cv2.COLOR_RGB2BGR, dst=img_u8)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB, dst=decoded)


def _jpeg_float(img: np.ndarray, quality: int) -> np.ndarray:
    """Clamp, round, JPEG round-trip, back to [0, 1]; the result overwrites ``img`` (same shape) to spare an
    allocation of an image-sized array."""
    return np.multiply(_jpeg(_to_uint8(img), quality), np.float32(1.0 / 255.0), out=img)


def _add_noise(img: np.ndarray, spec: dict, rng: np.random.Generator) -> None:
    if spec["kind"] == "gaussian":
        add_gaussian_noise(img, float(spec["sigma"]), bool(spec["gray"]), rng)
    else:
        add_poisson_noise(img, float(spec["scale"]), bool(spec["gray"]), rng)


# ----------------------------------------------------------------------------------------------------------------- #
# The pipeline
# ----------------------------------------------------------------------------------------------------------------- #


def _resize_and_sinc(img: np.ndarray, height: int, width: int, final: dict) -> np.ndarray:
    """feed_data's grouped "[resize back + sinc filter]" (the identity pulse kernel when no sinc was drawn)."""
    img = _resize(img, height, width, final["mode"])
    return img if final["sinc"] is None else _filter(img, final["sinc"])


def _check_input(hr: np.ndarray, scale: int) -> None:
    if not isinstance(hr, np.ndarray) or hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"hr must be an HxWx3 uint8 array, got {getattr(hr, 'dtype', type(hr))} {np.shape(hr)}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"HR size {hr.shape[:2]} is not divisible by scale {scale}")


def degrade(hr: np.ndarray, scale: int, seed: int, settings: DegradeSettings | None = None) -> tuple[np.ndarray, dict]:
    """Real-ESRGAN second-order degradation of an RGB uint8 HR crop (``feed_data`` of realesrgan_model.py).

    ``hr`` is HxWx3 uint8 RGB with H and W divisible by ``scale``. Returns ``(lr, params)``: ``lr`` is uint8 of shape
    ``(H // scale, W // scale, 3)`` and ``params`` is :func:`sample_params` plus ``seed``, ``scale`` and ``version``.
    All randomness comes from ``np.random.Generator(np.random.PCG64(seed))``, so equal inputs give equal bytes.
    """
    _check_input(hr, scale)
    hr = np.ascontiguousarray(hr)  # OpenCV rejects negative strides (e.g. a flipped view)
    scale = int(scale)
    settings = DegradeSettings() if settings is None else settings
    rng = np.random.Generator(np.random.PCG64(seed))
    params = sample_params(rng, settings)
    height, width = hr.shape[:2]
    lr_h, lr_w = height // scale, width // scale

    # ---- first degradation: blur -> resize (floor(size * s), as F.interpolate(scale_factor=s)) -> noise -> JPEG
    if settings.usm_sharpen:
        gt = usm_sharp(hr.astype(np.float32) / 255.0, settings.usm_radius, settings.usm_weight, settings.usm_threshold)
        img = _filter(gt, params["blur1"])
    else:
        img = _filter(hr, params["blur1"], gain=1.0 / 255.0)
    r1 = params["resize1"]
    img = _resize(img, int(height * r1["scale"]), int(width * r1["scale"]), r1["mode"])
    _add_noise(img, params["noise1"], rng)
    img = _jpeg_float(img, params["jpeg1"]["quality"])  # clamps before JPEG, as feed_data

    # ---- second degradation: blur (maybe) -> resize to (H / scale * s2, W / scale * s2) -> noise
    if params["blur2"] is not None:
        img = _filter(img, params["blur2"])
    r2 = params["resize2"]
    img = _resize(img, int(height / scale * r2["scale"]), int(width / scale * r2["scale"]), r2["mode"])
    _add_noise(img, params["noise2"], rng)

    # ---- final: [resize back + sinc] and JPEG in random order; the last step leaves 8-bit values
    final = params["final"]
    if final["order"] == "resize_sinc_jpeg":
        lr = _jpeg(_to_uint8(_resize_and_sinc(img, lr_h, lr_w, final)), final["quality"])
    else:
        lr = _to_uint8(_resize_and_sinc(_jpeg_float(img, final["quality"]), lr_h, lr_w, final))

    params.update({"seed": int(seed), "scale": scale, "version": DEGRADE_VERSION})
    return lr, params
