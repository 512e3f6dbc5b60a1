"""Evaluation metrics: full-reference PSNR/SSIM on Y (BasicSR convention), a periodicity score for token-grid
artefacts, a small set of offline no-reference scores, and availability checks for learned metrics.

Full reference (BasicSR, ``basicsr/metrics/psnr_ssim.py`` + ``metric_util.to_y_channel`` +
``utils/color_util.{rgb,bgr}2ycbcr``; the numbers every SR paper tables):

- Y = 16 + (65.481 R + 128.553 G + 24.966 B) with R, G, B in [0, 1] (ITU-R BT.601 studio swing, MATLAB
  ``rgb2ycbcr``), so Y spans [16, 235] on the 0..255 scale. BasicSR's ``to_y_channel`` computes it as
  ``bgr2ycbcr(img.astype(float32) / 255., y_only=True) * 255.``; for float32 input ``bgr2ycbcr`` returns the Y above
  divided by 255 and cast to float32, so Y is float32-rounded before the metric casts it to float64. ``rgb_to_y``
  follows those steps (with the RGB weight order, since our images are RGB and BasicSR's are cv2 BGR).
- ``crop_border`` pixels are removed from every side before anything else (``img[c:-c, c:-c]``; 0 = no crop). The
  convention is crop_border = scale (4 for x4).
- PSNR = 10 log10(255^2 / MSE) on the float64 Y planes; ``inf`` when MSE = 0.
- SSIM (Wang et al. 2004, IEEE TIP 13:600): window = outer(g, g), g = ``cv2.getGaussianKernel(11, 1.5)``;
  C1 = (0.01*255)^2, C2 = (0.03*255)^2; mu, sigma^2 and sigma_xy from ``cv2.filter2D`` (population moments, no
  n/(n-1)), each map cropped ``[5:-5, 5:-5]`` (= 'valid' filtering: only positions where the 11x11 window lies inside
  the image, so the border mode never matters); SSIM = mean of the SSIM map. Here the Gaussian runs as the
  equivalent separable ``cv2.GaussianBlur`` (same kernel) over row strips: 4K in 1-2 s instead of ~5 s.
- Equivalence with scikit-image (tested): ``peak_signal_noise_ratio(y_hr, y_sr, data_range=255)`` on the cropped Y
  planes gives the same PSNR. ``structural_similarity(y_hr, y_sr, data_range=255, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)`` gives the same SSIM: with its default ``truncate=3.5`` the Gaussian has radius
  int(3.5*1.5 + 0.5) = 5, i.e. the same 11-tap kernel; it filters with ``mode='reflect'`` over the whole image but
  then averages only ``crop(S, (win_size - 1) // 2)`` = ``S[5:-5, 5:-5]``, exactly the positions BasicSR keeps, and
  at those positions the border mode has no effect. ``data_range=255`` gives the same C1, C2 and
  ``use_sample_covariance=False`` the same population moments. Differences are float rounding (< 1e-9).

Periodicity (METHODS.md "L_AP" / "Periodicity score"; see :func:`periodicity` for the definition and the
measured numbers): the normalised autocorrelation of the high-pass luma residual, restricted to its exactly
periodic (line-spectrum) part, read at every lag and at the lattice of token-stride multiples.

No reference (:func:`no_reference`): only what works offline without weights. Learned NR metrics (NIQE needs its
pristine-model parameters, MUSIQ and CLIPIQA need network weights) and learned FR metrics (LPIPS, DISTS) need files
at a configured local path; :func:`lpips_available` / :func:`dists_available` say whether they are there, and the
harness reports the metric as "not available" otherwise. Nothing is downloaded.

Everything that changes a score or a default bumps ``METRICS_VERSION``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import fft as sfft
from scipy.ndimage import uniform_filter

from pipelines.bench.periodicity_constants import LINE_BOX, LINE_KAPPA, MASK_FLOOR, MASK_SIGMA
from pipelines.curate import filters

METRICS_VERSION = "metrics/1"

# --- BasicSR / MATLAB conventions ---
Y_WEIGHTS_RGB = (65.481, 128.553, 24.966)  # BT.601 Y from RGB in [0, 1], 0..255 output scale (MATLAB rgb2ycbcr)
Y_OFFSET = 16.0
DATA_RANGE = 255.0
SSIM_WIN, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
SSIM_STRIP = 128  # output rows per strip (cost only, not part of the score)

# --- periodicity (part of the score definition, hence of METRICS_VERSION) ---
MAX_SIDE = 2048  # centre crop edge (px) at native resolution; 4096 measures a whole 4K frame (timings: periodicity)
# MASK_SIGMA, MASK_FLOOR, LINE_BOX, LINE_KAPPA: bench.periodicity_constants (shared with the L_AP loss)
# peak or stride_mean above this reads as a periodic artefact: clean photos and bicubic upscales <= 0.0032, a faint
# (4/255) 32-px line grid on untextured photos >= 0.0060 (see periodicity)
PERIODIC_ARTEFACT = 0.004
# periodicity_excess flag: stride excess (D = R_x - EXCESS_REF_GAIN * R_ref on the stride lattice, less the
# half-stride offsets) above EXCESS_STRIDE; reference = bicubic of the same LR. Measured in
# benchmarks/periodicity_flag.py (numbers in periodicity_excess's docstring).
EXCESS_STRIDE = 0.006
EXCESS_REF_GAIN = 2.0  # D = R_x - EXCESS_REF_GAIN * R_ref: a sharper upscale may double a periodicity the LR has

# --- no-reference ---
HF_TILE = 256  # px, Welch tile for hf_energy
HF_MAX_TILES = 64  # tiles read at most (evenly spread), bounds the cost at 4K-8K
JPEG_BLOCK = 8

# Weight files looked for by the availability checks: the names the reference implementations load.
# LPIPS v0.1 linear heads (richzhang/PerceptualSimilarity, lpips/weights/v0.1/) and their torchvision backbones.
LPIPS_FILES = {
    "vgg": ("vgg.pth", "vgg16-397923af.pth"),
    "alex": ("alex.pth", "alexnet-owt-7be5be79.pth"),
}
# DISTS alpha/beta (dingkeyan93/DISTS, DISTS_pytorch/weights.pt) and the torchvision VGG16 backbone.
DISTS_FILES = {"vgg": ("weights.pt", "vgg16-397923af.pth")}


def _check_rgb(rgb: np.ndarray, name: str = "image") -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{name}: expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")


# ------------------------------------------------------------------------------------------------ PSNR / SSIM


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB -> float64 Y in [16, 235], exactly as BasicSR's ``to_y_channel`` computes it.

    Steps (BasicSR): x = rgb.astype(float32) / 255; y = x . (65.481, 128.553, 24.966) + 16 (numpy promotes to
    float64 here); y / 255 cast to float32 (``_convert_output_type_range``); times 255 in float32. The float32
    round trips are kept so the values match BasicSR's bit for bit, not just to 1e-5. Each weighted channel term
    depends only on the 8-bit level, so it comes from a 256-entry table (4x faster than ``np.dot`` at 4K; identical
    output for all 2^24 colours, checked).
    """
    _check_rgb(rgb)
    level = (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float64)
    y = (level * Y_WEIGHTS_RGB[0])[rgb[..., 0]]
    y += (level * Y_WEIGHTS_RGB[1])[rgb[..., 1]]
    y += (level * Y_WEIGHTS_RGB[2])[rgb[..., 2]]
    y += Y_OFFSET
    y /= 255.0
    return (y.astype(np.float32) * np.float32(255.0)).astype(np.float64)


def _crop(img: np.ndarray, crop_border: int) -> np.ndarray:
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    return img[crop_border:-crop_border, crop_border:-crop_border] if crop_border else img


def _y_pair(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    _check_rgb(sr, "sr")
    _check_rgb(hr, "hr")
    if sr.shape != hr.shape:
        raise ValueError(f"shapes differ: sr {sr.shape} vs hr {hr.shape}")
    return rgb_to_y(_crop(sr, crop_border)), rgb_to_y(_crop(hr, crop_border))


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> float:
    """PSNR (dB) on BasicSR's Y channel after cropping ``crop_border`` px per side; ``inf`` for identical inputs.

    = BasicSR ``calculate_psnr(sr, hr, crop_border, test_y_channel=True)`` and skimage
    ``peak_signal_noise_ratio(y_hr, y_sr, data_range=255)`` on the cropped Y planes.
    """
    y_sr, y_hr = _y_pair(sr, hr, crop_border)
    y_sr -= y_hr  # in place: both planes are fresh copies, and 4K float64 temporaries cost more than the maths
    mse = float(np.mean(np.square(y_sr, out=y_sr)))
    return math.inf if mse == 0.0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


LR_PSNR_CAP = 100.0  # dB: identical planes give inf; the cap keeps means and drops finite


def lr_consistency_psnr(lr: np.ndarray, sr: np.ndarray) -> float:
    """LR–HR consistency, RefReward's first axis: PSNR-Y (``psnr_y``, no border crop) of the SR area-downscaled to
    the LR's size against the LR, capped at ``LR_PSNR_CAP`` dB. The one definition used by benchmark import (the
    HR↔LR alignment check), the OP4KSR GRPO fidelity guard, reward evaluation's ``lr_psnr`` baseline and the demo's
    simulated annotators.

    Which LR: the *clean* LR where one exists (the area-downscaled HR before noise/JPEG: GRPO's guard passes it) —
    against the degraded LR an output would be rewarded for reproducing the noise and JPEG blocks it should remove.
    Where only the degraded or real LR exists (reward evaluation, the demo, imported real pairs) that LR is used.

    Area downscale = ``cv2.INTER_AREA``, which for the integer factors sr4k uses is the exact box mean (equal to
    torch's ``adaptive_avg_pool2d`` and to ``curate.degrade.area_resize``); Y = BasicSR's (``rgb_to_y``)."""
    h, w = lr.shape[:2]
    down = cv2.resize(np.ascontiguousarray(sr), (w, h), interpolation=cv2.INTER_AREA)
    return float(min(psnr_y(down, lr, crop_border=0), LR_PSNR_CAP))


def _ssim_valid(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM map over the 'valid' positions of the 11x11 Gaussian window (BasicSR ``_ssim``).

    Computed in strips of SSIM_STRIP output rows (each read with its 5-row margins): the same map, but the float64
    temporaries stay small: 0.7-0.8 s for a 4K map instead of ~4.5 s (allocation-bound).
    """
    half = SSIM_WIN // 2
    if min(a.shape) < SSIM_WIN:
        raise ValueError(f"SSIM needs at least {SSIM_WIN}x{SSIM_WIN} px after cropping, got {a.shape}")

    def filt(x: np.ndarray) -> np.ndarray:
        # Separable form of BasicSR's outer(g, g) window, g = getGaussianKernel(11, 1.5) (GaussianBlur builds the
        # same float64 kernel and runs 5-7x faster than sepFilter2D on float64). The crop leaves only positions
        # whose window lies inside the image, so the border mode never enters.
        return cv2.GaussianBlur(x, (SSIM_WIN, SSIM_WIN), SSIM_SIGMA)[half:-half, half:-half]

    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    rows, total = a.shape[0] - 2 * half, 0.0
    for r0 in range(0, rows, SSIM_STRIP):
        sa = a[r0 : min(r0 + SSIM_STRIP, rows) + 2 * half]
        sb = b[r0 : min(r0 + SSIM_STRIP, rows) + 2 * half]
        mu1, mu2 = filt(sa), filt(sb)
        mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
        s1 = filt(sa * sa) - mu1_sq
        s2 = filt(sb * sb) - mu2_sq
        s12 = filt(sa * sb) - mu12
        ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
        total += float(ssim_map.sum())
    return total / (rows * (a.shape[1] - 2 * half))


def ssim_y(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> float:
    """SSIM on BasicSR's Y channel after cropping ``crop_border`` px per side (BasicSR ``calculate_ssim`` with
    ``test_y_channel=True``; Gaussian 11/1.5, K1 0.01, K2 0.03, L 255, valid window positions only, map mean).

    = skimage ``structural_similarity(y_hr, y_sr, data_range=255, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`` on the cropped Y planes (see the module docstring for why).
    """
    y_sr, y_hr = _y_pair(sr, hr, crop_border)
    return _ssim_valid(y_sr, y_hr)


# ------------------------------------------------------------------------------------------------ periodicity


@dataclass(slots=True)
class Periodicity:
    """What :func:`periodicity` found. All values are shares of the (contrast-normalised) residual energy."""

    peak: float  # largest periodic autocorrelation at any lag with min_lag <= max(|dy|, |dx|) <= max lag
    stride_mean: float  # mean over the lattice of stride multiples (dy, dx in stride*Z, not both 0); nan if none fit
    stride_peak: float  # max over that lattice; nan if no lattice lag fits in the measured lag range
    lag: tuple[int, int]  # (dy, dx) of the shortest lag within 10% of ``peak`` (the fundamental), dy > 0 or dx > 0


def _centre_crop(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    ch, cw = min(h, max_side), min(w, max_side)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return rgb[y0 : y0 + ch, x0 : x0 + cw]


def _masked_residual(rgb: np.ndarray, sigma: float, max_side: int) -> np.ndarray:
    """Zero-mean, contrast-normalised high-pass luma residual of the centre crop (float32, native resolution)."""
    crop = np.ascontiguousarray(_centre_crop(rgb, max_side))
    # Float luma (BT.601 weights, no rounding to 8 bits, so a 1-level pattern in one channel survives), in [0, 1].
    y = cv2.cvtColor(crop.astype(np.float32), cv2.COLOR_RGB2GRAY) * np.float32(1.0 / 255.0)
    h = y - cv2.GaussianBlur(y, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    h = h / np.sqrt(_local_energy(h * h) + np.float32(MASK_FLOOR**2))
    return h - np.float32(h.mean(dtype=np.float64))


def _local_energy(h2: np.ndarray) -> np.ndarray:
    """G_MASK_SIGMA * h2. The map is smooth at that scale, so it is computed at 1/4 resolution (area mean, Gaussian
    of MASK_SIGMA / 4, bilinear back up): 0.1 s instead of 1 s at 4096^2, and within a few % of the direct blur."""
    hh, ww = h2.shape
    if min(hh, ww) < 64:
        return cv2.GaussianBlur(h2, (0, 0), MASK_SIGMA, borderType=cv2.BORDER_REFLECT)
    small = cv2.resize(h2, (ww // 4, hh // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), MASK_SIGMA / 4, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (ww, hh), interpolation=cv2.INTER_LINEAR)


def _periodic_part(power: np.ndarray) -> np.ndarray:
    """Power in excess of LINE_KAPPA x the local smooth spectrum (in place): the line-spectrum part.

    The smooth spectrum is the local geometric mean over LINE_BOX^2 bins times e^gamma: a periodogram bin of an
    aperiodic signal is ~ Exp(mu), and E[log X] = log mu - gamma (Euler's constant), so this estimates mu while one
    line bin in the box moves it by only log(ratio)/81. Chance exceedances of 10 mu have probability e^-10 and carry
    ~e^-10 of the energy, so an aperiodic image scores ~1e-4. Axis 0 (fy) is periodic; axis 1 is the rfft half-axis.
    """
    floor = np.float32(max(float(power.max()), 1e-30) * 1e-12)
    log_p = np.log(np.maximum(power, floor))
    smooth = np.exp(uniform_filter(log_p, size=LINE_BOX, mode=("wrap", "reflect")))
    power -= np.float32(LINE_KAPPA * math.exp(np.euler_gamma)) * smooth
    return np.maximum(power, 0.0, out=power)


def _lag_map(h: np.ndarray, max_lag: int, lines_only: bool) -> np.ndarray:
    """Linear autocorrelation of ``h`` for |dy|, |dx| <= max_lag, per pixel pair, normalised by R(0) of all of ``h``.

    Zero padding to >= size + max_lag makes the circular FFT correlation equal the linear one at every lag read.
    Plain R is divided by the overlap count (size - |d| per axis, the unbiased estimate), so a stationary periodic
    pattern reads the same at every multiple of its period; the caller keeps max_lag <= size / 4, so each lag still
    averages >= 56% of the crop. The periodic part is divided by the pixel count instead: keeping only the cores of
    the spectral lines drops the sinc skirts that encode the crop's finite extent, so its correlation hardly falls
    off with lag (measured: < 10% at size / 4), and the overlap division would inflate long lags by size / (size - d).
    """
    hh, ww = h.shape
    py = sfft.next_fast_len(hh + max_lag, real=True)
    px = sfft.next_fast_len(ww + max_lag, real=True)
    spec = sfft.rfft2(h, s=(py, px), workers=-1)
    power = spec.real * spec.real + spec.imag * spec.imag
    del spec
    if lines_only:
        power = _periodic_part(power)
    acf = sfft.irfft2(power, s=(py, px), workers=-1)
    rows = np.r_[py - max_lag : py, 0 : max_lag + 1]
    cols = np.r_[px - max_lag : px, 0 : max_lag + 1]
    acf = acf[np.ix_(rows, cols)].astype(np.float64)
    if lines_only:
        acf /= hh * ww
    else:
        d = np.abs(np.arange(-max_lag, max_lag + 1))
        acf /= np.outer(hh - d, ww - d)
    r0 = float(np.vdot(h.ravel(), h.ravel())) / (hh * ww)  # Parseval: R(0) of the whole residual
    return acf / r0 if r0 > 0 else np.zeros_like(acf)


def autocorrelation(
    rgb: np.ndarray, sigma: float = 2.0, max_lag: int = 256, max_side: int = MAX_SIDE, lines_only: bool = True
) -> np.ndarray:
    """The (2L+1)x(2L+1) lag map R[L + dy, L + dx] that :func:`periodicity` reads, L = min(max_lag, side // 4).

    ``lines_only=False`` returns the plain normalised autocorrelation of the contrast-normalised residual (the
    METHODS.md R_x); useful for plots and for checking L_AP, whose ground-truth term cancels natural structure.
    """
    _check_rgb(rgb)
    h = _masked_residual(rgb, sigma, max_side)
    lag = min(max_lag, h.shape[0] // 4, h.shape[1] // 4)
    if lag < 1:
        raise ValueError(f"image too small for periodicity: {rgb.shape[:2]}")
    return _lag_map(h, lag, lines_only)


def _fundamental(r: np.ndarray, ring: np.ndarray, cheb: np.ndarray, peak: float) -> tuple[int, int]:
    """Shortest ring lag within 10% of the peak (a lattice pattern has equal peaks at every multiple), sign-fixed."""
    big = ring & (r >= 0.9 * peak) if peak > 0 else ring & (r >= peak)
    ys, xs = np.nonzero(big)
    half = r.shape[0] // 2
    dy, dx = ys - half, xs - half
    order = np.lexsort((dy * dy + dx * dx, cheb[ys, xs]))
    y, x = int(dy[order[0]]), int(dx[order[0]])
    return (-y, -x) if y < 0 or (y == 0 and x < 0) else (y, x)


def periodicity(
    rgb: np.ndarray,
    stride: int = 32,
    sigma: float = 2.0,
    min_lag: int = 4,
    max_lag: int = 256,
    max_side: int = MAX_SIDE,
) -> Periodicity:
    """Periodicity score of one image (HxWx3 uint8): how much of its fine detail repeats exactly, at any lag and at
    multiples of ``stride`` (32 px = one OP4KSR token; 16 = the VAE stride).

    Definition (METHODS.md "L_AP" with the changes below, each measured on the photos of the tests):

    1. Centre crop of at most ``max_side`` px per side, native resolution (a 32-px artefact must not be resampled).
       Luma x = BT.601 Y' / 255 in [0, 1], float. Residual h = x - G_sigma * x (Gaussian, sigma = 2 px by default):
       passes periods below ~12 px (gain >= 0.4), i.e. the fine detail whose repetition is the artefact; a smooth
       32-px sinusoid is mostly removed (gain 0.07), a grid of sharp lines or a repeated texture is kept.
    2. Contrast normalisation (divisive, as the MSCN coefficients of BRISQUE/NIQE, Mittal et al. 2012):
       h <- h / sqrt(G_16 * h^2 + (1/255)^2), then zero mean. A faint pattern matters where it is visible, in smooth
       areas; without this a few strong edges own the energy and a 4/255 grid reads 4-35x lower (measured). The
       1-level floor keeps 8-bit quantisation noise in flat areas from being amplified.
    3. Wiener-Khinchin with zero padding to >= size + L, so the correlation is linear, not circular, at every lag
       read. No taper: with the padding there is no wrap-around to suppress, and a Hann window cut the
       planted-grid scores 2-24x by discarding the borders (measured).
    4. Periodic part only: before the inverse FFT the power spectrum keeps only its excess over 10x the local
       smooth spectrum (:func:`_periodic_part`). The plain R of a photo or a bicubic upscale is dominated by
       aperiodic structure near the centre (R(4 px) = 0.07-0.3, measured), which hid a planted grid entirely;
       an exactly periodic pattern is a line spectrum and survives, while natural textures (bricks, canvas weave)
       are only quasi-periodic, their broadened spectral peaks go into the smooth estimate.
    5. R(l) = IFFT(periodic power)(l) / (pixel count) / R(0), R(0) = mean h^2 of the whole residual: the share of
       the residual energy that repeats at lag l. It is flat over the multiples of a period (see :func:`_lag_map`
       for why no overlap-count correction), so lattice means do not depend on the crop size.

    peak = max R over min_lag <= max(|dy|, |dx|) <= L, L = min(max_lag, crop side // 4); stride_mean / stride_peak =
    mean / max of R over the lattice {(i stride, j stride) != 0} within L (diagonals included: a token grid repeats
    in both axes); ``nan`` when stride > L. Values are shares of the normalised residual energy, ~0 for photos.

    Measured (metrics/1 defaults; the table is in tests/pipelines/test_metrics.py): photos (7 skimage photos, a
    3840x2160 photo of a canvas), their JPEG q75 copies and their x4 bicubic down-up copies: peak <= 0.0032,
    stride_mean <= 0.0016 (most read 0.0000). A 32-px grid of 1-px lines at +4/255: peak 0.006-0.08 on the
    skimage photos, 0.0030-0.0037 on the strongly textured ones (brick, canvas: masked, as it is to the eye); a
    32-px-periodic noise texture of std 4/255 (closer to a token-repeated artefact): 0.04-0.33. Scores grow about
    as amplitude^2 (an energy share). PERIODIC_ARTEFACT = 0.004 separates the two groups on the smooth photos.
    Known positives that are real periodicity: JPEG 8x8 blocking at low quality (lags of 8, so also the 16/32
    lattices), resampling traces of non-integer rescaling, synthetic textures.

    Cost (2 cores): a 4096x4096 image takes ~0.25 s at the default crop and ~1.1 s whole (max_side=4096).
    """
    _check_rgb(rgb)
    if stride < 1 or min_lag < 1 or max_lag < min_lag:
        raise ValueError(f"need stride >= 1 and 1 <= min_lag <= max_lag, got {stride}, {min_lag}, {max_lag}")
    r = autocorrelation(rgb, sigma=sigma, max_lag=max_lag, max_side=max_side)
    half = r.shape[0] // 2
    d = np.abs(np.arange(-half, half + 1))
    cheb = np.maximum(d[:, None], d[None, :])
    ring = cheb >= min_lag
    if not ring.any():
        raise ValueError(f"min_lag {min_lag} exceeds the measurable lag range {half} for {rgb.shape[:2]}")
    peak = float(r[ring].max())
    lattice = (d[:, None] % stride == 0) & (d[None, :] % stride == 0) & (cheb > 0)
    stride_mean = float(r[lattice].mean()) if lattice.any() else math.nan
    stride_peak = float(r[lattice].max()) if lattice.any() else math.nan
    return Periodicity(peak, stride_mean, stride_peak, _fundamental(r, ring, cheb, peak))


@dataclass(slots=True)
class PeriodicityExcess:
    """What :func:`periodicity_excess` found: periodic autocorrelation the output has beyond its reference."""

    peak: float  # max of R_x - R_ref over min_lag <= max(|dy|, |dx|) <= L
    stride_mean: float  # mean of max(D, 0) on the stride lattice less that on the half-stride offsets; nan if none
    stride_peak: float  # max of R_x - R_ref over the stride lattice; nan if none fits
    lag: tuple[int, int]  # (dy, dx) of the shortest lag within 10% of ``peak``
    flag: bool  # the verdict: a periodic artefact the reference does not have (see periodicity_excess)


def periodicity_excess(
    rgb: np.ndarray,
    ref: np.ndarray,
    stride: int = 32,
    sigma: float = 2.0,
    min_lag: int = 4,
    max_lag: int = 256,
    max_side: int = MAX_SIDE,
) -> PeriodicityExcess:
    """Periodicity that ``rgb`` has beyond ``ref``, an image with the same history: the bicubic upscale of the same
    LR (what ``sr4k bench eval`` passes). Both are HxWx3 uint8 of one size.

    Why relative: the absolute score (:func:`periodicity`) reads real periodicity that every upscale of the LR
    shares: the x4 interpolation kernel repeats every 4 px (lag-4 peaks on smooth LR content) and the LR's JPEG
    8x8 blocks become 32-px blocks after x4, exactly the token lattice. Measured (benchmarks/periodicity_flag.py,
    real 256^2 crops, half JPEG q75, x4): the absolute flag fired on 38 % of plain bicubic upscales. The reference
    has the same interpolation and compression history, so subtracting its lag map leaves what the model added,
    as L_AP subtracts the ground truth's R (METHODS.md; the same statistic without the ReLU margin).

    Definition: R_x, R_ref = :func:`autocorrelation` (periodic part, contrast-normalised, each by its own R(0));
    D = R_x - R_ref. peak = max D over the ring of lags min_lag..L; stride_mean = mean of max(D, 0) over the
    lattice of ``stride`` multiples less its mean over the half-stride offsets (lags whose coordinates are
    multiples of stride / 2, not both of stride). That makes it stride-aware: a pattern whose period divides
    stride / 2 (the x4 pixel-shuffle pattern of SR networks, period 4: D equal at (4, 0), (8, 0) ... (32, 32),
    measured on span-kendata / srmd outputs) is as strong on the offsets as on the lattice and cancels, while a
    period-``stride`` grid (a token grid) is strong on the lattice only; stride_peak = max D over the lattice.
    R_ref enters doubled (EXCESS_REF_GAIN) and clipped at 0: a sharper upscale legitimately strengthens a
    periodicity the LR has (measured: Lanczos vs bicubic on photos of stripes/grass, peak excess 0.075 at lag 10
    with a factor 1, 0.056 with 2), while a planted grid sits where the reference has ~0.

    flag = stride_mean > EXCESS_STRIDE: the token-lattice artefact, what L_AP fights. ``peak`` is reported, not
    part of the flag: on real SR networks it reads their period-4 pixel-shuffle pattern, a real but sub-token
    periodicity (measured on 17 native 128^2 crops x4, share with peak > 0.03: animevideov3 29 %, realcugan 6 %,
    srmd 41 %, span-kendata 88 %, whose peaks reach 0.63), while their stride excess stays <= 0.0045.

    Measured (benchmarks/periodicity_flag.py; 68 native 256^2 crops of 12 mate-backgrounds photos and 5
    scikit-image photos, every other one JPEG q75, x4 to 1024^2): stride excess of clean upscales 0 (bicubic,
    by construction) and <= 0.0001 (Lanczos): 0 % flagged either way, against 22-25 % for the absolute flag
    (PERIODIC_ARTEFACT); 1 %-amplitude (2.55 levels) planted 32-px grids: stride excess >= 0.009 (1-px lines,
    median 0.30) and >= 0.16 (a repeated random texture), 100 % flagged; at 0.5 % amplitude 88-91 % (lines) and
    100 % (texture). Cost: two :func:`autocorrelation` calls, ~0.5 s for a 1024^2 image on 2 cores.
    """
    _check_rgb(rgb)
    _check_rgb(ref, "ref")
    if rgb.shape != ref.shape:
        raise ValueError(f"periodicity_excess needs the reference at the output's size: {rgb.shape} vs {ref.shape}")
    if stride < 1 or min_lag < 1 or max_lag < min_lag:
        raise ValueError(f"need stride >= 1 and 1 <= min_lag <= max_lag, got {stride}, {min_lag}, {max_lag}")
    d = autocorrelation(rgb, sigma=sigma, max_lag=max_lag, max_side=max_side)
    d -= EXCESS_REF_GAIN * np.maximum(autocorrelation(ref, sigma=sigma, max_lag=max_lag, max_side=max_side), 0)
    half = d.shape[0] // 2
    a = np.abs(np.arange(-half, half + 1))
    cheb = np.maximum(a[:, None], a[None, :])
    ring = cheb >= min_lag
    if not ring.any():
        raise ValueError(f"min_lag {min_lag} exceeds the measurable lag range {half} for {rgb.shape[:2]}")
    peak = float(d[ring].max())
    lattice = (a[:, None] % stride == 0) & (a[None, :] % stride == 0) & (cheb > 0)
    stride_mean = stride_peak = math.nan
    if lattice.any():
        pos = np.maximum(d, 0)
        stride_mean = float(pos[lattice].mean())
        stride_peak = float(d[lattice].max())
        half = stride // 2 if stride % 2 == 0 else 0
        offset = (a[:, None] % half == 0) & (a[None, :] % half == 0) & ~lattice & (cheb > 0) if half else None
        if offset is not None and offset.any():  # what a shorter period (dividing stride / 2) explains
            stride_mean = max(stride_mean - float(pos[offset].mean()), 0.0)
    flag = bool(stride_mean > EXCESS_STRIDE)
    return PeriodicityExcess(peak, stride_mean, stride_peak, _fundamental(d, ring, cheb, peak), flag)


# ------------------------------------------------------------------------------------------------ no reference


def _luma01(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb).astype(np.float32), cv2.COLOR_RGB2GRAY) * np.float32(1 / 255)


def hf_energy(rgb: np.ndarray) -> float:
    """Share of the luma's spectral energy above half-Nyquist (radial frequency > 0.25 cycle/px), DC excluded.

    Welch estimate: Hann-windowed, mean-removed HF_TILE^2 tiles (at most HF_MAX_TILES, evenly spread), periodograms
    averaged. The window stops the tile edges from leaking energy across the spectrum. An upscaled or defocused
    image has almost nothing in the top band; sensor noise and sharpening raise it. Measured: photos 0.014-0.13,
    their x2 bicubic down-up copies 8-12x lower (0.001-0.014), x4 <= 0.0004; content-dependent, so compare methods
    on the same image. Images smaller than one tile use one square tile of their even short side.
    """
    y = _luma01(rgb)
    t = min(HF_TILE, (min(y.shape) // 2) * 2)
    if t < 4:
        return 0.0
    ny, nx = y.shape[0] // t, y.shape[1] // t
    idx = np.linspace(0, ny * nx - 1, min(ny * nx, HF_MAX_TILES)).round().astype(int)
    tiles = np.stack([y[(i // nx) * t : (i // nx + 1) * t, (i % nx) * t : (i % nx + 1) * t] for i in idx])
    tiles = tiles - tiles.mean(axis=(1, 2), keepdims=True)
    win = np.hanning(t).astype(np.float32)
    spec = sfft.rfft2(tiles * np.outer(win, win), workers=-1)
    power = (spec.real**2 + spec.imag**2).mean(axis=0)
    fy, fx = sfft.fftfreq(t)[:, None], sfft.rfftfreq(t)[None, :]
    # rfft stores the 0 < fx < 1/2 columns once for two conjugate bins: weight them 2x (t is even, so the last
    # column is the Nyquist one, stored once like DC).
    weight = np.full(power.shape, 2.0)
    weight[:, 0] = weight[:, -1] = 1.0
    weight[0, 0] = 0.0
    total = float((power * weight).sum())
    high = float((power * weight)[np.hypot(fy, fx) > 0.25].sum())
    return high / total if total > 0 else 0.0


def blockiness(rgb: np.ndarray) -> float:
    """8-px JPEG grid strength, averaged over the horizontal and vertical directions.

    Per direction: m_k = mean |luma step| between pixel x and x+1 over the x with x mod 8 = k (luma in [0, 1]);
    blockiness = max_k (m_k - m_(k+4 mod 8)) / mean_k m_k. Block borders step more than block centres, 4 px away.
    Comparing with the phase 4 away instead of with all others keeps the 2x and 4x upscalers' own period-2 and
    period-4 phase patterns (equal at k and k + 4) from reading as blocking; the max over k finds the grid wherever
    a crop put it. Measured: photos and their x2/x4 bicubic upscales 0.00-0.11 (the top: skimage rocket, itself
    decoded from a JPEG), JPEG q90 0.02-0.11, q30 0.38-0.69 (0.39-0.89 when the grid is shifted), q10 0.97-1.63.
    """
    y = _luma01(rgb)
    scores = []
    for steps in (np.abs(np.diff(y, axis=1)).mean(axis=0), np.abs(np.diff(y, axis=0)).mean(axis=1)):
        n = (steps.size // JPEG_BLOCK) * JPEG_BLOCK
        if n == 0:
            continue
        phase = steps[:n].reshape(-1, JPEG_BLOCK).mean(axis=0)
        mean = float(phase.mean())
        contrast = phase - np.roll(phase, -JPEG_BLOCK // 2)
        scores.append(float(contrast.max()) / mean if mean > 0 else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def no_reference(rgb: np.ndarray) -> dict[str, float]:
    """Offline no-reference scores of one HxWx3 uint8 image.

    - sharpness: ``filters.measure(rgb, photo_prior=False).sharpness``, the curation detail ratio (top octave /
      next octave of the most structured tiles; ~0.35-0.41 for a bicubic 2x upscale, 0.5-1.2 for sharp photos).
    - hf_energy: :func:`hf_energy`, share of spectral energy above half-Nyquist.
    - blockiness: :func:`blockiness`, 8-px JPEG grid strength.

    NIQE, MUSIQ and CLIPIQA are not computed here: they need model files (NIQE's pristine parameters, network
    weights) at a configured local path and no download is possible; the harness reports them "not available".
    """
    _check_rgb(rgb)
    return {
        "sharpness": float(filters.measure(rgb, photo_prior=False).sharpness),
        "hf_energy": hf_energy(rgb),
        "blockiness": blockiness(rgb),
    }


# ------------------------------------------------------------------------------------------------ learned metrics


def _weights_available(setting: str, weights_dir: str | None, files: dict[str, tuple[str, ...]]) -> tuple[bool, str]:
    """(True, folder) when ``weights_dir`` holds every file of one of the ``files`` variants, else (False, why)."""
    need = " or ".join(" + ".join(v) for v in files.values())
    hint = f"not available: set {setting} to a folder holding {need} (no download possible)"
    if not weights_dir:
        return False, hint
    folder = Path(weights_dir).expanduser()
    for variant in files.values():
        if all((folder / name).is_file() for name in variant):
            return True, str(folder)
    return False, f"{hint}; {folder} has none of these sets"


def lpips_available(weights_dir: str | None) -> tuple[bool, str]:
    """Whether LPIPS can run offline: ``weights_dir`` must hold an LPIPS v0.1 linear head (``vgg.pth`` or
    ``alex.pth``) and the matching torchvision ImageNet backbone. (True, folder) or (False, "not available: ...")."""
    return _weights_available("metrics.lpips_weights", weights_dir, LPIPS_FILES)


def dists_available(weights_dir: str | None) -> tuple[bool, str]:
    """Whether DISTS can run offline: ``weights_dir`` must hold DISTS's ``weights.pt`` (alpha, beta) and the
    torchvision VGG16 backbone. (True, folder) or (False, "not available: ...")."""
    return _weights_available("metrics.dists_weights", weights_dir, DISTS_FILES)
