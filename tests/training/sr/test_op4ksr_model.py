"""OP4KSR model: packing = FluxPipeline's, shapes at 256² and non-square, one-step round trip, RFR rules, checkpoint
round trip with RFR re-applied after diffusers resets the RoPE base, config errors that name the fix."""

import json

import numpy as np
import pytest
import torch
from op4ksr_fixtures import natural

from training.sr.config import ModelConfig, RFRConfig, TrainConfig, check_hr_size
from training.sr.model import OP4KSR, image_ids, pack_latents, unpack_latents
from training.sr.rfr import RescaledFluxPosEmbed, apply_rfr, band_factors, ntk_theta


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
    f = band_factors(RFRConfig(mode="ntk"), 56)
    assert f[0] == 1.0 and f[-1].item() == pytest.approx(0.5)  # finest band kept, coarsest stretched by s
    assert torch.all(f[1:] < f[:-1])
    assert torch.allclose(band_factors(RFRConfig(mode="pi"), 56), torch.full((28,), 0.5, dtype=torch.float64))
    y = band_factors(RFRConfig(mode="yarn"), 56)
    assert torch.all((y >= 0.5) & (y <= 1.0)) and torch.all(y[1:] <= y[:-1]) and y[-1] == 0.5
    assert torch.equal(band_factors(RFRConfig(mode="none"), 56), torch.ones(28, dtype=torch.float64))


def test_rescaled_pos_embed_is_a_drop_in(tiny_backbone):
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    ids = torch.cat([torch.zeros(4, 3), image_ids(6, 8, "cpu", torch.float32)])
    stock = FluxPosEmbed(10000, [8, 12, 12])(ids)
    mine = RescaledFluxPosEmbed(10000.0, [8, 12, 12], RFRConfig(mode="none"))(ids)
    assert torch.allclose(stock[0], mine[0]) and torch.allclose(stock[1], mine[1])
    pi = RescaledFluxPosEmbed(10000.0, [8, 12, 12], RFRConfig(mode="pi"))(ids)
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

    AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=16, norm_num_groups=8).save_pretrained(
        tmp_path / "f8"
    )  # fmt: skip
    with pytest.raises(ValueError, match="F16 VAE"):
        OP4KSR.from_config(ModelConfig(transformer=str(tiny_backbone[0]), vae=str(tmp_path / "f8")), device="cpu")
