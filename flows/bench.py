"""Prefect flows for benchmarks: build/import a benchmark set, and evaluate upscalers on it (thin wiring over
pipelines.bench: sets, evaluate and report). Tasks pass paths and names, never pixels."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.upscalers import get_upscaler
from pipelines.bench import sets as benchsets
from pipelines.bench.evaluate import evaluate, open_bench
from pipelines.bench.report import write_bench_report
from pipelines.store.workspace import Workspace


@task(name="build-synthetic-benchmark")
def _build_synthetic(
    src: str,
    out_dir: str,
    name: str,
    count: int,
    hr_size: tuple[int, int],
    scale: int,
    seed: int,
    holdout_permille: int,
) -> dict:
    return benchsets.build_synthetic(src, Path(out_dir), name, count, hr_size, scale, seed, holdout_permille)


@task(name="import-benchmark")
def _import(kind: str, out_dir: str, name: str, hr: str | None, lr: str, scale: int | None, square: int | None):
    if kind == "paired":
        return benchsets.import_paired(Path(hr), Path(lr), Path(out_dir), name, scale)
    return benchsets.import_lr_only(Path(lr), Path(out_dir), name, square, scale or 4)


@flow(name="bench-build")
def bench_build_flow(
    workspace: str,
    kind: str,
    name: str,
    src: str | None = None,
    hr: str | None = None,
    lr: str | None = None,
    count: int = 100,
    hr_size: tuple[int, int] = (4096, 4096),
    scale: int | None = 4,
    seed: int = 0,
    holdout_permille: int = 10,
    square: int | None = None,
) -> dict:
    """Build (``synthetic``) or import (``paired``, ``lr_only``) the benchmark ``name`` into the workspace.
    ``scale=None`` lets a paired import infer the scale from its first pair."""
    out_dir = str(Workspace(workspace).benchmarks)
    if kind == "synthetic":
        return _build_synthetic(src, out_dir, name, count, hr_size, scale or 4, seed, holdout_permille)
    return _import(kind, out_dir, name, hr, lr, scale, square)


@task(name="evaluate-benchmark")
def _evaluate(
    workspace: str,
    bench: str,
    models: list[str],
    stride: int,
    lpips: str | None,
    dists: str | None,
    show_progress: bool,
) -> tuple[str, dict]:
    ws = Workspace(workspace)
    # the benchmark verified (keys and paths inside the folder, files as the manifest lists them) before anything is
    # read or written under a key: the evaluation writes evals/<bench>/crops/<key>/
    _, manifest, items = open_bench(ws, bench, verify=True)
    upscalers = [get_upscaler(m, int(manifest["scale"])) for m in models]
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show_progress,
    ) as bar:
        job = bar.add_task(f"evaluating {len(models)} model(s) on {bench}", total=len(items))
        path, info = evaluate(ws.root, bench, upscalers, stride, lpips, dists, on_item=lambda: bar.advance(job))
    return str(path), info


@task(name="bench-report")
def _report(workspace: str, bench: str, results: str, info: dict) -> str:
    return str(write_bench_report(workspace, bench, Path(results), info))


@flow(name="bench-eval")
def bench_eval_flow(
    workspace: str,
    bench: str,
    models: list[str],
    token_stride: int = 32,
    lpips: str | None = None,
    dists: str | None = None,
    show_progress: bool = True,
) -> dict:
    """Evaluate ``models`` on ``bench``; results in the workspace catalog (``bench_results``) and an HTML report."""
    results, info = _evaluate(workspace, bench, models, token_stride, lpips, dists, show_progress)
    report = _report(workspace, bench, results, info)
    return {"results": results, "report": report, **info}
