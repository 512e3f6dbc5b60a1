"""RFR — RoPE base-frequency rescaling for a Flux transformer run on a larger token grid than it was trained on.

Token geometry (METHODS.md). Flux splits each 128-dim head into RoPE axes (16, 56, 56) = (index, row, column);
per spatial axis d = 56 and the band frequencies are ω_i = θ^(−2i/d), i = 0 … 27, θ = 10000, at integer token
positions m. Pre-training: 1024² px, F8 VAE, 2×2 packing → 16 px per token, a 64-token grid (L = 64). OP4KSR at
4096² px with the F16 VAE and 2×2 packing → 32 px per token, a 128-token grid (L' = 128). Bands whose wavelength
λ_i = 2π/ω_i is comparable to L see phases never seen in training on the longer grid (extrapolation), which is where
periodic artefacts with RoPE-wavelength periods come from.

**The scale s is derived, not fixed.** s = L'/L with L = ``RFRConfig.trained_grid`` (the grid side the RoPE
weights were trained on: 64 for Flux-dev; saved in every checkpoint's ``op4ksr.json``) and L' = the token-grid side
of the image being run, read from the token ids of each forward pass, per axis: s_axis = max(1, L'_axis / L)
(the "dynamic" scaling of emozilla 2023 / transformers' ``rope_type="dynamic"``, made per axis because a 3840×2160
image is 120 × 68 tokens and the short axis needs less rescaling). So a LoRA trained on 512-px crops (16 tokens)
runs with s = 1, the identical RoPE the backbone learned, and the same checkpoint at 4096² (128 tokens) gets s = 2;
at 8192² s = 4. ``target_grid`` (optional) pins s = target_grid / trained_grid for every input (the old behaviour,
kept for checkpoints that stored it). The grid a LoRA was fine-tuned on is recorded as ``finetune_grid``.

The OP4KSR paper says only that the base is rescaled so that "the frequency allocation matches". Rules
(``RFRConfig.mode``), all functions of (s, d, θ, L) only:

- ``ntk`` (default) — NTK-aware base scaling (bloc97 2023; Peng et al. 2023, YaRN §3.1). Change the base only,
  θ' = α θ, so ω'_i = ω_i α^(−2i/d). Require the lowest band (i = d/2 − 1) to be stretched exactly by s, so that
  its phase over the new grid L' equals its phase over the trained grid L: α^(−(d−2)/d) = 1/s ⇒ α = s^(d/(d−2)).
  The highest band (i = 0) is untouched, the bands in between are stretched by s^(2i/(d−2)), a geometric ramp.
  Numbers for Flux-dev at 4096²/F16: s = 128/64 = 2, d = 56, α = 2^(56/54) = 2.0520, θ' = 20,520.
- ``pi`` — position interpolation (Chen et al. 2023): m → m / s for every band (ω'_i = ω_i / s); keeps every phase
  inside the trained range, blurs the finest bands.
- ``yarn`` — YaRN "NTK-by-parts" (Peng et al. 2023, §3.2-3.4): per band, r_i = L / λ_i periods over the
  trained grid; γ_i = clip((r_i − β_slow)/(β_fast − β_slow), 0, 1); ω'_i = (1 − γ_i) ω_i / s + γ_i ω_i (bands that turn
  many times are kept, slow ones interpolated), plus the attention temperature √(1/t) = 0.1 ln s + 1 folded into
  cos/sin as in YaRN's reference code (q and k both scaled, so the logits by (0.1 ln s + 1)²).
  **The ramp is scaled to the grid.** YaRN's β_fast = 32, β_slow = 1 were set for LLaMA (L = 2048-4096 tokens),
  where the finest band turns r_0 = L/2π ≈ 650 times, so bands with ≥ 32 turns exist and are kept. On a 64-token
  grid r_0 = 64/2π = 10.2: no band reaches 32 turns, γ_i ≤ 0.3 everywhere, and YaRN collapses to (almost) PI. The
  rule here keeps YaRN's ramp width (β_fast/β_slow = 32, i.e. the same number of bands on the ramp: log(32)/log θ ·
  d/2 ≈ 5.3 of 28) and anchors its top at the finest band when the grid is too short for it:
  k = min(1, r_0 / β_fast), β'_fast = k β_fast, β'_slow = k β_slow. Flux (L = 64): k = 0.318, β' = (10.19, 0.318):
  band 0 is kept exactly, bands with < 0.32 turns (λ > 201 tokens, i ≥ 11) are interpolated by 1/s, 10 ramp
  (factors 1, 0.855, 0.751, … 0.503 for i = 0 … 10 at s = 2).
  For L ≥ 2π·32 = 201 tokens k = 1 and this is YaRN as published.
- ``none`` — the backbone's RoPE unchanged.

**Which mode (benchmarks/rope_extrapolation.py, 2026-12-07): ``ntk`` is the default.** A Flux-style transformer (2
double + 2 single blocks, RoPE axes (8, 16, 16), θ = 10000) trained from scratch for ×2 SR at an 8-token grid, 2000
steps × 4 crops (+2.7 dB over bicubic at its own grid), 3 seeds, run at s = 2 and 4 times its grid; PSNR gain minus
that of the trained RoPE (none), paired by seed, mean ± 95 % t-interval:

====== ================ ================ ================ ================ ================
s      ntk              yarn (this rule) yarn, published  pi               tiled at g
====== ================ ================ ================ ================ ================
2      −0.04 ± 0.03     −0.14 ± 0.11     −0.37 ± 0.29     −0.40 ± 0.30     −0.04 ± 0.23
4      +0.06 ± 0.07     +0.15 ± 0.17     −0.02 ± 0.14     −0.03 ± 0.15     +0.19 ± 0.25
====== ================ ================ ================ ================ ================

(none: +1.70 dB at 2×, +0.54 at 4×.) A trained model extrapolates to 2× its grid without loss and without periodic
artefacts (periodicity peak 0.0051-0.0053 in every arm, tiled included). At 2×, OP4KSR's s, every rule can only lose:
ntk least (its finest band is untouched; −0.02 to −0.05 dB per seed), yarn 0.09-0.17 dB in every seed (ramp and
attention temperature), whole-band interpolation 0.4 dB (pi, and yarn with the published β, which on a short grid is
nearly pi). At 4× a penalty appears (none 0.11-0.30 dB below tiling) and every seed gains with yarn (+0.11 to +0.23)
and with ntk (+0.04 to +0.09); yarn also brings the periodicity peak from 0.0006-0.0019 (none) to tiling's
0.0004-0.0005, ntk by 7-22 % (all below the 0.004 artefact flag of pipelines.bench.metrics). Hence ``ntk``: the base
rescaling the paper names, within 0.05 dB of the trained RoPE where OP4KSR runs (s = 2) and better beyond it; ``yarn``
for runs at ≥ 4× the trained grid (8192² from Flux-dev). The grid-scaled ramp beats the published β at both scales
(+0.23 dB at 2×, +0.17 at 4×), as derived above. Caveats: one small architecture and grid, whose finest band turns 1.3
times over the trained grid (Flux-dev's 10.2 times); the 300-step run of 2026-12-06 (under-trained, −1.25 dB vs
bicubic) showed large 4× artefacts that yarn removed, and training to convergence removed them in every arm.

diffusers hard-codes θ = 10000 in ``FluxPosEmbed`` and ``from_pretrained`` rebuilds it, so :func:`apply_rfr` must
be called after every load (``OP4KSR`` does). Only the spatial axes (1, 2) are rescaled; axis 0 is 0 for every
image and text token in Flux, so any rule leaves it unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.sr.config import RFRConfig


def ntk_theta(theta: float, s: float, d: int) -> float:
    """θ' = θ · s^(d/(d−2)) (the NTK-aware rule; s = 1 gives θ)."""
    return theta * s ** (d / (d - 2))


def yarn_betas(cfg: RFRConfig) -> tuple[float, float]:
    """(β'_fast, β'_slow): YaRN's ramp scaled to the trained grid (module docstring): k = min(1, (L/2π) / β_fast)."""
    if cfg.yarn_ramp == "published":
        return cfg.beta_fast, cfg.beta_slow
    k = min(1.0, cfg.trained_grid / (2 * math.pi) / cfg.beta_fast)
    return k * cfg.beta_fast, k * cfg.beta_slow


def grid_scale(cfg: RFRConfig, run_grid: float) -> float:
    """s for an axis of ``run_grid`` tokens: target_grid / trained_grid if pinned, else max(1, run / trained)."""
    if cfg.target_grid is not None:
        return cfg.target_grid / cfg.trained_grid
    return max(1.0, run_grid / cfg.trained_grid)


def band_factors(cfg: RFRConfig, d: int, s: float | None = None) -> torch.Tensor:
    """Per-band multipliers ω'_i / ω_i (float64, d/2 values) of ``cfg.mode`` at scale ``s`` (default: the pinned
    scale target_grid / trained_grid, else 1)."""
    s = cfg.scale if s is None else s
    theta = cfg.base_theta
    i = torch.arange(0, d, 2, dtype=torch.float64) / d  # 2i/d
    if cfg.mode == "none" or s <= 1:
        return torch.ones_like(i)
    if cfg.mode == "ntk":
        return (ntk_theta(theta, s, d) / theta) ** (-i)
    if cfg.mode == "pi":
        return torch.full_like(i, 1.0 / s)
    beta_fast, beta_slow = yarn_betas(cfg)
    periods = cfg.trained_grid / (2 * math.pi * theta**i)
    gamma = ((periods - beta_slow) / (beta_fast - beta_slow)).clamp(0, 1)
    return (1 - gamma) / s + gamma


class RescaledFluxPosEmbed(nn.Module):
    """Drop-in for diffusers' ``FluxPosEmbed`` (same (cos, sin) layout: repeat-interleaved real pairs) with
    per-band frequency multipliers on the spatial axes, at the scale derived from the token ids of each call (the
    image grid = largest id + 1 per axis), and the YaRN temperature on cos/sin."""

    def __init__(self, theta: float, axes_dim: list[int], cfg: RFRConfig):
        super().__init__()
        self.theta, self.axes_dim, self.cfg = theta, list(axes_dim), cfg
        self.last_scales: tuple[float, ...] = ()  # the per-axis s of the latest call (for logs and tests)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = ids.to(torch.float64 if ids.device.type != "mps" else torch.float32)
        cos_out, sin_out, scales = [], [], []
        for axis, d in enumerate(self.axes_dim):
            omega = 1.0 / self.theta ** (torch.arange(0, d, 2, dtype=pos.dtype, device=pos.device) / d)
            if axis > 0:
                s = grid_scale(self.cfg, float(pos[:, axis].max()) + 1 if len(pos) else 1.0)
                scales.append(s)
                omega = omega * band_factors(self.cfg, d, s).to(omega)
            freqs = torch.outer(pos[:, axis], omega)
            cos_out.append(freqs.cos().repeat_interleave(2, dim=1).float())
            sin_out.append(freqs.sin().repeat_interleave(2, dim=1).float())
        cos, sin = torch.cat(cos_out, dim=-1), torch.cat(sin_out, dim=-1)
        self.last_scales = tuple(scales)
        s = max(scales, default=1.0)
        mscale = 0.1 * math.log(s) + 1.0 if self.cfg.mode == "yarn" and s > 1 else 1.0
        return cos * mscale, sin * mscale


def apply_rfr(transformer: nn.Module, cfg: RFRConfig) -> float:
    """Apply the RFR rule of ``cfg`` to a loaded ``FluxTransformer2DModel`` in place; returns the effective base for
    the record (θ' for ntk with a pinned scale, the stock θ otherwise: with the derived scale θ' depends on the
    image, θ'(L') = θ · (L'/L)^(d/(d−2))). Idempotent: always starts from ``cfg.base_theta``."""
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    axes = list(transformer.config.axes_dims_rope)
    if cfg.mode == "none" or (cfg.mode == "ntk" and cfg.target_grid is not None):
        d = axes[1]
        if axes[1] != axes[2]:
            raise ValueError(f"RFR ntk needs equal row/column RoPE axes, got axes_dims_rope={axes}; use mode=yarn")
        theta = ntk_theta(cfg.base_theta, cfg.scale, d) if cfg.mode == "ntk" else cfg.base_theta
        transformer.pos_embed = FluxPosEmbed(theta=theta, axes_dim=axes)
        return float(theta)
    transformer.pos_embed = RescaledFluxPosEmbed(cfg.base_theta, axes, cfg)
    return float(cfg.base_theta)
