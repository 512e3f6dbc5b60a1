"""L_AP — the autocorrelation periodicity loss, in torch and differentiable.

It is the statistic of ``pipelines.bench.metrics.periodicity`` (the evaluation score) made into a loss, so training
pushes down exactly what the benchmark reports. For an output x and a reference y (the HR ground truth in stage 1,
the bicubic-upsampled LR in stage 2), both (B, 3, H, W) in [0, 1]:

1. Luma Y = 0.299 R + 0.587 G + 0.114 B (BT.601, as cv2.COLOR_RGB2GRAY in the metric).
2. High-pass residual h = Y − G_σ * Y, σ = 2 px (reflect border): keeps periods below ~12 px.
3. Contrast normalisation h ← h / sqrt(G_16 * h² + (1/255)²), then zero mean (the metric's divisive masking;
   the local energy is computed at 1/4 resolution, as there, so it is cheap at 4K).
4. Wiener–Khinchin with zero padding to ≥ size + L: P = |FFT(h)|², the correlation is linear, not circular.
   ``lines_only`` (default, = the metric): keep the line-spectrum part P_lines = ReLU(P − κ e^γ S), S = exp(box_9(log
   P)) the local geometric-mean (aperiodic) spectrum, κ = 10; S is detached, so the gradient lowers the periodic
   peaks instead of raising the floor. R(ℓ) = IFFT(P_lines)(ℓ) / (H W) / R(0), R(0) = mean h² (Parseval): the
   share of the residual energy that repeats at lag ℓ. With ``lines_only=False``, R is the plain normalised
   autocorrelation (divided by the overlap count per lag).
5. L_AP = Σ_ℓ w_ℓ ReLU(R_x(ℓ) − ReLU(R_y(ℓ)) − τ) / Σ_ℓ w_ℓ over the ring Λ = {ℓ : min_lag ≤ max(|dy|, |dx|) ≤ L},
   (``norm="ref"``, the default: both R divided by the reference's R_y(0), so the output cannot lower its shares by
   adding residual energy elsewhere), L = min(max_lag, side/4); w_ℓ = 1 + w_stride at lags on the token-stride
   (32 px) or VAE-stride (16 px) lattice.
   Only *excess* periodicity is penalised: the reference's periodic peaks (brick, fabric) are allowed, and the
   reference enters through ReLU(R_y): the line-spectrum autocorrelation of a periodic texture has negative lobes
   (a grating's R is a cosine), and with R_x − R_y an output that merely *lacks* the reference's texture scored
   R_x − R_y = +|lobe| > 0 (measured: 9.9e-4, two thirds of a planted grid's 1.5e-3); with ReLU(R_y) the lobes count
   as 0 and an output without the texture costs R_x − 0 ≈ its own (near-zero) periodicity.
   The margin τ (``LossConfig.ap_tau``, default 2e-4) is the per-lag share an output may exceed its reference by
   for free. Measured on 256² photos (3 pairs; tests/training/sr/test_op4ksr_periodicity_loss.py): a photo against
   an unrelated photo scores 4e-7 – 2e-5 at τ = 0 and exactly 0 at τ = 2e-4; a photo lacking the reference's
   +8/255 32-px grid 4e-7 – 2e-5 at τ = 0; planted 32-px grids (at τ = 2e-4) +2/255: 2.9e-4 – 3.2e-4,
   +4/255: 1.5e-3 – 1.6e-3, +8/255: 5.7e-3 – 6.1e-3. So τ silences natural-vs-natural noise and keeps even a
   2/255 grid.

Cost: two real FFTs of (H+L)×(W+L) per image and a 9×9 box filter of the spectrum: O(N log N); 4096² on one GPU in
milliseconds. Everything is batched; the loss is the batch mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipelines.bench.periodicity_constants import LINE_BOX, LINE_KAPPA, LUMA, MASK_FLOOR, MASK_SIGMA  # the metric's


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian of (B, 1, H, W), radius 4σ, reflect border (cv2's float default kernel size)."""
    r = max(1, round(4 * sigma))
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def masked_residual(rgb: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """Steps 1-3: (B, 3, H, W) in [0, 1] -> zero-mean contrast-normalised high-pass luma (B, 1, H, W)."""
    w = torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    y = (rgb * w).sum(1, keepdim=True)
    h = y - _gauss_blur(y, sigma)
    e = h * h
    if min(h.shape[-2:]) >= 64:  # the metric's 1/4-resolution local energy
        small = _gauss_blur(F.avg_pool2d(e, 4), MASK_SIGMA / 4)
        e = F.interpolate(small, size=h.shape[-2:], mode="bilinear", align_corners=False)
    else:
        e = _gauss_blur(e, MASK_SIGMA)
    h = h / torch.sqrt(e + MASK_FLOOR**2)
    return h - h.mean(dim=(-2, -1), keepdim=True)


def _periodic_part(power: torch.Tensor) -> torch.Tensor:
    """ReLU(P − κ e^γ S), S = local geometric mean over LINE_BOX² bins (wrap along fy, reflect along the rfft axis),
    detached: E[log Exp(μ)] = log μ − γ, so e^γ S estimates the aperiodic level μ."""
    r = LINE_BOX // 2
    with torch.no_grad():
        lp = torch.log(power.clamp_min(power.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-30) * 1e-12))
        lp = torch.cat([lp[..., -r:, :], lp, lp[..., :r, :]], dim=-2)
        lp = F.pad(lp, (r, r, 0, 0), mode="reflect")
        smooth = torch.exp(F.avg_pool2d(lp, LINE_BOX, stride=1))
    return F.relu(power - LINE_KAPPA * math.exp(0.5772156649015329) * smooth)


def autocorrelation(
    rgb: torch.Tensor, sigma: float = 2.0, max_lag: int = 256, lines_only: bool = True, normalise: bool = True
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Normalised lag map R (B, 2L+1, 2L+1), R[:, L + dy, L + dx], L = min(max_lag, H // 4, W // 4); with
    ``normalise=False`` the pair (unnormalised map, R(0) of shape (B, 1, 1))."""
    h = masked_residual(rgb.float(), sigma)[:, 0]
    hh, ww = h.shape[-2:]
    lag = min(max_lag, hh // 4, ww // 4)
    if lag < 1:
        raise ValueError(f"image too small for L_AP: {hh}x{ww} (need >= 4 px per side)")
    py, px = hh + lag, ww + lag
    spec = torch.fft.rfft2(h, s=(py, px))
    power = spec.real.square() + spec.imag.square()
    if lines_only:
        power = _periodic_part(power)
    acf = torch.fft.irfft2(power, s=(py, px))
    rows = torch.cat([torch.arange(py - lag, py), torch.arange(0, lag + 1)]).to(h.device)
    cols = torch.cat([torch.arange(px - lag, px), torch.arange(0, lag + 1)]).to(h.device)
    acf = acf.index_select(-2, rows).index_select(-1, cols)
    if lines_only:
        acf = acf / (hh * ww)
    else:
        d = torch.arange(-lag, lag + 1, device=h.device).abs()
        acf = acf / torch.outer(hh - d, ww - d).to(acf)
    r0 = h.square().mean(dim=(-2, -1)).view(-1, 1, 1)
    return acf / r0.clamp_min(1e-12) if normalise else (acf, r0)


def lag_weights(lag: int, min_lag: int, strides: tuple[int, ...], stride_weight: float, device=None) -> torch.Tensor:
    """w_ℓ on the (2L+1)² lag map: 0 inside the centre (Chebyshev < min_lag), 1 on the ring, 1 + stride_weight on the
    lattice of any stride in ``strides`` (both dy and dx multiples, not both 0)."""
    d = torch.arange(-lag, lag + 1, device=device).abs()
    cheb = torch.maximum(d[:, None], d[None, :])
    w = (cheb >= min_lag).float()
    for s in strides:
        lattice = (d[:, None] % s == 0) & (d[None, :] % s == 0) & (cheb > 0)
        w = torch.where(lattice & (w > 0), 1.0 + stride_weight, w)
    return w


def ap_loss(
    x: torch.Tensor,
    ref: torch.Tensor | None = None,
    tau: float = 2e-4,
    stride_weight: float = 4.0,
    strides: tuple[int, ...] = (32, 16),
    sigma: float = 2.0,
    min_lag: int = 4,
    max_lag: int = 64,
    lines_only: bool = True,
    norm: str = "ref",
) -> torch.Tensor:
    """L_AP of output ``x`` against reference ``ref`` (None: R_y = 0), both (B, 3, H, W) in [0, 1]; scalar:
    mean_ℓ w_ℓ ReLU(R_x − ReLU(R_y) − τ) (only periodicity in excess of the reference's, beyond the margin τ).

    ``norm="ref"`` divides both autocorrelations by the reference's R(0) (detached), ``"self"`` each by its own.
    With "self" the loss can be lowered by adding residual energy at lags it does not read (measured in
    benchmarks/periodicity_ablation.py: periodicity at the 32-px lag rose); "ref" closes that route.
    """
    if norm not in ("ref", "self"):
        raise ValueError(f"norm {norm!r}: choose 'ref' or 'self'")
    if ref is None or norm == "self":
        rx = autocorrelation(x, sigma, max_lag, lines_only)
        if ref is not None:
            with torch.no_grad():
                ry = autocorrelation(ref, sigma, max_lag, lines_only)
            rx = rx - F.relu(ry)
    else:
        acf_x, _ = autocorrelation(x, sigma, max_lag, lines_only, normalise=False)
        with torch.no_grad():
            acf_y, r0_y = autocorrelation(ref, sigma, max_lag, lines_only, normalise=False)
        rx = (acf_x - F.relu(acf_y)) / r0_y.clamp_min(1e-12)
    lag = rx.shape[-1] // 2
    w = lag_weights(lag, min(min_lag, lag), strides, stride_weight, rx.device)
    return ((F.relu(rx - tau) * w).sum(dim=(-2, -1)) / w.sum()).mean()
