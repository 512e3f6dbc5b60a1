"""Prefect flow ``train-sr``: OP4KSR training (stage 1 supervised or stage 2 GRPO) recorded as one task run.

Training is one long process that holds the model, the optimizer and the data stream; steps are not tasks (tasks
pass paths and configs, never tensors). The flow records the run in the Prefect API — its config as the flow's
parameter, the task's state and duration, and the summary it returns — and the recipe writes what it always writes:
``<out>/log.jsonl``, ``<out>/checkpoint-*``, ``<out>/model``. Two ways to run the task:

- ``processes=1`` (default): the recipe (``training.sr.supervised`` or ``training.sr.grpo``: setup, then train) runs
  in this process, on the CPU or one GPU, and ``log`` sees each logged step (the CLI's progress bar);
- ``processes=N`` (N > 1, multi-GPU): one ``accelerate launch --num_processes N -m flows.train <config.json>``
  subprocess; each rank runs the recipe from the config file (``run_recipe``, no Prefect inside), rank 0 writes the
  log and checkpoints, and the task fails when the launch exits non-zero. Its summary is read back from
  ``<out>/log.jsonl``. accelerate's own rules apply: on a machine with several GPUs it starts N processes, one per
  GPU (or follows ``accelerate config``); without them it runs one.

``sr4k train-sr`` validates the settings and calls :func:`train_sr_flow`; a rerun with the same ``out`` resumes from
the latest checkpoint (the recipes do that).

Run one rank by hand (what the launch runs): ``python -m flows.train <out>/train-config.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

Log = Callable[[dict], None]


def run_recipe(config: dict[str, Any], log: Log | None = None) -> dict[str, Any]:
    """The stage's recipe, top to bottom (setup, train) in this process; returns :func:`summary` of the run."""
    from training.sr.config import TrainConfig

    cfg = TrainConfig.model_validate(config)
    if cfg.stage == "grpo":
        from training.sr import grpo as recipe
    else:
        from training.sr import supervised as recipe
    run = recipe.setup(cfg)
    if log:
        log({"step": run.step})  # where a resumed run starts
    run = recipe.train(run, log)
    return {
        "stage": cfg.stage,
        "steps": run.step,
        "last": run.history[-1] if run.history else {},
        "rope_theta": float(run.model.theta),
        "rfr": cfg.model.rfr.mode,
        "model": str(Path(cfg.out) / "model"),
        "stopped": getattr(run, "stopped", None),
        "processes": 1,
    }


def _launched_summary(cfg: dict[str, Any], processes: int) -> dict[str, Any]:
    """What an ``accelerate`` run left behind: the last line of ``<out>/log.jsonl`` and the guard's stop record."""
    out = Path(cfg["out"])
    lines = (out / "log.jsonl").read_text().splitlines() if (out / "log.jsonl").is_file() else []
    last = json.loads(lines[-1]) if lines else {}
    stopped = json.loads((out / "stopped.json").read_text())["reason"] if (out / "stopped.json").is_file() else None
    return {
        "stage": cfg.get("stage", "supervised"),
        "steps": int(last.get("step", 0)),
        "last": last,
        "rope_theta": None,
        "rfr": ((cfg.get("model") or {}).get("rfr") or {}).get("mode"),
        "model": str(out / "model"),
        "stopped": stopped,
        "processes": processes,
    }


@task(name="train-sr", cache_policy=NO_CACHE)
def _train(config: dict[str, Any], processes: int, log: Log | None) -> dict[str, Any]:
    if processes == 1:
        return run_recipe(config, log)
    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "train-config.json"
    cfg_path.write_text(json.dumps(config, indent=1))
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    cmd = [*launch, "-m", "flows.train", str(cfg_path)]
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise RuntimeError(
            f"accelerate launch of {processes} processes exited {done.returncode}: see the output above and "
            f"{out / 'log.jsonl'}; rerun the same command to resume"
        )
    return _launched_summary(config, processes)


@flow(name="train-sr")
def train_sr_flow(config: dict[str, Any], processes: int = 1, log: Log | None = None) -> dict[str, Any]:
    """Train OP4KSR with ``config`` (``training.sr.config.TrainConfig`` fields, as a dict) as one task; returns the
    summary (stage, steps, last logged record, RoPE theta, model folder, early stop)."""
    if processes < 1:
        raise ValueError(f"processes {processes}: use 1 (this process) or the number of GPUs")
    return _train(config, processes, log)


if __name__ == "__main__":  # one rank of `accelerate launch -m flows.train <config.json>`
    run_recipe(json.loads(Path(sys.argv[1]).read_text()))
