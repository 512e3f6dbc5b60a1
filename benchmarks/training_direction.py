"""Do the two recipes learn in the right direction? Tiny models, several seeds, known rewards.

(a) OP4KSR GRPO (training.sr.grpo) on a tiny random backbone against a known simple reward: the fidelity reward
    r = −mean|area↓(SR) − LR_clean| (closeness to a target, in [0, 1] units). Per seed: the deterministic policy's
    reward on fixed held-out LRs before and after ``--sr-steps`` GRPO steps; gain = after − before (must be > 0 in
    every seed). Also the share of the reward variance explained by the action noise (in log π) vs the input noise
    (not in log π), ``training.sr.grpo.noise_split``, at the start.
(b) RefReward judge (training.reward.recipe, TRL GRPO) on a learnable preference task: the fixture pairs of
    tests/training/reward (A = faithful nearest upscale, B = the same plus strong noise, labelled consistency A),
    tiny random Qwen2.5-VL. A cold-start SFT teaches the answer *format* only (targets with the consistency verdict
    drawn at random, so the format is learned without the preference), then GRPO with the recipe's rewards.
    Held-out accuracy (consistency, both A/B orders, pairs never trained on) before GRPO (= after the format SFT)
    and after.

Final line: ``sr_grpo_gain_min=… judge_acc_before=… judge_acc_after=…``. Goals: gain > 0 in every seed; judge
≥ 0.75 held-out and ≥ 0.2 above its start.

Measured 2026-12-06 (2-core CPU shared by 7 jobs, niced; SR and judge parts run separately, --skip-judge /
--skip-sr): (a) 80 steps, G = 8, 4 LRs/step, lr 1e-2: gains +0.00118 / +0.00106 / +0.00158 ([0, 1] units; +0.30 /
+0.27 / +0.40 grey levels), ``sr_grpo_gain_min=0.00106``; action-noise share of reward variance 0.67 / 0.81 / 0.47.
(40 steps, 2 LRs/step: +0.93 / −0.04 / +0.15 grey levels — not every seed; with G = 4, lr 1e-3: ≈ 0.) (b) NOT met:
format SFT (80 steps, lr 3e-3) → held-out accuracy 0.5 (chance, well-formed); GRPO 30 steps at lr 5e-4 → 0.5;
60 steps at lr 2e-3 → 0.0 (format lost); one seed each (``judge_acc_before=0.500 judge_acc_after=0.500`` for the
default settings). With 1e-3 format-SFT lr the judge stayed malformed (0.0 → 0.0).

    nice -n 10 python benchmarks/training_direction.py                 # defaults: 3 seeds
    python benchmarks/training_direction.py --seeds 1 --sr-steps 4 --judge-steps 2 --sft-steps 4   # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "training" / "sr"))
sys.path.insert(0, str(ROOT / "tests" / "training" / "reward"))


# ----------------------------------------------------------------------------------------------- (a) OP4KSR GRPO
@torch.no_grad()
def policy_reward(run, pairs) -> float:
    """Mean fidelity reward of the deterministic one-step SR (the policy mean) on held-out (hr, lr) tensors."""
    from training.sr import grpo

    m, out = run.model, []
    for hr, lr in pairs:
        sr = grpo.to_uint8(m.forward(lr))
        clean = grpo.to_uint8(torch.nn.functional.avg_pool2d(hr, m.cfg.scale))
        out.append(float(grpo.fidelity_reward(clean, [[s] for s in sr]).mean()))
    return float(np.mean(out))


def sr_seed(seed: int, steps: int, work: Path, lr: float = 1e-2, group: int = 8, batch: int = 4) -> dict:
    from op4ksr_fixtures import write_pairs_shards

    from training.sr import data, grpo
    from training.sr.config import TrainConfig
    from training.sr.tiny import build_tiny_op4ksr

    tdir, vdir = build_tiny_op4ksr(work / f"tiny{seed}", seed=seed)
    shards = write_pairs_shards(work / f"shards{seed}", n=8, hr=128, scale=4, seed=100 * seed)
    held = write_pairs_shards(work / f"held{seed}", n=4, hr=128, scale=4, seed=100 * seed + 50)
    torch.manual_seed(seed)
    cfg = TrainConfig.model_validate(
        {"model": {"transformer": str(tdir), "vae": str(vdir)}, "stage": "grpo",
         "data": {"shards": [str(shards)], "crop": 64, "batch_size": batch, "shuffle_buffer": 4},
         "grpo": {"fidelity": 1.0, "group_size": group, "beta_kl": 0.0, "guard_window": 1000},
         "loss": {"ap": 0.0}, "steps": steps, "lr": lr, "out": str(work / f"grpo{seed}"), "save_every": 10_000,
         "log_every": 10_000, "seed": seed}
    )  # fmt: skip
    run = grpo.setup(cfg)
    stream = data.batches(data.pairs(data.shard_urls([str(held)]), 64, 4, seed, buffer=1), 1)
    pairs = [next(stream) for _ in range(4)]
    hr, lr = next(run.batches)
    split = grpo.noise_split(run, hr, lr, states=4, actions=4)
    before = policy_reward(run, pairs)
    run = grpo.train(run)
    after = policy_reward(run, pairs)
    rewards = [h["reward"] for h in run.history]
    return {"seed": seed, "before": before, "after": after, "gain": after - before, **split,
            "sample_reward_first5": float(np.mean(rewards[:5])), "sample_reward_last5": float(np.mean(rewards[-5:])),
            "zero_spread_steps": int(sum(h["zero_spread"] == 1.0 for h in run.history))}  # fmt: skip


# -------------------------------------------------------------------------------------------- (b) RefReward judge
def judge_accuracy(model_dir: Path, samples) -> float:
    from training.reward.evaluate import evaluate_pairs
    from training.reward.judge import load_judge

    res = evaluate_pairs(load_judge(str(model_dir), device="cpu"), samples, baselines=False)
    return float(res["judge"]["consistency"]["accuracy"])


def judge_seed(seed: int, sft_steps: int, steps: int, work: Path, sft_lr: float = 3e-3, lr: float = 5e-4) -> dict:
    from refreward_fixtures import TEST_BUDGET, write_workspace

    from training.reward import formatsft, recipe
    from training.reward.config import load_config
    from training.reward.data import load_preferences, split_by_lr
    from training.reward.tiny import build_tiny_qwen_vl

    ws = write_workspace(work / f"ws{seed}", n=24)
    base = build_tiny_qwen_vl(work / f"judge{seed}", seed=seed)
    samples = load_preferences(ws)
    train_s, held_s = split_by_lr(samples, 0.33, seed)
    fmt = formatsft.train(base, train_s, work / f"sft{seed}", steps=sft_steps, budget=TEST_BUDGET, seed=seed,
                          lr=sft_lr)  # fmt: skip
    before = judge_accuracy(fmt, held_s)
    cfg = load_config(None, {"model": str(fmt), "data": str(ws), "output_dir": str(work / f"grpo-judge{seed}"),
                             "num_generations": 4, "per_device_train_batch_size": 8, "max_steps": steps,
                             "max_completion_length": 48, "holdout": 0.33, "order": "mirror",
                             "pixel_budget": TEST_BUDGET, "learning_rate": lr, "save_steps": 10_000,
                             "temperature": 1.0, "beta": 0.0, "seed": seed})  # fmt: skip
    summary = recipe.train(cfg)
    assert set(summary["held_out"]) == {s.rec.pair_id for s in held_s}  # the recipe held out the same pairs
    after = judge_accuracy(Path(summary["final"]), held_s)
    return {"seed": seed, "before": before, "after": after, "held_pairs": len(held_s), "train_pairs": len(train_s)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sr-steps", type=int, default=80)
    ap.add_argument("--sr-lr", type=float, default=1e-2, help="AdamW lr of the LoRA in the GRPO stage")
    ap.add_argument("--sr-group", type=int, default=8, help="G samples per LR")
    ap.add_argument("--sr-batch", type=int, default=4, help="LRs per step")
    ap.add_argument("--sft-steps", type=int, default=80)
    ap.add_argument("--judge-steps", type=int, default=30)
    ap.add_argument("--sft-lr", type=float, default=3e-3, help="format SFT lr (1e-3: 80 steps left it malformed)")
    ap.add_argument("--judge-lr", type=float, default=5e-4, help="GRPO lr of the judge")
    ap.add_argument("--skip-judge", action="store_true")
    ap.add_argument("--skip-sr", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sr_rows, judge_rows = [], []
    with tempfile.TemporaryDirectory(prefix="training-direction-") as tmp:
        work = Path(tmp)
        for seed in range(args.seeds):
            if not args.skip_sr:
                sr_rows.append(sr_seed(seed, args.sr_steps, work, args.sr_lr, args.sr_group, args.sr_batch))
                print(json.dumps({"sr": sr_rows[-1]}), f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if not args.skip_judge:
                judge_rows.append(judge_seed(seed, args.sft_steps, args.judge_steps, work, args.sft_lr, args.judge_lr))
                print(json.dumps({"judge": judge_rows[-1]}), f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if args.json:
                args.json.write_text(json.dumps({"sr": sr_rows, "judge": judge_rows}, indent=1))
    gain_min = min((r["gain"] for r in sr_rows), default=float("nan"))
    before = float(np.mean([r["before"] for r in judge_rows])) if judge_rows else float("nan")
    after = float(np.mean([r["after"] for r in judge_rows])) if judge_rows else float("nan")
    if sr_rows:
        print(f"OP4KSR GRPO, fidelity reward, {args.sr_steps} steps: gains (x255 grey levels) "
              + ", ".join(f"{255 * r['gain']:+.3f}" for r in sr_rows)
              + "; action-noise share of reward variance "
              + ", ".join(f"{r['action_frac']:.2f}" for r in sr_rows))  # fmt: skip
    print(f"sr_grpo_gain_min={gain_min:.6g} judge_acc_before={before:.3f} judge_acc_after={after:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
