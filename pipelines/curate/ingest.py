"""Ingest: turn ``--input`` into a sorted, deduplicated list of source URIs, and split it into work units.

Accepted inputs:

- a local folder, walked recursively (symlinks are not followed into folders; a symlinked *file* whose target lies
  outside the input root is listed and later rejected ``symlink_outside_root``; hidden files and everything inside
  hidden folders (``.name``) are listed and rejected ``hidden`` without being read: they are tool droppings such as
  ``.DS_Store`` or ``.git``, not inputs, but each one is still a row); the workspace itself is left out when it lies
  inside the input folder (its files are outputs, not inputs);
- a list file: ``.txt`` (one path or URL per line, ``#`` comments), ``.csv`` (a column ``url``, ``uri`` or ``path``,
  else the first column), ``.parquet`` (same column rule); relative paths are relative to the list file;
- any fsspec URL of a folder or glob (``s3://bucket/photos/``, ``memory://x/*.jpg``, ``file:///data``).

Every listed entry becomes a source: files that are not images are rejected later with a reason, so the account
``seen = kept + rejected`` covers everything that was asked for. Reasons given here (``read_source``): ``hidden``,
``symlink_outside_root``, ``missing``, ``not_a_file`` (FIFOs, sockets, devices, folders: never opened, so a FIFO
cannot hang the run), ``unknown_protocol`` (a URL scheme fsspec has no filesystem for), ``unreadable`` (the
filesystem failed: connection refused, HTTP error, permission denied, a protocol whose package is not installed,
a timeout of ``URL_TIMEOUT_S``). An input that yields no entry at all is a user error (ValueError naming the fix).
Units are fixed-size chunks of the sorted URI list, named by their index and the hash of their members, so a rerun
on the same input gets the same units.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow.parquet as pq

from pipelines.store import safety
from schemas.records import Rejection

LIST_SUFFIXES = {".txt", ".csv", ".parquet"}
URI_COLUMNS = ("url", "uri", "path")


@dataclass(slots=True)
class Listing:
    uris: list[str]  # sorted, unique
    origin: str  # folder | list | fsspec
    root: str | None  # the folder the inputs must stay inside (folder inputs only)
    hidden: int = 0  # how many listed entries are hidden (they are rejected ``hidden``)


@dataclass(slots=True)
class Unit:
    name: str  # "u000012-<8 hex>": index in the sorted list + hash of its member URIs
    uris: list[str]


def is_url(s: str) -> bool:
    return "://" in s and not s.startswith("file://")


def list_inputs(spec: str, exclude: str | Path | None = None) -> Listing:
    """Resolve ``--input`` to a Listing (``exclude``: a folder to leave out, the workspace). Raises ValueError with
    the fix when the input cannot be used at all, including when it names no entry."""
    listing = _list(spec, exclude)
    if not listing.uris:
        raise ValueError(
            f"--input {spec!r} holds no files; point it at a folder with images in it, a non-empty "
            f".txt/.csv/.parquet list, or an fsspec URL that matches files"
        )
    return listing


def probe_input(spec: str) -> None:
    """The user errors of :func:`list_inputs` for local inputs, found without a full walk (the CLI calls it before
    starting the orchestrator, so a bad ``--input`` costs one line, not a failed flow run). URLs are not probed."""
    if is_url(spec) or spec.startswith("file://"):
        return
    path = Path(spec).expanduser()
    if path.is_dir():
        if not any(files for _, _, files in os.walk(path, followlinks=False)):
            raise ValueError(
                f"--input {spec!r} holds no files; point it at a folder with images in it (sub-folders are walked)"
            )
        return
    list_inputs(spec)


def _list(spec: str, exclude: str | Path | None) -> Listing:
    if is_url(spec) or spec.startswith("file://"):
        return _list_fsspec(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _list_folder(path, Path(exclude).resolve() if exclude is not None else None)
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return _list_file(path)
    if not path.exists():
        raise ValueError(
            f"--input {spec!r} does not exist; pass a folder, a .txt/.csv/.parquet list, or an fsspec URL"
        )
    raise ValueError(f"--input {spec!r} is a file but not a list (.txt, .csv, .parquet); pass its folder instead")


def is_hidden(uri: str, root: str | None) -> bool:
    """A hidden entry: a name under ``root`` (or the basename, without a root) that starts with a dot."""
    rel = os.path.relpath(uri, root) if root is not None else os.path.basename(uri.rstrip("/"))
    return any(part.startswith(".") for part in Path(rel).parts)


def _list_folder(root: Path, exclude: Path | None = None) -> Listing:
    root = root.resolve()
    uris = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if exclude is None or Path(dirpath, d) != exclude)
        uris += [os.path.join(dirpath, name) for name in filenames]
    uris = sorted(set(uris))
    return Listing(uris, "folder", str(root), sum(is_hidden(u, str(root)) for u in uris))


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
    found = list(fs.find(path)) if path is not None and fs.isdir(path) else list(paths)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    uris = [p if protocol in ("file", "local") else f"{protocol}://{p.removeprefix(protocol + '://')}" for p in found]
    uris = sorted(set(uris))
    return Listing(uris, "fsspec", None, sum(is_hidden(u, None) for u in uris))


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


URL_TIMEOUT_S = 60  # per remote read; a URL that does not answer becomes ``unreadable`` instead of hanging the run


def read_source(uri: str, root: str | None, walked: bool = False) -> bytes | Rejection:
    """The bytes of one source, or a Rejection for inputs that must not or cannot be read. ``walked``: the URI came
    from walking a folder (local or fsspec), where hidden entries are rejected ``hidden`` unread; an entry that a
    list names explicitly is read whatever its name."""
    if walked and is_hidden(uri.removeprefix("file://"), root):
        return Rejection("hidden", "hidden entry (name starts with '.'): tool droppings are not inputs")
    if not is_url(uri):
        return _read_local(uri.removeprefix("file://"), root)
    protocol = uri.split("://", 1)[0].lower()
    if protocol not in fsspec.available_protocols():
        return Rejection("unknown_protocol", f"{protocol}:// is not a protocol fsspec knows")
    try:
        with fsspec.open(uri, "rb", **_open_options(protocol)) as f:
            return f.read()
    except FileNotFoundError as e:
        # fsspec's HTTP filesystem also raises FileNotFoundError for a refused or failed connection, chained to the
        # aiohttp error; only a 404 (or a missing object on another filesystem) is ``missing``
        cause = e.__cause__
        if cause is not None and getattr(cause, "status", None) != 404:
            return Rejection("unreadable", f"{type(cause).__name__}: {cause}"[:300])
        return Rejection("missing", "no such object")
    except _REMOTE_ERRORS as e:
        return Rejection("unreadable", f"{type(e).__name__}: {e}"[:300])


def _read_local(local: str, root: str | None) -> bytes | Rejection:
    """Through ``store.safety`` (the one rule for every folder or list sr4k reads): regular files only, checked
    on the open descriptor (a FIFO swapped in after the walk cannot block the read), links only inside ``root``,
    reads capped at ``safety.MAX_FILE_BYTES``."""
    try:
        return safety.read_capped(local, root)
    except safety.UnsafeInput as e:
        return Rejection(e.reason, str(e)[:300])


def _remote_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, ImportError, TimeoutError)
    try:
        import aiohttp

        errors += (aiohttp.ClientError,)
    except ImportError:
        pass
    return errors


# What a filesystem raises when one object cannot be read (ImportError: a known protocol whose package is missing;
# ValueError: a malformed URL; OSError covers connection errors; aiohttp's HTTP status errors are not OSErrors).
_REMOTE_ERRORS = _remote_errors()


def _open_options(protocol: str) -> dict:
    if protocol in ("http", "https"):
        try:
            import aiohttp
        except ImportError:
            return {}
        return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=URL_TIMEOUT_S)}}
    return {}
