"""`sr4k` commands of the reward path; `register(app)` adds them to the main typer app (flows/cli.py).

- ``sr4k train-reward``: GRPO fine-tuning of the LR-conditioned judge (training/reward/recipe.py);
- ``sr4k eval-reward``: accuracy per criterion, position consistency and baselines on held-out preferences;
- ``sr4k score``: rank candidate HR images of one LR with the judge's pairwise tournament.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from flows.console import console, fail, warn


def _quiet_libraries() -> None:
    """transformers/datasets draw their own tqdm bars (weight loading, dataset cache): the CLI shows rich ones."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _rich_callback(progress: Progress):
    """A TrainerCallback that drives a rich progress bar (steps, last loss and reward)."""
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        task: Any = None

        def on_train_begin(self, args, state, control, **kw):
            self.task = progress.add_task("GRPO", total=state.max_steps, completed=state.global_step, info="")

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs and self.task is not None:
                info = f"loss {logs['loss']:.4g}  reward {logs.get('reward', float('nan')):.3f}"
                progress.update(self.task, info=info)

        def on_step_end(self, args, state, control, **kw):
            if self.task is not None:
                progress.update(self.task, completed=state.global_step)

    return RichProgress()


def eval_table(report: dict[str, Any], title: str) -> Table:
    from schemas.labels import CRITERIA

    t = Table(title=title)
    for col in ("", *CRITERIA):
        t.add_column(col, justify="right" if col else "left")
    rows = [
        ("judge accuracy", "accuracy"),
        ("  a shown first", "accuracy_ab"),
        ("  b shown first", "accuracy_ba"),
        ("  agreement-weighted", "weighted_accuracy"),
        ("position consistency", "position_consistency"),
        ("malformed answers", "malformed"),
    ]
    for name, key in rows:
        t.add_row(
            name, *(f"{report['judge'][c][key]:.3f}" for c in CRITERIA), style="bold" if key == "accuracy" else None
        )
    for name, accs in report["baselines"].items():
        t.add_row(f"baseline: {name}", *(f"{accs[c]:.3f}" for c in CRITERIA), style="dim")
    t.caption = f"{report['n_pairs']} pairs, both A/B orders"
    return t


def train_reward(
    data: Annotated[str, typer.Option("--data", "-d", help="Preferences: workspace folder or release folder/.tar")],
    model: Annotated[str, typer.Option("--model", "-m", help="Local Qwen2-VL/Qwen2.5-VL checkpoint folder")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file of settings (RewardConfig)", show_default="none")
    ] = None,
    output_dir: Annotated[
        str | None,
        typer.Option(
            "--output-dir", "-o", help="Checkpoints and final judge", show_default="./sr4k-data/models/refreward"
        ),
    ] = None,
    use_vllm: Annotated[
        bool | None, typer.Option("--use-vllm/--no-use-vllm", help="vLLM rollouts (GPU)", show_default="no-use-vllm")
    ] = None,
    vllm_mode: Annotated[
        str | None, typer.Option(help="colocate | server (with `trl vllm-serve`)", show_default="colocate")
    ] = None,
    lora: Annotated[
        bool | None, typer.Option("--lora/--no-lora", help="Train LoRA adapters only", show_default="no-lora")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimiser steps (-1 = epochs)", show_default="-1")] = None,
    num_generations: Annotated[int | None, typer.Option(help="GRPO group size", show_default="4")] = None,
    batch_size: Annotated[int | None, typer.Option(help="per_device_train_batch_size", show_default="4")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Learning rate", show_default="1e-06")] = None,
    beta: Annotated[float | None, typer.Option(help="KL coefficient", show_default="0.04")] = None,
    max_completion_length: Annotated[
        int | None, typer.Option(help="Max new tokens per rollout", show_default="256")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda", show_default="auto")] = None,
    resume: Annotated[
        bool | None,
        typer.Option("--resume/--no-resume", help="Resume from the last checkpoint", show_default="resume"),
    ] = None,
    evaluate: Annotated[
        bool, typer.Option("--eval/--no-eval", help="Evaluate on the held-out pairs at the end")
    ] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
) -> None:
    """Fine-tune the LR-conditioned judge with GRPO on pairwise human preferences (TRL GRPOTrainer).

    Rerunning with the same --output-dir resumes from the last checkpoint. The final judge (safetensors, processor,
    refreward.json) is written to <output-dir>/final; `sr4k score --checkpoint <output-dir>/final` uses it.

    Example: sr4k train-reward --data ./sr4k-data/releases/refsr-0.2.0 --model /models/Qwen2.5-VL-7B --lora
    """
    from training.reward.config import ConfigError, load_config

    _quiet_libraries()
    overrides = {
        "data": data,
        "model": model,
        "output_dir": output_dir,
        "use_vllm": use_vllm,
        "vllm_mode": vllm_mode,
        "lora": lora,
        "max_steps": max_steps,
        "num_generations": num_generations,
        "per_device_train_batch_size": batch_size,
        "learning_rate": learning_rate,
        "beta": beta,
        "max_completion_length": max_completion_length,
        "device": device,
        "resume": resume,
    }
    try:
        cfg = load_config(config, overrides)
        from training.reward import recipe

        progress = _progress()
        callbacks = [] if quiet else [_rich_callback(progress)]
        with progress if not quiet else _null():
            summary = recipe.train(cfg, callbacks=callbacks)
    except (ConfigError, FileNotFoundError) as e:
        fail(str(e))
    t = Table(title=f"train-reward — {summary['final']}")
    t.add_column("what")
    t.add_column("value", justify="right")
    for k in ("device", "resumed_from", "global_step", "steps_run", "train_pairs", "held_out_pairs", "prompts"):
        t.add_row(k, str(summary[k]))
    for k in ("train_loss", "mean_reward", "steps_per_s", "train_s"):
        t.add_row(k, f"{summary[k]:.4g}")
    console.print(t)
    if summary.get("stopped"):
        warn(summary["stopped"])
    if evaluate and summary["held_out"]:
        report = recipe.evaluate(summary, cfg)
        from training.reward.evaluate import write_report

        write_report(report, Path(summary["final"]) / "eval")
        console.print(eval_table(report, "held-out evaluation"))
    if summary.get("stopped"):
        raise typer.Exit(1)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _new_report_dir(checkpoint: Path, data: str) -> Path:
    """A report folder no other run wrote: <checkpoint>/eval-reward/<data name>-<UTC time>[-n]. train-reward's
    held-out report (<checkpoint>/eval) and earlier eval-reward runs are never overwritten by default."""
    import datetime as dt
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(data).rstrip("/")).name or "data")[:60]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    base = checkpoint / "eval-reward" / f"{name}-{stamp}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def eval_reward(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Judge folder (e.g. <output-dir>/final)")],
    data: Annotated[str, typer.Option("--data", "-d", help="Held-out preferences: workspace or release")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Report folder", show_default="a new <checkpoint>/eval-reward/<data>-<UTC time>"),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the report already in --out")] = False,
    backend: Annotated[str, typer.Option(help="transformers | vllm")] = "transformers",
    device: Annotated[str | None, typer.Option(help="cpu | cuda", show_default="cuda when available")] = None,
    batch_size: Annotated[int, typer.Option(help="Pairs per judge batch")] = 8,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N pairs only", show_default="all")] = None,
    baselines: Annotated[bool, typer.Option("--baselines/--no-baselines", help="PSNR/sharpness baselines")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
) -> None:
    """Accuracy per criterion on held-out human preferences, position consistency, and simple baselines.

    Example: sr4k eval-reward --checkpoint ./runs/refreward --data ./sr4k-data/releases/refsr-0.2.0
    """
    from training.reward.evaluate import evaluate_pairs, write_report
    from training.reward.recipe import eval_inputs

    _quiet_libraries()
    out = out or _new_report_dir(checkpoint, data)
    if (out / "eval.json").exists() and not overwrite:
        fail(f"{out} already holds a report (eval.json)", fix="pass another --out, or --overwrite to replace it")
    try:  # recipe.evaluate_judge's two steps, with the progress bar between them
        judge, samples = eval_inputs(checkpoint, data, backend=backend, device=device, limit=limit)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        fail(str(e))
    with _progress() as progress:
        task = progress.add_task("judging pairs", total=len(samples), info="", visible=not quiet)
        try:
            report = evaluate_pairs(
                judge,
                samples,
                baselines=baselines,
                batch_size=batch_size,
                progress=lambda k: progress.advance(task, k),
            )
        except (OSError, ValueError) as e:  # an unreadable or mismatched image of the data set
            fail(f"evaluation stopped on a bad input of {data}: {str(e).splitlines()[0] if str(e) else e!r}")
    js, md = write_report(report, out)
    console.print(eval_table(report, f"eval-reward — {checkpoint}"))
    console.print(f"report: {md} (per pair: {js})")


def score(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Judge folder (e.g. <output-dir>/final)")],
    lr: Annotated[Path, typer.Option("--lr", help="The LR input image")],
    candidates: Annotated[list[Path], typer.Argument(help="Candidate HR images of that LR (2 or more)")],
    backend: Annotated[str, typer.Option(help="transformers | vllm")] = "transformers",
    device: Annotated[str | None, typer.Option(help="cpu | cuda", show_default="cuda when available")] = None,
    method: Annotated[str, typer.Option(help="bt (Bradley–Terry log-strength) | wins (share of games won)")] = "bt",
) -> None:
    """Rank candidates of one LR by a round-robin tournament of the judge (both A/B orders) + Bradley–Terry.

    Example: sr4k score --checkpoint ./runs/refreward --lr lr.png a.png b.png c.png
    """
    from PIL import Image

    from training.reward.scorer import RefRewardScorer

    _quiet_libraries()
    for p in [lr, *candidates]:
        if not p.is_file():
            fail(f"{p} does not exist")
    if len(candidates) < 2:
        fail("give at least two candidate images to compare")
    try:
        scorer = RefRewardScorer.from_checkpoint(checkpoint, backend=backend, device=device, method=method)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        fail(str(e))
    try:
        lr_image = Image.open(lr).convert("RGB")
        images = [Image.open(p).convert("RGB") for p in candidates]
    except (OSError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
        fail(f"cannot read an input as an image: {str(e).splitlines()[0]}")
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        fail(
            f"the candidates differ in size ({', '.join(f'{w}x{h}' for w, h in sorted(sizes))}): they must be SR "
            "results of the same LR at the same scale"
        )
    (cw, ch), (lw, lh) = images[0].size, lr_image.size
    if cw < lw or ch < lh:
        fail(
            f"the candidates ({cw}x{ch}) are smaller than the LR ({lw}x{lh})",
            fix="pass the LR with --lr and the HR results as arguments",
        )
    n_games = len(images) * (len(images) - 1)
    with console.status(f"judging {n_games} games ({len(images)} candidates, both orders)"):
        scores = scorer.score(lr_image, images)
    t = Table(title=f"score — {lr}")
    t.add_column("rank", justify="right")
    t.add_column("candidate", no_wrap=True)
    t.add_column("score", justify="right")
    t.add_column("folder", overflow="fold")
    for rank, i in enumerate(sorted(range(len(images)), key=lambda k: -scores[k]), 1):
        t.add_row(str(rank), candidates[i].name, f"{scores[i]:+.3f}", str(candidates[i].resolve().parent))
    st = scorer.last_stats
    t.caption = f"{st.judged} games, {st.malformed} malformed answers; scale: {method}"
    console.print(t)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("train-reward")(train_reward)
    app.command("eval-reward")(eval_reward)
    app.command("score")(score)
