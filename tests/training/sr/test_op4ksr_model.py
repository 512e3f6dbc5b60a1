"""OP4KSR model: packing = FluxPipeline's, shapes at 256² and non-square, one-step round trip, RFR rules, checkpoint
round trip with RFR re-applied after diffusers resets the RoPE base, config errors that name the fix."""

import json
import math

import numpy as np
import pytest
import torch
from op4ksr_fixtures import natural

from training.sr.config import ModelConfig, RFRConfig, TrainConfig, check_hr_size
from training.sr.model import OP4KSR, image_ids, pack_latents, unpack_latents
from training.sr.rfr import RescaledFluxPosEmbed, apply_rfr, band_factors, ntk_theta, yarn_betas


def _cfg(tiny_backbone, **kw) -> ModelConfig:
    t, v = tiny_backbone
    return ModelConfig(transformer=str(t), vae=str(v), **kw)


@pytest.fixture(scope="module")
def model(tiny_backbone):
    return OP4KSR.from_config(_cfg(tiny_backbone, rfr={"pretrain_grid": 4, "target_grid": 8}), device="cpu")


def test_packing_matches_flux_pipeline():
    from diffusers import FluxPipeline

    z = torch.randn(2, 16, 6, 10)
    tokens = pack_latents(z)
    assert torch.equal(tokens, FluxPipeline._pack_latents(z, 2, 16, 6, 10))
    assert torch.equal(unpack_latents(tokens, 6, 10), FluxPipeline._unpack_latents(tokens, 96, 160, 16))
    assert torch.equal(unpack_latents(tokens, 6, 10), z)
    assert torch.equal(
        image_ids(6, 10, "cpu", torch.float32), FluxPipeline._prepare_latent_image_ids(1, 3, 5, "cpu", torch.float32)
    )


@pytest.mark.parametrize(("h", "w"), [(64, 64), (48, 80), (50, 70)])
def test_upscale_shapes(model, h, w):
    sr = model.upscale(natural(h, w, 1))
    assert sr.shape == (4 * h, 4 * w, 3) and sr.dtype == np.uint8
    assert sr.std() > 0


def test_one_step_round_trip(model):
    lr = torch.rand(1, 3, 48, 80) * 2 - 1
    with torch.no_grad():
        up = model.upsample(lr)
        z = model.encode(up)
        assert z.shape == (1, 16, 12, 20)  # F16
        assert pack_latents(z).shape == (1, 6 * 10, 64)  # one token = 32 px
        z_hat = model.predict_latent(z)
        assert z_hat.shape == z.shape and not torch.equal(z_hat, z)
        x = model.decode(z_hat)
    assert x.shape == (1, 3, 192, 320) and torch.isfinite(x).all()
    with torch.no_grad():
        assert torch.equal(model.forward(lr), x)


def test_rfr_ntk_numbers_for_flux_dev():
    # Flux-dev 1024²/F8 (64 tokens) -> 4096²/F16 (128 tokens): s = 2, d = 56.
    assert ntk_theta(10000.0, 2.0, 56) == pytest.approx(20520.09, abs=0.01)
    f = band_factors(RFRConfig(mode="ntk"), 56, s=2.0)
    assert f[0] == 1.0 and f[-1].item() == pytest.approx(0.5)  # finest band kept, coarsest stretched by s
    assert torch.all(f[1:] < f[:-1])
    assert torch.allclose(band_factors(RFRConfig(mode="pi"), 56, s=2.0), torch.full((28,), 0.5, dtype=torch.float64))
    assert torch.equal(band_factors(RFRConfig(mode="none"), 56, s=2.0), torch.ones(28, dtype=torch.float64))
    assert torch.equal(band_factors(RFRConfig(mode="ntk"), 56, s=1.0), torch.ones(28, dtype=torch.float64))


def test_yarn_ramp_is_scaled_to_the_grid_and_is_not_pi():
    # trained grid 64, s = 2: the finest band turns 64/2π = 10.2 times, below YaRN's β_fast = 32, so the ramp is
    # scaled (k = 10.19/32): band 0 kept exactly, bands with < 0.318 turns (i >= 11) interpolated by 1/s.
    cfg = RFRConfig(mode="yarn", trained_grid=64)
    assert yarn_betas(cfg) == pytest.approx((64 / (2 * math.pi), 64 / (2 * math.pi) / 32))
    y = band_factors(cfg, 56, s=2.0)
    pi = band_factors(RFRConfig(mode="pi"), 56, s=2.0)
    assert y[0] == 1.0 and y[1] > 0.8  # extrapolated: the fine bands of YaRN are NOT position-interpolated
    assert torch.all(y[11:] == 0.5) and y[10] > 0.5 and torch.all(y[1:] <= y[:-1])
    assert 0.5 < y[5] < 1.0  # on the ramp
    assert not torch.allclose(y, pi) and (y - pi).abs().max() == 0.5
    # unscaled (the published β for LLaMA's long contexts) would leave band 0 mostly interpolated (~0.65)
    published = ((64 / (2 * math.pi) - 1) / 31) * 0.5 + 0.5
    assert published < 0.7 < y[0]
    # a long grid (>= 2π·32 tokens) gets the published ramp unchanged
    assert yarn_betas(RFRConfig(mode="yarn", trained_grid=4096)) == (32.0, 1.0)


@pytest.mark.parametrize("mode", ["ntk", "pi", "yarn"])
def test_rfr_scale_is_derived_from_the_run_grid(mode):
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    cfg = RFRConfig(mode=mode, trained_grid=4)
    emb = RescaledFluxPosEmbed(10000.0, [8, 12, 12], cfg)
    stock = FluxPosEmbed(10000, [8, 12, 12])
    small = image_ids(8, 8, "cpu", torch.float32)  # 4 x 4 tokens = the trained grid: s = 1, the stock RoPE
    cos, sin = emb(small)
    assert emb.last_scales == (1.0, 1.0)
    assert torch.allclose(cos, stock(small)[0]) and torch.allclose(sin, stock(small)[1])
    wide = image_ids(8, 32, "cpu", torch.float32)  # 4 x 16 tokens: rows s = 1, columns s = 4
    cos, _ = emb(wide)
    assert emb.last_scales == (1.0, 4.0)
    want = band_factors(cfg, 12, s=4.0)
    col = 8 + 12  # first column-axis channel
    pos = wide[:, 2].double()
    mscale = 0.1 * math.log(4) + 1 if mode == "yarn" else 1.0
    expect = torch.cos(pos[:, None] * (10000.0 ** (-torch.arange(0, 12, 2) / 12.0)) * want) * mscale
    assert torch.allclose(cos[:, col::2][:, :6].double(), expect, atol=1e-5)
    assert RFRConfig(mode=mode, trained_grid=4, target_grid=8).scale == 2.0  # a pinned scale is still honoured


def test_rescaled_pos_embed_is_a_drop_in(tiny_backbone):
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    ids = torch.cat([torch.zeros(4, 3), image_ids(6, 8, "cpu", torch.float32)])
    stock = FluxPosEmbed(10000, [8, 12, 12])(ids)
    mine = RescaledFluxPosEmbed(10000.0, [8, 12, 12], RFRConfig(mode="none"))(ids)
    assert torch.allclose(stock[0], mine[0]) and torch.allclose(stock[1], mine[1])
    pi = RescaledFluxPosEmbed(10000.0, [8, 12, 12], RFRConfig(mode="pi", trained_grid=2, target_grid=4))(ids)
    half = FluxPosEmbed(10000, [8, 12, 12])(ids / torch.tensor([1.0, 2.0, 2.0]))  # PI = positions / s
    assert torch.allclose(pi[0], half[0], atol=1e-6)


def test_checkpoint_reload_identical_with_rfr(tiny_backbone, tmp_path):
    from diffusers import FluxTransformer2DModel

    cfg = _cfg(tiny_backbone, rfr={"mode": "ntk", "pretrain_grid": 4, "target_grid": 8})
    m = OP4KSR.from_config(cfg, device="cpu")
    with torch.no_grad():
        for p in m.lora_parameters():  # a trained-looking LoRA (B is zero at init)
            p.add_(torch.randn_like(p) * 0.05)
    lr = natural(40, 56, 2)
    before = m.upscale(lr)
    m.save(tmp_path / "ck")
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["lora.safetensors", "op4ksr.json", "text_embeds.safetensors"]
    meta = json.loads((tmp_path / "ck" / "op4ksr.json").read_text())
    assert meta["model"]["rfr"]["mode"] == "ntk" and meta["rope_theta"] == pytest.approx(ntk_theta(1e4, 2, 12))
    # diffusers forgets the base on load ...
    assert FluxTransformer2DModel.from_pretrained(tiny_backbone[0]).pos_embed.theta == 10000
    # ... and from_checkpoint puts it back, so the output is identical
    m2 = OP4KSR.from_checkpoint(tmp_path / "ck", device="cpu")
    assert m2.transformer.pos_embed.theta == pytest.approx(ntk_theta(1e4, 2, 12))
    assert np.array_equal(m2.upscale(lr), before)
    # the rule matters: the same weights without RFR give another image
    apply_rfr(m2.transformer, RFRConfig(mode="none"))
    assert not np.array_equal(m2.upscale(lr), before)


def test_config_errors_name_the_fix(tiny_backbone):
    t, v = tiny_backbone
    with pytest.raises(ValueError, match=r"multiple of 32.*data\.crop=128"):
        TrainConfig.model_validate({"model": {"transformer": str(t), "vae": str(v)}, "data": {"crop": 100}})
    with pytest.raises(ValueError, match=r"multiple of 32.*3840x2144"):
        check_hr_size(3840, 2160, 4)
    with pytest.raises(ValueError, match="--reward"):
        TrainConfig.model_validate({"model": {"transformer": str(t), "vae": str(v)}, "stage": "grpo"})


def test_non_f16_vae_is_refused(tiny_backbone, tmp_path):
    from diffusers import AutoencoderKL

    AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=16,
        norm_num_groups=8,
    ).save_pretrained(tmp_path / "f8")
    with pytest.raises(ValueError, match="F16 VAE"):
        OP4KSR.from_config(ModelConfig(transformer=str(tiny_backbone[0]), vae=str(tmp_path / "f8")), device="cpu")
