"""Workspace layout and atomic writes.

A workspace is a folder (default ``./sr4k-data``); :class:`Workspace` is the one place that knows its layout
(every other module asks it for a path, tests/pipelines/store/test_storage.py pins the names)::

    tables/<table>/part-<unit>.parquet     append-only Parquet parts, one per work unit (schemas.records)
    staging/<unit>.tar                     a unit's encoded samples, before dedup decides what ships
    thumbs/<key>.jpg                       small previews for the HTML report
    units/<unit>.done                      completion marker (JSON), written last
    shards/<dataset>/<split>-NNNNNN.tar    the webdataset + manifest.json + index.parquet
    benchmarks/<name>/                     benchmark sets (index.parquet, manifest.json, lr/ hr/) and eval runs
    images/                                candidate outputs and comparison pages, the only folder Label Studio serves
    served/                                the document root given to Label Studio (a link to images/ only)
    labelstudio/                           Label Studio's data (0700), projects/<project>.json, pull.lock
    labelling/ranking.json                 the Bradley–Terry ranking of the last aggregation
    models/<name>/                         trained checkpoints (demo and training outputs)
    releases/<name>-<version>/             released datasets (cards, shards, Parquet)
    reports/                               HTML reports

Every file is written under a temporary name in the same folder and renamed when complete, so a crash never leaves
a partial file under a final name (``os.replace`` is atomic on POSIX within a filesystem).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.records import to_table

if TYPE_CHECKING:
    import numpy as np


def temp_name(path: Path) -> Path:
    """A temporary sibling of ``path`` that no other writer can pick: ``.<name>.tmp-<pid>-<thread id>-<token>``.

    Two writers can meet on one final path: the threads of one process (the default task runner), other processes,
    and retries of one task. The pid comes first so that :func:`remove_stale_temps` can tell a dead writer's file;
    the thread id and a random token (a new one per call, so per attempt) keep writers of one process apart.
    """
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open a writer-unique temporary sibling of ``path`` (:func:`temp_name`) for binary writing; on success fsync
    it and rename it over ``path``; on error remove it. Concurrent writers of the same path never share a temp file;
    the last rename wins, and each rename is atomic, so readers see one complete version."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_content_addressed(path: Path, data: bytes | Callable[[], bytes]) -> bool:
    """Write a file whose name is derived from its content (a hash), unless it already exists. ``data`` may be a
    callable, so that an existing file costs no encode. Returns whether this call wrote it. Two writers racing on a
    new path both write (unique temps, atomic renames) the same bytes, so either rename leaves the right file."""
    if path.exists():
        return False
    write_bytes_atomic(path, data() if callable(data) else data)
    return True


_TEMP_PID = re.compile(r"\.tmp-(\d+)(?:-\d+-[0-9a-f]+)?$")


def remove_stale_temps(root: Path) -> int:
    """Delete temporary files (``.<name>.tmp-<pid>[-<thread>-<token>]``) left by processes that died (a SIGKILL skips
    cleanup). Files of a process that is still alive are left alone. Returns how many were removed."""
    removed = 0
    for tmp in Path(root).rglob(".*.tmp-*"):
        m = _TEMP_PID.search(tmp.name)
        if m and not pid_alive(int(m.group(1))) and tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0; a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkspaceBusy(ValueError):
    """Another run holds the workspace (a user error: the message names the holder and the fix)."""


LOCK_NAME = "workspace.lock"


@contextlib.contextmanager
def workspace_lock(root: Path, command: str = "curate") -> Iterator[dict]:
    """Hold the workspace exclusively for one run; raise :class:`WorkspaceBusy` at once if another run holds it.

    ``flock(LOCK_EX | LOCK_NB)`` on ``<root>/workspace.lock``. The kernel drops the lock when its holder exits, however
    it exits (SIGKILL included), so a lock file left by a dead run is not a lock: the next run simply takes it and
    overwrites the holder record (pid, host, start time, command) that it writes for the refusal message. flock
    locks belong to the open file description, so two runs in one process (two threads) exclude each other too.
    On network filesystems flock is only as good as the server's lock support (NFSv4 maps it to byte-range locks).
    Yields the holder record written.
    """
    import fcntl
    import socket
    import time

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkspaceBusy(
                f"workspace {root} is in use by another run ({_describe_holder(path)}); wait for it to finish, "
                f"or pass another --out"
            ) from None
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)  # the record describes a live holder only
    finally:
        os.close(fd)  # releases the lock


def _describe_holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text())
        return f"{h['command']} pid {h['pid']} on {h['host']}, started {h['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder still starting; its record is not written yet"


def encode_png(rgb: np.ndarray, level: int) -> bytes:
    """RGB uint8 -> PNG bytes (OpenCV, deterministic for a given level). Lives here, not in ``curate.build``, so
    that writers of images (candidates, benchmarks, releases) don't import the curation stack (webdataset, torch)."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_table(path: Path, records: list[Any], schema: pa.Schema) -> None:
    """Write records as one Parquet file with exactly ``schema`` (an empty list writes an empty, typed file)."""
    table = to_table(records, schema)
    with atomic_open(path) as f:
        pq.write_table(table, f, compression="zstd")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class Workspace:
    """Paths inside one workspace root (a local folder)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def table_dir(self, table: str) -> Path:
        return self.tables / table

    def part(self, table: str, unit: str) -> Path:
        return self.table_dir(table) / f"part-{unit}.parquet"

    def staging(self, unit: str) -> Path:
        return self.staging_root / f"{unit}.tar"

    def marker(self, unit: str) -> Path:
        return self.units / f"{unit}.done"

    def thumb(self, key: str) -> Path:
        return self.thumbs / f"{key}.jpg"

    def shard_dir(self, dataset: str) -> Path:
        return self.shards / dataset

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def units(self) -> Path:
        return self.root / "units"

    @property
    def staging_root(self) -> Path:
        return self.root / "staging"

    @property
    def thumbs(self) -> Path:
        return self.root / "thumbs"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def benchmarks(self) -> Path:
        return self.root / "benchmarks"

    def bench_dir(self, name: str) -> Path:
        return self.benchmarks / name

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def served(self) -> Path:
        return self.root / "served"

    @property
    def labelstudio(self) -> Path:
        return self.root / "labelstudio"

    def ls_project(self, project: str) -> Path:
        """Label Studio project record ``labelstudio/projects/<project>.json`` (``project`` checked by the caller)."""
        return self.labelstudio / "projects" / f"{project}.json"

    @property
    def ranking(self) -> Path:
        return self.root / "labelling" / "ranking.json"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def release_dir(self, name: str, version: str) -> Path:
        return self.releases / f"{name}-{version}"
