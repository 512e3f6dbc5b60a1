"""Stage 2 recipe — GRPO for the one-step OP4KSR model with a RefReward (or any) reward.

Run: ``sr4k train-sr --stage grpo --init-from <stage-1 model> --reward <RefReward checkpoint> --shards ...``.
Top to bottom: :func:`setup`, :func:`sample` (a group of G stochastic SRs per LR), :func:`train`.

Policy (Flow-GRPO, Liu et al. 2025, made one-step). The one step is deterministic, so it is made a policy in two
places: the state is s = z_lr + σ_in ε (noise injected at the one-step input, ε ~ N(0, I), drawn once per sample and
kept), and the action is the output latent a ~ π_θ(· | s) = N(μ_θ(s), σ² I), μ_θ(s) = s − t v_θ(s) (the one-step
estimate). Decoding a gives the SR image the reward sees. As Flow-GRPO does for its SDE steps, the log-probability is
the Gaussian log-density averaged over the D latent dimensions (the constant −½ log 2πσ² cancels in every ratio):
    log π_θ(a | s) = −(1/D) Σ_d (a_d − μ_θ(s)_d)² / (2σ²).
Per LR, G samples; rewards r_1..G; group-normalised advantages A_i = (r_i − mean r) / (std r + 1e-4). Loss:
    L = −mean_i min(ρ_i A_i, clip(ρ_i, 1 − ε, 1 + ε) A_i) + β KL(π_θ ‖ π_ref),   ρ_i = exp(log π_θ − log π_old),
and for two Gaussians with the same σ the KL is closed form, KL = (1/D) Σ_d (μ_θ − μ_ref)_d² / (2σ²), with π_ref =
the stage-1 model (its LoRA weights, swapped in for one no-grad pass). π_old = the weights that drew the samples.

Reward: ``reward_fn(lrs, groups) -> [B, G]`` (higher is better) or an object with ``score_batch(lrs, groups)``
(training.reward.scorer.RefRewardScorer, a tournament within the group), loaded only when ``--reward`` is given;
plus ``grpo.fidelity`` × the LR-fidelity reward −mean|area↓(SR) − LR| (in [0, 1] units).

Guard against reward hacking (logged every step: reward, LR-consistency PSNR of area↓(SR) vs LR, periodicity peak of
the samples). Early-stop rule, checked at the end of every window of W = ``guard_window`` steps against the first
window: stop if (i) the mean reward rose while the LR-consistency PSNR fell by more than ``guard_psnr_drop`` dB, or
(ii) the mean periodicity peak exceeds ``guard_periodicity`` (the artefact threshold of pipelines.metrics) while the
first window's did not. On a stop the LoRA weights are rolled back to the end of the last window that passed, saved
as ``<out>/model`` with the reason in ``<out>/stopped.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from training.sr.checkpoint import save_checkpoint
from training.sr.config import TrainConfig
from training.sr.model import OP4KSR
from training.sr.supervised import prepare

RewardFn = Callable[[list[np.ndarray], list[list[np.ndarray]]], Any]


def fidelity_reward(lrs: list[np.ndarray], groups: list[list[np.ndarray]]) -> np.ndarray:
    """−mean |area-downscale(SR) − LR| in [0, 1] units, [B, G] (0 = perfectly LR-consistent)."""
    out = np.zeros((len(groups), len(groups[0])))
    for b, (lr, group) in enumerate(zip(lrs, groups, strict=True)):
        for g, sr in enumerate(group):
            down = cv2.resize(sr, (lr.shape[1], lr.shape[0]), interpolation=cv2.INTER_AREA)
            out[b, g] = -np.abs(down.astype(np.float32) - lr.astype(np.float32)).mean() / 255.0
    return out


def lr_psnr(lr: np.ndarray, sr: np.ndarray) -> float:
    """LR-consistency: PSNR (dB, RGB) of the area-downscaled SR against the LR input."""
    down = cv2.resize(sr, (lr.shape[1], lr.shape[0]), interpolation=cv2.INTER_AREA).astype(np.float64)
    mse = float(np.mean((down - lr.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def load_reward(cfg: TrainConfig) -> RewardFn:
    """The reward of ``cfg``: RefReward (lazy import, only with ``--reward``) plus the weighted fidelity term."""
    base: RewardFn | None = None
    if cfg.reward:
        from training.reward.scorer import RefRewardScorer

        base = RefRewardScorer.from_checkpoint(cfg.reward, backend="transformers")
    return combine_reward(base, cfg.grpo.fidelity)


def combine_reward(base: Any, fidelity: float) -> RewardFn:
    def reward(lrs: list[np.ndarray], groups: list[list[np.ndarray]]) -> np.ndarray:
        r = np.zeros((len(groups), len(groups[0])))
        if base is not None:
            scored = base.score_batch(lrs, groups) if hasattr(base, "score_batch") else base(lrs, groups)
            r = r + np.asarray([np.asarray(s, dtype=np.float64) for s in scored])
        if fidelity:
            r = r + fidelity * fidelity_reward(lrs, groups)
        return r

    return reward


@dataclass
class Run:
    cfg: TrainConfig
    model: OP4KSR
    optimizer: torch.optim.Optimizer
    accelerator: Any
    lrs: Any  # iterator of LR batches (B, 3, h, w) in [−1, 1]
    reward: RewardFn
    ref: dict[str, torch.Tensor]  # π_ref LoRA weights (the stage-1 model)
    step: int = 0
    history: list[dict] = field(default_factory=list)
    good: dict[str, torch.Tensor] | None = None  # LoRA weights at the end of the last window that passed the guard
    stopped: str | None = None


def setup(cfg: TrainConfig, reward: RewardFn | None = None) -> Run:
    ref: dict[str, torch.Tensor] = {}  # pi_ref: the LoRA weights as loaded (the stage-1 model), before any resume

    def keep_reference(model: OP4KSR) -> None:
        ref.update({n: p.detach().clone() for n, p in model.transformer.named_parameters() if "lora_" in n})

    acc, model, opt, step, batches = prepare(cfg, on_model=keep_reference)
    lrs = (lr for _, lr in batches)
    return Run(cfg, model, opt, acc, lrs, reward or load_reward(cfg), ref, step)


@contextmanager
def swapped(model: OP4KSR, weights: dict[str, torch.Tensor]):
    """Temporarily load ``weights`` into the LoRA parameters (for the π_ref pass)."""
    named = dict(model.transformer.named_parameters())
    saved = {n: named[n].detach().clone() for n in weights}
    assign(model, weights)
    try:
        yield
    finally:
        assign(model, saved)


@torch.no_grad()
def assign(model: OP4KSR, weights: dict[str, torch.Tensor]) -> None:
    named = dict(model.transformer.named_parameters())
    for n, w in weights.items():
        named[n].copy_(w)


def to_uint8(x: torch.Tensor) -> list[np.ndarray]:
    return list(((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())


def logp(a: torch.Tensor, mu: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian log-density of a under N(mu, σ²I), averaged over dimensions, constant dropped; (N,)."""
    return -((a - mu) ** 2).flatten(1).mean(1) / (2 * sigma**2)


@torch.no_grad()
def sample(run: Run, lr: torch.Tensor) -> dict[str, Any]:
    """G stochastic samples per LR: states, actions, old/ref means, decoded images, rewards, advantages."""
    m, gc = run.model, run.cfg.grpo
    g = gc.group_size
    z_lr = m.encode(m.upsample(lr)).float()
    z_lr = z_lr.repeat_interleave(g, dim=0)  # (B·G, ...), group-major per LR
    state = z_lr + gc.sigma_in * torch.randn_like(z_lr)
    mu_old = m.predict_latent(state).float()
    with swapped(m, run.ref):
        mu_ref = m.predict_latent(state).float()
    action = mu_old + gc.sigma * torch.randn_like(mu_old)
    images = to_uint8(m.decode(action))
    lrs = to_uint8(lr)
    groups = [images[i * g : (i + 1) * g] for i in range(len(lrs))]
    r = np.asarray(run.reward(lrs, groups), dtype=np.float64).reshape(len(lrs), g)
    adv = (r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-4)
    return {"state": state, "action": action, "logp_old": logp(action, mu_old, gc.sigma), "mu_ref": mu_ref,
            "adv": torch.as_tensor(adv.reshape(-1), dtype=torch.float32, device=state.device), "reward": r,
            "lrs": lrs, "groups": groups}  # fmt: skip


def policy_loss(run: Run, s: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Clipped surrogate + β·KL on one set of samples (the formulas of the module docstring)."""
    gc = run.cfg.grpo
    mu = run.model.predict_latent(s["state"]).float()
    ratio = torch.exp(logp(s["action"], mu, gc.sigma) - s["logp_old"])
    adv = s["adv"]
    pg = -torch.minimum(ratio * adv, ratio.clamp(1 - gc.clip, 1 + gc.clip) * adv).mean()
    kl = ((mu - s["mu_ref"]) ** 2).flatten(1).mean(1).mean() / (2 * gc.sigma**2)
    return {"pg": pg, "kl": kl, "ratio": ratio.mean().detach(), "total": pg + gc.beta_kl * kl}


def guard_stats(s: dict[str, Any]) -> dict[str, float]:
    from pipelines.metrics import periodicity

    psnrs, peaks = [], []
    for lr, group in zip(s["lrs"], s["groups"], strict=True):
        for sr in group:
            psnrs.append(lr_psnr(lr, sr))
            if min(sr.shape[:2]) >= 16:
                peaks.append(periodicity(sr).peak)
    return {"lr_psnr": float(np.mean(psnrs)), "periodicity": float(np.mean(peaks)) if peaks else 0.0}


def guard(run: Run) -> str | None:
    """The early-stop rule of the module docstring; returns the reason, or None to go on."""
    gc, h = run.cfg.grpo, run.history
    w = gc.guard_window
    if len(h) < 2 * w or len(h) % w:
        return None

    def mean(key: str, rows: list[dict]) -> float:
        return float(np.mean([r[key] for r in rows]))

    first, last = h[:w], h[-w:]
    if mean("reward", last) > mean("reward", first) and mean("lr_psnr", first) - mean("lr_psnr", last) > (
        gc.guard_psnr_drop
    ):
        return (f"reward hacking: reward {mean('reward', first):.4f} -> {mean('reward', last):.4f} while "
                f"LR-consistency fell {mean('lr_psnr', first):.2f} -> {mean('lr_psnr', last):.2f} dB")  # fmt: skip
    if mean("periodicity", last) > gc.guard_periodicity >= mean("periodicity", first):
        return f"periodic artefacts: periodicity peak {mean('periodicity', last):.4f} > {gc.guard_periodicity}"
    return None


def train(run: Run, log: Callable[[dict], None] | None = None) -> Run:
    cfg, acc, m = run.cfg, run.accelerator, run.model
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    while run.step < cfg.steps:
        s = sample(run, next(run.lrs).to(acc.device))
        m.transformer.train()
        for _ in range(cfg.grpo.inner_steps):
            with acc.autocast():
                terms = policy_loss(run, s)
            if not torch.isfinite(terms["total"]):
                raise FloatingPointError(f"step {run.step}: non-finite GRPO loss")
            acc.backward(terms["total"])
            acc.clip_grad_norm_(m.lora_parameters(), cfg.grad_clip)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        m.transformer.eval()
        run.step += 1
        rec = {"step": run.step, **{k: float(v.detach()) for k, v in terms.items()}}
        rec |= {"reward": float(s["reward"].mean()), **guard_stats(s), "sec": time.perf_counter() - t0}
        run.history.append(rec)
        if acc.is_main_process and (run.step % cfg.log_every == 0 or run.step == cfg.steps):
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            if log:
                log(rec)
        if len(run.history) % cfg.grpo.guard_window == 0:
            run.stopped = guard(run)
            if run.stopped:
                if run.good is not None:
                    assign(m, run.good)  # roll back to the last window that passed
                break
            run.good = {n: p.detach().clone() for n, p in m.transformer.named_parameters() if "lora_" in n}
        if acc.is_main_process and (run.step % cfg.save_every == 0 or run.step == cfg.steps):
            save_checkpoint(cfg.out, run.step, m, run.optimizer, {"stage": "grpo"})
    if acc.is_main_process:
        m.save(out / "model", extra={"stage": "grpo", "step": run.step, "stopped": run.stopped})
        if run.stopped:
            (out / "stopped.json").write_text(json.dumps({"step": run.step, "reason": run.stopped}))
    return run


def main(cfg: TrainConfig, reward: RewardFn | None = None, log: Callable[[dict], None] | None = None) -> Path:
    train(setup(cfg, reward), log)
    return Path(cfg.out) / "model"
