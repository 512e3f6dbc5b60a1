"""``sr4k demo`` is a flow of flows: against a real local Prefect API, one ``demo`` flow run whose child flow runs
are the stage flows the commands run, and the workspace holds what each stage writes (read back with DuckDB)."""

import duckdb
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

STAGE_FLOWS = [
    "curate",
    "bench-build",
    "bench-build",
    "bench-eval",
    "bench-eval",
    "candidates-run",
    "pairs-build",
    "aggregate",
    "release",
    "reward-train",
    "train-sr",
    "bench-eval",
]


def test_demo_runs_every_stage_as_a_subflow(prefect_local, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.demo import demo_flow

    stages = []
    out = tmp_path / "demo"
    state = demo_flow(str(out), show_progress=False, show=lambda stage, r: stages.append(stage), return_state=True)
    results = state.result()
    assert stages == list(results) and stages[0] == "input" and stages[-1] == "bench-eval op4ksr"
    with get_client(sync_client=True) as client:
        demo = client.read_flow_run(state.state_details.flow_run_id)
        kids = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[demo.id])),
            sort=FlowRunSort.START_TIME_ASC,
        )
        names = [client.read_flow(k.flow_id).name for k in kids]
    assert demo.state_type.value == "COMPLETED"
    assert names == STAGE_FLOWS and all(k.state_type.value == "COMPLETED" for k in kids)
    parts = str(out / "tables" / "{}" / "part-*.parquet")

    def one(sql: str, table: str):
        return duckdb.execute(sql, [parts.format(table)]).fetchall()[0][0]

    assert one("select count(*) from read_parquet(?, filename=true) where filename like '%part-demo%'", "pairs") == 12
    assert results["pairs"]["built"] == 12
    assert one("select count(distinct model) from read_parquet(?)", "candidates") == 7
    assert one("select count(*) from read_parquet(?)", "preferences") > 0
    assert (out / "releases" / "demo-prefs-0.1.0" / "manifest.json").is_file()
    assert (out / "op4ksr-demo.png").is_file() and (out / "reports" / "refreward-demo.json").is_file()
    assert results["op4ksr"]["steps"] == 2 and results["reward"]["global_step"] == 2
