"""OP4KSR: one-step, patch-free 4K SR on a diffusers ``FluxTransformer2DModel`` with an F16 ``AutoencoderKL``.

The one step, on the whole image (no patches; ``vae_tiling`` is an explicit fallback flag):

1. x_up = bicubic(LR) to the target size (H, W) = scale × LR, in [−1, 1]. H and W must be multiples of 32
   (16× VAE × 2×2 packing); :meth:`OP4KSR.upscale` reflect-pads to that and crops back, so any LR size works.
2. z_lr = (E(x_up) − shift) · scale_factor, the mode of the VAE posterior (deterministic), (B, 16, H/16, W/16).
3. Pack 2×2 latent patches into tokens (= ``FluxPipeline._pack_latents``): (B, H/32 · W/32, 64), token ids
   (0, row, col) (= ``FluxPipeline._prepare_latent_image_ids``); RoPE as rescaled by RFR (training.sr.rfr).
4. One transformer pass at the fixed flow time t (``ModelConfig.timestep``) with the fixed cached text embedding:
   v = F_θ(z_lr, t, c). Rectified flow x_t = (1 − t) x_0 + t ε has velocity v = ε − x_0, so the clean estimate is
   ẑ = z_lr − t · v: the LR latent is read as a noisy HR latent at time t (t = 0.5 by default: a bicubic 4× latent is
   far from the HR latent but much closer than noise; the LoRA learns the rest).
5. x_hr = D(ẑ / scale_factor + shift).

Text conditioning is a cached embedding (``text_embeds.safetensors``: ``prompt_embeds`` [T, D],
``pooled_prompt_embeds`` [P], e.g. T5/CLIP of the empty prompt computed once elsewhere), so no text encoder is
loaded. Trainable: a peft LoRA on the transformer. A checkpoint folder holds ``op4ksr.json`` (the
:class:`ModelConfig`, RFR included), ``lora.safetensors`` and ``text_embeds.safetensors``; the base transformer and
VAE are referenced by path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from training.sr.config import TOKEN_STRIDE, ModelConfig, check_hr_size
from training.sr.rfr import apply_rfr

CONFIG_NAME, LORA_NAME, TEXT_NAME = "op4ksr.json", "lora.safetensors", "text_embeds.safetensors"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pack_latents(z: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2 · w/2, 4C), 2×2 patches channel-major (identical to ``FluxPipeline._pack_latents``)."""
    b, c, h, w = z.shape
    z = z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return z.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`pack_latents` for a latent of (h, w) (= ``FluxPipeline._unpack_latents`` with
    ``vae_scale_factor=16`` and the pixel size 16h × 16w)."""
    b, _, ch = tokens.shape
    z = tokens.view(b, h // 2, w // 2, ch // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return z.reshape(b, ch // 4, h, w)


def image_ids(h: int, w: int, device, dtype) -> torch.Tensor:
    """(h/2 · w/2, 3) token ids (0, row, col) of a packed (h, w) latent."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] += torch.arange(h // 2)[:, None]
    ids[..., 2] += torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(name: str, device: str | torch.device) -> torch.dtype:
    """``auto`` = bfloat16 on CUDA (Flux-dev's 12 B parameters are ~44 GiB in float32 and the 4096² VAE activations
    another ~48 GiB: float32 does not fit an 80 GB GPU), float32 on the CPU (bf16 matmuls are slow there)."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return DTYPES[name]


@dataclass
class OP4KSR:
    """The model: frozen transformer + LoRA, frozen VAE, cached text embedding, config."""

    cfg: ModelConfig
    transformer: torch.nn.Module
    vae: torch.nn.Module
    prompt_embeds: torch.Tensor  # (T, D)
    pooled: torch.Tensor  # (P,)
    theta: float = 10000.0  # effective RoPE base after RFR (for the record)
    device: torch.device = field(default_factory=default_device)
    call: Any = None  # the transformer as wrapped by accelerate (DDP, autocast) in training; None = itself
    torch_dtype: torch.dtype = torch.float32  # cfg.dtype resolved on the device ("auto" -> bf16 on CUDA)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_config(cls, cfg: ModelConfig, device: str | torch.device | None = None, lora: bool = True) -> OP4KSR:
        """Load the base transformer and VAE from local folders, apply RFR, add a fresh LoRA (if ``lora``)."""
        from diffusers import AutoencoderKL, FluxTransformer2DModel
        from peft import LoraConfig

        for what, path in (("transformer", cfg.transformer), ("vae", cfg.vae)):
            if not (Path(path) / "config.json").is_file():
                raise FileNotFoundError(f"model.{what}: no diffusers model at {path} (expected config.json there)")
        device = torch.device(device) if device is not None else default_device()
        dtype = resolve_dtype(cfg.dtype, device)
        transformer = FluxTransformer2DModel.from_pretrained(cfg.transformer, torch_dtype=dtype, local_files_only=True)
        vae = AutoencoderKL.from_pretrained(cfg.vae, torch_dtype=dtype, local_files_only=True)
        levels = len(vae.config.block_out_channels)
        if 2 ** (levels - 1) != 16:
            raise ValueError(
                f"model.vae {cfg.vae}: {levels} block_out_channels levels = {2 ** (levels - 1)}x compression; OP4KSR "
                "needs an F16 VAE (5 levels)"
            )
        if transformer.config.in_channels != 4 * vae.config.latent_channels:
            raise ValueError(
                f"transformer in_channels {transformer.config.in_channels} != 4 x VAE latent_channels "
                f"{vae.config.latent_channels} (2x2 packing); use a VAE with {transformer.config.in_channels // 4}"
            )
        theta = apply_rfr(transformer, cfg.rfr)  # after from_pretrained, which resets pos_embed.theta to 10000
        transformer.requires_grad_(False)
        vae.requires_grad_(False)
        if cfg.vae_tiling:
            vae.enable_tiling()
        if lora:
            transformer.add_adapter(
                LoraConfig(
                    r=cfg.lora.rank,
                    lora_alpha=cfg.lora.alpha,
                    target_modules=cfg.lora.target_modules,
                    init_lora_weights="gaussian",
                )
            )
            for n, p in transformer.named_parameters():
                p.requires_grad_("lora_" in n)
                if "lora_" in n:
                    p.data = p.data.float()  # LoRA weights train in fp32 under any base dtype
        prompt, pooled = load_text_embeds(cfg, transformer)
        m = cls(cfg, transformer.to(device), vae.to(device), prompt.to(device, dtype), pooled.to(device, dtype), theta)
        m.device, m.torch_dtype = device, dtype
        m.transformer.eval()
        m.vae.eval()
        return m

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device | None = None, dtype: str | None = None
    ) -> OP4KSR:
        """Rebuild a saved model: config (RFR re-applied), LoRA weights, cached text embedding; ``dtype`` overrides
        the saved one (auto | bfloat16 | float16 | float32)."""
        from peft.utils import set_peft_model_state_dict

        path = Path(path)
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"no OP4KSR checkpoint at {path} (expected {path / CONFIG_NAME})")
        meta = json.loads((path / CONFIG_NAME).read_text())
        cfg = ModelConfig.model_validate(meta["model"])
        if (path / TEXT_NAME).is_file():
            cfg = cfg.model_copy(update={"text_embeds": str(path / TEXT_NAME)})
        if dtype is not None:
            cfg = cfg.model_copy(update={"dtype": dtype})
        m = cls.from_config(cfg, device=device, lora=True)
        sd = load_file(str(path / LORA_NAME), device=str(m.device))
        result = set_peft_model_state_dict(m.transformer, sd)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"{path / LORA_NAME}: keys the model does not have: {result.unexpected_keys[:5]}")
        return m

    # ------------------------------------------------------------------ saving
    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        from peft.utils import get_peft_model_state_dict

        sd = get_peft_model_state_dict(self.transformer)
        return {k: v.detach().float().cpu().clone() for k, v in sd.items()}

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write the checkpoint folder atomically (temporary folder, then rename). Only safetensors + JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        cfg = self.cfg.model_copy(
            update={
                "transformer": str(Path(self.cfg.transformer).resolve()),
                "vae": str(Path(self.cfg.vae).resolve()),
                "text_embeds": None,
            }
        )
        save_file(self.lora_state_dict(), str(tmp / LORA_NAME))
        save_file(
            {
                "prompt_embeds": self.prompt_embeds.float().cpu().contiguous(),
                "pooled_prompt_embeds": self.pooled.float().cpu().contiguous(),
            },
            str(tmp / TEXT_NAME),
        )
        meta = {"format": "op4ksr/1", "model": cfg.model_dump(mode="json"), "rope_theta": self.theta} | (extra or {})
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=1, sort_keys=True))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        return path

    # ------------------------------------------------------------------ the one step
    @property
    def dtype(self) -> torch.dtype:
        return self.torch_dtype

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [−1, 1] -> normalised latent (B, 16, H/16, W/16) (posterior mode)."""
        vc = self.vae.config
        z = self.vae.encode(x.to(self.dtype)).latent_dist.mode()
        return (z - (vc.shift_factor or 0.0)) * vc.scaling_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        vc = self.vae.config
        return self.vae.decode((z / vc.scaling_factor + (vc.shift_factor or 0.0)).to(self.dtype)).sample

    def velocity(self, z: torch.Tensor) -> torch.Tensor:
        """One transformer pass on the unpacked latent z (B, 16, h, w) at the fixed time: v (B, 16, h, w)."""
        b, _, h, w = z.shape
        t = torch.full((b,), self.cfg.timestep, device=z.device, dtype=self.dtype)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((b,), self.cfg.guidance, device=z.device, dtype=self.dtype)
        txt = self.prompt_embeds[None].expand(b, -1, -1)
        out = (self.call or self.transformer)(
            hidden_states=pack_latents(z.to(self.dtype)),
            encoder_hidden_states=txt,
            pooled_projections=self.pooled[None].expand(b, -1),
            timestep=t,
            img_ids=image_ids(h, w, z.device, torch.float32),  # bf16 holds integers exactly only up to 256
            txt_ids=torch.zeros(txt.shape[1], 3, device=z.device, dtype=torch.float32),
            guidance=guidance,
            return_dict=False,
        )[0]
        return unpack_latents(out, h, w)

    def predict_latent(self, z_in: torch.Tensor) -> torch.Tensor:
        """ẑ = z_in − t · v(z_in): the clean-latent estimate of the one step."""
        return z_in - self.cfg.timestep * self.velocity(z_in).to(z_in.dtype)

    def upsample(self, lr: torch.Tensor) -> torch.Tensor:
        """LR (B, 3, h, w) in [−1, 1] -> bicubic ×scale (Keys a = −0.75, as OpenCV's INTER_CUBIC)."""
        s = self.cfg.scale
        return F.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False).clamp(-1, 1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """LR (B, 3, h, w) in [−1, 1] -> SR (B, 3, h·s, w·s) in [−1, 1]; h·s and w·s multiples of 32."""
        up = self.upsample(lr)
        check_hr_size(up.shape[-1], up.shape[-2], 1)
        return self.decode(self.predict_latent(self.encode(up)))

    @torch.inference_mode()
    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 -> (H·s)x(W·s)x3 uint8, the whole image in one pass. LR sides are reflect-padded so the HR
        sides are multiples of 32, and the output is cropped back."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        s = self.cfg.scale
        m = TOKEN_STRIDE // np.gcd(TOKEN_STRIDE, s)  # LR multiple that makes HR a multiple of 32
        ph, pw = -h % m, -w % m
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None].float()
        x = x / 127.5 - 1
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = self.forward(x)[..., : h * s, : w * s]
        return ((y[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()

    def version(self) -> str:
        """Hash of the LoRA weights, the text embedding and the config (base weights are identified by path)."""
        hsh = hashlib.sha256(json.dumps(self.cfg.model_dump(mode="json"), sort_keys=True).encode())
        for k, v in sorted(self.lora_state_dict().items()):
            hsh.update(k.encode())
            hsh.update(v.numpy().tobytes())
        hsh.update(self.prompt_embeds.float().cpu().numpy().tobytes())
        return hsh.hexdigest()[:16]

    def lora_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.transformer.named_parameters() if "lora_" in n]


def load_text_embeds(cfg: ModelConfig, transformer) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached conditioning: cfg.text_embeds, else <transformer>/text_embeds.safetensors, else zeros of the
    transformer's sizes (one token)."""
    path = cfg.text_embeds or str(Path(cfg.transformer) / TEXT_NAME)
    if Path(path).is_file():
        sd = load_file(path)
        missing = {"prompt_embeds", "pooled_prompt_embeds"} - set(sd)
        if missing:
            raise ValueError(f"{path}: missing tensors {sorted(missing)}")
        prompt, pooled = sd["prompt_embeds"], sd["pooled_prompt_embeds"]
        if prompt.ndim == 3:
            prompt, pooled = prompt[0], pooled[0]
        return prompt, pooled
    if cfg.text_embeds:
        raise FileNotFoundError(f"model.text_embeds: {path} does not exist")
    c = transformer.config
    return torch.zeros(1, c.joint_attention_dim), torch.zeros(c.pooled_projection_dim)
