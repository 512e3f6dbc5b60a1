"""OP4KSR 4096×4096 patch-free inference on one GPU: seconds and peak GPU memory, next to the paper's 5.75 s (H20).

Full-size Flux-dev transformer config (19 double + 38 single blocks, 24 heads × 128, ~12 B parameters) and an F16
AutoencoderKL (5 levels, 16 latent channels), random bf16 weights built directly on the GPU (nothing downloads; the
timing of a forward pass does not depend on the weight values). One LR 1024² → SR 4096² pass through
``training.sr.model.OP4KSR.upscale`` (bicubic up, VAE encode of the whole 4096² image, one transformer pass over the
16,384 image tokens + 512 text tokens at the RFR-rescaled RoPE base, VAE decode), after one warm-up at 1024².

Run on a GPU machine::

    python benchmarks/op4ksr_gpu.py                       # 4096², bf16
    python benchmarks/op4ksr_gpu.py --vae-tiling          # fallback if the full-image VAE does not fit
    python benchmarks/op4ksr_gpu.py --tiny                # tiny models, runs on the CPU (what the tests run)

Dependencies: the script runs from the repository tree (it puts the repo root on ``sys.path``; the sr4k package need
not be installed) with torch, transformers and peft plus the wheels in ``WHEELS``: diffusers 0.42.1 (and its
importlib_metadata, requests, Pillow) and pydantic (with pydantic_core, annotated_types, typing_inspection). On a
machine without network, fetch them here and carry them in the working tree::

    pip download diffusers==0.42.1 pydantic -d wheels/ --python-version 3.11 --only-binary=:all:
    # there:  pip install --no-index --find-links wheels/ diffusers pydantic

A missing one is named in one line (exit 2). tests/training/test_gpu_scripts_standalone.py runs the script under
``python -S`` with only those distributions importable. ``--diffusers-wheel`` puts a pure-Python wheel on
``sys.path`` instead of installing it.
Without CUDA and without ``--tiny`` the script prints "no CUDA device" and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the repository tree: `training` imports without the sr4k package installed
# distributions needed beyond torch, transformers, peft (and their dependencies): name -> module
WHEELS = ("diffusers", "pydantic", "Pillow", "requests", "importlib_metadata")
MODULES = {"Pillow": "PIL"}

FLUX_DEV = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
F16_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 5,
    up_block_types=("UpDecoderBlock2D",) * 5,
    block_out_channels=(128, 256, 512, 512, 512),
    layers_per_block=2,
    latent_channels=16,
    norm_num_groups=32,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
)
PAPER_SECONDS, PAPER_DEVICE = 5.75, "one NVIDIA H20"
TEXT_TOKENS = 512  # Flux-dev's T5 sequence length


def build(tiny: bool, device, dtype):
    """Random-weight OP4KSR (no LoRA: a merged LoRA costs nothing at inference) on ``device``."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    from training.sr.config import ModelConfig
    from training.sr.model import OP4KSR
    from training.sr.rfr import apply_rfr
    from training.sr.tiny import TINY_TRANSFORMER, TINY_VAE

    tcfg, vcfg = (TINY_TRANSFORMER, TINY_VAE) if tiny else (FLUX_DEV, F16_VAE)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # initialise on the GPU: 12 B parameters in seconds, no host copy
            transformer = FluxTransformer2DModel(**tcfg).eval().requires_grad_(False)
            vae = AutoencoderKL(**vcfg).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(previous)
    cfg = ModelConfig(transformer="(random)", vae="(random)", dtype={torch.bfloat16: "bfloat16"}.get(dtype, "float32"))
    theta = apply_rfr(transformer, cfg.rfr)
    g = torch.Generator(device="cpu").manual_seed(0)
    tokens = 4 if tiny else TEXT_TOKENS
    prompt = torch.randn(tokens, tcfg["joint_attention_dim"], generator=g).to(device, dtype)
    pooled = torch.randn(tcfg["pooled_projection_dim"], generator=g).to(device, dtype)
    model = OP4KSR(cfg, transformer, vae, prompt, pooled, theta, torch_dtype=dtype)
    model.device = torch.device(device)
    n = sum(p.numel() for p in transformer.parameters())
    return model, n


def timed(model, lr, device) -> tuple[float, float]:
    """(seconds, peak GiB) of one ``upscale``; peak = torch allocator on CUDA, process RSS on the CPU."""
    import resource

    import torch

    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    sr = model.upscale(lr)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    assert sr.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3)
    return seconds, peak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models (CPU is fine); checks the script end to end")
    ap.add_argument("--size", type=int, default=None, help="SR side in px [default: 4096, tiny: 256]")
    ap.add_argument("--vae-tiling", action="store_true", help="fallback: tiled VAE (not patch-free)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs (the best is reported)")
    ap.add_argument("--diffusers-wheel", default=None, help="a diffusers wheel to import from (GPU machine)")
    args = ap.parse_args(argv)
    if args.diffusers_wheel:
        sys.path.insert(0, args.diffusers_wheel)
    missing = [w for w in WHEELS if importlib.util.find_spec(MODULES.get(w, w)) is None]
    if missing:
        print(
            f"missing: {' '.join(missing)} (needed beyond torch/transformers/peft): pip install {' '.join(missing)}, "
            "or offline: pip download them into wheels/ and pip install --no-index --find-links wheels/ ..."
        )
        return 2
    import numpy as np
    import torch

    if not torch.cuda.is_available() and not args.tiny:
        print("no CUDA device: the 4096x4096 OP4KSR timing needs a GPU (use --tiny to check the script on the CPU)")
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    size = args.size or (256 if args.tiny else 4096)
    if size % 32:
        print(f"--size {size}: use a multiple of 32 (whole 32-px tokens)")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    t0 = time.perf_counter()
    model, n_params = build(args.tiny, device, dtype)
    if args.vae_tiling:
        model.vae.enable_tiling()
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    warm = rng.integers(0, 256, (max(8, size // 16), max(8, size // 16), 3), dtype=np.uint8)
    lr = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
    try:
        timed(model, warm, device)
        runs = [timed(model, lr, device) for _ in range(args.repeats)]
    except torch.cuda.OutOfMemoryError as e:
        print(f"out of GPU memory at {size}x{size} patch-free: {str(e).splitlines()[0]}; retry with --vae-tiling")
        return 1
    seconds, peak = min(runs)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    tokens = (size // 32) ** 2
    kind = "tiny" if args.tiny else "Flux-dev-size"
    rfr = f"RoPE theta {model.theta:.0f} (RFR {model.cfg.rfr.mode})"
    print(f"OP4KSR {kind} transformer ({n_params / 1e6:,.1f} M params, {dtype}), F16 VAE, {rfr}; {build_s:.1f} s")
    print(f"{'device':<28}{'SR size':>12}{'tokens':>8}{'seconds':>10}{'peak GiB':>10}  mode")
    mode = "VAE tiled" if args.vae_tiling else "patch-free"
    print(f"{name:<28}{f'{size}x{size}':>12}{tokens:>8}{seconds:>10.2f}{peak:>10.2f}  {mode}")
    print(f"{'paper: ' + PAPER_DEVICE:<28}{'4096x4096':>12}{16384:>8}{PAPER_SECONDS:>10.2f}{'-':>10}  patch-free")
    if device == "cuda" and not args.tiny:
        print(
            f"ratio to the paper: {seconds / PAPER_SECONDS:.2f}x (different GPU: H20 has ~148 TFLOPS bf16, "
            "an H100 ~990, so a ratio well below 1 is expected)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
