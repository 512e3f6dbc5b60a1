"""Labelling flows with a real local Prefect API and the real Label Studio: push, pull, pull→aggregate→release, and
the deployments served by ``sr4k label deploy`` (``prefect.serve``)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "labelling"))
from lsfixtures import ls, make_lr_set, make_pairs  # noqa: F401  (ls is the shared Label Studio fixture)

pytestmark = pytest.mark.slow


def test_push_pull_aggregate_release_flows(ls, prefect_local):  # noqa: F811
    from flows.label import pull_aggregate_release_flow, pull_flow, push_flow
    from labelling import push, server

    ws, settings = ls
    make_lr_set(ws, "flow", 4, seed=4)
    make_pairs(ws, "flow", 6, "flow")
    r = push_flow(str(ws.root), pairs="flow", overlap=1, gold_rate=0.0, project="flow")
    assert (r["imported"], r["duplicates"], r["tasks_on_server"]) == (6, 0, 6)
    assert push_flow(str(ws.root), pairs="flow", overlap=1, gold_rate=0.0, project="flow")["imported"] == 0
    api = server.Api.for_workspace(ws, settings)
    for m in push.mapping(ws, r["project_id"]).values():
        res = [
            {"from_name": c, "to_name": "left_crop", "type": "choices", "value": {"choices": [v]}}
            for c, v in (("consistency", "left"), ("naturalness", "right"))
        ]
        api.post(f"/api/tasks/{m['task_id']}/annotations/", {"result": res, "lead_time": 6.0})
    assert pull_flow(str(ws.root), project="flow")["new_rows"] == 6
    out = pull_aggregate_release_flow(str(ws.root), name="flowtest", version="0.1.0", project="flow")
    assert out["pull"]["new_rows"] == 0
    assert set(out["aggregate"]["rankings"]) == {"consistency", "naturalness"}
    assert out["release"]["samples"] >= 6 and Path(out["release"]["path"]).is_dir()


def test_deployments_are_served_for_the_prefect_ui(ls, prefect_local, tmp_path):  # noqa: F811
    from prefect.settings import PREFECT_API_URL

    from flows.label import deployments

    ws, _ = ls
    deps = deployments(str(ws.root))
    assert [d.name for d in deps] == ["sr4k"] * 3
    assert all(d.parameters["workspace"] == str(ws.root) for d in deps)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_HOME": str(tmp_path / "ph")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "label", "deploy", "-w", str(ws.root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        names = _wait_for_deployments(PREFECT_API_URL.value(), proc, 3, timeout=180)
        assert names >= {"label-push/sr4k", "label-pull/sr4k", "label-pull-aggregate-release/sr4k"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for_deployments(api_url: str, proc: subprocess.Popen, n: int, timeout: float) -> set[str]:
    import requests

    deadline = time.monotonic() + timeout
    names: set[str] = set()
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        flows = {f["id"]: f["name"] for f in requests.post(f"{api_url}/flows/filter", json={}, timeout=10).json()}
        deps = requests.post(f"{api_url}/deployments/filter", json={}, timeout=10).json()
        names = {f"{flows.get(d['flow_id'])}/{d['name']}" for d in deps}
        if len({x for x in names if x.startswith("label-")}) >= n:
            return names
        time.sleep(1)
    raise AssertionError(f"deployments not served within {timeout} s: {names}")
