"""Effective resolution: the resolution a picture really has, and whether it was upscaled to the size it has now.

Two tests, each on a bounded part of the native-resolution luma (an upscale leaves no trace in a downscale of it, so
neither can run on the shared thumbnail):

1. **Resampling periodicity** (non-integer factors such as 1.5x). Resampling by a factor f puts output pixel i at
   source position i/f; its interpolation weights depend on the phase frac(i/f), which repeats with frequency 1/f
   cycles/px, folded into [0, 1/2]: phi = 1 - 1/f for 1 < f < 2 (1.5x -> 1/3), 1/f for f >= 2. Every statistic of
   the local pixel differences then repeats with that frequency (Popescu & Farid 2005, IEEE TSP 53(2):758;
   Kirchner 2008, ACM MM&Sec, "fast and reliable resampling detection by spectral analysis of fixed linear
   predictor residue"). Here the predictor residue is the first difference along an axis, compressed as
   log(1 + |d|) so a few strong edges do not decide, and averaged over up to ``PROFILE_ROWS`` rows (in bands spread
   over the picture) into one profile per column; the power spectrum of that profile, divided by its running
   median (a local noise floor), is the signal-to-noise ratio of each frequency. The score ``period_snr`` is the
   geometric mean over the two axes of the largest SNR in ``PHI_WINDOW`` around 1/3; its location gives the factor
   f = 1 / (1 - phi). Upscalers resample both axes, a texture repeats along one, so the geometric mean keeps content
   periodicity (a fence, a tiled roof) from deciding.
   Why first differences and not the second difference Kirchner used: with the half-pixel-centre convention every
   library uses (OpenCV, PIL), an upscale by an even factor puts output pixels at mirror-symmetric phases
   (2x: +-1/4), so a symmetric residue has the same statistics at every phase; the asymmetric first difference
   does not. Frequencies k/8 (JPEG's 8x8 grid: 1/8, 1/4, 3/8, 1/2) and 1/2 (Bayer demosaicing of every camera
   picture) are strong in native photos, so factors that land there (2x, 4x, 4/3x) are left to test 2.
   ``PROFILE_ROWS`` is 1024 (effres/1: 512): the periodic part adds up coherently over rows, the content does not,
   so the SNR of a JPEG-re-saved upscale grows with the rows averaged (~+12 ms per 4K picture).
2. **Re-upsampling test** (band limit, R(1.5) and R(2)). A picture upscaled by s has no detail above 1/(2s)
   cycles/px. On each of the ``TILES`` most detailed 256-px tiles x (largest Laplacian energy on a 2x area
   downscale), shrink by s and bring it back (area down, bicubic up): u(x); the loss e = |x - u(x)|^2 is the energy
   above ~1/(2s) plus the round trip's interpolation error. The same round trip applied to u(x), which is
   band-limited at 1/(2s) by construction, gives the interpolation error alone at the same contrast:
   e_ref = |u(x) - u(u(x))|^2. The ratio R(s) = sum e / sum e_ref is large for a native picture (detail up to the
   pixel) and falls towards the interpolation floor when the band is empty (upscaled by >= s, whatever the
   upscaler). A soft, defocused photo falls too: it *is* of lower effective resolution. Both scales share the tiles.

**Decision** (:func:`effective_scale`, thresholds in ``FilterSettings``):
- A resampling peak (period_snr >= ``min_period_snr``) is an upscale only when R(1.5) confirms the band above 1/3
  cycle/px is empty: R(1.5) < ``max_reupsample_ratio_15``, or < ``max_reupsample_ratio_15_strong`` when the peak
  is strong (>= ``strong_period_snr``). Why: resampling *down* by 4/3 or 5/3 puts output pixels at the same three
  phases (4/3: source positions 1/6, 3/2, 17/6, i.e. phases +1/6, 1/2, -1/6, exactly those of a 1.5x upscale), so
  a native photo published at 3/4 of its camera size has the same peak, strongest with OpenCV's area filter; what
  differs is the band limit: the downscale keeps detail up to the pixel, the upscale has none above 1/3 (effres/1,
  without this confirmation, rejected 91-93 % of the 4/3 area downscales of the benchmark's photos).
  The factor is then 1/(1 - phi) from the peak, unless R(2) < ``TWO_X_RATIO`` x R(1.5): the band 1/4..1/3 is empty
  too (2x upscales: R(2)/R(1.5) median 1.1; 1.5x ones >= 1.6, median 2.1), so it is at least 2x and a peak near 1/3
  is a by-product (noise or a 3x upscale's phase pattern).
- Else 2.0 when R(2) < ``max_reupsample_ratio``; else 1.0 (native).
The effective resolution is (width / f, height / f); the curation records f and the estimated native long side for
every decoded picture and rejects ``upscaled`` above ``max_effective_scale``. f is a lower bound for larger
factors (3x reads as 1.5, 4x as 1.5 or 2).

Measured (benchmarks/results/effective_resolution.md: 30 sharp real photos and 4 soft ones, 6 upscalers x 4 JPEG
settings, 12 downscales): 1.5x upscales caught 81 % (57 % after JPEG q75 with a bilinear or OpenCV bicubic kernel,
87-93 % without JPEG), 2x 86 % (70-97 %), sharp natives rejected 0 %, their downscales 8.6 % (20 % at 4/3 with
OpenCV's area filter, 0 % at 2x). The R(1.5) bound is the trade-off: 4.0 gives 62 % caught / 2.2 % false, 5.5 gives
88 % / 24 % with 10 % of natives rejected.

Known limits: the R(s) ratios depend on content (sharp natives span R(1.5) 3.7-21, 1.5x upscales 2.2-9.6), so a
soft native photo and its downscales are called upscaled (the benchmark's four soft wallpapers are, and looking at
them agrees); JPEG q75 weakens the periodicity of bilinear and OpenCV-bicubic upscales below the threshold; learned
upscalers (Real-ESRGAN and the like) synthesise texture and leave neither trace; factors outside ~1.45-1.56 are
named only through R(2) (2.0) and factors below ~1.3 are not resolved.

Cost: two first-difference profiles over at most 2 x ``PROFILE_ROWS`` x the long side pixels, and 4 round trips on
``TILES`` 256-px tiles: ~120 ms per 3840x2160 picture under load (the benchmark's cost line). Hand-written: no
library we know estimates the effective resolution of a picture (scikit-image, OpenCV and pyiqa have no resampling
detector).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import median_filter

EFFRES_VERSION = "effres/2"  # 2: R(1.5) confirms a resampling peak (downscaled photos kept); 1024 profile rows
PROFILE_ROWS = 1024  # rows (resp. columns) averaged into each axis profile, in bands of BAND rows spread evenly
BAND = 32
PHI_WINDOW = (0.31, 0.36)  # searched around 1/3 (1.5x); f = 1/(1-phi): 1.45 .. 1.56
TILES = 12  # detailed tiles of the re-upsampling test
TILE = 256
MIN_STRUCTURE = 2.0  # Laplacian RMS (levels, half resolution) of the tiles below which R means nothing (as filters)
# Default decision thresholds (FilterSettings carries the ones the curation uses; see the module docstring)
MAX_RATIO_15 = 4.5  # R(1.5) below which a resampling peak (period_snr >= min_period_snr) is called an upscale
STRONG_PERIOD_SNR = 30.0  # a peak this strong is called with the looser R(1.5) bound below
MAX_RATIO_15_STRONG = 5.0
TWO_X_RATIO = 1.6  # R(2) / R(1.5) below this names 2x (2x upscales: median 1.1, p90 1.7; 1.5x: min 1.6, median 2.1)
_MARGIN = 16  # px left out at each tile border, where the round trip's border handling dominates
_LOG = np.log1p(np.arange(256, dtype=np.float32))  # log(1 + |d|) for |d| = 0..255


@dataclass(slots=True)
class EffRes:
    """What :func:`measure_effres` found (raw evidence, so thresholds can be re-tuned from the images table)."""

    period_snr: float  # geometric mean over both axes of the largest resampling-peak SNR near 1/3 cycles/px
    period_factor: float  # the factor 1/(1 - phi) at that peak (about 1.5 when a 1.5x upscale is there)
    reupsample_ratio: float | None  # R at s = 2 (None when the picture is smaller than one tile)
    reupsample_ratio_15: float | None = None  # R at s = 1.5: confirms a 1.5x periodicity is an upscale's


def _band_index(n: int) -> np.ndarray:
    """Indices of up to PROFILE_ROWS lines of a side of n, in bands of BAND spread evenly over it."""
    bands = max(1, min(n // BAND, PROFILE_ROWS // BAND))
    starts = np.linspace(0, max(0, n - BAND), bands).astype(int)
    return (starts[:, None] + np.arange(min(BAND, n))[None, :]).ravel()


def _axis_profile(gray: np.ndarray, axis: int) -> np.ndarray:
    """Mean of log(1 + |x[i] - x[i-1]|) along ``axis`` (1: along rows), over up to PROFILE_ROWS lines in bands
    spread over the picture; one value per position along ``axis``. Only the chosen lines are copied."""
    lines = (
        gray[_band_index(gray.shape[0])] if axis == 1 else np.ascontiguousarray(gray[:, _band_index(gray.shape[1])].T)
    )
    d = cv2.absdiff(lines[:, 1:], lines[:, :-1])
    return cv2.reduce(cv2.LUT(d, _LOG), 0, cv2.REDUCE_AVG, dtype=cv2.CV_64F).ravel()


def _snr_spectrum(profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, power / running median) of a profile, after removing its slow trend (a 9-px box mean)."""
    n = profile.size
    detrended = profile - np.convolve(profile, np.ones(9) / 9, mode="same")
    power = np.abs(np.fft.rfft(detrended * np.hanning(n))) ** 2
    floor = median_filter(power, size=2 * max(8, n // 64) + 1, mode="mirror")
    return np.fft.rfftfreq(n), power / np.maximum(floor, 1e-20)


def resampling_peak(gray: np.ndarray) -> tuple[float, float]:
    """(period_snr, factor): the resampling-periodicity score near 1/3 cycles/px and the factor its peak gives."""
    if min(gray.shape) < 64:
        return 0.0, 1.0
    peaks = []
    for axis in (1, 0):
        freq, snr = _snr_spectrum(_axis_profile(gray, axis)[2:-2])
        window = np.flatnonzero((freq >= PHI_WINDOW[0]) & (freq <= PHI_WINDOW[1]))
        best = window[np.argmax(snr[window])]
        peaks.append((float(snr[best]), float(freq[best])))
    score = float(np.sqrt(peaks[0][0] * peaks[1][0]))
    phi = max(peaks)[1]
    return score, 1.0 / (1.0 - phi)


def detailed_tiles(gray: np.ndarray, count: int, tile: int = TILE) -> tuple[list[np.ndarray], float]:
    """The ``count`` tiles of ``tile`` px (float32) with the most Laplacian energy on a 2x-downscaled copy, and the
    RMS of that Laplacian over them (their mid-band structure, in 8-bit levels)."""
    h, w = gray.shape
    ny, nx = h // tile, w // tile
    if ny == 0 or nx == 0:
        return [], 0.0
    crop = gray[: ny * tile, : nx * tile]
    half = cv2.resize(crop, (nx * tile // 2, ny * tile // 2), interpolation=cv2.INTER_AREA).astype(np.float32)
    lap = cv2.Laplacian(half, cv2.CV_32F)
    energy = cv2.resize(lap * lap, (nx, ny), interpolation=cv2.INTER_AREA).ravel()
    order = np.argsort(-energy, kind="stable")[:count]
    tiles = [
        crop[(i // nx) * tile : (i // nx + 1) * tile, (i % nx) * tile : (i % nx + 1) * tile].astype(np.float32)
        for i in order
    ]
    return tiles, float(np.sqrt(energy[order].mean()))


def _round_trip(x: np.ndarray, s: float) -> np.ndarray:
    t = x.shape[0]
    m = max(1, round(t / s))
    small = cv2.resize(x, (m, m), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (t, t), interpolation=cv2.INTER_CUBIC)


def reupsample_ratios(gray: np.ndarray, scales: tuple[float, ...] = (2.0,), tiles: int = TILES) -> list[float | None]:
    """R(s) of the module docstring for each s, over the same most detailed tiles; None when the picture is smaller
    than one tile or its most detailed tiles are (nearly) flat (structure < MIN_STRUCTURE: 8-bit rounding would
    decide R)."""
    chosen, structure = detailed_tiles(gray, tiles)
    if structure < MIN_STRUCTURE:  # nothing to judge (flat, or smaller than a tile): no evidence either way
        return [None] * len(scales)
    m = _MARGIN
    out = []
    for s in scales:
        loss = floor = 0.0
        for x in chosen:
            u = _round_trip(x, s)
            uu = _round_trip(u, s)
            loss += float(np.square(x - u)[m:-m, m:-m].mean())
            floor += float(np.square(u - uu)[m:-m, m:-m].mean())
        out.append(loss / max(floor, 1e-9))
    return out


def reupsample_ratio(gray: np.ndarray, s: float = 2.0, tiles: int = TILES) -> float | None:
    """R(s) alone (see :func:`reupsample_ratios`)."""
    return reupsample_ratios(gray, (s,), tiles)[0]


def measure_effres(gray: np.ndarray) -> EffRes:
    """Both tests on a native-resolution luma image (HxW uint8)."""
    snr, factor = resampling_peak(gray)
    r2, r15 = reupsample_ratios(gray, (2.0, 1.5))
    return EffRes(snr, factor, r2, r15)


def effective_scale(
    ev: EffRes,
    min_period_snr: float,
    max_reupsample_ratio: float,
    max_reupsample_ratio_15: float = MAX_RATIO_15,
    strong_period_snr: float = STRONG_PERIOD_SNR,
    max_reupsample_ratio_15_strong: float = MAX_RATIO_15_STRONG,
) -> float:
    """The estimated upscale factor (1.0 = native) from the evidence and the thresholds (module docstring, Decision).

    A resampling peak counts only when the band above 1/3 cycles/px is also nearly empty (R(1.5) low): a native
    photo downscaled by 4/3 or 5/3 has the same periodicity but keeps its detail up to the pixel. Evidence without
    R(1.5) (images-table rows written before effres/2) is judged by R(2) alone."""
    r15 = ev.reupsample_ratio_15
    if r15 is not None and ev.period_snr >= min_period_snr:
        strong = ev.period_snr >= strong_period_snr and r15 < max_reupsample_ratio_15_strong
        if r15 < max_reupsample_ratio_15 or strong:
            # the 1/4..1/3 band empty as well (R(2) about R(1.5)): at least 2x, the peak is a side effect
            r2 = ev.reupsample_ratio
            return 2.0 if r2 is not None and r2 < TWO_X_RATIO * r15 else round(ev.period_factor, 3)
    if ev.reupsample_ratio is not None and ev.reupsample_ratio < max_reupsample_ratio:
        return 2.0
    return 1.0
