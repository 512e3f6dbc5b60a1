"""Workspace layout and atomic writes.

A workspace is a folder (default ``./sr4k-data``)::

    tables/<table>/part-<unit>.parquet     append-only Parquet parts, one per work unit (schemas.records)
    staging/<unit>.tar                     a unit's encoded samples, before dedup decides what ships
    thumbs/<key>.jpg                       small previews for the HTML report
    units/<unit>.done                      completion marker (JSON), written last
    shards/<dataset>/<split>-NNNNNN.tar    the webdataset + manifest.json + index.parquet
    reports/                               HTML reports

Every file is written under a temporary name in the same folder and renamed when complete, so a crash never leaves
a partial file under a final name (``os.replace`` is atomic on POSIX within a filesystem).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.records import to_table

if TYPE_CHECKING:
    import numpy as np


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open ``path.tmp-<pid>`` for binary writing; on success fsync and rename over ``path``; on error remove it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(root: Path) -> int:
    """Delete temporary files (``.<name>.tmp-<pid>``) left by processes that died (a SIGKILL skips cleanup).
    Files of a process that is still alive are left alone. Returns how many were removed."""
    removed = 0
    for tmp in Path(root).rglob(".*.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)) and tmp.is_file():
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


def merge_dotted(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Set ``overrides`` (dotted keys, e.g. ``filters.min_short_side``; ``None`` values skipped) into the nested
    settings mapping ``data`` (changed in place and returned): how every sr4k config merges YAML and CLI options."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


def encode_png(rgb: np.ndarray, level: int) -> bytes:
    """RGB uint8 -> PNG bytes (OpenCV, deterministic for a given level). Lives here, not in ``pipelines.curate``, so
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
        return self.root / "tables" / table

    def part(self, table: str, unit: str) -> Path:
        return self.table_dir(table) / f"part-{unit}.parquet"

    def staging(self, unit: str) -> Path:
        return self.root / "staging" / f"{unit}.tar"

    def marker(self, unit: str) -> Path:
        return self.root / "units" / f"{unit}.done"

    def thumb(self, key: str) -> Path:
        return self.root / "thumbs" / f"{key}.jpg"

    def shard_dir(self, dataset: str) -> Path:
        return self.root / "shards" / dataset

    @property
    def reports(self) -> Path:
        return self.root / "reports"
