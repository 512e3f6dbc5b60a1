"""Push and pull against the real Label Studio: idempotent push, gold, overlap, matched crops, validated pull."""

import json
import os
import re
import time
from datetime import timedelta

import duckdb
import pyarrow.parquet as pq
import pytest
from lsfixtures import make_lr_set, make_pairs
from typer.testing import CliRunner

from labelling import push, selection, server
from labelling.pull import latest_annotations, project_status, pull_annotations
from pipelines.store.workspace import Workspace

pytestmark = pytest.mark.slow


def _ann(api, task_id: int, result: list, **kw) -> dict:
    return api.post(f"/api/tasks/{task_id}/annotations/", {"result": result, "lead_time": 4.5, **kw})


def _res(c, n, extra=None):
    out = [
        {"from_name": "consistency", "to_name": "left_crop", "type": "choices", "value": {"choices": [c]}},
        {"from_name": "naturalness", "to_name": "left_crop", "type": "choices", "value": {"choices": [n]}},
    ]
    return out + (extra or [])


def test_push_idempotent_gold_overlap_crops_then_pull_validates_and_maps(ls):
    ws, settings = ls
    make_lr_set(ws, "pp", 8, seed=1)
    pairs = {p.pair_id: p for p in make_pairs(ws, "pp", 16, "pp")}
    r = push.push_pairs(ws, "pp", overlap=2, gold_rate=0.2, project="pp", crop=64, settings=settings)
    assert (r["selected"], r["imported"], r["gold_imported"], r["duplicates"]) == (16, 16, 4, 0)
    assert r["tasks_on_server"] == 20
    again = push.push_pairs(ws, "pp", overlap=2, gold_rate=0.2, project="pp", crop=64, settings=settings)
    assert (again["imported"], again["gold_imported"], again["adopted"], again["tasks_on_server"]) == (0, 0, 0, 20)
    # pairs built without recorded comparisons (make_pairs is not `sr4k pairs build`) are rendered here, and counted
    assert (r["rendered_unrecorded"], r["rendered_gold"]) == (16, 4) and "16 pair(s)" in r["note"]

    api = server.Api.for_workspace(ws, settings)
    pid = r["project_id"]
    assert api.get(f"/api/projects/{pid}")["maximum_annotations"] == 2  # overlap k
    on_server = push.server_tasks(api, pid)
    mapping = push.mapping(ws, pid)
    assert set(on_server) == set(mapping) and all(len(v) == 1 for v in on_server.values())
    assert {k: v[0]["id"] for k, v in on_server.items()} == {k: m["task_id"] for k, m in mapping.items()}
    assert sum(m["is_gold"] for m in mapping.values()) == 4 and set(pairs) < set(mapping)

    # the full images are served by Label Studio, on the side the mapping says (the comparison view's regions are
    # tested with the interface)
    some = next(m for m in mapping.values() if not m["is_gold"] and m["left"] == "b")
    data = api.get(f"/api/tasks/{some['task_id']}")["data"]
    pair = pairs[some["pair_id"]]
    assert data["sr4k_left"] == "b" and data["left"].endswith(pair.path_b) and data["right"].endswith(pair.path_a)
    assert pair.model_a not in json.dumps(data) and pair.model_b not in json.dumps(data)  # no model identity
    for key in ("lr", "left", "right"):
        got = api.session.get(f"{api.url}{data[key]}", timeout=10)
        assert got.status_code == 200 and got.headers["content-type"] == "image/png", key

    # annotations of every kind: valid (mapped through the on-screen side), invalid value, missing, skipped, gold
    gold_row = next(m for m in mapping.values() if m["is_gold"])
    a_ok = _ann(
        api,
        some["task_id"],
        _res(
            "left",
            "right",
            [
                {
                    "from_name": "unusable",
                    "to_name": "left_crop",
                    "type": "choices",
                    "value": {"choices": ["both_unusable"]},
                }
            ],
        ),
    )
    other = next(m for m in mapping.values() if not m["is_gold"] and m["task_id"] != some["task_id"])
    a_bad = _ann(api, other["task_id"], _res("left", "C"))
    a_missing = _ann(api, other["task_id"], _res("tie", "tie")[:1])
    a_skip = _ann(api, gold_row["task_id"], [], was_cancelled=True)
    gl = gold_row["left"]
    a_gold = _ann(api, gold_row["task_id"], _res("left" if gl == "a" else "right", "tie"))
    rep = pull_annotations(ws, "pp", settings, margin=timedelta(0))
    assert (rep["mode"], rep["new_rows"], rep["invalid_new"], rep["updated"]) == ("full", 5, 3, 0)
    rows = {r["annotation_id"]: r for r in latest_annotations(ws, pid)}
    ok = rows[a_ok["id"]]
    assert (ok["valid"], ok["consistency"], ok["naturalness"], ok["both_unusable"], ok["left"]) == (
        True,
        "b",
        "a",
        True,
        "b",
    )
    assert ok["pair_id"] == some["pair_id"] and ok["lead_time"] == 4.5 and ok["annotator"] == "admin@sr4k.local"
    assert (rows[a_bad["id"]]["valid"], rows[a_bad["id"]]["invalid_reason"]) == (False, "unknown_choice:naturalness=C")
    assert rows[a_missing["id"]]["invalid_reason"] == "missing:naturalness"
    assert rows[a_skip["id"]]["invalid_reason"] == "skipped" and rows[a_skip["id"]]["is_gold"]
    assert rows[a_gold["id"]]["consistency"] == "a" and rows[a_gold["id"]]["is_gold"]

    # incremental: nothing new -> nothing written; an edit -> one new row, the latest wins, nothing counted twice
    parts = sorted(ws.table_dir("annotations").glob("part-*.parquet"))
    rep = pull_annotations(ws, "pp", settings, margin=timedelta(0))
    assert (rep["mode"], rep["tasks_exported"], rep["new_rows"]) == ("incremental", 0, 0)
    assert sorted(ws.table_dir("annotations").glob("part-*.parquet")) == parts
    api.patch(f"/api/annotations/{a_bad['id']}/", {"result": _res("left", "tie")})
    rep = pull_annotations(ws, "pp", settings, margin=timedelta(0))  # only the edited task is exported
    assert (rep["mode"], rep["tasks_exported"], rep["new_rows"], rep["updated"]) == ("incremental", 1, 1, 1)
    assert pull_annotations(ws, "pp", settings, full=True)["new_rows"] == 0  # a full re-export adds nothing
    fixed = {r["annotation_id"]: r for r in latest_annotations(ws, pid)}[a_bad["id"]]
    assert (fixed["valid"], fixed["consistency"], fixed["naturalness"]) == (True, other["left"], "tie")
    glob = str(ws.table_dir("annotations") / "part-*.parquet")
    n, distinct = duckdb.sql(
        f"select count(*), count(distinct (annotation_id, updated_at)) from '{glob}' where project_id = {pid}"
    ).fetchall()[0]
    assert n == distinct == 6

    st = project_status(ws, "pp", settings)
    assert st["progress"]["tasks"] == 20 and st["progress"]["annotation_rows"] == 5
    admin = st["annotators"]["admin@sr4k.local"]
    assert (admin["n"], admin["valid"], admin["gold_n"], admin["gold_correct"]) == (5, 3, 1, 0)  # gold: "tie" wrong
    assert pq.read_table(next(iter(parts))).schema.metadata[b"schema_version"] == b"1"


def test_cli_push_pull_status_never_print_secrets(ls):
    from flows.cli import app

    ws, settings = ls
    make_lr_set(ws, "cli", 4, seed=2)
    make_pairs(ws, "cli", 6, "cli")
    runner = CliRunner()
    args = ["-w", str(ws.root), "--port", str(settings.port)]
    out = runner.invoke(app, ["label", "serve", *args])
    assert out.exit_code == 0 and "already running" in out.output, out.output
    out = runner.invoke(
        app,
        [
            "label",
            "push",
            "--pairs",
            "cli",
            "--project",
            "cli",
            "--overlap",
            "1",
            "--quiet",
            "--gold-rate",
            "0",
            *args,
        ],
    )
    assert out.exit_code == 0, out.output
    assert re.search(r"imported\s*│\s*6", out.output) and re.search(r"duplicates\s*│\s*0", out.output)
    out2 = runner.invoke(app, ["label", "pull", "--project", "cli", *args])
    assert out2.exit_code == 0 and re.search(r"new_rows\s*│\s*0", out2.output), out2.output
    api = server.Api.for_workspace(ws, settings)
    task = next(iter(push.mapping(ws, json.loads(push.project_file(ws, "cli").read_text())["id"]).values()))
    _ann(api, task["task_id"], _res("tie", "left"))
    out3 = runner.invoke(app, ["label", "status", "--project", "cli", *args])  # pulls first, then QC + agreement
    assert out3.exit_code == 0, out3.output
    assert re.search(r"pulled now\s*│\s*1", out3.output) and "admin@sr4k.local" in out3.output
    assert "agreement" in out3.output and "Krippendorff" in out3.output
    creds = json.loads((ws.root / "labelstudio" / "credentials.json").read_text())
    everything = out.output + out2.output + out3.output + runner.invoke(app, ["label", "serve", *args]).output
    assert creds["token"] not in everything and creds["admin_password"] not in everything
    log = (ws.root / "labelstudio" / "server.log").read_text()
    assert creds["admin_password"] not in log
    bad = runner.invoke(app, ["label", "push", "--pairs", "lr_key like", "--project", "cli", *args])
    assert bad.exit_code == 2 and "neither 'all', a pairs part" in bad.output
    assert os.stat(ws.root / "labelstudio" / "credentials.json").st_mode & 0o077 == 0


def test_pairs_filter_is_one_read_only_expression_and_project_a_safe_name(tmp_path, monkeypatch):
    from flows.cli import app

    ws = Workspace(tmp_path / "ws")
    make_lr_set(ws, "hx", 6, seed=5)
    made = make_pairs(ws, "hx", 12, "hx")
    secret = tmp_path / "secret.csv"
    secret.write_text("pair_id\nleaked\n")
    out_file = tmp_path / "x.csv"

    # a condition selects exactly what DuckDB reading the Parquet part on its own selects
    want = {
        r[0]
        for r in duckdb.sql(f"select pair_id from '{ws.part('pairs', 'hx')}' where lr_key <= 'hx00002'").fetchall()
    }
    assert {p["pair_id"] for p in push.select_pairs(ws, "lr_key <= 'hx00002'")} == want and 0 < len(want) < 12
    assert {p["pair_id"] for p in push.select_pairs(ws, "hx")} == {p.pair_id for p in made}

    attacks = {
        f"1=1; COPY (select 1) TO '{out_file}'": "';' is not allowed",
        f"1=1) union all (select 1 from (COPY (select 1) TO '{out_file}')": "",
        f"pair_id in (select pair_id from read_csv('{secret}'))": "",
        "exists(select 1 from glob('/etc/*'))": "",
        "current_setting('enable_external_access') = 'false' and (select count(*) from duckdb_settings()) < 0": None,
    }
    for expr, msg in attacks.items():
        if msg is None:  # a harmless read-only condition that selects nothing: refused for selecting nothing
            with pytest.raises(ValueError, match="selects no pairs"):
                push.select_pairs(ws, expr)
            continue
        with pytest.raises(ValueError, match="neither 'all', a pairs part") as e:
            push.select_pairs(ws, expr)
        assert msg in str(e.value) and "\n" not in str(e.value) and "leaked" not in str(e.value)
    assert not out_file.exists()

    monkeypatch.setattr(selection, "FILTER_SECONDS", 0.5)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="ran longer than"):
        push.select_pairs(ws, "(select count(*) from range(100000000000) a, range(10) b) > 0")
    assert time.monotonic() - t0 < 10

    runner = CliRunner()
    for name in ("../../x", "a/b", "x.json", "-rf", "ok\n"):
        with pytest.raises(ValueError, match=r"--project .* is not a valid name"):
            push.push_pairs(ws, "hx", project=name)
        for cmd in (["push", "--pairs", "hx"], ["pull"], ["status"]):
            out = runner.invoke(app, ["label", *cmd, "--project", name, "-w", str(ws.root)])
            assert out.exit_code == 2 and "is not a valid name" in out.output and "Traceback" not in out.output, cmd
    out = runner.invoke(app, ["label", "push", "--pairs", f"1=1; COPY (select 1) TO '{out_file}'", "-w", str(ws.root)])
    assert out.exit_code == 2 and "';' is not allowed" in out.output and not out_file.exists()
    assert not (tmp_path / "x.json").exists() and not list(tmp_path.glob("**/x.json"))
