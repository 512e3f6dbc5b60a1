"""Prefect flow ``train-sr``: OP4KSR training (stage 1 supervised or stage 2 GRPO) recorded as one task run.

Training is one long process that holds the model, the optimizer and the data stream; steps are not tasks (tasks
pass paths and configs, never tensors). The flow records the run in the Prefect API — its config as the flow's
parameter, the task's state and duration, and the summary it returns — and the recipe writes what it always writes:
``<out>/log.jsonl``, ``<out>/checkpoint-*``, ``<out>/model``. Two ways to run the task:

- ``processes=1`` (default): ``training.sr.launch.run`` (the stage's recipe: setup, then train) in this process, on
  the CPU or one GPU, and ``log`` sees each logged step (the CLI's progress bar);
- ``processes=N`` (N > 1, multi-GPU): one ``accelerate launch --num_processes N -m training.sr.launch <config.json>``
  subprocess (no Prefect inside the ranks; rank 0 writes the log and checkpoints); the task fails when the launch
  exits non-zero, and its summary is read back from ``<out>`` (``launch.summary_from_files``). accelerate's own rules
  apply: on a machine with several GPUs it starts N processes, one per GPU (or follows ``accelerate config``);
  without them it runs one.

``sr4k train-sr`` validates the settings and calls :func:`train_sr_flow`; a rerun with the same ``out`` resumes from
the latest checkpoint (the recipes do that). Wiring only: running and reading a run back is ``training.sr.launch``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

Log = Callable[[dict], None]


@task(name="train-sr", cache_policy=NO_CACHE)
def _train(config: dict[str, Any], processes: int, log: Log | None) -> dict[str, Any]:
    from training.sr import launch

    if processes == 1:
        return launch.run(config, log) | {"processes": 1}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    done = subprocess.run([*cmd, "-m", "training.sr.launch", str(launch.write_config(config))])
    if done.returncode != 0:
        raise RuntimeError(
            f"accelerate launch of {processes} processes exited {done.returncode}: see the output above and "
            f"{Path(config['out']) / 'log.jsonl'}; rerun the same command to resume"
        )
    return launch.summary_from_files(config) | {"processes": processes}


@flow(name="train-sr")
def train_sr_flow(config: dict[str, Any], processes: int = 1, log: Log | None = None) -> dict[str, Any]:
    """Train OP4KSR with ``config`` (``training.sr.config.TrainConfig`` fields, as a dict) as one task; returns the
    summary (stage, steps, last logged record, RoPE theta, model folder, early stop)."""
    if processes < 1:
        raise ValueError(f"processes {processes}: use 1 (this process) or the number of GPUs")
    return _train(config, processes, log)
