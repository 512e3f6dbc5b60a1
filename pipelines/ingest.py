"""Ingest: turn ``--input`` into a sorted, deduplicated list of source URIs, and split it into work units.

Accepted inputs:

- a local folder, walked recursively (symlinks are not followed into folders; a symlinked *file* whose target lies
  outside the input root is listed and later rejected ``symlink_outside_root``; hidden files and folders (``.name``)
  are skipped and counted in the summary, because they are tool droppings such as ``.DS_Store``, not inputs);
- a list file: ``.txt`` (one path or URL per line, ``#`` comments), ``.csv`` (a column ``url``, ``uri`` or ``path``,
  else the first column), ``.parquet`` (same column rule); relative paths are relative to the list file;
- any fsspec URL of a folder or glob (``s3://bucket/photos/``, ``memory://x/*.jpg``, ``file:///data``).

Every listed entry becomes a source: files that are not images are rejected later with a reason, so the account
``seen = kept + rejected`` covers everything that was asked for. Units are fixed-size chunks of the sorted URI list,
named by their index and the hash of their members, so a rerun on the same input gets the same units.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow.parquet as pq

from schemas.records import Rejection

LIST_SUFFIXES = {".txt", ".csv", ".parquet"}
URI_COLUMNS = ("url", "uri", "path")


@dataclass(slots=True)
class Listing:
    uris: list[str]  # sorted, unique
    origin: str  # folder | list | fsspec
    root: str | None  # the folder the inputs must stay inside (folder inputs only)
    skipped_hidden: int = 0


@dataclass(slots=True)
class Unit:
    name: str  # "u000012-<8 hex>": index in the sorted list + hash of its member URIs
    uris: list[str]


def is_url(s: str) -> bool:
    return "://" in s and not s.startswith("file://")


def list_inputs(spec: str) -> Listing:
    """Resolve ``--input`` to a Listing. Raises ValueError with the fix when the input cannot be used at all."""
    if is_url(spec) or spec.startswith("file://"):
        return _list_fsspec(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _list_folder(path)
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return _list_file(path)
    if not path.exists():
        raise ValueError(
            f"--input {spec!r} does not exist; pass a folder, a .txt/.csv/.parquet list, or an fsspec URL"
        )
    raise ValueError(f"--input {spec!r} is a file but not a list (.txt, .csv, .parquet); pass its folder instead")


def _list_folder(root: Path) -> Listing:
    root = root.resolve()
    uris, hidden = [], 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        hidden += sum(d.startswith(".") for d in dirnames)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                hidden += 1
                continue
            uris.append(os.path.join(dirpath, name))
    return Listing(sorted(set(uris)), "folder", str(root), hidden)


def _list_file(path: Path) -> Listing:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        entries = [ln.strip() for ln in path.read_text().splitlines()]
        entries = [e for e in entries if e and not e.startswith("#")]
    elif suffix == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise ValueError(f"{path} is empty")
        header = [h.strip().lower() for h in rows[0]]
        col = next((header.index(c) for c in URI_COLUMNS if c in header), None)
        entries = [r[col or 0].strip() for r in (rows[1:] if col is not None else rows) if r and r[col or 0].strip()]
    else:
        table = pq.read_table(path)
        names = [n.lower() for n in table.column_names]
        col = next((table.column_names[names.index(c)] for c in URI_COLUMNS if c in names), table.column_names[0])
        entries = [str(v) for v in table.column(col).to_pylist() if v]
    base = path.resolve().parent
    uris = [e if is_url(e) or e.startswith("file://") else str((base / e).resolve(strict=False)) for e in entries]
    return Listing(sorted(set(uris)), "list", None)


def _list_fsspec(url: str) -> Listing:
    fs, _, paths = fsspec.get_fs_token_paths(url)
    (path,) = paths if len(paths) == 1 else (None,)
    if path is not None and fs.isdir(path):
        found = [p for p in fs.find(path) if not os.path.basename(p).startswith(".")]
    else:
        found = list(paths)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    uris = [p if protocol in ("file", "local") else f"{protocol}://{p.removeprefix(protocol + '://')}" for p in found]
    return Listing(sorted(set(uris)), "fsspec", None)


def split_units(uris: list[str], unit_size: int) -> list[Unit]:
    """Deterministic fixed-size chunks of the sorted URI list."""
    if unit_size < 1:
        raise ValueError("unit_size must be >= 1")
    units = []
    for i in range(0, len(uris), unit_size):
        members = uris[i : i + unit_size]
        digest = hashlib.sha256("\n".join(members).encode()).hexdigest()[:8]
        units.append(Unit(f"u{i // unit_size:06d}-{digest}", members))
    return units


def read_source(uri: str, root: str | None) -> bytes | Rejection:
    """The bytes of one source, or a Rejection for inputs that must not or cannot be read."""
    if not is_url(uri):
        local = uri.removeprefix("file://")
        if root is not None and os.path.islink(local):
            target = os.path.realpath(local)
            if os.path.commonpath([target, root]) != root:
                return Rejection("symlink_outside_root", f"points to {target}")
        if not os.path.exists(local):
            return Rejection("missing", "no such file (or a dangling symlink)")
        if not os.path.isfile(local):
            return Rejection("not_a_file", "not a regular file")
        with open(local, "rb") as f:
            return f.read()
    try:
        with fsspec.open(uri, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return Rejection("missing", "no such object")
