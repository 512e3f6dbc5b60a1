"""Prefect flows of the reward path (thin wiring over training.reward): train the judge, evaluate it on held-out
preferences. Tasks pass config dicts and paths, never images or tensors.

``reward_train_flow(config)`` runs the GRPO recipe (resumable: a rerun continues from the last checkpoint) and, when
pairs were held out, evaluates the final judge on them; ``reward_eval_flow(checkpoint, data, out)`` evaluates any judge
folder on any preferences source. Both evaluate through ``training.reward.recipe.evaluate_judge``, the one evaluation
path (``sr4k train-reward`` and ``sr4k eval-reward`` use it too). GRPO training is one long process on one machine (or
one ``accelerate`` launch): the flow records it as one task, it does not split it.
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
def _evaluate(
    checkpoint: str, data: str, out: str, pair_ids: list[str] | None, backend: str, device: str | None
) -> dict[str, Any]:
    from training.reward.evaluate import write_report
    from training.reward.recipe import evaluate_judge

    report = evaluate_judge(checkpoint, data, pair_ids, backend=backend, device=device)
    js, md = write_report(report, out)
    return {
        "n_pairs": report["n_pairs"],
        "judge": report["judge"],
        "baselines": report["baselines"],
        "report": str(md),
        "per_pair": str(js),
    }


@flow(name="reward-train")
def reward_train_flow(config: dict[str, Any], evaluate: bool = True) -> dict[str, Any]:
    """Train the judge (``config``: RewardConfig fields) and evaluate it on the held-out pairs."""
    summary = _train(config)
    if evaluate and summary["held_out"]:
        out = str(Path(summary["final"]) / "eval")
        summary["eval"] = _evaluate(
            summary["final"], config["data"], out, summary["held_out"], "transformers", summary["device"]
        )
    return summary


@flow(name="reward-eval")
def reward_eval_flow(
    checkpoint: str, data: str, out: str | None = None, backend: str = "transformers", device: str | None = None
) -> dict:
    """Evaluate a judge folder on a preferences source; the report goes to ``out`` (default <checkpoint>/eval)."""
    return _evaluate(checkpoint, data, out or str(Path(checkpoint) / "eval"), None, backend, device)
