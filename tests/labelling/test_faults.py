"""Faults: Label Studio killed during a push, an unreachable server, a restart that must keep every annotation."""

import threading
import time

import pytest
from lsfixtures import free_port, make_lr_set, make_pairs
from typer.testing import CliRunner

from labelling import gold as goldmod
from labelling import ledger, push, server
from labelling import pull as pullmod
from labelling.pull import latest_annotations, pull_annotations

pytestmark = pytest.mark.slow


def test_unreachable_server_is_a_clear_error_after_bounded_retries(ls, tmp_path):
    ws, _ = ls
    make_lr_set(ws, "un", 2, seed=3)
    make_pairs(ws, "un", 2, "un")
    dead = server.LabelSettings(port=free_port(), retries=3, retry_wait=0.2)
    t0 = time.monotonic()
    with pytest.raises(server.LabelStudioUnavailable, match=r"after 3 tries .*sr4k label serve"):
        server.Api.for_workspace(ws, dead).get("/api/projects/")
    assert time.monotonic() - t0 < 5  # 0.2 + 0.4 s of back-off, no endless loop
    with pytest.raises(server.LabelStudioUnavailable):
        push.push_pairs(ws, "un", settings=dead)
    from flows.cli import app

    (ws.root / "labelstudio" / "projects" / "dead.json").parent.mkdir(parents=True, exist_ok=True)
    (ws.root / "labelstudio" / "projects" / "dead.json").write_text('{"id": 999}')
    args = ["-w", str(ws.root), "--port", str(dead.port), "--project", "dead"]
    out = CliRunner().invoke(app, ["label", "pull", *args])
    assert out.exit_code == 2 and "did not answer" in out.output and "sr4k label serve" in out.output
    with pytest.raises(server.LabelStudioError, match="no Label Studio set up"):
        server.Api.for_workspace(tmp_path, dead)


def test_kill_during_push_then_rerun_has_no_duplicate_no_orphan_gold_and_restart_keeps_annotations(ls):
    """3,000 pairs + 5 % gold in batches of 200; Label Studio SIGKILLed after two batches; restart and rerun."""
    ws, settings = ls
    make_lr_set(ws, "fk", 1000, seed=9, distinct_images=False)
    make_pairs(ws, "fk", 3000, "fk", seed=2)
    first = push.push_pairs(
        ws, "pair_id < 'pr-1' and lr_key like 'fk%'", project="faults", gold_rate=0.0, settings=settings
    )
    pid = first["project_id"]
    api = server.Api.for_workspace(ws, settings)
    mapped = list(push.mapping(ws, pid).values())[:3]
    res = [
        {"from_name": c, "to_name": "left_crop", "type": "choices", "value": {"choices": ["left"]}}
        for c in ("consistency", "naturalness")
    ]
    ann_ids = {api.post(f"/api/tasks/{m['task_id']}/annotations/", {"result": res})["id"] for m in mapped}
    assert pull_annotations(ws, "faults", settings)["new_rows"] == 3

    batches = threading.Event()
    errors: list[Exception] = []

    def run() -> None:
        try:
            push.push_pairs(
                ws,
                "fk",
                project="faults",
                gold_rate=0.05,
                batch_size=200,
                settings=settings,
                on_batch=lambda done, total: done >= 400 and batches.set(),
            )
        except Exception as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    assert batches.wait(600), "the push never finished two batches"
    server.kill(ws)  # SIGKILL the whole Label Studio process group mid-push
    t.join(300)
    assert errors and isinstance(errors[0], server.LabelStudioError), errors
    assert "sr4k label serve" in str(errors[0]) or "Label Studio" in str(errors[0])
    partial = len(push.mapping(ws, pid))
    assert partial < 3000

    info = server.start(ws, settings)  # restart on the same data directory
    assert info.started
    print(f"\nLabel Studio restart: {info.seconds:.1f} s")
    on_server = push.server_tasks(api, pid)
    assert all(len(v) == 1 for v in on_server.values()) and len(on_server) >= partial
    # every gold definition left by the dead push is on the server or was in the one batch in flight
    golds = set(goldmod.load_gold(ws, "faults"))
    assert len(golds - set(on_server)) <= 200
    r = push.push_pairs(ws, "fk", project="faults", gold_rate=0.05, batch_size=200, settings=settings)
    n_gold = round(0.05 * 3000 / 0.95)
    assert r["duplicates"] == 0 and r["tasks_on_server"] == 3000 + n_gold
    assert r["imported"] + r["already_on_server"] == 3000
    final = push.server_tasks(api, pid)
    mapping = push.mapping(ws, pid)
    assert len(final) == 3000 + n_gold and all(len(v) == 1 for v in final.values())
    assert {k: v[0]["id"] for k, v in final.items()} == {k: m["task_id"] for k, m in mapping.items()}
    gold_tasks = {k for k, m in mapping.items() if m["is_gold"]}
    assert set(goldmod.load_gold(ws, "faults")) == gold_tasks and len(gold_tasks) == n_gold  # no orphan definition
    assert all(mapping[k]["gold_consistency"] == "a" for k in gold_tasks)

    # the restarted server kept every annotation; pulling again adds nothing and loses nothing
    assert {a["id"] for m in mapped for a in api.get(f"/api/tasks/{m['task_id']}/annotations/")} == ann_ids
    assert pull_annotations(ws, "faults", settings)["new_rows"] == 0
    assert {x["annotation_id"] for x in latest_annotations(ws, pid)} == ann_ids


def test_kill_during_full_pull_writes_nothing_and_the_rerun_gets_everything_once(ls, monkeypatch):
    """1,200 tasks with 3,600 annotations read in pages of 150; Label Studio SIGKILLed after the first page."""
    ws, settings = ls
    make_lr_set(ws, "pk", 400, seed=4, distinct_images=False)
    make_pairs(ws, "pk", 1200, "pk", seed=3)
    api = server.Api.for_workspace(ws, settings)
    me = api.get("/api/current-user/whoami")["id"]
    res = [
        {"from_name": c, "to_name": "left_crop", "type": "choices", "value": {"choices": ["right"]}}
        for c in ("consistency", "naturalness")
    ]
    r = push.push_pairs(
        ws,
        "pk",
        project="pullkill",
        gold_rate=0.0,
        settings=settings,
        prelabelled=lambda p, d: [{"completed_by": me, "result": res}] * 3,
    )
    pid = r["project_id"]
    monkeypatch.setattr(pullmod, "PAGE", 150)
    real = pullmod.list_tasks
    first_page = threading.Event()

    def spy(*a, **kw):  # the real listing; signals once the first page is in
        for page in real(*a, **kw):
            first_page.set()
            yield page

    monkeypatch.setattr(pullmod, "list_tasks", spy)
    parts_before = set(ws.table_dir("annotations").glob("part-*.parquet"))
    errors: list[Exception] = []

    def run() -> None:
        try:
            pull_annotations(ws, "pullkill", settings)
        except Exception as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    assert first_page.wait(300)
    server.kill(ws)
    t.join(300)
    assert errors and isinstance(errors[0], server.LabelStudioError), errors
    assert set(ws.table_dir("annotations").glob("part-*.parquet")) == parts_before  # nothing half-written
    assert not pullmod._mark_file(ws, "pullkill").exists()
    server.start(ws, settings)
    rep = pull_annotations(ws, "pullkill", settings)
    assert (rep["mode"], rep["new_rows"], rep["invalid_new"]) == ("full", 3600, 0)
    assert pull_annotations(ws, "pullkill", settings)["new_rows"] == 0
    rows = latest_annotations(ws, pid)
    assert len(rows) == 3600 and len({x["annotation_id"] for x in rows}) == 3600
    assert {x["consistency"] for x in rows} == {"a", "b"}  # "right" mapped through each task's own left side
    assert all(x["consistency"] == ("b" if x["left"] == "a" else "a") for x in rows)


def test_a_page_that_times_out_is_asked_again_smaller_never_the_same(ls):
    """A page request that outlives its timeout is not repeated as is: the next request asks for half the tasks."""
    ws, settings = ls
    make_lr_set(ws, "to", 100, seed=8, distinct_images=False)
    make_pairs(ws, "to", 300, "to", seed=4)
    pid = push.push_pairs(ws, "to", project="timeouts", gold_rate=0.0, settings=settings)["project_id"]
    tight = settings.model_copy(update={"request_timeout": 0.02})
    api = server.Api.for_workspace(ws, tight)
    asked: list[str] = []
    real_get = api.session.get
    api.session.get = lambda url, **kw: asked.append(url) or real_get(url, **kw)
    with pytest.raises(push.PageTimeout):
        list(push.list_tasks(api, pid, pullmod.INCLUDE, fields="all", page_size=800, min_page=50))
    sizes = [int(u.split("page_size=")[1].split("&")[0]) for u in asked]
    assert sizes == [800, 400, 200, 100, 50] and len(set(asked)) == len(asked)


def test_push_dying_between_import_and_mapping_adopts_instead_of_reimporting(ls, monkeypatch):
    """The client side of a crash: the import committed, the mapping part was never written (as after a SIGKILL of
    `sr4k label push` at that instant). The rerun must adopt those tasks from the server, not import them again."""
    ws, settings = ls
    make_lr_set(ws, "ad", 10, seed=6, distinct_images=False)
    make_pairs(ws, "ad", 30, "ad", seed=1)
    real = ledger.write_mapping
    calls = {"n": 0}

    def die_on_second_batch(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed after the import, before the mapping")
        return real(*a, **kw)

    monkeypatch.setattr(ledger, "write_mapping", die_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        push.push_pairs(ws, "ad", project="adopt", gold_rate=0.1, batch_size=10, settings=settings)
    monkeypatch.setattr(ledger, "write_mapping", real)
    r = push.push_pairs(ws, "ad", project="adopt", gold_rate=0.1, batch_size=10, settings=settings)
    n_gold = round(0.1 * 30 / 0.9)
    assert r["adopted"] == 10 and r["duplicates"] == 0 and r["tasks_on_server"] == 30 + n_gold
    assert r["imported"] + r["already_on_server"] == 30
    api = server.Api.for_workspace(ws, settings)
    final = push.server_tasks(api, r["project_id"])
    mapping = push.mapping(ws, r["project_id"])
    assert {k: v[0]["id"] for k, v in final.items()} == {k: m["task_id"] for k, m in mapping.items()}
    gold = [m for m in mapping.values() if m["is_gold"]]
    assert len(gold) == n_gold and all(m["gold_consistency"] == "a" for m in gold)  # answers survive adoption


def test_a_task_deleted_on_the_server_is_imported_again_by_the_rerun(ls):
    """Reconcile's shortcut (the mapping plus the tasks above its largest id, when the project's count agrees) is
    only taken when it is the server's state: after a mapped task was deleted on the server (by hand, in the admin
    UI), the count disagrees, the full listing runs, and the rerun imports that pair again, once."""
    ws, settings = ls
    make_lr_set(ws, "dl", 4, seed=8)
    make_pairs(ws, "dl", 8, "dl", seed=3)
    first = push.push_pairs(ws, "dl", project="deleted", gold_rate=0.0, settings=settings)
    pid = first["project_id"]
    again = push.push_pairs(ws, "dl", project="deleted", gold_rate=0.0, settings=settings)
    assert again["imported"] == 0 and again["listed"] == "tasks after the mapped ones"  # the shortcut, when right
    api = server.Api.for_workspace(ws, settings)
    gone_pair, gone = sorted((k, m["task_id"]) for k, m in push.mapping(ws, pid).items())[0]
    api.request("DELETE", f"/api/tasks/{gone}/")
    r = push.push_pairs(ws, "dl", project="deleted", gold_rate=0.0, settings=settings)
    assert r["listed"].startswith("every task") and r["imported"] == 1 and r["duplicates"] == 0
    assert r["tasks_on_server"] == first["tasks_on_server"]
    final = push.server_tasks(api, pid)
    assert all(len(v) == 1 for v in final.values()) and final[gone_pair][0]["id"] != gone
    mapped = push.mapping(ws, pid)
    assert {k: v[0]["id"] for k, v in final.items()} == {k: m["task_id"] for k, m in mapped.items()}
