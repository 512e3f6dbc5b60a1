"""Tiny random OP4KSR backbones for tests, the demo and CPU experiments: a Flux-style transformer and an F16 VAE,
built from configs and written with ``save_pretrained`` (nothing downloads).

Shapes follow the real models where it matters: transformer ``patch_size=1``, ``in_channels=64`` (= 16 latent
channels × 2×2 packing), RoPE axes summing to the head dim, guidance embedding on (as Flux-dev); VAE with 5
``block_out_channels`` levels (16× compression), 16 latent channels, no quant convs (as the Flux VAE).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

TINY_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=32,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=16,
    guidance_embeds=True,
    axes_dims_rope=(8, 12, 12),
)
TINY_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 5,
    up_block_types=("UpDecoderBlock2D",) * 5,
    block_out_channels=(8, 8, 16, 16, 16),
    layers_per_block=1,
    latent_channels=16,
    norm_num_groups=8,
    scaling_factor=1.0,
    shift_factor=0.0,
    use_quant_conv=False,
    use_post_quant_conv=False,
)
TEXT_TOKENS = 4


def build_tiny_op4ksr(out_dir: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``<out_dir>/transformer`` (with ``text_embeds.safetensors``) and ``<out_dir>/vae``; returns both."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    out = Path(out_dir)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(**TINY_TRANSFORMER)
    vae = AutoencoderKL(**TINY_VAE)
    tdir, vdir = out / "transformer", out / "vae"
    transformer.save_pretrained(tdir)
    vae.save_pretrained(vdir)
    g = torch.Generator().manual_seed(seed + 1)
    save_file(
        {
            "prompt_embeds": torch.randn(TEXT_TOKENS, TINY_TRANSFORMER["joint_attention_dim"], generator=g),
            "pooled_prompt_embeds": torch.randn(TINY_TRANSFORMER["pooled_projection_dim"], generator=g),
        },
        str(tdir / "text_embeds.safetensors"),
    )
    return tdir, vdir
