"""Run one OP4KSR training stage from its config: what ``sr4k train-sr`` runs (through the ``train-sr`` flow,
``flows/train.py``) and what each rank of a multi-GPU launch runs.

- :func:`run`: the stage's recipe top to bottom (``training.sr.supervised`` or ``training.sr.grpo``: setup, then
  train) in this process; returns :func:`summary`-like facts of the run.
- :func:`write_config` / ``python -m training.sr.launch <out>/train-config.json``: the same from a JSON file, for
  ``accelerate launch --num_processes N -m training.sr.launch <config.json>`` (rank 0 writes the log, checkpoints and
  model; the others train their data shards).
- :func:`summary_from_files`: the summary of a launched run, read back from what rank 0 wrote: the last line of
  ``<out>/log.jsonl`` and the guard's ``<out>/stopped.json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Log = Callable[[dict], None]


def run(config: dict[str, Any], log: Log | None = None) -> dict[str, Any]:
    """Train with ``config`` (``TrainConfig`` fields) in this process; ``log`` sees the start (``{"step": n}``, where a
    resumed run begins) and each logged step. Returns stage, steps, last logged record, RoPE theta, model folder and
    the guard's stop reason."""
    from training.sr.config import TrainConfig

    cfg = TrainConfig.model_validate(config)
    if cfg.stage == "grpo":
        from training.sr import grpo as recipe
    else:
        from training.sr import supervised as recipe
    run_ = recipe.setup(cfg)
    if log:
        log({"step": run_.step})
    run_ = recipe.train(run_, log)
    return {
        "stage": cfg.stage,
        "steps": run_.step,
        "last": run_.history[-1] if run_.history else {},
        "rope_theta": float(run_.model.theta),
        "rfr": cfg.model.rfr.mode,
        "model": str(Path(cfg.out) / "model"),
        "stopped": getattr(run_, "stopped", None),
    }


def write_config(config: dict[str, Any]) -> Path:
    """``config`` as ``<out>/train-config.json`` (the file a launch's ranks read); returns its path."""
    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train-config.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def summary_from_files(config: dict[str, Any]) -> dict[str, Any]:
    """What a launched run left in ``<out>``: steps and last record from ``log.jsonl``, the stop reason from
    ``stopped.json`` (RoPE theta is not logged: None)."""
    out = Path(config["out"])
    log_path, stop_path = out / "log.jsonl", out / "stopped.json"
    lines = log_path.read_text().splitlines() if log_path.is_file() else []
    last = json.loads(lines[-1]) if lines else {}
    return {
        "stage": config.get("stage", "supervised"),
        "steps": int(last.get("step", 0)),
        "last": last,
        "rope_theta": None,
        "rfr": ((config.get("model") or {}).get("rfr") or {}).get("mode"),
        "model": str(out / "model"),
        "stopped": json.loads(stop_path.read_text())["reason"] if stop_path.is_file() else None,
    }


if __name__ == "__main__":  # one rank of `accelerate launch -m training.sr.launch <config.json>`
    run(json.loads(Path(sys.argv[1]).read_text()))
