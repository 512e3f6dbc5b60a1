"""Prefect flows of the reward path (thin wiring over training.reward): train the judge, evaluate it on held-out
preferences. Tasks pass config dicts and paths, never images or tensors.

``reward_train_flow(config)`` runs the GRPO recipe (resumable: a rerun continues from the last checkpoint) and, when
pairs were held out, evaluates the final judge on them; ``reward_eval_flow(checkpoint, data, out)`` evaluates any
judge folder on any preferences source. GRPO training is one long process on one machine (or one ``accelerate``
launch): the flow records it as one task, it does not split it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task


@task(name="train-reward-judge")
def _train(config: dict[str, Any]) -> dict[str, Any]:
    from training.reward import recipe
    from training.reward.config import RewardConfig

    summary = recipe.train(RewardConfig.model_validate(config))
    return {k: v for k, v in summary.items() if k != "log_history"}


@task(name="evaluate-reward-judge")
def _evaluate(checkpoint: str, data: str, out: str, pair_ids: list[str] | None, backend: str) -> dict[str, Any]:
    from training.reward.data import load_preferences
    from training.reward.evaluate import evaluate_pairs, write_report
    from training.reward.judge import load_judge

    samples = load_preferences(data)
    if pair_ids is not None:
        keep = set(pair_ids)
        samples = [s for s in samples if s.rec.pair_id in keep]
    report = evaluate_pairs(load_judge(checkpoint, backend=backend), samples)
    js, md = write_report(report, out)
    return {"n_pairs": report["n_pairs"], "judge": report["judge"], "baselines": report["baselines"],
            "report": str(md), "per_pair": str(js)}  # fmt: skip


@flow(name="reward-train")
def reward_train_flow(config: dict[str, Any], evaluate: bool = True) -> dict[str, Any]:
    """Train the judge (``config``: RewardConfig fields) and evaluate it on the held-out pairs."""
    summary = _train(config)
    if evaluate and summary["held_out"]:
        out = str(Path(summary["final"]) / "eval")
        summary["eval"] = _evaluate(summary["final"], config["data"], out, summary["held_out"], "transformers")
    return summary


@flow(name="reward-eval")
def reward_eval_flow(checkpoint: str, data: str, out: str | None = None, backend: str = "transformers") -> dict:
    """Evaluate a judge folder on a preferences source; the report goes to ``out`` (default <checkpoint>/eval)."""
    return _evaluate(checkpoint, data, out or str(Path(checkpoint) / "eval"), None, backend)
