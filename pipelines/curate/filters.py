"""Per-image measurements and keep/reject rules of the curation path (sharpness, JPEG quality, flatness, exposure,
photo-vs-graphic).

``measure`` turns a decoded image (HxWx3 uint8 sRGB) into :class:`Scores`; ``judge`` applies :class:`FilterSettings`
to them and returns the first failing rule as a :class:`schemas.records.Rejection` (or ``None`` to keep). The two are
separate so the scores of every decoded image land in the ``images`` table, kept or not, and thresholds can be
re-tuned later from that table without decoding anything again.

Cost: ``measure`` runs once per input on a 2-core worker. Full-resolution passes are limited to OpenCV kernels (grey
conversion, histogram, one area downscale); tile statistics run on the 2x-downscaled luma, the colour statistics on
about a million sampled pixels, and the native-resolution Laplacian only on the 10% of tiles that sharpness reads.
Sharpness and the exact-equality statistic must see native pixels, because what they look for (the top octave of
detail, pixel-exact flat runs) does not survive downscaling. measure + judge: 0.24 s of CPU a 4608x2576 source
with photo/2, 0.95 s with photo/3's learned prior (``benchmarks/curate_throughput.py``).
Calibration data and per-image numbers: the notes at the top of ``tests/pipelines/test_filters.py``.

Everything that changes a score or a default bumps ``FILTERS_VERSION``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.curate.effres import EFFRES_VERSION, EffRes, effective_scale, measure_effres
from pipelines.curate.photo import PHOTO_VERSION, photo_features, photo_score
from schemas.records import Rejection

# 2: effective resolution (upscaled); 3: photo_score from pipelines.curate.photo; 4: effres/2 rule and settings.
# The photo and effres versions are part of it, so a change of either re-runs the filters of a resumed curation.
FILTERS_VERSION = f"filters/4+{PHOTO_VERSION}+{EFFRES_VERSION}"

# --- measurement constants (part of the score definitions, hence of FILTERS_VERSION) ---
TILE = 64  # native-resolution tile edge (px) for the per-tile statistics
FLAT_STD = 1.0  # a tile is flat when its luma std (at half resolution) is below this (8-bit levels)
DETAIL_SHARE = 0.10  # sharpness looks at the 10% of tiles with the most mid-band structure (the subject)
MIN_STRUCTURE = 2.0  # below this mid-band RMS (8-bit levels) the top tiles hold noise, not structure: sharpness 0
CLIP_LOW, CLIP_HIGH = 2, 253  # luma <= 2 / >= 253 counts as clipped (clip_low / clip_high)

# IJG/libjpeg base tables, ITU-T T.81 Annex K, Tables K.1 (luminance) and K.2 (chrominance), natural (row) order.
_STD_LUMA = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ],
    dtype=np.int64,
)
_STD_CHROMA = np.array(
    [
        17,
        18,
        24,
        47,
        99,
        99,
        99,
        99,
        18,
        21,
        26,
        66,
        99,
        99,
        99,
        99,
        24,
        26,
        56,
        99,
        99,
        99,
        99,
        99,
        47,
        66,
        99,
        99,
        99,
        99,
        99,
        99,
    ]
    + [99] * 32,
    dtype=np.int64,
)


@dataclass(slots=True)
class FilterSettings:
    """Thresholds of :func:`judge`. Defaults target a 4K photo training set for super-resolution; the numbers in the
    comments are from the calibration set described in ``tests/pipelines/test_filters.py``."""

    # px; 4K UHD is 3840x2160, so a 4K-class source has a short side of at least 2160
    min_short_side: int = 2160
    # detail ratio (see measure); bicubic 2x upscales of the calibration photos measure 0.35-0.41 (one noisy,
    # motion-blurred photo 0.48), the photos themselves 0.46-1.2 and the 5640x3172 one 0.555
    min_sharpness: float = 0.45
    # estimated IJG quality; keeps the calibration set's q75-q100 photos. Visible 8x8 blocking starts below ~75.
    # Raise to 90 for a cleaner HR set at the cost of volume.
    min_jpeg_quality: float = 75.0
    # share of featureless tiles; calibration photos <= 0.17, flat-fill art and alpha-over-white wallpapers 0.64-1.0
    max_flat_fraction: float = 0.6
    # share of pixels with luma <= 2; calibration photos <= 0.23 (retina's black surround); crushed shadows are
    # empty training signal
    max_clip_low: float = 0.25
    # share of pixels with luma >= 253; calibration photos <= 0.015; white pages and white padding go above it
    max_clip_high: float = 0.25
    # mean luma (0..255); keeps a dark astro photo (19), rejects a near-black render (10)
    min_mean_luma: float = 15.0
    # mean luma; calibration photos <= 209, text/UI on white 226-239
    max_mean_luma: float = 235.0
    # photo_score (pipelines.curate.photo, 0..1) below this is a graphic, illustration, render or screenshot; the
    # precision/recall at this threshold: benchmarks/results/photo_classifier.md
    min_photo_score: float = 0.5
    # False keeps illustrations and graphics (photo_score is still measured and stored)
    photos_only: bool = True
    # photo_score with the learned-prior cue (photo/3, pipelines.curate.photo.prior_cue: two waifu2x passes, ~0.7 s
    # of CPU a source, needs ncnn + the waifu2x wheel); False: photo/2, lower precision (held out 0.76 against 0.86)
    photo_prior: bool = True
    # Effective resolution (pipelines.curate.effres): reject ``upscaled`` when the estimated upscale factor is above
    # this (1.0 = native; the estimate is 1.0, ~1.5 or 2.0). Measured in benchmarks/results/effective_resolution.md.
    max_effective_scale: float = 1.3
    # resampling-periodicity SNR (near 1/3 cycles/px) from which a ~1.5x upscale is considered; sharp native photos
    # <= 13.4, 1.5x upscales mostly >= 20 (JPEG q75 weakens it); confirmed only with R(1.5) below
    min_period_snr: float = 10.0
    # re-upsampling ratio R(1.5) below which a periodicity peak is an upscale: sharp native photos 3.7-21 (median 6),
    # their 4/3 and 5/3 downscales (same periodicity) about the same; 1.5x upscales median 3.0-4.3
    max_reupsample_ratio_15: float = 4.5
    # a peak at least this strong is called with R(1.5) up to max_reupsample_ratio_15_strong
    strong_period_snr: float = 30.0
    max_reupsample_ratio_15_strong: float = 5.0
    # re-upsampling ratio R(2) below which the picture is called 2x upscaled; sharp native photos >= 7.9, 2x upscales
    # median 2.2-6.6 (soft or noisy ones higher: missed)
    max_reupsample_ratio: float = 7.5


@dataclass(slots=True)
class Scores:
    """What :func:`measure` found; every field is stored in the ``images`` table (see ``schemas.records.ImageRec``)."""

    sharpness: float  # top-octave / next-octave detail ratio, ~0.4 for a bicubic 2x upscale, ~0.5-1.2 sharp
    jpeg_quality: float | None  # estimated IJG quality 1..100 from the quantisation tables; None when not a JPEG
    flat_fraction: float  # share of tiles without structure (luma std < FLAT_STD)
    mean_luma: float  # mean BT.601 luma, 0..255
    clip_low: float  # share of pixels with luma <= 2
    clip_high: float  # share of pixels with luma >= 253
    photo_score: float  # 0..1, 1 = natural photograph, 0 = flat graphic / vector art / screenshot
    period_snr: float = 0.0  # effres: resampling-periodicity SNR near 1/3 cycles/px (1.5x upscales)
    period_factor: float = 1.0  # effres: the upscale factor that periodicity peak gives
    reupsample_ratio: float | None = None  # effres: R(2), low for 2x upscales; None below one 256-px tile
    reupsample_ratio_15: float | None = None  # effres: R(1.5), low when the band above 1/3 cycles/px is empty


# ------------------------------------------------------------------------------------------------ JPEG quality


def _ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's ``jpeg_quality_scaling`` + ``jpeg_add_quant_table`` (jcparam.c), baseline-clamped to 1..255."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


# Sorted candidate tables for q = 1..100. Sorting makes the comparison independent of the coefficient order (PIL
# has returned zigzag order in some versions and natural order in others); libjpeg's scaling is monotone in the
# base entry, so sorted(scale(base)) == scale(sorted(base)) and an IJG table still matches its quality exactly.
_QUALITIES = np.arange(1, 101)
_CAND_LUMA = np.stack([np.sort(_ijg_table(_STD_LUMA, int(q))) for q in _QUALITIES])
_CAND_CHROMA = np.stack([np.sort(_ijg_table(_STD_CHROMA, int(q))) for q in _QUALITIES])


def estimate_jpeg_quality(quantization: Mapping[int, Sequence[int]] | None) -> float | None:
    """IJG (libjpeg) quality 1..100 that best reproduces the file's quantisation tables.

    Candidates are the Annex K tables scaled by libjpeg's rule (scale = 5000/q if q < 50 else 200 - 2q; entry =
    clamp((base*scale + 50)//100, 1, 255)). Table 0 is compared with the luminance candidate and table 1, when
    present, with the chrominance one. Both sides are sorted first, so the answer does not depend on whether the
    decoder exposes zigzag or natural order. The distance is the squared difference of log step sizes: quantisation
    error grows with the ratio of step sizes, and it keeps a few large high-frequency entries from outweighing the
    low-frequency ones. Non-IJG tables (camera firmware, Photoshop, mozjpeg presets) get the nearest quality.
    Ties (only possible for degenerate tables) go to the higher quality. Returns None when there is no usable table.
    """
    if not quantization:
        return None
    tables = {k: np.sort(np.asarray(v, dtype=np.float64).ravel()) for k, v in quantization.items()}
    luma = tables.get(0)
    if luma is None or luma.size != 64:
        return None
    dist = ((np.log(_CAND_LUMA) - np.log(np.maximum(luma, 1.0))) ** 2).sum(axis=1)
    chroma = tables.get(1)
    if chroma is not None and chroma.size == 64:
        dist = dist + ((np.log(_CAND_CHROMA) - np.log(np.maximum(chroma, 1.0))) ** 2).sum(axis=1)
    best = np.flatnonzero(dist <= dist.min() + 1e-12)
    return float(_QUALITIES[best[-1]])


# ------------------------------------------------------------------------------------------------ luma measures


def _tile_grid(h: int, w: int) -> tuple[int, int, int]:
    """Tile edge and the cropped height/width that is a whole number of tiles (tiles shrink for tiny images)."""
    t = TILE if min(h, w) >= TILE else max(2, (min(h, w) // 2) * 2)
    return t, (h // t) * t, (w // t) * t


def _tile_means(x: np.ndarray, ny: int, nx: int) -> np.ndarray:
    # INTER_AREA with an integer factor is an exact block mean, and much faster than a numpy reshape-mean.
    return cv2.resize(x, (nx, ny), interpolation=cv2.INTER_AREA)


def _detail(gray: np.ndarray) -> tuple[float, float, float]:
    """(sharpness, flat_fraction, structure) of a luma image; see :func:`measure` for the definitions.

    Everything but the top-octave energy runs on the 2x-downscaled copy (a quarter of the pixels); the native
    Laplacian is then taken only on the DETAIL_SHARE of tiles that sharpness reads, which is what keeps a 4K-8K image
    within budget.
    """
    t, h, w = _tile_grid(*gray.shape)
    if h < 2 or w < 2:
        return 0.0, 1.0, 0.0
    ny, nx = h // t, w // t
    # Centre before squaring so mean(x^2) - mean(x)^2 keeps its precision in float32.
    half = cv2.resize(gray[:h, :w].astype(np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA) - 128.0
    lap2 = cv2.Laplacian(half, cv2.CV_32F, ksize=1)
    e_mid = _tile_means(cv2.multiply(lap2, lap2), ny, nx).ravel()
    mean = _tile_means(half, ny, nx)
    var = _tile_means(cv2.multiply(half, half), ny, nx) - mean * mean
    flat_fraction = float((np.sqrt(np.maximum(var, 0.0)) < FLAT_STD).mean())
    k = max(1, int(np.ceil(DETAIL_SHARE * e_mid.size)))
    top = np.argpartition(e_mid, e_mid.size - k)[-k:]
    mid = float(e_mid[top].mean())
    structure = float(np.sqrt(mid))
    if structure < MIN_STRUCTURE:
        return 0.0, flat_fraction, structure
    return float(np.sqrt(_top_octave_energy(gray, top // nx, top % nx, t) / mid)), flat_fraction, structure


def _top_octave_energy(gray: np.ndarray, tile_y: np.ndarray, tile_x: np.ndarray, t: int) -> float:
    """Mean squared native-resolution 3x3 Laplacian over the given tiles. Each tile is read with a 1-pixel margin
    where the image has one, so the result equals the full-image Laplacian (reflect-101 borders) on those tiles."""
    hh, ww = gray.shape
    total = 0.0
    for ty, tx in zip(tile_y.tolist(), tile_x.tolist(), strict=True):
        y0, x0 = ty * t, tx * t
        ya, xa = max(y0 - 1, 0), max(x0 - 1, 0)
        patch = gray[ya : min(y0 + t + 1, hh), xa : min(x0 + t + 1, ww)]
        lap = cv2.Laplacian(patch, cv2.CV_32F, ksize=1)[y0 - ya : y0 - ya + t, x0 - xa : x0 - xa + t]
        total += float(cv2.multiply(lap, lap).mean())
    return total / len(tile_y)


def _exposure(gray: np.ndarray) -> tuple[float, float, float]:
    """(mean luma, share <= CLIP_LOW, share >= CLIP_HIGH) from a 256-bin histogram (one pass, no float copy)."""
    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    n = max(hist.sum(), 1.0)
    mean = float((hist * np.arange(256)).sum() / n)
    return mean, float(hist[: CLIP_LOW + 1].sum() / n), float(hist[CLIP_HIGH:].sum() / n)


# ------------------------------------------------------------------------------------------------ public API


def measure(
    rgb: np.ndarray, quantization: Mapping[int, Sequence[int]] | None = None, photo_prior: bool = True
) -> Scores:
    """All filter scores of one decoded image (HxWx3 uint8 sRGB); ``quantization`` is PIL's ``Image.quantization``;
    ``photo_prior`` is ``FilterSettings.photo_prior`` (photo/3 with the learned-prior cue, or photo/2).

    Luma is BT.601 (``cv2.COLOR_RGB2GRAY``), the 8-bit luma every JPEG encoder and blur detector uses. Tiles are
    TILE x TILE pixels at native resolution (remainders at the right/bottom edge are ignored).

    - sharpness: detail ratio sqrt(sum E_hi / sum E_mid) over the DETAIL_SHARE (10%) of tiles with the largest E_mid,
      where E_hi is the tile's mean squared 3x3 Laplacian of the native luma (the top octave, 1/4..1/2 cycle/px) and
      E_mid the same on a 2x area-downscaled copy (the octave below). Natural images are roughly scale-invariant
      (power ~ 1/f^2, Field 1987, JOSA A 4:2379), so a sharp native image has about as much structure in the top
      octave as in the next and scores ~0.5-1.2 (sensor noise pushes it up); an upscaled or defocused image has
      nothing in the top octave, and a bicubic 2x upscale scores ~0.35-0.41 whatever its content or contrast
      (measured). A ratio instead of absolute Laplacian energy (Pech-Pacheco et al. 2000, ICPR) because absolute
      energy grows with scene contrast: a 2x-upscaled high-contrast photo outscores a sharp low-contrast one. Taking
      only the most structured tiles lets a sharp subject on bokeh or sky pass, and keeps flat tiles, whose ratio
      is pure noise (~2 for white noise), out. When those tiles' mid-band RMS is below MIN_STRUCTURE there is
      nothing to judge focus on and sharpness is 0.
    - flat_fraction: share of tiles whose luma std, measured on the 2x-downscaled copy (pixel noise averaged away),
      is below FLAT_STD = 1 level.
    - mean_luma, clip_low, clip_high: mean luma and the shares of pixels with luma <= 2 and >= 253.
    - jpeg_quality: :func:`estimate_jpeg_quality` of ``quantization`` (None when there is none).
    - photo_score: :func:`pipelines.curate.photo.photo_score` of :func:`pipelines.curate.photo.photo_features`, a
      logistic regression (0..1, continuous) over sensor-noise, demosaicing, exact-flatness, colour and structure
      cues and, with ``photo_prior``, a learned-prior cue (photo/3), fitted and measured on
      ``tests/pipelines/curate/photo_labels.csv``.
    - period_snr, period_factor, reupsample_ratio: the effective-resolution evidence of
      :func:`pipelines.curate.effres.measure_effres` on the native luma (bounded rows and tiles).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    sharpness, flat_fraction, _ = _detail(gray)
    mean_luma, clip_low, clip_high = _exposure(gray)
    effres = measure_effres(gray)
    return Scores(
        sharpness=sharpness,
        jpeg_quality=estimate_jpeg_quality(quantization),
        flat_fraction=flat_fraction,
        mean_luma=mean_luma,
        clip_low=clip_low,
        clip_high=clip_high,
        photo_score=photo_score(photo_features(rgb, photo_prior)),
        period_snr=effres.period_snr,
        period_factor=effres.period_factor,
        reupsample_ratio=effres.reupsample_ratio,
        reupsample_ratio_15=effres.reupsample_ratio_15,
    )


def upscale_estimate(scores: Scores, settings: FilterSettings) -> float:
    """The picture's estimated upscale factor (1.0 = native) under ``settings`` (pipelines.curate.effres)."""
    ev = EffRes(scores.period_snr, scores.period_factor, scores.reupsample_ratio, scores.reupsample_ratio_15)
    return scale_under(ev, settings)


def scale_under(ev: EffRes, s: FilterSettings) -> float:
    """``effective_scale`` of the evidence ``ev`` with the thresholds of ``s`` (the one place that maps them)."""
    return effective_scale(
        ev,
        s.min_period_snr,
        s.max_reupsample_ratio,
        s.max_reupsample_ratio_15,
        s.strong_period_snr,
        s.max_reupsample_ratio_15_strong,
    )


def judge(width: int, height: int, scores: Scores, settings: FilterSettings) -> Rejection | None:
    """First failing rule, in a fixed order: too_small, low_jpeg_quality, upscaled, blurry, flat, underexposed,
    overexposed, not_a_photo. ``Rejection.detail`` names the measured value and the threshold. None = keep.

    The order puts the cheapest-to-explain, least ambiguous reasons first, so a small flat image reports
    ``too_small``. ``blurry`` needs at least one non-flat tile: an image that is flat everywhere has no edge to judge
    focus on, so it is reported ``flat``. ``upscaled`` comes before ``blurry``: an upscale is a soft picture too,
    and the upscale factor with the effective resolution is the more useful explanation.
    """
    s, c = settings, scores
    short = min(width, height)
    if short < s.min_short_side:
        return Rejection("too_small", f"short side {short} < {s.min_short_side} ({width}x{height})")
    if c.jpeg_quality is not None and c.jpeg_quality < s.min_jpeg_quality:
        return Rejection("low_jpeg_quality", f"jpeg quality {c.jpeg_quality:.0f} < {s.min_jpeg_quality:.0f}")
    factor = upscale_estimate(c, s)
    if factor > s.max_effective_scale:
        ratio = "n/a" if c.reupsample_ratio is None else f"{c.reupsample_ratio:.2f}"
        ratio15 = "n/a" if c.reupsample_ratio_15 is None else f"{c.reupsample_ratio_15:.2f}"
        return Rejection(
            "upscaled",
            f"upscaled ~{factor:.2f}x: effective resolution ~{round(width / factor)}x{round(height / factor)} "
            f"(> {s.max_effective_scale:.2f}x; period snr {c.period_snr:.0f}, reupsample ratio {ratio} at 2x, "
            f"{ratio15} at 1.5x)",
        )
    if c.flat_fraction < 1.0 and c.sharpness < s.min_sharpness:
        return Rejection("blurry", f"sharpness {c.sharpness:.3f} < {s.min_sharpness:.3f}")
    if c.flat_fraction > s.max_flat_fraction:
        return Rejection("flat", f"flat fraction {c.flat_fraction:.3f} > {s.max_flat_fraction:.3f}")
    if c.mean_luma < s.min_mean_luma:
        return Rejection("underexposed", f"mean luma {c.mean_luma:.1f} < {s.min_mean_luma:.1f}")
    if c.clip_low > s.max_clip_low:
        return Rejection("underexposed", f"clip low {c.clip_low:.3f} > {s.max_clip_low:.3f}")
    if c.mean_luma > s.max_mean_luma:
        return Rejection("overexposed", f"mean luma {c.mean_luma:.1f} > {s.max_mean_luma:.1f}")
    if c.clip_high > s.max_clip_high:
        return Rejection("overexposed", f"clip high {c.clip_high:.3f} > {s.max_clip_high:.3f}")
    if s.photos_only and c.photo_score < s.min_photo_score:
        return Rejection("not_a_photo", f"photo score {c.photo_score:.3f} < {s.min_photo_score:.3f}")
    return None
