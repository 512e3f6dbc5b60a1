"""Prefect flows: run candidate SR models over an LR set (cached, resumable), and build a round of pairs.

Wiring only: what runs, what is cached and where outputs go is ``pipelines.pairs.candidates``; reading the
candidates, excluding earlier rounds, writing the round and parsing the estimates file is ``pipelines.pairs.rounds``;
comparison pages are ``labelling.compare``. Units already marked done are not submitted, so a rerun with the same
models calls no model at all; a killed run redoes only its unfinished units. Models parallelise internally (ncnn /
torch threads), so units run one at a time by default (``workers=1``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from flows.upscalers import get_upscaler
from pipelines.pairs import candidates as cand
from pipelines.pairs import rounds
from pipelines.store.workspace import Workspace, remove_stale_temps


@task(name="run-candidate-unit", task_run_name="candidates-{unit_name}")
def _run_unit(workspace: str, lr_set: str, unit_name: str, model_spec: str, scale: int, keys: list[str]) -> int:
    ws = Workspace(workspace)
    model = get_upscaler(model_spec, scale)
    items = {it.key: it for it in cand.lr_items(ws, lr_set) if it.key in set(keys)}
    return cand.run_unit(ws, lr_set, cand.CandUnit(unit_name, model.name, keys), model, items)


@flow(name="candidates-run", task_runner=ThreadPoolTaskRunner(max_workers=1))
def candidates_flow(
    workspace: str, lr_set: str, models: list[str], scale: int = 4, unit_size: int = 8, show_progress: bool = True
) -> dict:
    """Run every model on every LR of ``lr_set``; returns counts (units run / cached, images written)."""
    ws = Workspace(workspace)
    keys = cand.run_keys(ws, lr_set, scale)  # name, set and output sizes checked before any model loads
    if ws.root.exists():
        remove_stale_temps(ws.root)
    upscalers = {spec: get_upscaler(spec, scale) for spec in models}  # unknown model, missing weights: fail fast
    plan, todo = cand.plan_run(ws, lr_set, keys, upscalers, unit_size)
    written = 0
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(TextColumn("[bold]{task.description}"), *columns, disable=not show_progress) as bar:
        job = bar.add_task(
            f"{len(models)} model(s) x {len(keys)} LR", total=len(plan), completed=len(plan) - len(todo)
        )
        futures = [_run_unit.submit(str(ws.root), lr_set, u.name, spec, scale, u.keys) for spec, u in todo]
        for fut in as_completed(futures):
            written += fut.result()
            bar.advance(job)
    return {
        "lr_set": lr_set,
        "lr_images": len(keys),
        "models": models,
        "units": len(plan),
        "units_run": len(todo),
        "units_cached": len(plan) - len(todo),
        "images_written": written,
        "versions": {s: u.version for s, u in upscalers.items()},
    }


@task(name="build-pairs")
def _build_pairs(workspace: str, name: str, target: int, options: dict[str, Any]) -> dict:
    return rounds.build_round(Workspace(workspace), name, target, **options)


@task(name="record-pair-views")
def _record_views(workspace: str, name: str) -> dict:
    """Each new pair's comparison page rendered once, across the cores (``labelling.compare.record_views``), so that
    ``sr4k label push`` only assembles task JSON."""
    from labelling import compare

    return compare.record_views(Workspace(workspace), name)


@flow(name="pairs-build")
def pairs_flow(
    workspace: str,
    target: int,
    strategy: str = "balanced",
    seed: int = 0,
    lr_set: str | None = None,
    min_distance: float | None = None,
    estimates_path: str | None = None,
    name: str = "pairs",
    min_per_pair: int = 0,
    acquisition: str = "order",
    criteria: list[str] | None = None,
) -> dict:
    """Build the round ``name`` (``tables/pairs/part-<name>.parquet``) from the workspace's candidates; pairs of the
    other parts (earlier rounds) are excluded and, for ``active``, count as asked (``pipelines.pairs.rounds``). Then
    every pair without a recorded comparison page gets one (``tables/pair_views/part-<name>.parquet``; the report's
    ``views`` and ``render_seconds``).

    ``estimates_path`` (``active``): ``labelling/ranking.json`` as ``sr4k aggregate`` writes it (``criteria`` picks
    among its criteria, default all) or a plain JSON ``{model: [mean, std]}`` (``rounds.load_estimates``)."""
    estimates = rounds.load_estimates(estimates_path, criteria) if estimates_path else None
    options = dict(
        strategy=strategy,
        seed=seed,
        lr_set=lr_set,
        min_distance=min_distance,
        estimates=estimates,
        min_per_pair=min_per_pair,
        acquisition=acquisition,
    )
    report = _build_pairs(workspace, name, target, options)
    return report | _record_views(workspace, name)
