"""Label Studio on PostgreSQL (``SR4K_LABEL_DB=postgresql``): a throwaway real PostgreSQL server, push, annotate,
restart, nothing lost. Skipped where the PostgreSQL server binaries (initdb, pg_ctl) are not installed."""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from lsfixtures import free_port, make_lr_set, make_pairs

from labelling import push, server
from labelling.pull import pull_annotations
from pipelines.store.workspace import Workspace

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("initdb") and shutil.which("pg_ctl")), reason="PostgreSQL server binaries not installed"
    ),
]


@pytest.fixture
def postgres():
    """A PostgreSQL cluster on a free 127.0.0.1 port (trust auth, user postgres); initdb refuses root, so as root it
    runs as ``nobody``."""
    root = Path(tempfile.mkdtemp(prefix="sr4k-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam("nobody").pw_uid, -1)
        as_user = ["runuser", "-u", "nobody", "--"]
    port = free_port()
    data = root / "data"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120, check=True)  # noqa: E731
    run(shutil.which("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(
        shutil.which("pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "log"),
        "-w",
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
        "start",
    )
    try:
        yield port
    finally:
        subprocess.run(
            [*as_user, shutil.which("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_backend_keeps_tasks_and_annotations_across_restart(postgres, tmp_path):
    ws = Workspace(tmp_path / "ws")
    s = server.LabelSettings(
        port=free_port(),
        gate_port=free_port(),
        db="postgresql",
        pg_host="127.0.0.1",
        pg_port=postgres,
        pg_name="postgres",
        pg_user="postgres",
        retries=3,
        retry_wait=0.2,
    )
    try:
        server.start(ws, s)
        make_lr_set(ws, "pg", 3, seed=8)
        make_pairs(ws, "pg", 6, "pg")
        r = push.push_pairs(ws, "pg", overlap=1, gold_rate=0, project="pg", settings=s)
        assert (r["imported"], r["tasks_on_server"]) == (6, 6)
        assert not (ws.root / "labelstudio" / "label_studio.sqlite3").exists()  # the data is in PostgreSQL
        api = server.Api.for_workspace(ws, s)
        task = next(iter(push.mapping(ws, r["project_id"]).values()))
        res = [
            {"from_name": c, "to_name": "left_crop", "type": "choices", "value": {"choices": ["left"]}}
            for c in ("consistency", "naturalness")
        ]
        ann = api.post(f"/api/tasks/{task['task_id']}/annotations/", {"result": res})
        assert pull_annotations(ws, "pg", s)["new_rows"] == 1
        server.stop(ws)
        assert server.start(ws, s).started
        again = push.push_pairs(ws, "pg", overlap=1, gold_rate=0, project="pg", settings=s)
        assert (again["imported"], again["tasks_on_server"], again["duplicates"]) == (0, 6, 0)
        assert [a["id"] for a in api.get(f"/api/tasks/{task['task_id']}/annotations/")] == [ann["id"]]
        assert pull_annotations(ws, "pg", s, full=True)["new_rows"] == 0
    finally:
        server.stop(ws)
