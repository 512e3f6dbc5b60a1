"""Atomic writes under concurrent writers, stale-temp cleanup and the workspace lock (pipelines.store.workspace)."""

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipelines.store.workspace import atomic_open, remove_stale_temps, temp_name, write_content_addressed


def test_temp_names_differ_per_thread_and_per_call(tmp_path):
    target = tmp_path / "x.jpg"
    names = set()
    lock = threading.Lock()

    def pick(_):
        n = temp_name(target)
        with lock:
            names.add(n)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(pick, range(64)))
    assert len(names) == 64
    assert all(n.parent == tmp_path and n.name.startswith(f".x.jpg.tmp-{os.getpid()}-") for n in names)


def test_many_threads_writing_one_path_never_crash(tmp_path):
    """The crash of issue 16: identical inputs in concurrent units wrote one content-addressed path through one
    per-process temp name, and the first rename pulled the file from under the others."""
    target = tmp_path / "thumbs" / "same.jpg"
    barrier = threading.Barrier(16)

    def write(i):
        barrier.wait()
        with atomic_open(target) as f:
            f.write(b"same bytes" * 1000)
        return i

    with ThreadPoolExecutor(16) as pool:
        assert sorted(pool.map(write, range(16))) == list(range(16))
    assert target.read_bytes() == b"same bytes" * 1000
    assert os.listdir(target.parent) == ["same.jpg"]


def test_content_addressed_file_is_not_rewritten(tmp_path):
    target = tmp_path / "ab" / "abcdef.jpg"
    calls = []
    assert write_content_addressed(target, lambda: calls.append(1) or b"first")
    mtime = target.stat().st_mtime_ns
    assert not write_content_addressed(target, lambda: calls.append(1) or b"second")
    assert calls == [1] and target.read_bytes() == b"first" and target.stat().st_mtime_ns == mtime


def test_failed_write_leaves_neither_temp_nor_final(tmp_path):
    target = tmp_path / "t.bin"
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_of_dead_writers_are_removed_in_both_name_forms(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    new_dead = tmp_path / f".a.jpg.tmp-{dead.pid}-140234-0a1b2c3d"
    old_dead = tmp_path / f".b.jpg.tmp-{dead.pid}"
    live = temp_name(tmp_path / "c.jpg")
    for p in (new_dead, old_dead, live):
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == 2
    assert not new_dead.exists() and not old_dead.exists() and live.exists()


def test_second_holder_is_refused_naming_the_first(tmp_path):
    from pipelines.store.workspace import WorkspaceBusy, workspace_lock

    with workspace_lock(tmp_path, "curate") as holder:
        assert holder["pid"] == os.getpid()
        with pytest.raises(WorkspaceBusy) as e, workspace_lock(tmp_path, "curate"):
            pass
        msg = str(e.value)
        assert "\n" not in msg and f"pid {os.getpid()}" in msg and holder["host"] in msg and holder["started"] in msg
    with workspace_lock(tmp_path, "curate"):  # released on exit: free again
        pass


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    import json
    import signal

    from pipelines.store.workspace import LOCK_NAME, workspace_lock

    code = (
        "import sys, time; from pipelines.store.workspace import workspace_lock\n"
        f"with workspace_lock({str(tmp_path)!r}, 'curate'):\n    print('held', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == child.pid
    child.send_signal(signal.SIGKILL)  # no cleanup runs: the record of the dead holder stays in the file
    child.wait()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == child.pid
    with workspace_lock(tmp_path, "curate") as holder:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder["pid"] == os.getpid()


def test_workspace_owns_the_layout(tmp_path):
    """The folder names other tools and older workspaces rely on: changing one is a migration, so it fails here."""
    from pipelines.store.workspace import Workspace

    ws = Workspace(tmp_path)
    rel = {
        "tables": ws.tables,
        "table": ws.table_dir("images"),
        "part": ws.part("images", "u1"),
        "staging": ws.staging("u1"),
        "marker": ws.marker("u1"),
        "thumb": ws.thumb("k"),
        "shard": ws.shard_dir("d"),
        "bench": ws.bench_dir("b"),
        "images": ws.images,
        "served": ws.served,
        "ls": ws.ls_project("p"),
        "ranking": ws.ranking,
        "models": ws.models,
        "release": ws.release_dir("n", "1.0.0"),
        "reports": ws.reports,
    }
    assert {k: str(v.relative_to(tmp_path)) for k, v in rel.items()} == {
        "tables": "tables",
        "table": "tables/images",
        "part": "tables/images/part-u1.parquet",
        "staging": "staging/u1.tar",
        "marker": "units/u1.done",
        "thumb": "thumbs/k.jpg",
        "shard": "shards/d",
        "bench": "benchmarks/b",
        "images": "images",
        "served": "served",
        "ls": "labelstudio/projects/p.json",
        "ranking": "labelling/ranking.json",
        "models": "models",
        "release": "releases/n-1.0.0",
        "reports": "reports",
    }
