"""Photo-vs-graphic score: is a picture a camera photograph, or a graphic (vector art, illustration, 3-D render,
UI, logo)?

``photo_features`` measures four cues that the photo-vs-computer-graphics literature uses (exact flatness, the
noise residual and its cross-channel correlation from demosaicing, colour saturation; Athitsos, Swain & Frankel
1997, "Distinguishing photographs and graphics on the World Wide Web"; Ng & Chang 2005, "Physics-motivated features
for distinguishing photographic images and computer graphics"), and ``photo_score`` maps them through a logistic
regression to a probability-like score in [0, 1].
The coefficients below were fitted on the labelled set ``tests/pipelines/curate/photo_labels.csv`` (Debian wallpaper
packages and the sample photos bundled with scikit-image, scikit-learn and matplotlib, labelled by looking) by
``benchmarks/photo_classifier.py --fit``; that script and ``tests/pipelines/curate/test_photo.py`` report the
held-out (leave-one-picture-group-out) precision and recall, and the per-image table is in
``benchmarks/results/photo_classifier.md``.

Every feature is an intensive statistic (a rate, a percentile over tiles, a count on a fixed-size pixel sample), so
the score of a crop estimates the score of the whole picture; the spread across crops is measured in the benchmark.

Hand-written because no library offers a photo-vs-graphic decision that runs offline without model weights.
"""

from __future__ import annotations

import cv2
import numpy as np

PHOTO_VERSION = "photo/1"

TILE = 64  # native-resolution tile edge (px) for the residual statistics
GRID = 16  # tiles per axis, evenly spread (at most 256 tiles, whatever the image size)
SAMPLE_PIXELS = 1 << 20  # the equality statistic reads about this many pixels, whatever the image size
COLOUR_PIXELS = 1 << 18  # and the saturation statistic about this many

# Immerkaer (1996), "Fast noise variance estimation", CVIU 64(2): the difference of two Laplacians cancels image
# structure up to second order, so what is left is noise (and the finest texture).
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)

FEATURES = ("runs", "zero", "corr", "sat")
# Logistic regression on the standardised features: z = (x - MEAN) / SCALE, score = 1 / (1 + exp(-(COEF . z + B))).
# Fitted by `benchmarks/photo_classifier.py --fit` (scikit-learn LogisticRegression, C=1, balanced classes) on the
# whole labelled set; the figures it reports for the decision are leave-one-group-out (held out), not these.
MEAN = (-0.670515, -0.573821, 0.749159, 0.403203)
SCALE = (0.550129, 0.467881, 0.30165, 0.303748)
COEF = (-1.07798, -0.644772, 0.242927, -0.0564181)
INTERCEPT = 0.00768561


def _pack(rgb: np.ndarray) -> np.ndarray:
    """24-bit colour codes, so exact colour equality is one integer comparison."""
    c = rgb.astype(np.uint32)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def flat_runs(rgb: np.ndarray) -> float:
    """Share of neighbouring pixel pairs with exactly the same RGB, at the least-flat of the 8 pixel phases.

    Vector art, UI and rendered gradients repeat exact colours over large areas; sensor noise makes that rare in
    photos. JPEG complicates it: an 8x8 block whose AC terms were quantised away is exactly flat inside, even in a
    photo's bokeh. Adjacent blocks of a photo still differ (their DC terms follow the scene), while a graphic's flat
    area crosses block borders unchanged. So the rate is taken per phase (x mod 8 for horizontal pairs, y mod 8 for
    vertical ones) and the minimum kept: for a JPEG that is the pairs straddling block borders, wherever the grid
    lies (crops and rotations shift it); for other images all phases agree. Sampled on bands of 9 rows starting at
    multiples of 8, so each band holds one vertical pair of every phase. (Leaving out pairs of clipped pixels, which
    are flat in photos too, was tried and separated worse on the labelled set.)
    """
    hh, w = rgb.shape[:2]
    if hh < 9 or w < 9:
        return 1.0
    starts = np.arange(0, hh - 8, 8)
    starts = starts[:: max(1, int(np.ceil(starts.size * 9 * w / SAMPLE_PIXELS)))]
    rows = (starts[:, None] + np.arange(9)[None, :]).ravel()
    p = _pack(rgb[rows].reshape(starts.size, 9, w, 3))
    eq_h, eq_v = p[:, :, 1:] == p[:, :, :-1], p[:, 1:] == p[:, :-1]
    rh = min(float(eq_h[:, :, k::8].mean()) for k in range(8))
    rv = min(float(eq_v[:, k].mean()) for k in range(8))
    return (rh + rv) / 2


def residual_stats(rgb: np.ndarray) -> tuple[float, float]:
    """(zero, corr) over an even GRID x GRID set of TILE-px tiles of the Immerkaer residual.

    zero: median over tiles of the share of pixels whose luma residual is exactly 0. A render's smooth areas are
    exact polynomials of the pixel grid (residual 0); a photo's carry sensor noise, so even after JPEG most residuals
    are non-zero. corr: median over tiles of the correlation between the red and green residuals. A camera's colour
    filter array is demosaiced by interpolating each channel from its neighbours, which couples the channels' fine
    detail and noise (0.6-1.0 in the photos here); flat-shaded and gradient renders have independent or no residual
    in the two channels (tiles where either channel has none are skipped; none left -> 1.0, the greyscale value).
    """
    h, w = rgb.shape[:2]
    t = min(TILE, h, w)
    if t < 3:
        return 1.0, 1.0
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    zero, corr = [], []
    for y in np.unique(np.linspace(0, h - t, GRID).astype(int)).tolist():
        for x in np.unique(np.linspace(0, w - t, GRID).astype(int)).tolist():
            r = cv2.filter2D(gray[y : y + t, x : x + t].astype(np.float32), -1, _IMMERKAER)[1:-1, 1:-1]
            zero.append(float((r == 0).mean()))
            tile = rgb[y : y + t, x : x + t].astype(np.float32)
            rr = cv2.filter2D(tile[..., 0], -1, _IMMERKAER)[1:-1, 1:-1].ravel()
            rg = cv2.filter2D(tile[..., 1], -1, _IMMERKAER)[1:-1, 1:-1].ravel()
            if rr.std() > 0 and rg.std() > 0:
                corr.append(float(np.corrcoef(rr, rg)[0, 1]))
    return float(np.median(zero)), float(np.median(corr)) if corr else 1.0


def mean_saturation(rgb: np.ndarray) -> float:
    """Mean HSV saturation (0..1) of a strided sample of about COLOUR_PIXELS pixels."""
    h, w = rgb.shape[:2]
    s = max(1, int(np.ceil(np.sqrt(h * w / COLOUR_PIXELS))))
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[::s, ::s]), cv2.COLOR_RGB2HSV)
    return float(hsv[..., 1].mean() / 255.0)


def photo_features(rgb: np.ndarray) -> dict[str, float]:
    """The FEATURES of one HxWx3 uint8 sRGB picture, on the scales the regression uses (rates on a log scale)."""
    zero, corr = residual_stats(rgb)
    return {
        "runs": float(np.log10(flat_runs(rgb) + 0.01)),
        "zero": float(np.log10(zero + 0.01)),
        "corr": corr,
        "sat": mean_saturation(rgb),
    }


def photo_score(features: dict[str, float]) -> float:
    """Logistic regression of the standardised features (coefficients above): ~1 for a photo, ~0 for a graphic."""
    z = sum(c * (features[k] - m) / s for k, m, s, c in zip(FEATURES, MEAN, SCALE, COEF, strict=True))
    return float(1.0 / (1.0 + np.exp(-(z + INTERCEPT))))
