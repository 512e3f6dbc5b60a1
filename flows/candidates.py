"""Prefect flows: run candidate SR models over an LR set (cached, resumable), and build the pairs table.

Thin wiring over pipelines.pairs (candidates, build). Units already marked done are not submitted, so a rerun
with the same models calls no model at all; a killed run redoes only its unfinished units. Models parallelise
internally (ncnn / torch threads), so units run one at a time by default (``workers=1``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from flows.upscalers import get_upscaler
from pipelines.pairs import candidates as cand
from pipelines.store import safety
from pipelines.store.workspace import Workspace, remove_stale_temps, write_table


@task(name="run-candidate-unit", task_run_name="candidates-{unit_name}")
def _run_unit(workspace: str, lr_set: str, unit_name: str, model_spec: str, scale: int, keys: list[str]) -> int:
    ws = Workspace(workspace)
    model = get_upscaler(model_spec, scale)
    items = {it.key: it for it in cand.lr_items(ws, lr_set) if it.key in set(keys)}
    return cand.run_unit(ws, lr_set, cand.CandUnit(unit_name, model.name, keys), model, items)


@flow(name="candidates-run", task_runner=ThreadPoolTaskRunner(max_workers=1))
def candidates_flow(workspace: str, lr_set: str, models: list[str], scale: int = 4, unit_size: int = 8,
                    show_progress: bool = True) -> dict:  # fmt: skip
    """Run every model on every LR of ``lr_set``; returns counts (units run / cached, images written)."""
    ws = Workspace(workspace)
    safety.check_name(lr_set, "--lr")
    if ws.root.exists():
        remove_stale_temps(ws.root)
    keys = [it.key for it in cand.lr_items(ws, lr_set)]
    _check_output_sizes(ws, lr_set, scale)
    plan, upscalers = [], {}
    for spec in models:
        up = get_upscaler(spec, scale)  # fails fast: unknown model, missing weights (path named)
        upscalers[spec] = up
        plan += [(spec, u) for u in cand.plan_units(lr_set, keys, up, unit_size)]
    todo = [(spec, u) for spec, u in plan if not cand.unit_done(ws, u)]
    written = 0
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), disable=not show_progress) as bar:  # fmt: skip
        job = bar.add_task(
            f"{len(models)} model(s) x {len(keys)} LR", total=len(plan), completed=len(plan) - len(todo)
        )
        futures = [_run_unit.submit(str(ws.root), lr_set, u.name, spec, scale, u.keys) for spec, u in todo]
        for fut in as_completed(futures):
            written += fut.result()
            bar.advance(job)
    return {"lr_set": lr_set, "lr_images": len(keys), "models": models, "units": len(plan),
            "units_run": len(todo), "units_cached": len(plan) - len(todo), "images_written": written,
            "versions": {s: u.version for s, u in upscalers.items()}}  # fmt: skip


def _check_output_sizes(ws: Workspace, lr_set: str, scale: int) -> None:
    """Refuse, before any model runs, a benchmark LR whose output (LR x scale^2) would exceed
    ``benchsets.MAX_SR_PIXELS`` (sizes from the verified index; curated shard LRs are bounded by curation's crop)."""
    from pipelines.bench.sets import read_index, sr_output_too_large

    bench = ws.root / "benchmarks" / lr_set
    if not (bench / "index.parquet").exists():
        return
    _, rows = read_index(bench)
    for r in rows:
        if too_big := sr_output_too_large(int(r["lr_width"]), int(r["lr_height"]), scale):
            raise ValueError(f"LR {r['key']} of {lr_set}: {too_big}; re-import the set with --square N (or a "
                             "smaller --scale)")  # fmt: skip


@task(name="build-pairs")
def _build_pairs(workspace: str, lr_set: str | None, target: int, strategy: str, seed: int, min_distance: float,
                 estimates: Any, name: str, min_per_pair: int = 0, acquisition: str = "order") -> dict:  # fmt: skip
    from pipelines.pairs import build as pairs
    from pipelines.store import catalog

    ws = Workspace(workspace)
    where, params = ("", []) if lr_set is None else ("where lr_set = ?", [lr_set])
    con = catalog.connect(ws.root)
    rows = con.execute(f"select * from candidates {where} order by lr_set, lr_key, model", params).fetchall()
    cols = [d[0] for d in con.description]
    # pairs of the workspace's other parts (earlier rounds) are never built again, and count as already asked
    own = str(ws.part("pairs", name))
    done = [r[0] for r in con.execute("select pair_id from read_parquet(?, filename=true) where filename != ?",
                                      [str(ws.root / "tables" / "pairs" / "part-*.parquet"), own]).fetchall()
            ] if any((ws.root / "tables" / "pairs").glob("part-*.parquet")) else []  # fmt: skip
    con.close()
    if not rows:
        raise ValueError(f"no candidates in {ws.root}{' for ' + lr_set if lr_set else ''}: run `sr4k candidates run`")
    cands = [dict(zip(cols, r, strict=True)) for r in rows]  # output_path stays workspace-relative: pairs record it
    built, report = pairs.build_pairs(cands, target, strategy, seed, min_distance, estimates, exclude=done,
                                      min_per_pair=min_per_pair, acquisition=acquisition, root=ws.root)  # fmt: skip
    write_table(ws.part("pairs", name), built, pairs.PAIRS)
    report["table"] = str(ws.part("pairs", name))
    return json.loads(json.dumps(report, default=str))


@flow(name="pairs-build")
def pairs_flow(workspace: str, target: int, strategy: str = "balanced", seed: int = 0, lr_set: str | None = None,
               min_distance: float | None = None, estimates_path: str | None = None,
               name: str = "pairs", min_per_pair: int = 0, acquisition: str = "order",
               criteria: list[str] | None = None) -> dict:  # fmt: skip
    """Build the pairs table ``tables/pairs/part-<name>.parquet`` from the workspace's candidates. Pairs already in
    the workspace's other pairs parts (earlier rounds) are excluded and, for ``active``, count as asked. Then every
    pair without a recorded comparison page gets one (``tables/pair_views/part-<name>.parquet``; the report's
    ``views`` and ``render_seconds``).

    ``estimates_path`` (``active``): ``labelling/ranking.json`` as ``sr4k aggregate`` writes it (theta, std and the
    covariance per criterion; ``criteria`` picks among them, default all: one answer informs both), or a plain JSON
    ``{model: [mean, std]}`` (e.g. reward-model scores with uncertainty)."""
    from pipelines.pairs import build as pairs

    safety.check_name(name, "--name")
    if lr_set is not None:
        safety.check_name(lr_set, "--lr")
    estimates = load_estimates(estimates_path, criteria) if estimates_path else None
    dist = pairs.MIN_DISTANCE if min_distance is None else min_distance
    report = _build_pairs(workspace, lr_set, target, strategy, seed, dist, estimates, name, min_per_pair, acquisition)
    return report | _record_views(workspace, name)


@task(name="record-pair-views")
def _record_views(workspace: str, name: str) -> dict:
    """Each new pair's comparison page rendered once, across the cores (``labelling.compare.record_views``), so that
    ``sr4k label push`` only assembles task JSON."""
    from labelling import compare

    return compare.record_views(Workspace(workspace), name)


def load_estimates(path: str | Path, criteria: list[str] | None = None) -> Any:
    """``pairs_flow``'s estimates: a ranking file (-> one ``BTEstimates`` per criterion) or ``{model: [mean, std]}``.
    Errors name the file and what was expected."""
    from pipelines.pairs import build as pairs

    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(
            f"estimates file {path} does not exist (run `sr4k aggregate` to write ranking.json)"
        ) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"estimates file {path} is not JSON: {e}") from None
    if isinstance(doc, dict) and "rankings" in doc:
        return pairs.estimates_from_ranking(doc, criteria)
    if criteria:
        raise ValueError(f"{path} is a plain {{model: [mean, std]}} file: it has no criteria to choose from")
    try:
        return {str(m): (float(v[0]), float(v[1])) for m, v in doc.items()}
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        raise ValueError(f"estimates file {path}: expected labelling/ranking.json or {{model: [mean, std]}}") from None
