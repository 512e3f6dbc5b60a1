"""The reward step of ``sr4k demo``: train a tiny random judge for a few GRPO steps on the demo's preferences, then
score one LR's candidates with the scorer's tournament.

``run(workspace)`` needs the workspace's ``tables/preferences`` (``sr4k aggregate``) or a preferences release
(``source=``). A tiny judge learns nothing useful in a few steps: the demo shows the path end to end (prompts with
images under a pixel budget, rewards, GRPO steps, safetensors checkpoint, tournament scores), not accuracy.
Rerunning resumes (the checkpoint of the last step is there, so training returns at once).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipelines.store.workspace import Workspace
from training.reward.config import RewardConfig
from training.reward.data import load_preferences
from training.reward.examples import PixelBudget

# The tiny processor takes at most 112² px per image: a 112² global view and one 56² native crop per candidate.
DEMO_BUDGET = PixelBudget(global_max_pixels=112 * 112, crop_size=56, n_crops=1)


def demo_config(workspace: Path, base: Path, source: str | Path | None, steps: int, seed: int) -> RewardConfig:
    return RewardConfig(
        model=str(base),
        data=str(source or workspace),
        output_dir=str(Workspace(workspace).models / "refreward-demo"),
        num_generations=2,
        per_device_train_batch_size=4,
        max_steps=steps,
        max_completion_length=64,
        learning_rate=1e-4,
        holdout=0.0,
        pixel_budget=DEMO_BUDGET,
        save_steps=max(1, steps),
        device="cpu",
        seed=seed,
    )


def _largest_group(samples) -> tuple[str, Any, list[tuple[str, Any]]]:
    """The LR with the most distinct candidates among the pairs: (lr_key, LR ref, [(model, image ref)])."""
    groups: dict[str, dict[str, Any]] = defaultdict(dict)
    lrs = {}
    for s in samples:
        lrs[s.rec.lr_key] = s.lr
        groups[s.rec.lr_key].setdefault(s.rec.model_a, s.a)
        groups[s.rec.lr_key].setdefault(s.rec.model_b, s.b)
    key = max(groups, key=lambda k: (len(groups[k]), k))
    return key, lrs[key], sorted(groups[key].items())


def prepare(workspace: str | Path, steps: int = 2, source: str | Path | None = None, seed: int = 0) -> RewardConfig:
    """The demo's training config, with its tiny random judge built under ``<ws>/models/refreward-tiny-base``."""
    from training.reward.tiny import build_tiny_qwen_vl

    ws = Path(workspace).expanduser().resolve()
    base = Workspace(ws).models / "refreward-tiny-base"
    if not (base / "config.json").exists():
        build_tiny_qwen_vl(base, seed=seed)
    return demo_config(ws, base, source, steps, seed)


def score_group(workspace: str | Path, cfg: RewardConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """Score the candidates of the LR with the most of them with the trained judge (``summary`` of
    ``recipe.train``); write ``reports/refreward-demo.json`` and return it."""
    from training.reward.scorer import RefRewardScorer

    lr_key, lr_ref, cands = _largest_group(load_preferences(cfg.data))
    scorer = RefRewardScorer.from_checkpoint(summary["final"], device="cpu", batch_size=8)
    scores = scorer.score(lr_ref.open(), [ref.open() for _, ref in cands])
    ranking = sorted(((m, float(s)) for (m, _), s in zip(cands, scores, strict=True)), key=lambda x: -x[1])
    out = {
        "final": summary["final"],
        "global_step": summary["global_step"],
        "train_loss": summary["train_loss"],
        "mean_reward": summary["mean_reward"],
        "steps_per_s": summary["steps_per_s"],
        "train_pairs": summary["train_pairs"],
        "lr_key": lr_key,
        "ranking": ranking,
        "games": scorer.last_stats.judged,
        "malformed": scorer.last_stats.malformed,
    }
    report = Path(workspace).expanduser().resolve() / "reports" / "refreward-demo.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(out, indent=2) + "\n")
    return out


def run(
    workspace: str | Path, steps: int = 2, source: str | Path | None = None, seed: int = 0, callbacks=None
) -> dict[str, Any]:
    """Build the tiny judge, train ``steps`` GRPO steps, score one LR's candidates; write
    ``reports/refreward-demo.json`` and return the summary (final judge folder, steps, loss, ranking). ``sr4k demo``
    runs the same three steps with the training as the ``reward-train`` flow."""
    from training.reward import recipe

    cfg = prepare(workspace, steps, source, seed)
    return score_group(workspace, cfg, recipe.train(cfg, callbacks=callbacks))
