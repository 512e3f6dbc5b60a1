"""Stage 1 recipe — supervised one-step training of OP4KSR (LoRA on the Flux transformer).

Run: ``sr4k train-sr --shards <curated shards> --transformer <dir> --vae <dir> [--config sr.yaml]`` (multi-GPU: add
``--processes N``, one ``accelerate launch``; see flows.train). Top to bottom: :func:`setup` (model, optimizer, data
stream, resume), :func:`train` (the loop), :func:`evaluate` (PSNR on Y and the periodicity score).

Loss per batch of aligned (HR, LR) crops, ẑ = the one-step latent (training.sr.model):
  L = w_lat ‖ẑ − E(HR)‖² + w_pix ‖D(ẑ) − HR‖² + w_lpips LPIPS(D(ẑ), HR) + λ L_AP(D(ẑ), HR)
(means over elements; L_AP from training.sr.periodicity_loss; LPIPS only when local weights and the ``lpips``
package exist). The VAE is frozen; the gradient reaches the LoRA through the decoder.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.sr import data
from training.sr.checkpoint import latest_checkpoint, load_training_state, save_checkpoint
from training.sr.config import TrainConfig
from training.sr.model import OP4KSR
from training.sr.periodicity_loss import ap_loss

Log = Callable[[dict], None]


@dataclass
class Run:
    cfg: TrainConfig
    model: OP4KSR
    optimizer: torch.optim.Optimizer
    accelerator: object
    batches: object
    step: int = 0
    lpips: object = None
    history: list[dict] = field(default_factory=list)


def load_model(cfg: TrainConfig, device) -> OP4KSR:
    """The starting model: ``init_from`` (a stage-1 checkpoint) or the base backbone with a fresh LoRA."""
    if cfg.init_from:
        return OP4KSR.from_checkpoint(cfg.init_from, device=device)
    return OP4KSR.from_config(cfg.model, device=device)


def make_lpips(cfg: TrainConfig, device):
    """LPIPS from local weights, or None when the weight is 0. Fails at start (not mid-run) when asked for and
    impossible, naming what is missing."""
    if cfg.loss.lpips == 0:
        return None
    from pipelines.bench.metrics import lpips_available

    ok, where = lpips_available(cfg.loss.lpips_weights)
    if not ok:
        raise FileNotFoundError(f"loss.lpips > 0 but LPIPS is {where}")
    try:
        import lpips
    except ImportError as e:
        raise ImportError("loss.lpips > 0 needs the `lpips` package (pip install lpips) or loss.lpips=0") from e
    net = "vgg" if (Path(where) / "vgg.pth").is_file() else "alex"
    model = lpips.LPIPS(net=net, pretrained=True, model_path=str(Path(where) / f"{net}.pth"), pnet_rand=True)
    torchvision_file = Path(where) / {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}[net]
    backbone = torch.load(torchvision_file, weights_only=True)  # tensors only: no code runs from the file
    # lpips keeps torchvision's layer indices inside its slices: net.slice<k>.<i>.<param> = features.<i>.<param>
    mapped = {k: backbone[f"features.{k.split('.', 1)[1]}"] for k in model.net.state_dict()}
    model.net.load_state_dict(mapped)
    return model.to(device).eval().requires_grad_(False)


def prepare(
    cfg: TrainConfig, on_model: Callable[[OP4KSR], None] | None = None
) -> tuple[Any, OP4KSR, torch.optim.Optimizer, int, Any]:
    """What both stages share: accelerate, the model (LoRA), AdamW over the LoRA weights, resume from the latest
    checkpoint in ``cfg.out``, and the shard stream positioned after the samples already seen. ``on_model(model)``
    runs on the freshly loaded model, before any checkpoint is restored (GRPO keeps its reference weights there).
    Returns (accelerator, model, optimizer, step, batches of (hr, lr))."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    set_seed(cfg.seed)
    model = load_model(cfg, acc.device)
    rfr = model.cfg.rfr.model_copy(update={"finetune_grid": cfg.data.crop // 32})  # recorded in every checkpoint
    model.cfg = model.cfg.model_copy(update={"rfr": rfr})
    if on_model is not None:
        on_model(model)
    if cfg.gradient_checkpointing:
        model.transformer.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(model.lora_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.call, opt = acc.prepare(model.transformer, opt)
    step = 0
    last = latest_checkpoint(cfg.out) if cfg.resume else None
    if last is not None:
        step = load_training_state(last, model, opt)["step"]
    urls = data.shard_urls(cfg.data.shards)
    stream = data.pairs(
        urls,
        cfg.data.crop,
        cfg.model.scale,
        cfg.seed,
        acc.process_index,
        acc.num_processes,
        cfg.data.shuffle_buffer,
        skip=step * cfg.data.batch_size,
    )
    return acc, model, opt, step, data.batches(stream, cfg.data.batch_size)


def setup(cfg: TrainConfig) -> Run:
    """Model, optimizer, accelerate, data stream; resumes from the latest checkpoint in ``cfg.out``."""
    acc, model, opt, step, batches = prepare(cfg)
    return Run(cfg, model, opt, acc, batches, step, make_lpips(cfg, acc.device))


def losses(run: Run, hr: torch.Tensor, lr: torch.Tensor) -> dict[str, torch.Tensor]:
    """The stage-1 loss terms of one batch (tensors in [−1, 1]); ``total`` is what is minimised."""
    m, lc = run.model, run.cfg.loss
    up = m.upsample(lr)
    with torch.no_grad():
        z_lr, z_hr = m.encode(up).float(), m.encode(hr).float()
    z = m.predict_latent(z_lr)
    out = {"latent_l2": F.mse_loss(z.float(), z_hr)}
    if lc.pixel_l2 or lc.ap or run.lpips is not None:
        x = m.decode(z).float()
        out["pixel_l2"] = F.mse_loss(x, hr)
        if lc.ap:
            out["ap"] = ap_loss(
                (x + 1) / 2,
                (hr + 1) / 2,
                tau=lc.ap_tau,
                stride_weight=lc.ap_stride_weight,
                lines_only=lc.ap_lines_only,
                norm=lc.ap_norm,
            )
        if run.lpips is not None:
            out["lpips"] = run.lpips(x, hr).mean()
    weights = {"latent_l2": lc.latent_l2, "pixel_l2": lc.pixel_l2, "ap": lc.ap, "lpips": lc.lpips}
    out["total"] = sum(weights[k] * v for k, v in out.items())
    return out


def train(run: Run, log: Log | None = None) -> Run:
    """Optimise until ``cfg.steps``; checkpoint every ``save_every`` and at the end; log every ``log_every``."""
    cfg, acc, m = run.cfg, run.accelerator, run.model
    m.transformer.train()
    log_path = Path(cfg.out) / "log.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    while run.step < cfg.steps:
        hr, lr = (t.to(acc.device) for t in next(run.batches))
        with acc.autocast():
            terms = losses(run, hr, lr)
        if not torch.isfinite(terms["total"]):
            raise FloatingPointError(f"step {run.step}: non-finite loss { ({k: float(v) for k, v in terms.items()}) }")
        acc.backward(terms["total"])
        acc.clip_grad_norm_(m.lora_parameters(), cfg.grad_clip)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.step += 1
        rec = {"step": run.step, **{k: float(v.detach()) for k, v in terms.items()}, "sec": time.perf_counter() - t0}
        run.history.append(rec)
        if acc.is_main_process and (run.step % cfg.log_every == 0 or run.step == cfg.steps):
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if log:
                log(rec)
        if acc.is_main_process and (run.step % cfg.save_every == 0 or run.step == cfg.steps):
            save_checkpoint(cfg.out, run.step, m, run.optimizer, {"stage": "supervised"})
    m.transformer.eval()
    if acc.is_main_process:
        m.save(Path(cfg.out) / "model", extra={"stage": "supervised", "step": run.step})
    return run


@torch.no_grad()
def evaluate(model: OP4KSR, samples: list[tuple[np.ndarray, np.ndarray]], scale: int | None = None) -> dict:
    """Mean PSNR-Y (crop_border = scale) and periodicity (peak, stride_mean) of the model's SR of each LR."""
    from pipelines.bench.metrics import periodicity, psnr_y

    scale = scale or model.cfg.scale
    rows = []
    for hr, lr in samples:
        sr = model.upscale(lr)
        p = periodicity(sr)
        rows.append({"psnr_y": psnr_y(sr, hr, scale), "peak": p.peak, "stride_mean": p.stride_mean})
    return {k: float(np.mean([r[k] for r in rows if not math.isnan(r[k])] or [math.nan])) for k in rows[0]}


def main(cfg: TrainConfig, log: Log | None = None) -> Path:
    """Stage 1 end to end; returns the final model folder."""
    run = train(setup(cfg), log)
    return Path(cfg.out) / "model" if run.accelerator.is_main_process else Path(cfg.out)
