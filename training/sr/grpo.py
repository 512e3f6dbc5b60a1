"""Stage 2 recipe — GRPO for the one-step OP4KSR model with a RefReward (or any) reward.

Run: ``sr4k train-sr --stage grpo --init-from <stage-1 model> --reward <RefReward checkpoint> --shards ...``.
Top to bottom: :func:`setup`, :func:`sample` (a group of G stochastic SRs per LR), :func:`policy_loss`,
:func:`train`; :func:`noise_split` measures where the reward spread comes from.

Policy (Flow-GRPO, Liu et al. 2025, made one-step). The one step is deterministic, so it is made a policy in two
places: the state s = z_lr + σ_in ε (noise at the one-step input, ε ~ N(0, I), drawn **once per LR and shared by
its G samples**), and the action a ~ π_θ(· | s) = N(μ_θ(s), σ² I), μ_θ(s) = s − t v_θ(s). Decoding a gives the SR
image the reward sees. Because the G samples of a group share s, the within-group reward spread — all that the
group-normalised advantage sees — comes from the action noise alone, which is in log π; with a state drawn per
sample (the first version) most of the spread came from input noise that log π does not contain, and the gradient
was mostly noise. :func:`noise_split` measures the two shares (benchmarks/training_direction.py prints them).
As Flow-GRPO does for its SDE steps, the log-probability is the Gaussian log-density averaged over the D latent
dimensions (the constant −½ log 2πσ² cancels in every ratio):
    log π_θ(a | s) = −(1/D) Σ_d (a_d − μ_θ(s)_d)² / (2σ²).

Clip scale. With a = μ_old + σ n and an update μ = μ_old + δ, log ρ = (1/D) Σ_d (n_d δ_d / σ − δ_d² / 2σ²)
≈ (δ_rms / σ) · N(0, 1) / √D: averaging over D shrinks the ratio's spread by √D, so ε = 0.2 (the PPO value for a
sum log-prob) never clips (measured: ρ ∈ [0.9998, 1.00004]). Flow-GRPO uses ε = 1e-4 at D = 16·64·64 = 65,536
(SD3.5, 512²), i.e. it clips once the move reaches δ_rms/σ ≈ ε √D = 0.026. The same trust region at any size is
    ε(D) = ``clip`` · √(``clip_dims`` / D):
1e-4 at 65,536 dims; 2e-4 for a 512-px crop (16·32·32 = 16,384 dims); 2.5e-5 at 4096² (16·256·256 = 1,048,576).
The equivalent sum-log-prob form is log ρ_sum = D log ρ_mean with ε_sum ≈ D ε(D) = 1e-4 √(65,536 D) (6.6 at 65,536
dims; PPO's 0.2 would clip at a 33× smaller move): the averaged form is kept, as in Flow-GRPO.
Advantages A_i = clip((r_i − mean r) / (std r + 1e-4), ±``adv_clip``) (Flow-GRPO: 5). Loss:
    L = −mean_i min(ρ_i A_i, clip(ρ_i, 1 − ε, 1 + ε) A_i) + β KL(π_θ ‖ π_ref) + λ L_AP(D(μ_θ), bicubic(LR)),
ρ_i = exp(log π_θ − log π_old), μ_old and μ computed under the same autocast (the ratio of two dtypes is not 1 at
the first inner step). For two Gaussians with the same σ the KL is closed form, KL = (1/D) Σ_d (μ_θ − μ_ref)_d² /
(2σ²), π_ref = the stage-1 model (its LoRA weights, swapped in for one no-grad pass). L_AP (training.sr.
periodicity_loss, weight ``loss.ap``) compares the decoded mean with the bicubic-upsampled LR (no HR is assumed in
stage 2), so GRPO cannot buy reward with periodic artefacts the input lacks.

Reward: ``reward_fn(lrs, groups) -> [B, G]`` (higher is better) or an object with ``score_batch(lrs, groups)``
(training.reward.scorer.RefRewardScorer, a tournament within the group, conditioned on the degraded LR the model
saw), plus ``grpo.fidelity`` × the fidelity reward −mean|area↓(SR) − LR_clean| against the *clean* LR = area↓(HR)
(the degraded LR holds noise and JPEG blocks: fidelity to it rewards reproducing them).

Guard against reward hacking (logged every step: reward, LR-consistency PSNR of area↓(SR) vs the clean LR,
periodicity peak of the samples). Early-stop rule, checked at the end of every window of W = ``guard_window`` steps
against the first window: stop if (i) the mean reward rose while the LR-consistency PSNR fell by more than
``guard_psnr_drop`` dB, or (ii) the mean periodicity peak exceeds ``guard_periodicity`` while the first window's did
not. On a stop the LoRA weights are rolled back to the end of the last window that passed, saved as ``<out>/model``
and as a checkpoint at the stop step (so a resume continues from the rolled-back weights, and stops at once), with
the reason in ``<out>/stopped.json``. Every checkpoint carries the guard's history and its last good weights, so a
resumed run compares against the same first window.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from training.sr.checkpoint import STATE_NAME, latest_checkpoint, save_checkpoint
from training.sr.config import TrainConfig
from training.sr.model import OP4KSR
from training.sr.periodicity_loss import ap_loss
from training.sr.supervised import prepare

RewardFn = Callable[..., Any]
GOOD_NAME = "guard_good.safetensors"
ZERO_SPREAD_STEPS = 3  # a run whose first steps all have zero reward spread in every group is refused


class ZeroSpreadError(RuntimeError):
    """The reward cannot tell a group's samples apart: GRPO would train on zero advantages."""


GUARD_KEYS = ("step", "reward", "lr_psnr", "periodicity")


def fidelity_reward(lrs: list[np.ndarray], groups: list[list[np.ndarray]]) -> np.ndarray:
    """−mean |area-downscale(SR) − LR| in [0, 1] units, [B, G] (0 = perfectly LR-consistent)."""
    out = np.zeros((len(groups), len(groups[0])))
    for b, (lr, group) in enumerate(zip(lrs, groups, strict=True)):
        for g, sr in enumerate(group):
            down = cv2.resize(sr, (lr.shape[1], lr.shape[0]), interpolation=cv2.INTER_AREA)
            out[b, g] = -np.abs(down.astype(np.float32) - lr.astype(np.float32)).mean() / 255.0
    return out


def load_reward(cfg: TrainConfig) -> RewardFn:
    """The reward of ``cfg``: RefReward (lazy import, only with ``--reward``) plus the weighted fidelity term."""
    base: RewardFn | None = None
    if cfg.reward:
        from training.reward.scorer import RefRewardScorer

        base = RefRewardScorer.from_checkpoint(cfg.reward, backend="transformers")
    return combine_reward(base, cfg.grpo.fidelity)


class CombinedReward:
    """base reward (scored against the LR the model saw) + fidelity × fidelity_reward(clean LR)."""

    def __init__(self, base: Any, fidelity: float):
        self.base, self.fidelity = base, fidelity

    def __call__(self, lrs, groups, clean=None) -> np.ndarray:
        r = np.zeros((len(groups), len(groups[0])))
        if self.base is not None:
            b = self.base
            scored = b.score_batch(lrs, groups) if hasattr(b, "score_batch") else b(lrs, groups)
            r = r + np.asarray([np.asarray(s, dtype=np.float64) for s in scored])
        if self.fidelity:
            r = r + self.fidelity * fidelity_reward(clean if clean is not None else lrs, groups)
        return r


def combine_reward(base: Any, fidelity: float) -> CombinedReward:
    return CombinedReward(base, fidelity)


@dataclass
class Run:
    cfg: TrainConfig
    model: OP4KSR
    optimizer: torch.optim.Optimizer
    accelerator: Any
    batches: Any  # iterator of (HR, LR) batches in [−1, 1]
    reward: CombinedReward
    ref: dict[str, torch.Tensor]  # π_ref LoRA weights (the stage-1 model)
    step: int = 0
    history: list[dict] = field(default_factory=list)
    good: dict[str, torch.Tensor] | None = None  # LoRA weights at the end of the last window that passed the guard
    good_step: int | None = None
    stopped: str | None = None
    zero_streak: int = 0  # leading steps with zero spread everywhere (-1 once a step had spread)


def setup(cfg: TrainConfig, reward: RewardFn | None = None) -> Run:
    """Model, π_ref, optimizer, data; ``reward`` (a plain callable or scorer) replaces the RefReward checkpoint
    and gets the fidelity term added. Resumes the guard's history, good weights and stop state too."""
    ref: dict[str, torch.Tensor] = {}  # pi_ref: the LoRA weights as loaded (the stage-1 model), before any resume

    def keep_reference(model: OP4KSR) -> None:
        ref.update({n: p.detach().clone() for n, p in model.transformer.named_parameters() if "lora_" in n})

    acc, model, opt, step, batches = prepare(cfg, on_model=keep_reference)
    if reward is None:
        rfn = load_reward(cfg)
    else:
        rfn = reward if isinstance(reward, CombinedReward) else combine_reward(reward, cfg.grpo.fidelity)
    run = Run(cfg, model, opt, acc, batches, rfn, ref, step)
    last = latest_checkpoint(cfg.out) if cfg.resume else None
    if last is not None:
        extra = json.loads((last / STATE_NAME).read_text()).get("extra", {})
        run.history = list(extra.get("guard_history", []))
        run.good_step, run.stopped = extra.get("good_step"), extra.get("stopped")
        if (last / GOOD_NAME).is_file():
            run.good = {k: v.to(acc.device) for k, v in load_file(str(last / GOOD_NAME)).items()}
    return run


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


def clip_eps(run: Run, dims: int) -> float:
    """ε(D) = clip · √(clip_dims / D): the same trust region δ_rms/σ at any latent size (module docstring)."""
    gc = run.cfg.grpo
    return gc.clip * math.sqrt(gc.clip_dims / dims)


@torch.no_grad()
def sample(run: Run, hr: torch.Tensor, lr: torch.Tensor) -> dict[str, Any]:
    """G stochastic samples per LR (one shared state per LR): states, actions, old/ref means, decoded images,
    rewards, advantages. Every model pass runs under the training autocast, as in :func:`policy_loss`."""
    m, gc, acc = run.model, run.cfg.grpo, run.accelerator
    g = gc.group_size
    with acc.autocast():
        z_lr = m.encode(m.upsample(lr)).float()
        state = z_lr + gc.sigma_in * torch.randn_like(z_lr)  # (B, ...): one draw per LR
        mu_old = m.predict_latent(state).float()
        with swapped(m, run.ref):
            mu_ref = m.predict_latent(state).float()
        action = mu_old.repeat_interleave(g, 0)
        action = action + gc.sigma * torch.randn_like(action)  # (B·G, ...), group-major per LR
        images = to_uint8(m.decode(action))
    lrs, clean = to_uint8(lr), to_uint8(F.avg_pool2d(hr.float(), m.cfg.scale))  # area↓ of HR = the clean LR
    groups = [images[i * g : (i + 1) * g] for i in range(len(lrs))]
    r = np.asarray(run.reward(lrs, groups, clean), dtype=np.float64).reshape(len(lrs), g)
    spread = r.std(1)
    adv = np.clip((r - r.mean(1, keepdims=True)) / (spread[:, None] + 1e-4), -gc.adv_clip, gc.adv_clip)
    return {
        "state": state,
        "action": action,
        "logp_old": logp(action, mu_old.repeat_interleave(g, 0), gc.sigma),
        "mu_ref": mu_ref,
        "adv": torch.as_tensor(adv.reshape(-1), dtype=torch.float32, device=state.device),
        "reward": r,
        "zero_spread": float(np.mean(spread == 0)),
        "lr": lr,
        "lrs": lrs,
        "clean": clean,
        "groups": groups,
    }


def policy_loss(run: Run, s: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Clipped surrogate + β·KL (+ λ·L_AP vs bicubic) on one set of samples (the formulas of the module docstring)."""
    gc, lc, m = run.cfg.grpo, run.cfg.loss, run.model
    g = gc.group_size
    mu_s = m.predict_latent(s["state"]).float()  # (B, ...)
    mu = mu_s.repeat_interleave(g, 0)
    ratio = torch.exp(logp(s["action"], mu, gc.sigma) - s["logp_old"])
    eps = clip_eps(run, s["action"][0].numel())
    adv = s["adv"]
    pg = -torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv).mean()
    kl = ((mu_s - s["mu_ref"]) ** 2).flatten(1).mean(1).mean() / (2 * gc.sigma**2)
    out = {"pg": pg, "kl": kl, "total": pg + gc.beta_kl * kl}
    if lc.ap:
        x = (m.decode(mu_s).float().clamp(-1, 1) + 1) / 2
        ref = (m.upsample(s["lr"]).float() + 1) / 2
        out["ap"] = ap_loss(
            x, ref, tau=lc.ap_tau, stride_weight=lc.ap_stride_weight, lines_only=lc.ap_lines_only, norm=lc.ap_norm
        )
        out["total"] = out["total"] + lc.ap * out["ap"]
    with torch.no_grad():
        out["ratio"] = ratio.mean()
        out["ratio_dev"] = (ratio - 1).abs().max()
        out["clipped"] = ((ratio - 1).abs() > eps).float().mean()
        out["eps"] = torch.tensor(eps)
    return out


@torch.no_grad()
def noise_split(run: Run, hr: torch.Tensor, lr: torch.Tensor, states: int = 4, actions: int = 4) -> dict[str, float]:
    """Where the reward spread comes from, for one LR: ``states`` input-noise draws × ``actions`` action draws;
    Var r = E_s Var(r | s) [action noise, in log π] + Var_s E(r | s) [input noise, not in log π]. Returns both
    fractions of the total (the law of total variance, population variances)."""
    m, gc, acc = run.model, run.cfg.grpo, run.accelerator
    rows = []
    with acc.autocast():
        z = m.encode(m.upsample(lr[:1])).float()
        for _ in range(states):
            mu = m.predict_latent(z + gc.sigma_in * torch.randn_like(z)).float()
            a = mu.repeat(actions, 1, 1, 1)
            rows.append(to_uint8(m.decode(a + gc.sigma * torch.randn_like(a))))
    r = np.asarray(
        run.reward(to_uint8(lr[:1]) * states, rows, to_uint8(F.avg_pool2d(hr[:1].float(), m.cfg.scale)) * states),
        dtype=np.float64,
    )
    total = r.var()
    if total == 0:
        return {"action_frac": 0.0, "input_frac": 0.0, "reward_var": 0.0}
    return {
        "action_frac": float(r.var(1).mean() / total),
        "input_frac": float(r.mean(1).var() / total),
        "reward_var": float(total),
    }


def guard_stats(s: dict[str, Any]) -> dict[str, float]:
    from pipelines.bench.metrics import lr_consistency_psnr, periodicity

    psnrs, peaks = [], []
    for clean, group in zip(s["clean"], s["groups"], strict=True):
        for sr in group:
            psnrs.append(lr_consistency_psnr(clean, sr))
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
        return (
            f"reward hacking: reward {mean('reward', first):.4f} -> {mean('reward', last):.4f} while "
            f"LR-consistency fell {mean('lr_psnr', first):.2f} -> {mean('lr_psnr', last):.2f} dB"
        )
    if mean("periodicity", last) > gc.guard_periodicity >= mean("periodicity", first):
        return f"periodic artefacts: periodicity peak {mean('periodicity', last):.4f} > {gc.guard_periodicity}"
    return None


def update(run: Run, s: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``inner_steps`` optimizer steps on one set of samples; returns the last step's terms."""
    cfg, acc, m = run.cfg, run.accelerator, run.model
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
    return terms


def _checkpoint(run: Run) -> Path:
    extra = {
        "stage": "grpo",
        "guard_history": [{k: r[k] for k in GUARD_KEYS if k in r} for r in run.history],
        "good_step": run.good_step,
        "stopped": run.stopped,
    }
    path = save_checkpoint(run.cfg.out, run.step, run.model, run.optimizer, extra)
    if run.good is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in run.good.items()}, str(path / GOOD_NAME))
    return path


def train(run: Run, log: Callable[[dict], None] | None = None) -> Run:
    cfg, acc, m = run.cfg, run.accelerator, run.model
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if run.stopped:  # resumed from a run the guard stopped: its checkpoint holds the rolled-back weights
        warnings.warn(
            f"GRPO run in {out} was stopped by the guard: {run.stopped}; not training on (start a new --out "
            "or delete stopped.json and the checkpoints to override)",
            RuntimeWarning,
            stacklevel=2,
        )
        return run
    while run.step < cfg.steps and not run.stopped:
        hr, lr = (t.to(acc.device) for t in next(run.batches))
        s = sample(run, hr, lr)
        if s["zero_spread"] == 1.0:
            warnings.warn(
                f"GRPO step {run.step + 1}: every group's reward has zero spread, so this step has no "
                "gradient: raise grpo.sigma (the action noise must change what the reward sees) or check "
                "the reward",
                RuntimeWarning,
                stacklevel=2,
            )
        if run.zero_streak >= 0:  # counts only leading steps; -1 for good once a step had spread
            run.zero_streak = run.zero_streak + 1 if s["zero_spread"] == 1.0 else -1
        if run.zero_streak >= ZERO_SPREAD_STEPS:
            raise ZeroSpreadError(
                f"the first {ZERO_SPREAD_STEPS} GRPO steps had zero reward spread in every group (mean reward "
                f"{float(s['reward'].mean()):.4g}): the reward scores all G samples alike (a RefReward judge that "
                "answers malformed makes every game a tie). Check the judge with `sr4k score`, add grpo.fidelity > 0, "
                "or raise grpo.sigma"
            )
        terms = update(run, s)
        run.step += 1
        rec = {"step": run.step, **{k: float(v.detach()) for k, v in terms.items()}}
        rec |= {
            "reward": float(s["reward"].mean()),
            "zero_spread": s["zero_spread"],
            **guard_stats(s),
            "sec": time.perf_counter() - t0,
        }
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
            run.good_step = run.step
        if acc.is_main_process and (run.step % cfg.save_every == 0 or run.step == cfg.steps):
            _checkpoint(run)
    if acc.is_main_process:
        if run.stopped:
            superseded = sorted(
                p.name
                for p in out.glob("checkpoint-*")
                if run.good_step is None or int(p.name.split("-")[1]) > run.good_step
            )
            _checkpoint(run)  # the rolled-back weights become the latest checkpoint: a resume cannot undo the stop
            (out / "stopped.json").write_text(
                json.dumps(
                    {
                        "step": run.step,
                        "reason": run.stopped,
                        "rolled_back_to_step": run.good_step,
                        "checkpoints_after_good_weights": superseded,
                    }
                )
            )
        m.save(out / "model", extra={"stage": "grpo", "step": run.step, "stopped": run.stopped})
    return run


def main(cfg: TrainConfig, reward: RewardFn | None = None, log: Callable[[dict], None] | None = None) -> Path:
    train(setup(cfg, reward), log)
    return Path(cfg.out) / "model"
