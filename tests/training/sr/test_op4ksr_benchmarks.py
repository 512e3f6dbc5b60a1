"""The GPU timing script runs end to end in its --tiny mode on the CPU and says clearly when CUDA is missing."""

import pytest
import torch
from benchfixtures import load_benchmark


def _load():
    return load_benchmark("op4ksr_gpu")


def test_gpu_script_tiny_mode(capsys):
    assert _load().main(["--tiny", "--size", "64", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "64x64" in out and "paper: one NVIDIA H20" in out and "5.75" in out and "patch-free" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message printed without CUDA")
def test_gpu_script_without_cuda(capsys):
    assert _load().main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_flux_dev_config_is_full_size():
    mod = _load()
    cfg = mod.FLUX_DEV
    assert (cfg["num_layers"], cfg["num_single_layers"], cfg["num_attention_heads"]) == (19, 38, 24)
    assert sum(cfg["axes_dims_rope"]) == cfg["attention_head_dim"] == 128
    assert len(mod.F16_VAE["block_out_channels"]) == 5 and mod.F16_VAE["latent_channels"] == 16


def test_gpu_script_model_runs_in_the_dtype_it_was_built_in():
    """The GPU path builds bf16 weights: the model must cast its inputs to bf16 too (run here on the CPU)."""
    import numpy as np

    model, _ = _load().build(True, "cpu", torch.bfloat16)
    assert model.dtype == torch.bfloat16 and next(model.transformer.parameters()).dtype == torch.bfloat16
    assert model.upscale(np.zeros((8, 8, 3), np.uint8)).shape == (32, 32, 3)
