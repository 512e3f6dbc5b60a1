"""`sr4k` commands of the sr path; `register(app)` adds them to the main typer app (flows/cli.py).

- ``sr4k train-sr`` — OP4KSR stage 1 (supervised) or stage 2 (GRPO) on curated shards (training.sr).
  Runs the Prefect flow ``train-sr`` (flows.train); multi-GPU: ``--processes N`` (one ``accelerate launch``).
- ``sr4k upscale`` — one image through an OP4KSR checkpoint, patch-free; prints seconds and peak memory.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.console import console, fail


def _parse_set(items: list[str]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--set {item!r}", fix="use dotted.key=value, e.g. --set loss.ap=0.5")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:  # e.g. --set data.crop=[1, (an unclosed list): one line, not a traceback
            fail(
                f"--set {item!r}: the value is not valid YAML",
                fix="fix it (e.g. --set loss.ap=0.5, data.crop=[64,64])",
            )
    return out


def train_sr(
    shards: Annotated[
        list[str] | None, typer.Option(help="Curated shard tar or shard folder (repeat)", show_default="none")
    ] = None,
    transformer: Annotated[
        str | None, typer.Option(help="Local diffusers FluxTransformer2DModel folder", show_default="none")
    ] = None,
    vae: Annotated[
        str | None, typer.Option(help="Local diffusers F16 AutoencoderKL folder", show_default="none")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML settings (training.sr.config)", show_default="none")
    ] = None,
    stage: Annotated[str | None, typer.Option(help="supervised | grpo", show_default="supervised")] = None,
    reward: Annotated[str | None, typer.Option(help="RefReward checkpoint (stage grpo)", show_default="none")] = None,
    init_from: Annotated[
        str | None, typer.Option(help="Checkpoint to start from (grpo: the stage-1 model)", show_default="none")
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Output folder of checkpoints", show_default="sr4k-data/models/op4ksr"),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps", show_default="1000")] = None,
    crop: Annotated[
        int | None, typer.Option(help="HR training crop side (multiple of 32 and of the scale)", show_default="512")
    ] = None,
    rfr: Annotated[str | None, typer.Option(help="RoPE rescaling: ntk | pi | yarn | none", show_default="ntk")] = None,
    ap_weight: Annotated[
        float | None, typer.Option("--lambda-ap", help="Weight of L_AP (0 = off)", show_default="1.0")
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(help="auto | bfloat16 | float16 | float32 (auto = bf16 on a GPU)", show_default="auto"),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Any setting: dotted.key=value (repeat)", show_default="none")
    ] = None,
    processes: Annotated[
        int, typer.Option(help="1: train in this process; N > 1: one `accelerate launch` of N processes (GPUs)")
    ] = 1,
) -> None:
    """Train OP4KSR (LoRA on a Flux transformer + F16 VAE, one step, patch-free) on curated 4K shards.

    Resumes from the latest checkpoint in --out. Every setting is in training.sr.config (YAML via --config). The
    run is the Prefect flow ``train-sr`` (flows.train), the training one task of it; --processes N (multi-GPU)
    makes that task one `accelerate launch` of N processes.

    Example: sr4k train-sr --shards ./sr4k-data/shards/train4k --transformer /m/flux --vae /m/f16-vae -o ./runs/sr
    """
    from training.sr.config import load_config

    overrides = {
        "data.shards": shards or None,
        "model.transformer": transformer,
        "model.vae": vae,
        "stage": stage,
        "reward": reward,
        "init_from": init_from,
        "out": out,
        "steps": steps,
        "data.crop": crop,
        "model.rfr.mode": rfr,
        "loss.ap": ap_weight,
        "model.dtype": dtype,
    }
    overrides |= _parse_set(set_ or [])
    try:
        cfg = load_config(config, overrides)
    except ValueError as e:  # pipelines.store.settings.SettingsError: one line naming the key and the fix
        fail(str(e))
    if not cfg.data.shards:
        fail("no training data", fix="pass --shards <curated shard folder> (e.g. sr4k-data/shards/train4k)")
    if processes < 1:
        fail(f"--processes {processes}", fix="use 1 (this process) or the number of GPUs")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from flows.train import train_sr_flow

    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.description}"))
    with Progress(TextColumn(f"train-sr {cfg.stage}"), *columns, console=console) as progress:
        task = progress.add_task("", total=cfg.steps)

        def log(rec: dict) -> None:
            shown = {k: v for k, v in rec.items() if k in ("total", "ap", "reward", "lr_psnr", "periodicity")}
            text = " ".join(f"{k}={v:.4g}" for k, v in shown.items())
            progress.update(task, completed=rec["step"], description=text)

        try:  # the training is one task of the flow ``train-sr`` (recorded in the Prefect API)
            s = train_sr_flow(cfg.model_dump(mode="json"), processes=processes, log=log)
        except (FileNotFoundError, ValueError, ImportError) as e:
            fail(str(e))
        except RuntimeError as e:
            if type(e).__name__ == "ZeroSpreadError":
                fail(str(e), code=1)
            hint = memory_hint(e)
            if hint is None:
                raise
            fail(hint, code=1)
    t = Table(title=f"train-sr {cfg.stage} — {cfg.out}")
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("steps", str(s["steps"]))
    for k, v in s["last"].items():
        if k != "step":
            t.add_row(k, f"{v:.5g}")
    if s["rope_theta"] is not None:
        t.add_row("RoPE theta (RFR)", f"{s['rope_theta']:.1f} ({s['rfr']})")
    t.add_row("model", s["model"])
    if s["stopped"]:
        t.add_row("early stop", s["stopped"], style="yellow")
    console.print(t)


def memory_hint(e: BaseException) -> str | None:
    """One line for the two ways a 4K pass dies on a GPU, naming the fix; None for any other error."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    import torch

    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        return (
            f"out of GPU memory ({text[:120]}): use --dtype bfloat16 if you chose float32, then --vae-tiling "
            "(tiled VAE encode/decode; the transformer pass stays whole), or a smaller image"
        )
    if "32-bit index" in text or "canUse32BitIndexMath" in text or ("int32" in text and "index" in text):
        return (
            f"a tensor of this image exceeds 2^31 elements for one kernel ({text[:120]}): use --vae-tiling "
            "(the full-image VAE convolutions at 4K hit this limit)"
        )
    return None


def upscale(
    image: Annotated[Path, typer.Argument(help="LR image (PNG/JPEG)")],
    checkpoint: Annotated[Path, typer.Option(help="OP4KSR checkpoint folder (sr4k train-sr --out .../model)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output PNG")] = Path("out.png"),
    scale: Annotated[int, typer.Option(help="Must equal the checkpoint's scale")] = 4,
    vae_tiling: Annotated[bool, typer.Option(help="Fallback: VAE tiled encode/decode (not patch-free)")] = False,
    dtype: Annotated[
        str, typer.Option(help="auto | bfloat16 | float16 | float32 (auto = bfloat16 on a GPU, float32 on the CPU)")
    ] = "auto",
) -> None:
    """Upscale one image with OP4KSR in one pass over the whole image; prints seconds and peak memory.

    Example: sr4k upscale photo.png --checkpoint ./runs/op4ksr --output photo-x4.png
    """
    import cv2
    import torch

    from training.sr.model import OP4KSR

    bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if bgr is None:
        fail(f"cannot read {image} as an image")
    if dtype not in ("auto", "bfloat16", "float16", "float32"):
        fail(f"--dtype {dtype}", fix="choose auto, bfloat16, float16 or float32")
    try:
        model = OP4KSR.from_checkpoint(checkpoint, dtype=dtype)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    if model.cfg.scale != scale:
        fail(f"--scale {scale}, but the checkpoint is x{model.cfg.scale}", fix=f"use --scale {model.cfg.scale}")
    if vae_tiling:
        model.vae.enable_tiling()
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        sr = model.upscale(rgb)
    except RuntimeError as e:
        hint = memory_hint(e)
        if hint is None:
            raise
        fail(hint, code=1)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(output), cv2.cvtColor(sr, cv2.COLOR_RGB2BGR))
    if torch.cuda.is_available():
        mem = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB peak GPU memory (torch allocator)"
    else:
        mem = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB peak RSS (whole process, CPU)"
    h, w = rgb.shape[:2]
    console.print(f"{image} {w}x{h} -> {output} {sr.shape[1]}x{sr.shape[0]}: {seconds:.2f} s, {mem}")
    console.print(
        f"device: {model.device}; dtype: {str(model.dtype).removeprefix('torch.')}; "
        f"patch-free: {not (vae_tiling or model.cfg.vae_tiling)}",
        style="dim",
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("train-sr")(train_sr)
    app.command("upscale")(upscale)


if __name__ == "__main__":  # `python -m flows.sr_cli train-sr ...` (multi-GPU: --processes N, see flows.train)
    _app = typer.Typer(no_args_is_help=True, add_completion=False)
    register(_app)
    _app()
