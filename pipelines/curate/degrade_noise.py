"""Noise of the Real-ESRGAN degradation (BasicSR ``degradations.py``, ``*_noise_pt``): Gaussian and Poisson.

Both add their noise to an HxWxC float32 image in [0, 1] in place, block by block (``_CHUNK`` elements), so no
image-sized temporary exists, and clamp to [0, 1] as ``feed_data`` does after each noise step. All randomness comes
from the ``np.random.Generator`` passed in. Used by :mod:`pipelines.curate.degrade`.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from scipy import stats

__all__ = ["add_gaussian_noise", "add_poisson_noise", "poisson_counts"]

_CHUNK = 1 << 17  # elements per noise block: temporaries stay in cache instead of being image-sized arrays
# guide table of 2**12 bins per level, indexed by the top bits of a 32-bit uniform: 2 MB of int16 for 256 levels;
# 10 bits left ~6 % of draws to the bisection at vals = 256 and cost ~25 % more CPU on a 4K photo, 13 bits no less
_GUIDE_BITS = 12
_U32 = 2.0**32


def _rows_per_block(row_elems: int) -> int:
    return max(1, _CHUNK // max(1, row_elems))


def add_gaussian_noise(img: np.ndarray, sigma: float, gray: bool, rng: np.random.Generator) -> None:
    """``img += N(0, (sigma/255)^2)``, one field shared by all channels if ``gray``; clamp to [0, 1]. In place.

    Generated block by block in float32, so no image-sized float64 temporary exists (same maths as
    ``generate_gaussian_noise_pt``; the draw order differs, which only changes the realisation).
    """
    height, width, channels = img.shape
    noise_channels = 1 if gray else channels
    step = _rows_per_block(width * noise_channels)
    for top in range(0, height, step):
        block = img[top : top + step]
        noise = rng.standard_normal((block.shape[0], width, noise_channels), dtype=np.float32)
        noise *= np.float32(sigma / 255.0)
        block += noise  # broadcasts the gray field over the channels
        np.clip(block, 0.0, 1.0, out=block)


@functools.lru_cache(maxsize=16)
def _poisson_tables(vals: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Inversion tables of ``Poisson(level * vals / 255)`` for the 256 8-bit levels (vals is a power of two).

    With ``F_l`` the CDF of level ``l``, cut at ``K = lam + 12 sqrt(lam) + 12`` (tail probability below 1e-25) by
    setting ``F_l(K) = 1``, and ``B = 2**_GUIDE_BITS``:

    - ``scaled_cdf[l * (K + 1) + k] = F_l(k) * 2**32`` (exact: a power-of-two scaling), so that for a 32-bit
      uniform integer ``u``, ``F_l(k) < (u + 0.5) / 2**32`` iff ``scaled_cdf < u + 0.5``, also exact in float64;
    - ``guide[l * B + b] = G_l(b) = min{k : F_l(k) >= b / B}`` (Chen & Asau's indexed search) when
      ``G_l(b + 1) == G_l(b)`` (the bin holds a single k), else ``-(G_l(b) + 1)``: a negative entry marks a bin that
      needs a search; ``upper[l * B + b] = G_l(b + 1)`` bounds that search. int16 halves their footprint.
    """
    lam = np.arange(256, dtype=np.float64) * (vals / 255.0)
    top = math.ceil(vals + 12.0 * math.sqrt(vals) + 12.0)
    cdf = stats.poisson.cdf(np.arange(top + 1, dtype=np.float64)[None, :], lam[:, None])
    cdf[:, -1] = 1.0
    bins = 1 << _GUIDE_BITS
    edges = np.arange(bins + 1, dtype=np.float64) / bins
    g = np.stack([np.searchsorted(row, edges, side="left") for row in cdf]).astype(np.int16)  # (256, B + 1)
    lower, upper = g[:, :-1], g[:, 1:]
    guide = np.where(lower == upper, lower, -lower - 1).astype(np.int16)
    return (cdf * _U32).ravel(), guide.ravel(), np.ascontiguousarray(upper).ravel(), top + 1


def _uniform_u32(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` independent uniform 32-bit integers: each 64-bit output of the bit generator gives two."""
    return rng.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n]


def poisson_counts(levels: np.ndarray, vals: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson draws ``k ~ Poisson(levels * vals / 255)`` (``levels`` uint8) by inversion, as int16/int32.

    ``k = min{k : F(k) >= U}`` with ``U = (u + 0.5) / 2**32`` for a uniform 32-bit ``u``: each probability
    ``P(k) = F(k) - F(k-1)`` is reproduced to within 2**-32 (inverting a float64 uniform, degrade version 3, had
    2**-53; ``Generator.poisson``'s own algorithms are exact in the same sense). With ``b = u >> (32 - 12)``, the
    bin of ``U`` among B = 4096, ``F(k) >= U >= b/B`` gives ``k >= G(b)`` and ``F(G(b+1)) >= (b+1)/B > U`` gives
    ``k <= G(b+1)``; most bins hold one ``k`` (the guide table gives it directly), and a vectorised bisection over
    ``[G(b), G(b+1)]`` settles the rest (~2 % of draws at vals = 256), shrinking to the unsettled ones each round.

    Cost on the 2-core dev VM: ~8 ns a draw (``Generator.poisson``: 60-100 ns; degrade version 3's float64
    inversion: ~20 ns, mostly its bisection over all flagged draws until the widest bin, the CDF tail, settled).
    """
    scaled_cdf, guide, upper, stride = _poisson_tables(vals)
    u = _uniform_u32(levels.size, rng)
    lv = levels.ravel()
    slot = (lv.astype(np.uint32) << _GUIDE_BITS) | (u >> (32 - _GUIDE_BITS))
    k = guide.take(slot)
    need = np.flatnonzero(k < 0)
    if need.size:
        lo = -k[need].astype(np.intp) - 1
        hi = upper.take(slot[need]).astype(np.intp)
        uu, row = u[need] + 0.5, lv[need].astype(np.intp) * stride  # float64, exact
        todo = np.arange(need.size)
        while todo.size:  # invariant: F(lo - 1) < U <= F(hi)
            mid = (lo[todo] + hi[todo]) >> 1
            right = scaled_cdf.take(row[todo] + mid) < uu[todo]  # F(mid) < U
            lo[todo] = np.where(right, mid + 1, lo[todo])
            hi[todo] = np.where(right, hi[todo], mid)
            todo = todo[lo[todo] < hi[todo]]
        k[need] = lo
    return k


def add_poisson_noise(img: np.ndarray, scale: float, gray: bool, rng: np.random.Generator) -> None:
    """Real-ESRGAN shot noise; clamp to [0, 1]. In place.

    Per ``generate_poisson_noise_pt``: round the image (or its luma, if ``gray``) to 8 bit, ``x = l / 255``; let
    ``vals = 2 ** ceil(log2(#distinct levels))``; the noise is ``(Poisson(x * vals) / vals - x) * scale``, added to the
    *unrounded* image (and to every channel when gray).
    """
    height, width, channels = img.shape
    levels = np.empty((height, width, 1 if gray else channels), np.uint8)
    step = _rows_per_block(width * levels.shape[2])
    for top in range(0, height, step):  # by blocks: no image-sized float temporary (their page faults cost)
        block = img[top : top + step]
        src = cv2.cvtColor(block, cv2.COLOR_RGB2GRAY) if gray else block.copy()
        np.maximum(src, 0.0, out=src)  # convertScaleAbs would mirror negatives (a bicubic overshoot)
        cv2.convertScaleAbs(src, dst=levels[top : top + step, :, 0] if gray else levels[top : top + step], alpha=255.0)
    hist = cv2.calcHist([levels.reshape(height, -1)], [0], None, [256], [0, 256])
    vals = 2 ** math.ceil(math.log2(max(1, int(np.count_nonzero(hist)))))
    offset = np.arange(256, dtype=np.float32) * np.float32(scale / 255.0)  # l / 255 * scale
    gain = np.float32(scale / vals)
    for top in range(0, height, step):
        lv = levels[top : top + step]
        noise = poisson_counts(lv, vals, rng).astype(np.float32).reshape(lv.shape)
        noise *= gain
        noise -= offset.take(lv)
        block = img[top : top + step]
        block += noise
        np.clip(block, 0.0, 1.0, out=block)
