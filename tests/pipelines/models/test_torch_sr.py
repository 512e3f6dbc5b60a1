"""Torch upscalers from local files: a tiny random spandrel model and a tiny random diffusers SR pipeline."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("spandrel")


@pytest.fixture
def tiny_compact(tmp_path):
    """A tiny Real-ESRGAN-compact (SRVGGNetCompact) x4 with random weights, saved as safetensors."""
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    net = Compact(num_feat=8, num_conv=2, upscale=4)
    path = tmp_path / "tiny-compact-x4.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_spandrel_safetensors_loads_and_runs(tiny_compact):
    from flows.upscalers import get_upscaler

    m = get_upscaler(f"spandrel:{tiny_compact}", 4)
    lr = np.random.default_rng(0).integers(0, 255, (20, 28, 3), dtype=np.uint8)
    sr = m.upscale(lr)
    assert sr.shape == (80, 112, 3) and sr.dtype == np.uint8
    assert m.version.startswith("spandrel:") and m.scale == 4
    assert np.array_equal(sr, m.upscale(lr))  # deterministic


def test_spandrel_tiling_matches_whole_image(tiny_compact):
    from pipelines.models.torch_sr import SpandrelUpscaler

    whole = SpandrelUpscaler.load(tiny_compact, tile=512)
    tiled = SpandrelUpscaler.load(tiny_compact, tile=16)
    lr = np.random.default_rng(1).integers(0, 255, (40, 52, 3), dtype=np.uint8)
    diff = np.abs(whole.upscale(lr).astype(int) - tiled.upscale(lr).astype(int))
    # a 2-conv network has a receptive field of a few px, far inside the 16-px overlap: identical up to rounding
    assert diff.max() <= 1


def test_corrupt_and_missing_weights_are_rejected(tiny_compact, tmp_path):
    from flows.upscalers import get_upscaler

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(tiny_compact.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"bad\.safetensors"):
        get_upscaler(f"spandrel:{bad}", 4)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        get_upscaler(f"spandrel:{tmp_path / 'missing.pth'}", 4)
    with pytest.raises(ValueError, match="x4, but x2"):
        get_upscaler(f"spandrel:{tiny_compact}", 2)


def test_weights_change_changes_the_version(tiny_compact, tmp_path):
    from safetensors.torch import load_file, save_file

    from pipelines.models.torch_sr import SpandrelUpscaler

    sd = load_file(str(tiny_compact))
    sd = {k: v + 0.01 for k, v in sd.items()}
    other = tmp_path / "other.safetensors"
    save_file(sd, str(other))
    assert SpandrelUpscaler.load(tiny_compact).version != SpandrelUpscaler.load(other).version


def test_diffusers_ldm_superresolution_pipeline_from_a_folder(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    from flows.upscalers import get_upscaler

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=16,
        in_channels=6,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 8),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    vq = diffusers.VQModel(
        in_channels=3,
        out_channels=3,
        latent_channels=3,
        block_out_channels=(8, 8, 8),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        num_vq_embeddings=16,
        norm_num_groups=4,
    )
    pipe = diffusers.LDMSuperResolutionPipeline(vqvae=vq, unet=unet, scheduler=diffusers.DDIMScheduler())
    pipe.save_pretrained(tmp_path / "ldm-sr")
    m = get_upscaler(f"diffusers:{tmp_path / 'ldm-sr'}", 4)
    m.steps = 2
    lr = np.random.default_rng(0).integers(0, 255, (13, 18, 3), dtype=np.uint8)  # not a multiple of anything
    sr = m.upscale(lr)
    assert sr.shape == (52, 72, 3) and sr.dtype == np.uint8
    with pytest.raises(FileNotFoundError, match=r"model_index\.json"):
        get_upscaler(f"diffusers:{tmp_path}", 4)
