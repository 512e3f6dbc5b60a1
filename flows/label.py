"""Prefect flows of the labelling path: push pairs, pull annotations, pull → aggregate → release, and deployments.

Thin wiring over ``labelling.push`` / ``labelling.pull`` (which hold the idempotency and validation) and
``flows.release`` (QC, aggregation and releases, imported when a flow runs). Retries sit only where a retry can help:
the pull task retries when Label Studio is unreachable (``LabelStudioUnavailable``), never on a 4xx or a bug. The push
task retries the same way — safe because every push starts with a reconcile against the server.

``serve_deployments(workspace)`` serves the three flows as deployments with ``prefect.serve`` (a long-running
process; needs a Prefect API, e.g. ``prefect server start``), so the team starts them from the Prefect UI with their
own parameters. Run it with ``sr4k label deploy -w <workspace>``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from labelling.server import LabelStudioUnavailable


def _unreachable_only(task, task_run, state) -> bool:
    """Retry condition: only a Label Studio that did not answer (a 4xx or a bug fails the same way again)."""
    try:
        state.result()
    except LabelStudioUnavailable:
        return True
    except Exception:
        return False
    return False


@task(name="label-push", retries=2, retry_delay_seconds=10, retry_condition_fn=_unreachable_only)
def _push(workspace: str, pairs: str, overlap: int, gold_rate: float, project: str, crop: int, seed: int) -> dict:
    from labelling.push import push_pairs

    return push_pairs(workspace, pairs, overlap=overlap, gold_rate=gold_rate, project=project, crop=crop, seed=seed)


@task(name="label-pull", retries=2, retry_delay_seconds=10, retry_condition_fn=_unreachable_only)
def _pull(workspace: str, project: str) -> dict:
    from labelling.pull import pull_annotations

    return pull_annotations(workspace, project)


@flow(name="label-push")
def push_flow(
    workspace: str,
    pairs: str = "all",
    overlap: int = 3,
    gold_rate: float = 0.05,
    project: str = "pairs",
    crop: int = 224,
    seed: int = 0,
) -> dict[str, Any]:
    """Push the selected pairs to Label Studio (each pair once; gold mixed in at ``gold_rate``)."""
    r = _push(workspace, pairs, overlap, gold_rate, project, crop, seed)
    get_run_logger().info(
        "pushed %d new pairs + %d gold; %d tasks on the server, %d duplicates",
        r["imported"],
        r["gold_imported"],
        r["tasks_on_server"],
        r["duplicates"],
    )
    return r


@flow(name="label-pull")
def pull_flow(workspace: str, project: str = "pairs") -> dict[str, Any]:
    """Pull new and edited annotations (incremental, validated)."""
    r = _pull(workspace, project)
    get_run_logger().info("pulled %d new annotation rows (%d invalid)", r["new_rows"], r["invalid_new"])
    return r


@flow(name="label-pull-aggregate-release")
def pull_aggregate_release_flow(
    workspace: str,
    name: str,
    version: str,
    project: str = "pairs",
    exclude: list[str] | None = None,
    release: bool = True,
) -> dict[str, Any]:
    """Pull, then QC + aggregate (``flows.release.aggregate_flow``), then release the preferences as ``name-version``
    (skipped with ``release=False``, e.g. for a progress check)."""
    from flows.release import aggregate_flow, release_flow

    out: dict[str, Any] = {"pull": _pull(workspace, project)}
    out["aggregate"] = aggregate_flow(workspace=workspace, exclude=exclude)
    if release:
        out["release"] = release_flow(workspace=workspace, kind="preferences", name=name, version=version)
    return out


def deployments(workspace: str) -> list:
    """The deployments ``serve_deployments`` serves (names ``<flow>/sr4k``), with the workspace preset."""
    return [
        push_flow.to_deployment(name="sr4k", parameters={"workspace": workspace}, tags=["sr4k", "label"]),
        pull_flow.to_deployment(name="sr4k", parameters={"workspace": workspace}, tags=["sr4k", "label"]),
        pull_aggregate_release_flow.to_deployment(
            name="sr4k",
            parameters={"workspace": workspace, "name": "refsr", "version": "0.1.0"},
            tags=["sr4k", "label", "release"],
        ),
    ]


def serve_deployments(workspace: str) -> None:
    """Serve the labelling deployments until interrupted (``prefect.serve``)."""
    from prefect import serve

    serve(*deployments(workspace))
