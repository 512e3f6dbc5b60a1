"""Blur kernels of the Real-ESRGAN degradation (BasicSR ``degradations.py``) and the exact filtering that applies them.

:func:`build_kernel` turns a kernel spec drawn by ``degrade.sample_params`` into its normalised float64 taps;
:func:`filter_image` correlates an image with them as BasicSR ``filter2D`` does (reflect padding, ``F.conv2d``),
by whichever exact route is fastest for the kernel (see its docstring). Used by :mod:`pipelines.curate.degrade`.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from scipy import special

__all__ = ["BORDER", "FFT_TILE", "build_kernel", "fft_filter", "filter_image"]

BORDER = cv2.BORDER_REFLECT_101  # == torch F.pad(mode="reflect") used by BasicSR filter2D
FFT_TILE = 512  # overlap-save tile side of fft_filter
_DIRECT_MAX_TAPS = 130  # kernels with fewer taps (7x7 to 11x11) are summed directly, larger ones by FFT


# ----------------------------------------------------------------------------------------------------------------- #
# Kernels
# ----------------------------------------------------------------------------------------------------------------- #


def _mesh(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets from the centre, x along columns and y along rows (BasicSR ``mesh_grid``)."""
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    return np.meshgrid(ax, ax)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """``q = p^T Sigma^-1 p`` for every offset ``p``, with ``Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T``.

    ``Sigma^-1 = R diag(1/sx^2, 1/sy^2) R^T``, so ``q = u^2/sx^2 + v^2/sy^2`` where ``(u, v) = R^T p`` are the
    offsets in the kernel's principal axes (BasicSR ``sigma_matrix2`` + ``pdf2``, without the explicit inverse).
    """
    xx, yy = _mesh(size)
    c, s = math.cos(theta), math.sin(theta)
    u = c * xx + s * yy
    v = -s * xx + c * yy
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _sinc_kernel(size: int, omega_c: float) -> np.ndarray:
    """Circularly symmetric ideal low-pass filter (BasicSR ``circular_lowpass_kernel``).

    The inverse Fourier transform of the disc ``|w| <= omega_c`` is ``h(r) = omega_c J1(omega_c r) / (2 pi r)``;
    its limit at ``r = 0`` is ``omega_c^2 / (4 pi)`` since ``J1(z) ~ z/2``. Truncated to ``size`` and normalised.
    """
    xx, yy = _mesh(size)
    r = np.hypot(xx, yy)
    centre = r == 0
    safe_r = np.where(centre, 1.0, r)
    kernel = np.where(
        centre, omega_c**2 / (4 * math.pi), omega_c * special.j1(omega_c * safe_r) / (2 * math.pi * safe_r)
    )
    return kernel / kernel.sum()


def build_kernel(spec: dict) -> np.ndarray:
    """The normalised float64 ``size x size`` kernel of a spec drawn by ``degrade.sample_params``.

    Gaussian ``exp(-q/2)``, generalized Gaussian ``exp(-q^beta / 2)``, plateau ``1 / (1 + q^beta)`` with ``q`` from
    :func:`_quadratic_form`; iso variants have ``sigma_y = sigma_x`` and ``theta = 0``; ``"sinc"`` is
    :func:`_sinc_kernel`.
    """
    kind, size = spec["type"], int(spec["size"])
    if kind == "sinc":
        return _sinc_kernel(size, float(spec["omega_c"]))
    q = _quadratic_form(size, float(spec["sigma_x"]), float(spec["sigma_y"]), float(spec["theta"]))
    if kind in ("iso", "aniso"):
        kernel = np.exp(-0.5 * q)
    elif kind.startswith("generalized"):
        kernel = np.exp(-0.5 * q ** float(spec["beta"]))
    elif kind.startswith("plateau"):
        kernel = 1.0 / (1.0 + q ** float(spec["beta"]))
    else:
        raise ValueError(f"unknown kernel type {kind!r}")
    return kernel / kernel.sum()


# ----------------------------------------------------------------------------------------------------------------- #
# Filtering
# ----------------------------------------------------------------------------------------------------------------- #


def filter_image(img: np.ndarray, spec: dict, gain: float = 1.0) -> np.ndarray:
    """Correlate with ``gain`` times the kernel of ``spec`` into float32 (== BasicSR ``filter2D``: reflect padding,
    F.conv2d; every kernel here is point-symmetric, so correlation and convolution agree).

    Three exact routes, picked for speed (all equal up to float32 rounding, tested in test_degrade.py):

    - iso: the isotropic Gaussian is the outer product of its normalised 1-D profile, so two 1-D passes
      (``sepFilter2D``, reading a uint8 image directly; ``gain = 1/255`` fuses the 8-bit -> [0, 1] conversion);
    - other kernels under ``_DIRECT_MAX_TAPS`` taps (7x7 to 11x11): ``cv2.filter2D`` on float32, direct summation;
    - larger ones (13x13 to 21x21): :func:`fft_filter`. CPU per 3840x2144 RGB image on the 2-core dev VM: direct
      float32 0.10 s at 7x7 and 0.21 s at 11x11 (OpenCV's own DFT route, which ``filter2D`` takes from 13x13 on
      float32 and 9x9 on uint8, 2.0-2.4 s), :func:`fft_filter` ~0.2 s at any size (scipy real FFTs of the same
      tiles, degrade version 3, ~0.5 s).
    """
    kernel = build_kernel(spec)
    if spec["type"] == "iso":
        row = kernel.sum(axis=0)
        return cv2.sepFilter2D(
            img, cv2.CV_32F, (row * gain).astype(np.float32), row.astype(np.float32), borderType=BORDER
        )
    if kernel.size < _DIRECT_MAX_TAPS:
        img = img if img.dtype == np.float32 else img.astype(np.float32)
        return cv2.filter2D(img, cv2.CV_32F, (kernel * gain).astype(np.float32), borderType=BORDER)
    return fft_filter(img, kernel * gain)


@functools.lru_cache(maxsize=64)
def _tile_multiplier(kernel_bytes: bytes, size: int, tile_h: int, tile_w: int) -> np.ndarray:
    """The kernel's transfer function on a ``tile_h x tile_w`` tile, laid out like ``cv2.dft``'s packed (CCS)
    spectrum of a real tile, divided by the tile's pixel count (the inverse DFT's normalisation, folded in here).

    The kernel is placed wrapped around the origin (tap ``(i, j)`` at ``((i - p) mod T, (j - p) mod T)``); a
    point-symmetric kernel there has a real, even DFT ``H``. Multiplying a packed spectrum by real ``H`` scales the
    real and imaginary slot of each frequency by the same number, so the multiplier is ``H`` written into both
    slots; ``mulSpectrums(ones, dft(k))`` produces exactly that layout (``(1 + i)(H + 0i) = H + iH``, and ``1 * H`` in
    the purely real slots). ``H``'s imaginary part is zero up to rounding (~1e-9), which this discards.
    """
    kernel = np.frombuffer(kernel_bytes, np.float64).reshape(size, size)
    p = size // 2
    wrapped = np.zeros((tile_h, tile_w), np.float32)
    rows, cols = (np.arange(size) - p) % tile_h, (np.arange(size) - p) % tile_w
    wrapped[np.ix_(rows, cols)] = kernel
    spectrum = cv2.dft(wrapped)
    return cv2.mulSpectrums(np.ones_like(spectrum), spectrum, 0) * np.float32(1.0 / (tile_h * tile_w))


def fft_filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.filter2D(img, CV_32F, kernel, borderType=BORDER_REFLECT_101)`` for a point-symmetric odd ``kernel``,
    by OpenCV real DFTs (float32) of ``FFT_TILE``-px tiles (overlap-save), per channel.

    Derivation: pad the image by ``p = size // 2`` on each side with the same reflect-101 border filter2D uses. For a
    tile of ``T x T`` padded pixels, the kernel wrapped around the origin (:func:`_tile_multiplier`) times the tile's
    spectrum is the circular convolution ``y[n] = sum_m k[m] x[n - m]`` over ``|m| <= p``. For ``n`` in
    ``[p, T - p)^2`` every ``n - m`` lies inside the tile, so nothing wraps and ``y[n]`` is the linear convolution,
    i.e. filter2D's output at the tile origin plus ``n - p``; convolution equals correlation because
    ``k[-m] = k[m]``. Tiles therefore step by ``S = T - 2p`` and each contributes its ``S x S`` valid centre. The
    padded image is extended to whole tiles by more reflection: those pixels only reach outputs beyond the image,
    which are cut off. An image smaller than two tiles is done as one tile of DFT-friendly size.

    Cost per 3840x2144 RGB image on the 2-core dev VM (single thread): ~1.1 ms per 512-px tile (DFT 0.47, multiply
    0.05, inverse 0.54), 120 tiles, ~0.2 s with the copies; scipy.fft's ``rfft2``/``irfft2`` on the same tiles
    (degrade version 3) cost ~0.5 s. Differences from direct summation are float32 rounding (< 1e-3 of a grey
    level, tested against a float64 correlation).
    """
    squeeze = img.ndim == 2
    img = img[..., None] if squeeze else img
    h, w, channels = img.shape
    size = kernel.shape[0]
    p = size // 2
    if max(h, w) + 2 * p <= 2 * FFT_TILE:
        tile_h, tile_w = cv2.getOptimalDFTSize(h + 2 * p), cv2.getOptimalDFTSize(w + 2 * p)
    else:
        tile_h = tile_w = FFT_TILE
    step_h, step_w = tile_h - 2 * p, tile_w - 2 * p
    ny, nx = -(-h // step_h), -(-w // step_w)
    mult = _tile_multiplier(np.ascontiguousarray(kernel, np.float64).tobytes(), size, tile_h, tile_w)
    padded = cv2.copyMakeBorder(img, p, p + ny * step_h - h, p, p + nx * step_w - w, BORDER)
    padded = padded.reshape(*padded.shape[:2], channels)  # copyMakeBorder drops a single channel's axis
    out = np.empty((h, w, channels), np.float32)
    band = np.empty((channels, step_h, nx * step_w), np.float32)  # one row of tiles, per channel, reused
    tile = np.empty((tile_h, tile_w), np.float32)
    y = np.empty((tile_h, tile_w), np.float32)
    for ty in range(ny):
        for c in range(channels):
            for tx in range(nx):
                tile[:] = padded[ty * step_h : ty * step_h + tile_h, tx * step_w : tx * step_w + tile_w, c]
                freq = cv2.dft(tile)
                cv2.multiply(freq, mult, freq)
                cv2.idft(freq, y, flags=cv2.DFT_REAL_OUTPUT)
                band[c, :, tx * step_w : (tx + 1) * step_w] = y[p : p + step_h, p : p + step_w]
        rows = min(step_h, h - ty * step_h)
        dst = out[ty * step_h : ty * step_h + rows]
        if channels == 1:
            dst[..., 0] = band[0, :rows, :w]
        else:  # interleave straight into the output: no image-sized planes to allocate (and page in) and merge
            cv2.merge([band[c, :rows, :w] for c in range(channels)], dst=dst)
    return out[..., 0] if squeeze else out
