"""Prefect flows: aggregate the pulled annotations (QC, exclusions, preferences, rankings) and release a dataset.

Thin wiring over ``labelling.aggregate.aggregate_workspace`` and ``pipelines.release.build.release``; tasks get the
workspace path and names, never images. ``aggregate_flow`` and ``release_flow`` compose with the label pull flow into
pull -> aggregate -> release. Nothing here retries: both steps are local and deterministic, so a failure (a missing
table, an existing release version) fails the same way again and its message names the fix.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task


@task(name="aggregate-preferences")
def _aggregate(workspace: str, exclude: list[str], policy: bool, bootstrap: int, seed: int) -> dict[str, Any]:
    from labelling.aggregate import aggregate_workspace

    return aggregate_workspace(workspace, exclude=exclude, policy=policy, bootstrap=bootstrap, seed=seed)


@flow(name="aggregate")
def aggregate_flow(
    workspace: str, exclude: list[str] | None = None, policy: bool = True, bootstrap: int = 200, seed: int = 0
) -> dict[str, Any]:
    """QC + exclusion policy (plus ``exclude``, by e-mail) + per-pair labels + Bradley–Terry rankings; writes
    ``tables/preferences/part-all.parquet`` and ``labelling/ranking.json``. Returns ranking.json's content (rankings,
    report, qc, agreement) and ``paths``."""
    out = _aggregate(workspace, list(exclude or []), policy, bootstrap, seed)
    r = out["report"]
    get_run_logger().info(
        "%d preferences from %d votes (%d invalid, %d of excluded annotators %s); %d pairs unannotated",
        r["preferences"],
        r["used"],
        r["invalid"],
        r["excluded_annotator_votes"],
        r["excluded_annotators"],
        r["pairs_unannotated"],
    )
    return out


@task(name="release-dataset", task_run_name="release-{kind}-{name}-{version}")
def _release(workspace: str, kind: str, name: str, version: str, options: dict[str, Any]) -> dict[str, Any]:
    from pipelines.release.build import release

    return release(workspace, kind, name, version, **options)


@flow(name="release")
def release_flow(workspace: str, kind: str, name: str, version: str, **kw: Any) -> dict[str, Any]:
    """Release ``kind`` (preferences | trainset | benchmark) as ``<workspace>/releases/<name>-<version>/``; ``kw``
    goes to ``pipelines.release.build.release`` (``source``, ``max_count``, ``max_bytes``). Returns its summary."""
    out = _release(workspace, kind, name, version, kw)
    get_run_logger().info("released %s: %d samples in %d shards", out["path"], out["samples"], out["shards"])
    return out
