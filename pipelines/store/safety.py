"""The one rule for reading what sr4k is given: folders, index files, names and keys from users or other tools.

Rules (used by curation — ``pipelines.curate.ingest`` reads every local source through :func:`read_capped` — benchmark
import, candidates, releases, the report and the SQL catalog; the reason codes are the rejects' reasons):

- **Regular files only.** An entry is classified from ``lstat`` (the entry itself) and, for a symlink, from the
  ``stat`` of its resolved target. FIFOs, sockets and device files (``/dev/zero``) are rejected ``not_a_file``
  without being opened, because reading one can block forever (a FIFO with no writer) or never end (``/dev/zero``).
- **Links stay inside the root.** A symlink whose resolved target lies outside the folder sr4k was given is rejected
  ``symlink_outside_root`` (its bytes are never read, so nothing from e.g. ``/etc/passwd`` can reach a report);
  a dangling one ``missing``. A link to a folder counts as a folder.
- **Reads cannot hang and are capped.** :func:`open_regular` opens with ``O_NONBLOCK`` (opening a FIFO for reading
  then returns at once instead of waiting for a writer) and checks ``S_ISREG`` on the *opened* descriptor with
  ``fstat``, so a file swapped for a FIFO or device between listing and reading is still refused; a regular file's
  read never blocks. :func:`read_capped` reads at most ``max_bytes`` (+1 to notice a larger file) and refuses a larger
  one ``too_large``, so a growing or huge file cannot fill memory. This is why there is no time limit to set: nothing
  here waits on another process.
- **Names and keys** that become file or folder names match :data:`NAME_PATTERN` (letters, digits, ``_`` and ``-``,
  at most 200 characters, not starting with ``-`` so a name is never read as a command-line option): no dots, so
  no ``..``, no separators, no hidden files, and webdataset keys stay whole (it splits keys at the first dot).
- **Paths from an index** (``lr_path`` of a benchmark, a pair's image path) are relative, resolve (symlinks followed)
  inside their folder, and, where a manifest lists the folder's files, are listed in it (:func:`inside`).

Hand-written because no library does this: ``os.walk``/``pathlib`` classify entries but open anything, and
``pathlib.Path.is_relative_to`` compares strings without resolving links.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,199}"
_NAME = re.compile(NAME_PATTERN)
NAME_RULE = "letters, digits, '_' and '-' (1-200 characters, not starting with '-'; no dots or slashes)"
MAX_FILE_BYTES = 1 << 30  # 1 GiB: a 16-bit 128-MPx TIFF is 800 MB; anything larger is no picture sr4k can decode

REASONS = ("symlink_outside_root", "not_a_file", "missing", "too_large", "unreadable")


class UnsafeInput(ValueError):
    """An input that sr4k refuses to read; ``reason`` is one of :data:`REASONS`, the message names the entry."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def check_name(value: object, what: str) -> str:
    """``value`` if it is a safe name (:data:`NAME_PATTERN`), else a one-line ValueError naming ``what``, rule."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a valid name: use {NAME_RULE}")
    return value


def is_name(value: object) -> bool:
    return isinstance(value, str) and bool(_NAME.fullmatch(value))


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "folder"),
    ):
        if test(mode):
            return name
    return "special file"


def within(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` resolved (links followed) lies inside ``root`` resolved, or is ``root`` itself."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or os.path.commonpath([real, base]) == base


@dataclass(slots=True)
class Entry:
    path: Path  # the entry as listed (inside the root; not resolved)
    kind: str  # "file" | "folder" | "hidden" | "rejected"
    reason: str = ""  # for "rejected": one of REASONS
    detail: str = ""


def classify(path: str | Path, root: str | Path) -> Entry:
    """What ``path`` (an entry of the folder ``root``) is under the rules, without opening it."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Entry(path, "rejected", "missing", "no such file")
    except OSError as e:
        return Entry(path, "rejected", "unreadable", f"{type(e).__name__}: {e.strerror or e}")
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(path)
        if not within(target, root):
            return Entry(path, "rejected", "symlink_outside_root", f"a link to {target}, outside {root}")
        try:
            st = os.stat(path)
        except OSError:
            return Entry(path, "rejected", "missing", "a dangling link (or a link loop)")
    if stat.S_ISDIR(st.st_mode):
        return Entry(path, "folder")
    if not stat.S_ISREG(st.st_mode):
        return Entry(path, "rejected", "not_a_file", f"a {_kind(st.st_mode)}, not a regular file (never read)")
    return Entry(path, "file")


def list_folder(root: str | Path) -> list[Entry]:
    """The top-level entries of ``root``, sorted by name, each classified (hidden = name starting with a dot)."""
    root = Path(root)
    out = []
    for name in sorted(os.listdir(root)):
        p = root / name
        out.append(Entry(p, "hidden") if name.startswith(".") else classify(p, root))
    return out


def walk(root: str | Path) -> Iterator[Entry]:
    """Every entry under ``root``, recursively, in sorted order; links to folders are not followed, hidden entries
    (and everything under a hidden folder) are yielded once as "hidden"."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames):
            if name.startswith("."):
                yield Entry(Path(dirpath) / name, "hidden")
            elif os.path.islink(os.path.join(dirpath, name)):
                yield classify(Path(dirpath) / name, root)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not os.path.islink(os.path.join(dirpath, d))
        )
        for name in sorted(filenames):
            p = Path(dirpath) / name
            yield Entry(p, "hidden") if name.startswith(".") else classify(p, root)


def open_regular(path: str | Path, root: str | Path | None = None) -> BinaryIO:
    """``path`` opened for binary reading, only if it is a regular file (checked on the open descriptor) and, with
    ``root``, lies inside ``root`` once resolved. Raises :class:`UnsafeInput` otherwise; never blocks."""
    path = Path(path)
    if root is not None and not within(path, root):
        raise UnsafeInput("symlink_outside_root", f"{path} resolves to {os.path.realpath(path)}, outside {root}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnsafeInput("missing", f"{path}: no such file (or a dangling link)") from None
    except OSError as e:  # ENXIO: a FIFO... opened for writing only; EACCES; ELOOP
        raise UnsafeInput("unreadable", f"{path}: {type(e).__name__}: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeInput("not_a_file", f"{path} is a {_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_capped(path: str | Path, root: str | Path | None = None, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`), refused ``too_large`` above ``max_bytes``."""
    with open_regular(path, root) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeInput("too_large", f"{path} is larger than {max_bytes:,} bytes (the limit for one input file)")
    return data


def inside(folder: str | Path, rel: object, what: str, listed: set[str] | dict[str, str] | None = None) -> Path:
    """``folder / rel`` for a relative POSIX path ``rel`` taken from an index, if it resolves inside ``folder`` (and,
    with ``listed``, is one of the manifest's paths). Otherwise a one-line ValueError naming ``what``."""
    if not isinstance(rel, str) or not rel or rel.startswith(("/", "\\")) or "\\" in rel or ":" in rel:
        raise ValueError(f"{what} {rel!r} is not a relative path inside {folder}")
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise ValueError(f"{what} {rel!r} leaves or hides its folder ('..', '.' or empty parts)")
    if listed is not None and rel not in listed:
        raise ValueError(f"{what} {rel!r} is not listed in the verified manifest of {folder}")
    p = Path(folder) / rel
    if not within(p, folder):
        raise ValueError(f"{what} {rel!r} resolves to {os.path.realpath(p)}, outside {folder}")
    return p


def read_yaml_mapping(path: str | Path, flag: str = "--config", max_bytes: int = 16 << 20) -> dict:
    """A YAML settings file as a dict ({} when empty), read under the rules above (a FIFO or device given as
    ``--config`` is refused, not waited on). Every failure is a one-line ValueError naming ``flag``, the file and
    the fix: missing, not a regular file, not YAML (with the line and column of the first error), not a mapping."""
    import yaml

    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{flag} {p} does not exist: pass the path of a YAML file of settings")
    try:
        text = read_capped(p, None, max_bytes).decode("utf-8")
        data = yaml.safe_load(text)
    except UnsafeInput as e:
        raise ValueError(f"{flag} {p}: {e}; pass a YAML file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{flag} {p} is not UTF-8 text: pass a YAML file of settings") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(
            f"{flag} {p} is not valid YAML{where}: {problem}; fix the file (check indentation, colons and quotes)"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{flag} {p} must be a YAML mapping of settings (key: value lines), not a {type(data).__name__}"
        )
    return data
