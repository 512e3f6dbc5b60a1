"""Prefect flow ``curate``: images in, a sharded LR/HR webdataset out (thin wiring over pipelines.curate.build).

Runs on Prefect's embedded defaults (an ephemeral local API with SQLite; no server to start). Each work unit is a
task; tasks get paths and URIs, never pixels. Completed units (marker + same config hash) are skipped before
submission, so a rerun after a crash only redoes the units that had not finished. Dedup and packing run once at the
end; they are cheap and deterministic, so they are simply redone. Packing removes the staging tars; a rerun takes
the bytes of already shipped samples from the current shards (pipelines.curate.build.pack).

Task runners (``--runner``): ``threads`` (default; decoding, OpenCV and zlib release the GIL), ``processes``, or
``dask`` (prefect-dask). ``dask`` starts a local cluster by default; for several machines start a scheduler and
workers that see the same workspace path (a shared filesystem) and pass ``--dask-address tcp://scheduler:8786``.
"""

from __future__ import annotations

import os
from collections import Counter

from prefect import flow, get_run_logger, task
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipelines.curate import build as steps
from pipelines.store.workspace import Workspace, remove_stale_temps, workspace_lock

RUNNERS = ("threads", "processes", "dask")


def make_task_runner(kind: str = "threads", workers: int | None = None, dask_address: str | None = None):
    workers = workers or os.cpu_count() or 1
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "processes":
        return ProcessPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    raise ValueError(f"unknown task runner {kind!r}; choose one of {', '.join(RUNNERS)}")


@task(name="build-unit", task_run_name="build-{unit_name}")
def build_unit_task(unit_name: str, uris: list[str], root: str | None, origin: str, ws_root: str, cfg_json: str):
    cfg = steps.CurateConfig.model_validate_json(cfg_json)
    return steps.build_unit(steps.Unit(unit_name, uris), root, origin, ws_root, cfg)


@task(name="dedup")
def dedup_task(ws_root: str, cfg_json: str) -> int:
    return steps.dedup(ws_root, steps.CurateConfig.model_validate_json(cfg_json))


@task(name="holdout")
def holdout_task(ws_root: str, cfg_json: str) -> int:
    return steps.holdout(ws_root, steps.CurateConfig.model_validate_json(cfg_json))


@task(name="pack-shards")
def pack_task(ws_root: str, cfg_json: str) -> dict:
    return steps.pack(ws_root, steps.CurateConfig.model_validate_json(cfg_json))


@flow(name="curate", log_prints=False)
def curate_flow(input: str, out: str, cfg: steps.CurateConfig | None = None, show_progress: bool = True) -> dict:
    """Curate ``input`` into the workspace ``out``; returns the summary (seen / kept / rejected by reason / shards).

    The whole run holds the workspace lock (store.workspace.workspace_lock): a second run on the same workspace,
    from this or another process, fails at once with WorkspaceBusy naming the holder, instead of racing on the same
    units, tables and shards."""
    cfg = cfg or steps.CurateConfig()
    ws = Workspace(out)
    with workspace_lock(ws.root, "curate"):
        return _curate(input, ws, cfg, show_progress)


def _curate(input: str, ws: Workspace, cfg: steps.CurateConfig, show_progress: bool) -> dict:
    logger = get_run_logger()
    cfg_json = cfg.model_dump_json()
    p = steps.plan(input, cfg, workspace=ws.root)
    pruned = steps.prune_stale_units(ws, p.units)
    remove_stale_temps(ws.root)
    todo = [u for u in p.units if not steps.unit_done(ws, u.name, cfg)]
    logger.info(
        "%d sources in %d units; %d already done, %d to build; %d stale units pruned",
        len(p.listing.uris),
        len(p.units),
        len(p.units) - len(todo),
        len(todo),
        pruned,
    )
    counts: Counter = Counter()
    futures = [
        build_unit_task.submit(u.name, u.uris, p.listing.root, p.listing.origin, str(ws.root), cfg_json) for u in todo
    ]
    with _progress(show_progress) as bar:
        job = bar.add_task("building units", total=len(p.units), completed=len(p.units) - len(todo))
        for fut in as_completed(futures):
            counts.update(fut.result())
            bar.advance(job)
    dedup_task(str(ws.root), cfg_json)
    holdout_task(str(ws.root), cfg_json)
    # Staging is removed after packing; a source kept now that no shard holds (e.g. its better copy left the input)
    # has its unit rebuilt first (same config, same bytes).
    by_name = {u.name: u for u in p.units}
    for name in steps.units_to_restage(ws.root, cfg):
        build_unit_task(name, by_name[name].uris, p.listing.root, p.listing.origin, str(ws.root), cfg_json)
    pack_task(str(ws.root), cfg_json)
    summary = steps.summarize(ws.root, cfg)
    summary["hidden"] = p.listing.hidden
    summary["units"] = {"total": len(p.units), "built_now": len(todo)}
    summary["workspace"] = str(ws.root)
    return summary


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
