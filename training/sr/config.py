"""The one typed config of ``sr4k train-sr`` (both stages) and of an OP4KSR checkpoint.

YAML file (``--config sr.yaml``) + CLI overrides, validated at start: an invalid combination fails with a message
that names the rule and the fix. The model part (:class:`ModelConfig`) is saved into every checkpoint
(``op4ksr.json``), so ``OP4KSR.from_checkpoint`` rebuilds exactly the model that was trained, RFR included.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

TOKEN_STRIDE = 32  # px per token per axis: F16 VAE x 2x2 packing (same as pipelines.curate.build.TOKEN_STRIDE)
AP_MIN_CROP = 256  # px: below, L_AP's floor on natural content exceeds its margin tau (LossConfig, the comment on ap)


class RFRConfig(BaseModel):
    """RoPE base-frequency rescaling (training.sr.rfr has the derivation)."""

    model_config = ConfigDict(extra="forbid")

    # Default from benchmarks/rope_extrapolation.py (training.sr.rfr, "Which mode"): at s = 2 (4096^2 from Flux-dev)
    # ntk stays within 0.05 dB of the trained RoPE while yarn loses 0.14 and pi 0.4; at s = 4 yarn gains most.
    mode: Literal["none", "ntk", "pi", "yarn"] = Field(
        "ntk",
        description="ntk (theta' = theta s^(d/(d-2)); the default, from benchmarks/rope_extrapolation.py) | yarn "
        "(per-band ramp + temperature; best at >= 4x the trained grid) | pi (positions / s) | none",
    )
    trained_grid: int = Field(
        64,
        ge=1,
        validation_alias=AliasChoices("trained_grid", "pretrain_grid"),
        description="token-grid side the RoPE weights were trained on (Flux-dev: 1024 px / 16 = 64); s = run / this",
    )
    target_grid: int | None = Field(
        None,
        ge=1,
        description="pin s = target_grid / trained_grid for every input; None (default) derives s per image from "
        "its token grid: s = max(1, grid / trained_grid) per axis",
    )
    finetune_grid: int | None = Field(None, ge=1, description="token grid of the LoRA training crops (record only)")
    base_theta: float = Field(10000.0, gt=0, description="the backbone's RoPE base (Flux: 10000)")
    beta_fast: float = Field(32.0, gt=0, description="yarn: beta_fast before scaling to the grid (YaRN: 32)")
    beta_slow: float = Field(1.0, gt=0, description="yarn: beta_slow before scaling to the grid (YaRN: 1)")
    yarn_ramp: Literal["grid", "published"] = Field(
        "grid", description="yarn: grid = betas scaled to the trained grid (training.sr.rfr); published = as given"
    )

    @property
    def scale(self) -> float:
        """The pinned scale (target_grid / trained_grid), or 1 when it is derived per image."""
        return 1.0 if self.target_grid is None else self.target_grid / self.trained_grid

    @property
    def pretrain_grid(self) -> int:  # the name used before the scale was derived
        return self.trained_grid


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: int = Field(16, ge=1, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA alpha (scale = alpha / rank)")
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "to_q",
            "to_k",
            "to_v",
            "to_out.0",
            "add_q_proj",
            "add_k_proj",
            "add_v_proj",
            "to_add_out",
            "proj_mlp",
            "proj_out",
        ],
        description="transformer module names that get LoRA (peft target_modules)",
    )


class ModelConfig(BaseModel):
    """What defines an OP4KSR model; saved with every checkpoint."""

    model_config = ConfigDict(extra="forbid")

    transformer: str = Field(..., description="local diffusers FluxTransformer2DModel folder (save_pretrained)")
    vae: str = Field(..., description="local diffusers AutoencoderKL folder with 16x compression (5 levels)")
    text_embeds: str | None = Field(
        None,
        description="safetensors with 'prompt_embeds' [T, D] and 'pooled_prompt_embeds' [P] (the fixed cached "
        "conditioning); default: <transformer>/text_embeds.safetensors, else zeros",
    )
    scale: int = Field(4, ge=1, description="SR factor")
    timestep: float = Field(0.5, gt=0, le=1, description="the fixed flow time t of the one step (x0 = x_t - t v)")
    guidance: float = Field(1.0, description="guidance-embedding value (Flux-dev is guidance-distilled)")
    rfr: RFRConfig = Field(default_factory=RFRConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    vae_tiling: bool = Field(False, description="explicit fallback: VAE tiled encode/decode (not patch-free)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights/activations dtype; auto = bfloat16 on a CUDA GPU, float32 on the CPU"
    )


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shards: list[str] = Field(default_factory=list, description="curated shard tars, or folders with manifest.json")
    crop: int = Field(512, ge=TOKEN_STRIDE, description="HR training crop side (px, multiple of 32 and of scale)")
    batch_size: int = Field(1, ge=1, description="samples per step per process")
    shuffle_buffer: int = Field(64, ge=1, description="sample shuffle buffer")


class LossConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latent_l2: float = Field(1.0, ge=0, description="weight of L2 between predicted and encoded HR latents")
    pixel_l2: float = Field(1.0, ge=0, description="weight of pixel L2 after decoding")
    lpips: float = Field(0.0, ge=0, description="weight of LPIPS (needs lpips_weights and the lpips package)")
    lpips_weights: str | None = Field(None, description="folder with LPIPS v0.1 heads + backbone (no download)")
    # Magnitudes (tests/training/sr/test_op4ksr_periodicity_loss.py): a +8/255 32-px line grid on a photo gives
    # L_AP ~ 6e-3, the photo itself ~ 3e-5; pixel L2 (in [-1, 1]) of a good x4 model is ~ 1e-2. With lambda = 1 a
    # visible grid costs about half the pixel term, while natural images cost nothing -- on crops >= AP_MIN_CROP.
    # The default lambda = 1 is kept for the 512-px default crop, from benchmarks/rope_extrapolation.py (2026-12-07):
    # L_AP of a x4 bicubic output against its HR (natural content, no periodicity; photo-like images, mean / max)
    # is 2.5e-3 / 9.4e-3 at 64 px, 3.0e-4 / 1.3e-3 at 128, 1.6e-5 / 7.1e-5 at 256, 2.9e-6 / 1.2e-5 at 512 px: below
    # 256 px this floor exceeds the margin tau = 2e-4 and the +2/255 grid signal (3e-4), so L_AP trains against
    # detail. Measured there (32-px crops, a transformer trained from scratch, floor 3.7e-3): lambda = 0.01 cost
    # 0.44 dB of its +2.7 dB over bicubic; 0.1 and 1 took most or all of it in every one of 3 seeds and *raised*
    # the periodicity at 4x the grid 7-130x in 5 of 6 (seed, lambda) runs. At >= 256 px the floor is 3-70x below
    # tau: L_AP is inert on natural outputs and acts only on excess periodicity. Below AP_MIN_CROP a warning says
    # so (not an error: tests and the demo run tiny crops).
    ap: float = Field(1.0, ge=0, description="weight lambda of L_AP (0 = off); meant for crops >= 256 px")
    ap_tau: float = Field(2e-4, ge=0, description="L_AP margin tau: lag share above the reference's that is free")
    ap_stride_weight: float = Field(4.0, ge=0, description="extra L_AP weight at token/VAE-stride lattice lags")
    ap_lines_only: bool = Field(True, description="L_AP on the periodic (line-spectrum) part, as the metric")
    ap_norm: Literal["ref", "self"] = Field("ref", description="L_AP: divide by the reference's R(0) or each own")


class GRPOConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_size: int = Field(4, ge=2, description="G samples per LR")
    sigma: float = Field(0.1, gt=0, description="std of the Gaussian policy on the output latent (the action noise)")
    sigma_in: float = Field(
        0.1,
        ge=0,
        description="std of the noise on the one-step input latent, one draw per LR "
        "shared by its G samples (so the within-group reward spread is the action noise's)",
    )
    clip: float = Field(
        1e-4,
        gt=0,
        description="PPO clip epsilon of the per-dim averaged log-prob ratio at "
        "clip_dims latent dims (Flow-GRPO: 1e-4); scaled by sqrt(clip_dims / D) for D dims",
    )
    clip_dims: int = Field(
        65536, ge=1, description="latent dims D at which `clip` holds (Flow-GRPO, SD3.5 at 512: 16x64x64)"
    )
    adv_clip: float = Field(5.0, gt=0, description="group-normalised advantages clipped to [-adv_clip, adv_clip]")
    beta_kl: float = Field(0.01, ge=0, description="weight of KL(pi_theta || pi_ref), pi_ref = the stage-1 model")
    inner_steps: int = Field(1, ge=1, description="policy updates per batch of samples")
    fidelity: float = Field(0.0, ge=0, description="weight of the LR-fidelity reward (vs the clean LR = area(HR))")
    guard_window: int = Field(20, ge=2, description="steps per early-stop comparison window")
    guard_psnr_drop: float = Field(1.0, ge=0, description="early stop: LR-consistency PSNR drop (dB) vs the start")
    guard_periodicity: float = Field(0.004, ge=0, description="early stop: mean periodicity peak above this")


class TrainConfig(BaseModel):
    """Everything ``sr4k train-sr`` reads."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    stage: Literal["supervised", "grpo"] = Field("supervised", description="supervised (stage 1) | grpo (stage 2)")
    init_from: str | None = Field(None, description="stage-1 checkpoint to start from (stage 2: also pi_ref)")
    reward: str | None = Field(None, description="RefReward checkpoint (stage 2); none = fidelity reward only")
    out: str = Field("sr4k-data/models/op4ksr", description="output folder of checkpoints")
    steps: int = Field(1000, ge=1, description="optimizer steps")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="max grad norm")
    save_every: int = Field(500, ge=1, description="checkpoint every N steps (and at the end)")
    log_every: int = Field(10, ge=1, description="log every N steps")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="accelerate mixed precision")
    gradient_checkpointing: bool = Field(False, description="recompute transformer activations (4K crops on GPU)")
    seed: int = Field(0, description="seed of data order, crops and noise")
    resume: bool = Field(True, description="continue from the latest checkpoint in out/ if there is one")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        s, c = self.model.scale, self.data.crop
        if c % TOKEN_STRIDE or c % s:
            good = max(TOKEN_STRIDE * s, c - c % (TOKEN_STRIDE * s))
            raise ValueError(
                f"data.crop {c}: the HR side must be a multiple of {TOKEN_STRIDE} (F16 VAE x 2x2 packing) and of "
                f"model.scale {s}; use e.g. data.crop={good}"
            )
        if self.loss.ap > 0 and c < AP_MIN_CROP:
            warnings.warn(
                f"loss.ap={self.loss.ap:g} with data.crop {c} < {AP_MIN_CROP}: on crops this small L_AP's floor on "
                f"natural content exceeds its margin and it trains against detail; use data.crop >= {AP_MIN_CROP} "
                "or loss.ap=0 (training/sr/config.py, LossConfig.ap)",
                stacklevel=2,
            )
        if self.stage == "grpo" and self.grpo.fidelity == 0 and not self.reward:
            raise ValueError("stage grpo needs a reward: pass --reward <RefReward checkpoint> or grpo.fidelity > 0")
        if self.loss.lpips > 0 and not self.loss.lpips_weights:
            raise ValueError("loss.lpips > 0 needs loss.lpips_weights (a local folder; nothing downloads) or lpips=0")
        return self


def check_hr_size(width: int, height: int, scale: int) -> None:
    """HR sides must be multiples of 32 and of the scale; the message names the nearest valid size."""
    for side in (width, height):
        if side % TOKEN_STRIDE or side % scale:
            m = TOKEN_STRIDE * scale // _gcd(TOKEN_STRIDE, scale)
            raise ValueError(
                f"HR size {width}x{height}: each side must be a multiple of {TOKEN_STRIDE} (F16 VAE x 2x2 token "
                f"packing) and of scale {scale}; crop or pad to {width - width % m}x{height - height % m}"
            )


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """YAML (optional) + dotted-key overrides (``None`` values skipped) -> validated :class:`TrainConfig`, loaded as
    every sr4k config is (``pipelines.store.settings``: a one-line ``SettingsError``, a ValueError, naming the key,
    where its value came from and the fix). With ``init_from`` a checkpoint, its saved model settings are the
    defaults of ``model``."""
    from pipelines.store.settings import read_settings, validate_settings  # light: no pyarrow for the GPU scripts

    data = read_settings(path, overrides)
    init = data.get("init_from")
    if init and (Path(init) / "op4ksr.json").is_file():  # the model of the checkpoint, unless set explicitly
        import json

        saved = json.loads((Path(init) / "op4ksr.json").read_text())["model"]
        data["model"] = saved | {k: v for k, v in (data.get("model") or {}).items() if v is not None}
    return validate_settings(TrainConfig, data, what="train-sr", path=path, overrides=overrides)
