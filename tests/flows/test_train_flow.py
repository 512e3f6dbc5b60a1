"""``sr4k train-sr`` through its Prefect flow (flows.train) against a real local Prefect API: the run, its one
training task and its config are recorded; the recipe's files are written; a failing setup is a failed flow run."""

import json
import math

import cv2
import numpy as np
import pytest
from imagefixtures import natural_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Flux + F16 VAE backbone and 2 curated-style shards of 4 (HR 128, LR 32) samples."""
    from pipelines.store.shards import ShardWriter
    from pipelines.store.workspace import encode_png
    from training.sr.tiny import build_tiny_op4ksr

    root = tmp_path_factory.mktemp("train-flow")
    backbone = build_tiny_op4ksr(root / "tiny", seed=0)
    writer = ShardWriter(root / "shards", split="train", max_count=2)
    for i in range(4):
        hr = natural_image(128, 128, i)
        lr = cv2.resize(hr, (32, 32), interpolation=cv2.INTER_AREA)
        meta = json.dumps({"key": f"s{i}", "scale": 4}).encode()
        writer.write(f"s{i}", {"hr.png": encode_png(hr, 1), "lr.png": encode_png(lr, 1), "json": meta})
    writer.finish("tiny")
    return backbone, root / "shards"


def _config(tiny, out, **kw) -> dict:
    (t, v), shards = tiny
    return {
        "model": {"transformer": str(t), "vae": str(v), "rfr": {"pretrain_grid": 2, "target_grid": 4}},
        "data": {"shards": [str(shards)], "crop": 64, "batch_size": 1, "shuffle_buffer": 2},
        "steps": 2,
        "out": str(out),
        "log_every": 1,
        "save_every": 2,
        "lr": 1e-3,
    } | kw


def _recorded(flow_run_id):
    """The flow run as the Prefect API holds it: (flow name, state, parameters, [(task name, state)])."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        flow = client.read_flow(run.flow_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return flow.name, run.state_type.value, run.parameters, sorted((t.name, t.state_type.value) for t in tasks)


def test_training_is_one_recorded_task_of_the_train_sr_flow(prefect_local, tiny, tmp_path):
    import torch

    from flows.train import train_sr_flow

    torch.set_num_threads(1)
    seen = []
    state = train_sr_flow(_config(tiny, tmp_path / "run"), log=seen.append, return_state=True)
    summary = state.result()
    assert summary["steps"] == 2 and math.isfinite(summary["last"]["total"]) and summary["stage"] == "supervised"
    assert [r["step"] for r in seen] == [0, 1, 2]  # the start, then each logged step
    assert summary["model"] == str(tmp_path / "run" / "model") and (tmp_path / "run" / "model").is_dir()
    logged = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2] and logged[-1]["total"] == summary["last"]["total"]
    name, st, params, tasks = _recorded(state.state_details.flow_run_id)
    assert (name, st) == ("train-sr", "COMPLETED")
    assert params["config"]["out"] == str(tmp_path / "run") and params["processes"] == 1
    assert len(tasks) == 1 and tasks[0][1] == "COMPLETED" and tasks[0][0].startswith("train-sr")


def test_a_run_that_cannot_start_is_a_failed_flow_run(prefect_local, tiny, tmp_path):
    from flows.train import train_sr_flow

    (tmp_path / "empty").mkdir()
    cfg = _config(tiny, tmp_path / "run") | {"data": {"shards": [str(tmp_path / "empty")], "crop": 64}}
    state = train_sr_flow(cfg, return_state=True)
    assert state.is_failed()
    with pytest.raises(FileNotFoundError):
        state.result()
    name, st, _, tasks = _recorded(state.state_details.flow_run_id)
    assert (name, st) == ("train-sr", "FAILED") and [s for _, s in tasks] == ["FAILED"]
    assert not (tmp_path / "run" / "model").exists()


def test_processes_run_the_task_as_one_accelerate_launch(prefect_local, tiny, tmp_path):
    """``processes=2``: the task is one ``accelerate launch`` subprocess running ``python -m flows.train <config>``
    (on a machine without 2 GPUs accelerate runs one process); its summary is read back from ``log.jsonl``."""
    from flows.train import train_sr_flow

    out = tmp_path / "launched"
    state = train_sr_flow(_config(tiny, out, steps=1), processes=2, return_state=True)
    s = state.result()
    assert (s["processes"], s["steps"], s["model"]) == (2, 1, str(out / "model")) and (out / "model").is_dir()
    assert json.loads((out / "train-config.json").read_text())["steps"] == 1
    assert math.isfinite(s["last"]["total"])
    name, st, _, tasks = _recorded(state.state_details.flow_run_id)
    assert (name, st) == ("train-sr", "COMPLETED") and [x for _, x in tasks] == ["COMPLETED"]


def test_cli_train_sr_launches_the_flow(prefect_local, tiny, tmp_path):
    import typer
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from typer.testing import CliRunner

    from flows import sr_cli

    app = typer.Typer()
    sr_cli.register(app)
    (t, v), shards = tiny
    out = tmp_path / "cli-run"
    sets = ["data.batch_size=1", "model.rfr.pretrain_grid=2", "model.rfr.target_grid=4", "data.shuffle_buffer=2"]
    args = ["train-sr", "--shards", str(shards), "--transformer", str(t), "--vae", str(v), "--crop", "64"]
    args += ["--steps", "1", "-o", str(out), *(x for kv in sets for x in ("--set", kv))]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "train-sr supervised" in res.output and "steps" in res.output
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["train-sr"])))
    mine = [r for r in runs if r.parameters.get("config", {}).get("out") == str(out)]
    assert len(mine) == 1 and mine[0].state_type.value == "COMPLETED"
    assert np.isfinite(json.loads((out / "log.jsonl").read_text().splitlines()[-1])["total"])
