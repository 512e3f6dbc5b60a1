"""RFR — RoPE base-frequency rescaling for a Flux transformer run on a larger token grid than it was trained on.

Token geometry (METHODS.md). Flux splits each 128-dim head into RoPE axes (16, 56, 56) = (index, row, column);
per spatial axis d = 56 and the band frequencies are ω_i = θ^(−2i/d), i = 0 … 27, θ = 10000, at integer token
positions m. Pre-training: 1024² px, F8 VAE, 2×2 packing → 16 px per token, a 64-token grid (L = 64). OP4KSR at
4096² px with the F16 VAE and 2×2 packing → 32 px per token, a 128-token grid (L' = 128). So the grid is
s = L'/L = 2 times longer per axis, and bands whose wavelength λ_i = 2π/ω_i is comparable to L see phases never
seen in training (extrapolation), which is where periodic artefacts with RoPE-wavelength periods come from.

The OP4KSR paper says only that the base is rescaled so that "the frequency allocation matches". Rules here
(``RFRConfig.mode``), all functions of (s, d, θ) only, fixed per model and saved with the checkpoint:

- ``ntk`` (default) — NTK-aware base scaling (bloc97 2023; Peng et al. 2023, YaRN §3.1). Change the base only,
  θ' = α θ, so ω'_i = ω_i α^(−2i/d). Require the lowest band (i = d/2 − 1) to be stretched exactly by s, so that
  its phase over the new grid L' equals its phase over the trained grid L: α^(−(d−2)/d) = 1/s ⇒ α = s^(d/(d−2)).
  The highest band (i = 0, the finest, local-relation band) is untouched, and the bands in between are stretched
  by s^(2i/(d−2)), a geometric ramp. Numbers for Flux-dev 1024²/F8 → 4096²/F16: s = 128/64 = 2, d = 56,
  α = 2^(56/54) = 2.0520, θ' = 20,520. Check of the "allocation": with θ = 10000, 8 of the 28 bands complete a
  full period within L = 64 tokens; on the 128 grid, 10 do with θ = 10000 and 9 with θ' = 20,520, while the longest
  band's phase over the grid, 128·ω'_27 = 64·ω_27, is exactly the trained one. The base is the only change, so the
  stock diffusers ``FluxPosEmbed`` is kept and ``pos_embed.theta`` is set to θ'.
- ``pi`` — position interpolation (Chen et al. 2023): m → m / s for every band (ω'_i = ω_i / s); keeps every phase
  inside the trained range, blurs the finest bands.
- ``yarn`` — YaRN "NTK-by-parts" (Peng et al. 2023, §3.2-3.4): per band, r_i = L / λ_i periods over the trained
  grid; γ_i = clip((r_i − β_slow)/(β_fast − β_slow), 0, 1); ω'_i = (1 − γ_i) ω_i / s + γ_i ω_i (bands that turn
  many times are kept, slow ones interpolated), plus the attention temperature √(1/t) = 0.1 ln s + 1 folded into
  cos/sin as in YaRN's reference code (q and k both scaled, so the logits by (0.1 ln s + 1)²).
- ``none`` — the backbone's RoPE unchanged.

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


def band_factors(cfg: RFRConfig, d: int) -> torch.Tensor:
    """Per-band multipliers ω'_i / ω_i (float64, d/2 values) of ``cfg.mode`` at the stock base θ."""
    s, theta = cfg.scale, cfg.base_theta
    i = torch.arange(0, d, 2, dtype=torch.float64) / d  # 2i/d
    if cfg.mode == "none" or s == 1:
        return torch.ones_like(i)
    if cfg.mode == "ntk":
        return (ntk_theta(theta, s, d) / theta) ** (-i)
    if cfg.mode == "pi":
        return torch.full_like(i, 1.0 / s)
    wavelength = 2 * math.pi * theta**i
    periods = cfg.pretrain_grid / wavelength
    gamma = ((periods - cfg.beta_slow) / (cfg.beta_fast - cfg.beta_slow)).clamp(0, 1)
    return (1 - gamma) / s + gamma


class RescaledFluxPosEmbed(nn.Module):
    """Drop-in for diffusers' ``FluxPosEmbed`` (same (cos, sin) layout: repeat-interleaved real pairs) with
    per-band frequency multipliers on the spatial axes and an optional cos/sin magnitude (YaRN temperature)."""

    def __init__(self, theta: float, axes_dim: list[int], cfg: RFRConfig):
        super().__init__()
        self.theta, self.axes_dim, self.cfg = theta, list(axes_dim), cfg
        self.mscale = 0.1 * math.log(cfg.scale) + 1.0 if cfg.mode == "yarn" and cfg.scale > 1 else 1.0

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = ids.to(torch.float64 if ids.device.type != "mps" else torch.float32)
        cos_out, sin_out = [], []
        for axis, d in enumerate(self.axes_dim):
            omega = 1.0 / self.theta ** (torch.arange(0, d, 2, dtype=pos.dtype, device=pos.device) / d)
            if axis > 0:
                omega = omega * band_factors(self.cfg, d).to(omega)
            freqs = torch.outer(pos[:, axis], omega)
            cos_out.append(freqs.cos().repeat_interleave(2, dim=1).float())
            sin_out.append(freqs.sin().repeat_interleave(2, dim=1).float())
        cos, sin = torch.cat(cos_out, dim=-1), torch.cat(sin_out, dim=-1)
        return cos * self.mscale, sin * self.mscale


def apply_rfr(transformer: nn.Module, cfg: RFRConfig) -> float:
    """Apply the RFR rule of ``cfg`` to a loaded ``FluxTransformer2DModel`` in place; returns the effective base
    (θ' for ntk, the stock θ otherwise). Idempotent: always starts from ``cfg.base_theta``."""
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    axes = list(transformer.config.axes_dims_rope)
    if cfg.mode in ("none", "ntk"):
        d = axes[1]
        if axes[1] != axes[2]:
            raise ValueError(f"RFR ntk needs equal row/column RoPE axes, got axes_dims_rope={axes}; use mode=yarn")
        theta = ntk_theta(cfg.base_theta, cfg.scale, d) if cfg.mode == "ntk" else cfg.base_theta
        transformer.pos_embed = FluxPosEmbed(theta=theta, axes_dim=axes)
        return float(theta)
    transformer.pos_embed = RescaledFluxPosEmbed(cfg.base_theta, axes, cfg)
    return float(cfg.base_theta)
