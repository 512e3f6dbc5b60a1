"""Benchmark sets for OP4KSR evaluation: synthetic LR/HR pairs, imported real paired sets, imported LR-only sets.

Layout of one benchmark (what the evaluation harness and ``pipelines.curate.build.benchmark_keys`` read)::

    <workspace>/benchmarks/<name>/
        manifest.json          name, kind, version "<kind>/1", bench_version, scale, count, created_from, settings,
                               files {relative path: sha256} of every other file; written last
        lr/<key>.png           8-bit RGB PNG
        hr/<key>.png           synthetic and paired only
        index.parquet          one row per item (BENCH_INDEX); paths relative to the benchmark folder
        import_report.parquet  importers only: every entry of the input folder(s) and what became of it (IMPORT_REPORT)

``out_dir`` of every builder is the folder that *holds* benchmarks (``<workspace>/benchmarks``); the benchmark is
``out_dir/<name>``.

Determinism: the same inputs (at the same paths) and settings give byte-identical files. PNGs come from
``store.workspace.encode_png`` (deterministic), Parquet carries no timestamps, the manifest is sorted JSON with no
build time, and report paths are the absolute input paths. Items are processed in key order.

Atomicity: everything is built in a hidden sibling ``.<name>.build-<pid>`` (each file itself written temp + rename),
manifest last; then an existing ``<name>`` is renamed to ``.<name>.old-<pid>``, the build renamed to ``<name>`` and
the old one deleted. A crash leaves either the old or the new complete benchmark under the real name (or, between the
two renames, none, with the old one restored by the next build). Stale build folders are removed by the next build
of the same name, so run one build per name at a time. A folder under the target name that is not a benchmark (no
``manifest.json``) is never replaced.

Keys: the file stem with every run of characters outside ``[A-Za-z0-9_-]`` replaced by ``_`` (no dots: webdataset
splits keys at the first dot); a key already taken (compared case-insensitively, for case-insensitive filesystems)
gets ``-<8 hex of sha256(file name, or match stem for pairs)>`` appended. Synthetic sets built from a workspace use
the image key itself.

Synthetic seed space: item seed = ``seed_for(key, base_seed)`` with ``base_seed = bench_base_seed(name, seed) =
2**62 | (sha256("bench:<name>:<seed>")[:8] >> 2)``. Training uses ``seed_for(sample_key, cfg.seed)`` with a small
``cfg.seed``; a base seed in [2**62, 2**63) can never equal it, and the hashed strings differ even for the same key,
so no benchmark LR reuses a training degradation. The name is part of the seed: renaming a benchmark changes its LRs.
The ``degradation`` JSON of a synthetic item is ``degrade``'s parameters plus ``crop`` (x, y, w, h, score of the HR
window in the source), so an item can be rebuilt from its source alone.

Paired name matching (``import_paired``): a file's *match stem* is its stem minus one trailing role suffix,
case-insensitive: ``_HR``, ``_LR<n>``/``_LR``, ``_x<n>`` (RealSR ``<scene>_HR`` <-> ``<scene>_LR4``, DRealSR ``<x>_x1``
<-> ``<x>_x4``, plain identical stems); extensions are ignored (``a.png`` matches ``a.jpg``). When ``hr_dir`` and
``lr_dir`` are the same folder the suffix also gives the role (``_HR``/``_x1`` HR, ``_LR<n>``/``_x<n>``, n > 1, LR).
Only the top level of a folder is read; subfolders and hidden entries get a report row each.

Sizes: every pair must satisfy HR = LR * scale. An HR up to ``scale - 1`` px larger per side is cropped at the
bottom/right to LR * scale ("modcrop", noted in the report); anything else is ``size_mismatch``. ``scale=None`` infers
it from the first decodable pair (in key order), which must have an integer ratio.

Alignment rule (``check_alignment=True``): ``bench.metrics.lr_consistency_psnr(lr, hr)`` (PSNR-Y of the HR
area-downscaled to the LR size against the LR: the one LR-consistency definition). A pair is ``misaligned`` when its
PSNR is below ``ALIGN_MIN_PSNR_DB`` (15 dB) AND more than ``ALIGN_GAP_DB`` (6 dB) below the median of all
size-matched pairs. The absolute bound keeps a uniformly noisy set from being flagged at all, the relative one keeps
a set whose LRs are all far from a downscaled HR (strong blur, colour shifts) from being emptied; swapped or
wrong-scene pairs of the test photos score 8-14 dB against ~40 dB for matched ones (measured with OpenCV's integer
luma; BasicSR's Y spans 219/255 of it, so the same pairs read 1.3 dB higher: far from both bounds). The rule catches
swaps and gross misregistration, not few-pixel shifts; a set of one pair is never flagged (its median is itself).

Report statuses (``IMPORT_REPORT.status``):

====================  =====================================================================================
imported              part of the benchmark (detail: PSNR, modcrop or crop box)
unmatched             no partner with the same match stem, or no role suffix in a shared HR/LR folder
ambiguous             several files on one side share a match stem (e.g. a.png and a.jpg); none imported
size_mismatch         HR != LR * scale beyond the modcrop tolerance
misaligned            failed the alignment rule
partner_rejected      its partner file was rejected (so it could not be imported)
not_an_image          not a picture (decode reasons not_an_image, empty_file)
decode_failed         a picture that did not decode (truncated, animated, ...; detail names the reason)
unreadable            the file could not be read (permissions, vanished)
symlink_outside_root  a link whose target lies outside the folder (never read; ``pipelines.store.safety``)
not_a_file            a FIFO, socket or device (never opened: it could block or never end)
missing               a dangling link
too_large             over the per-file byte cap, or an LR whose SR output (LR x scale^2) would exceed
                      ``MAX_SR_PIXELS`` (detail names the limit)
too_small             LR-only square mode: smaller than N x N
duplicate             same decoded pixels as an earlier imported file
skipped_hidden        a hidden entry (.DS_Store ...)
skipped_folder        a subfolder (not searched)
====================  =====================================================================================
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from pipelines.curate.crop import CROP_VERSION
from pipelines.curate.decode import ACCEPTED_FORMATS, DECODE_VERSION, Decoded, DecodeSettings, decode_image
from pipelines.curate.degrade import DEGRADE_VERSION
from pipelines.curate.split import holdout_split
from pipelines.store import safety
from pipelines.store.workspace import encode_png, sha256_file, write_bytes_atomic, write_json_atomic, write_table
from schemas.bench import BENCH_INDEX, BENCH_SCHEMA_VERSION, IMPORT_REPORT, BenchItem, ReportRow
from schemas.records import Rejection

__all__ = [
    "BENCH_INDEX",
    "BENCH_SCHEMA_VERSION",
    "BENCH_VERSION",
    "IMPORT_REPORT",
    "BenchItem",
    "BenchmarkError",
    "ReportRow",
    "bench_base_seed",
    "check_bench_name",
    "holdout_split",
    "index_rows",
    "match_stem",
    "read_index",
    "sanitize_key",
    "sr_output_too_large",
    "verify_benchmark",
]

BENCH_VERSION = "bench/1"
PNG_LEVEL = 3  # the curation default: HR PNGs of 4K crops are large, so favour speed over a few % of size
ALIGN_MIN_PSNR_DB = 15.0
ALIGN_GAP_DB = 6.0
STATUSES = (
    "imported",
    "unmatched",
    "ambiguous",
    "size_mismatch",
    "misaligned",
    "partner_rejected",
    "not_an_image",
    "decode_failed",
    "unreadable",
    "too_small",
    "duplicate",
    "skipped_hidden",
    "skipped_folder",
    "symlink_outside_root",
    "not_a_file",
    "missing",
    "too_large",
)
# The largest SR output an LR may lead to: decode's default max_pixels (128 MiPx, 16384 x 8192), the largest picture
# sr4k reads at all. An LR is refused when width * height * scale^2 exceeds it (an 11,500^2 LR at x4 would be 2.1
# gigapixels, ~6 GB as 8-bit RGB, per model).
MAX_SR_PIXELS = DecodeSettings().max_pixels

_ROLE_SUFFIX = re.compile(r"_(?:(?P<hr>hr)|lr(?P<lr>\d*)|x(?P<x>\d+))$", re.IGNORECASE)
_NOT_IMAGE_REASONS = frozenset({"not_an_image", "empty_file"})


class BenchmarkError(ValueError):
    """Nothing could be built. ``report`` lists what happened to every input (as dicts of ReportRow fields)."""

    def __init__(self, message: str, report: list[ReportRow] | None = None):
        super().__init__(message)
        self.report = [asdict(r) for r in report or []]


# ----------------------------------------------------------------------------------------------------------------- #
# Keys, names, seeds
# ----------------------------------------------------------------------------------------------------------------- #


def sanitize_key(stem: str) -> str:
    """A file stem as a key: runs of characters outside [A-Za-z0-9_-] become "_", cut to 180 characters (room for a
    ``-<8 hex>`` suffix under the 200 of ``safety.NAME_PATTERN``); "img" if nothing is left."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:180].strip("_-") or "img"


def _unique_key(base: str, salt: str, taken: set[str]) -> str:
    key, n = base, 0
    while key.lower() in taken:  # lower(): lr/A.png and lr/a.png are one file on macOS and Windows
        key = f"{base}-{hashlib.sha256(f'{salt}:{n}'.encode()).hexdigest()[:8]}"
        n += 1
    taken.add(key.lower())
    return key


def match_stem(stem: str) -> tuple[str, str | None, int | None]:
    """(match stem, role "hr"|"lr"|None, scale named by the suffix) of a file stem; see the module docstring."""
    m = _ROLE_SUFFIX.search(stem)
    if not m:
        return stem, None, None
    if m.group("hr") is not None:
        return stem[: m.start()], "hr", None
    if m.group("x") is not None:
        n = int(m.group("x"))
        return stem[: m.start()], ("hr" if n == 1 else "lr"), (n if n > 1 else None)
    digits = m.group("lr")
    return stem[: m.start()], "lr", (int(digits) if digits else None)


def bench_base_seed(name: str, seed: int) -> int:
    """Base seed of a synthetic benchmark, in [2**62, 2**63): disjoint from the small base seeds curation uses."""
    digest = hashlib.sha256(f"bench:{name}:{seed}".encode()).digest()
    return (1 << 62) | (int.from_bytes(digest[:8], "big") >> 2)


def _check_name(name: str) -> None:
    safety.check_name(name, "benchmark name")


def check_bench_name(name: str, what: str = "benchmark name") -> str:
    """``name`` if it can name a benchmark folder (``safety.NAME_PATTERN``), else a one-line ValueError."""
    return safety.check_name(name, what)


def _check_scale(scale: Any, what: str = "scale") -> int:
    if isinstance(scale, bool) or not isinstance(scale, int | float) or int(scale) != scale or scale < 1:
        raise ValueError(f"{what} must be a positive integer, got {scale!r}")
    return int(scale)


# ----------------------------------------------------------------------------------------------------------------- #
# Input folders
# ----------------------------------------------------------------------------------------------------------------- #


@dataclass(slots=True)
class _Listing:
    files: list[Path]  # regular, non-hidden files at the top level, sorted by name
    rows: list[ReportRow]  # the other entries, each with its skipped_* status


def _existing_dir(path: str | Path, label: str) -> Path:
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise ValueError(f"{label} {p} does not exist: pass the folder that holds the images")
    if not p.is_dir():
        raise ValueError(f"{label} {p} is a file, not a folder: pass the folder that holds the images")
    return p


def _list_dir(path: Path, label: str) -> _Listing:
    """The top level of ``path`` under ``store.safety``'s rules: regular files (or links to regular files inside
    ``path``) are inputs; links outside, FIFOs, sockets and devices get a report row and are never opened."""
    entries = safety.list_folder(path)
    if not entries:
        raise ValueError(f"{label} {path} is empty: put the images there or pass the right folder")
    out = _Listing([], [])
    for e in entries:
        if e.kind == "hidden":
            out.rows.append(ReportRow(str(e.path), "skipped_hidden", "hidden entries are tool droppings, not inputs"))
        elif e.kind == "folder":
            out.rows.append(ReportRow(str(e.path), "skipped_folder", "subfolders are not searched"))
        elif e.kind == "rejected":
            out.rows.append(ReportRow(str(e.path), e.reason, e.detail))
        else:
            out.files.append(e.path)
    return out


def _load(path: Path) -> Decoded | tuple[str, str]:
    """Decoded pixels, or (status, detail) for a file that is not a usable picture. Read with ``safety.read_capped``
    inside the file's own folder (imports read the top level only), so an entry swapped for a FIFO, a device or an
    outside link after listing is still refused, not read."""
    try:
        data = safety.read_capped(path, path.parent)
    except safety.UnsafeInput as e:
        return e.reason, str(e)
    except OSError as e:
        return "unreadable", f"{type(e).__name__}: {e.strerror or e}"
    dec = decode_image(data, path.name)
    if isinstance(dec, Rejection):
        status = "not_an_image" if dec.reason in _NOT_IMAGE_REASONS else "decode_failed"
        return status, f"{dec.reason}: {dec.detail}"
    return dec


def _sniff(path: Path) -> tuple[str, str] | None:
    """(status, detail) if ``path`` is clearly not a picture, from its header only (no pixels are decoded)."""
    try:
        with safety.open_regular(path, path.parent) as f, Image.open(f, formats=ACCEPTED_FORMATS):
            return None
    except safety.UnsafeInput as e:
        return e.reason, str(e)
    except UnidentifiedImageError:
        return "not_an_image", f"not_an_image: not {'/'.join(ACCEPTED_FORMATS)}"
    except (FileNotFoundError, PermissionError) as e:
        return "unreadable", f"{type(e).__name__}: {e.strerror or e}"
    except Exception:  # a reader recognised the signature and failed later: a picture, if a broken one
        return None


# ----------------------------------------------------------------------------------------------------------------- #
# Building into a temporary folder and swapping it in
# ----------------------------------------------------------------------------------------------------------------- #


@dataclass(slots=True)
class _Out:
    dir: Path  # the temporary build folder
    final: Path  # where the benchmark will live
    hashes: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, for the manifest

    def png(self, rel: str, rgb: np.ndarray) -> None:
        data = encode_png(np.ascontiguousarray(rgb), PNG_LEVEL)
        write_bytes_atomic(self.dir / rel, data)
        self.hashes[rel] = hashlib.sha256(data).hexdigest()

    def remove(self, rel: str) -> None:
        (self.dir / rel).unlink(missing_ok=True)
        self.hashes.pop(rel, None)

    def table(self, rel: str, records: list[Any], schema: pa.Schema) -> None:
        write_table(self.dir / rel, records, schema)
        self.hashes[rel] = sha256_file(self.dir / rel)

    def publish(self, manifest: dict[str, Any]) -> None:
        """Write manifest.json (last) and swap the build in under the real name."""
        manifest["files"] = dict(sorted(self.hashes.items()))
        write_json_atomic(self.dir / "manifest.json", manifest)
        old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.dir, self.final)
        shutil.rmtree(old, ignore_errors=True)


def _check_target(final: Path, inputs: list[Path]) -> None:
    for inp in inputs:
        if inp == final or inp.is_relative_to(final):
            raise ValueError(f"input {inp} lies inside the benchmark {final} that would replace it; copy it elsewhere")
    if final.exists() and not final.is_dir():
        raise ValueError(f"{final} exists and is a file; choose another benchmark name")
    if final.is_dir() and any(final.iterdir()) and not (final / "manifest.json").is_file():
        raise ValueError(f"{final} exists and is not a benchmark (no manifest.json); refusing to replace it")


def _clean_stale(out_dir: Path, name: str) -> None:
    """Remove leftovers of interrupted builds of ``name``; restore an old copy a crash left mid-swap."""
    olds = sorted(out_dir.glob(f".{name}.old-*"))
    if olds and not (out_dir / name).exists():
        os.replace(olds.pop(), out_dir / name)
    for stale in [*olds, *out_dir.glob(f".{name}.build-*")]:
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _building(out_dir: str | Path, name: str, inputs: list[Path]) -> Iterator[_Out]:
    """A fresh temporary build folder beside ``out_dir/name``; removed on error (``publish`` moves it away)."""
    _check_name(name)
    out_dir = Path(out_dir).expanduser().resolve()
    final = out_dir / name
    _check_target(final, inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale(out_dir, name)
    tmp = out_dir / f".{name}.build-{os.getpid()}"
    tmp.mkdir()
    try:
        yield _Out(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _manifest(name: str, kind: str, scale: int, count: int, created_from: Path, settings: dict) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "version": f"{kind}/1",
        "bench_version": BENCH_VERSION,
        "scale": scale,
        "count": count,
        "created_from": str(created_from),
        "settings": settings,
    }


def _finish_import(
    out: _Out, kind: str, name: str, created_from: Path, settings: dict, items: list[BenchItem], rows: list[ReportRow]
) -> dict[str, Any]:
    """Write index and report, publish, and return the summary; raise BenchmarkError when nothing was imported."""
    rows = sorted(rows, key=lambda r: r.file)
    statuses = dict(sorted(Counter(r.status for r in rows).items()))
    if not items:
        examples = "; ".join(f"{Path(r.file).name}: {r.status} {r.detail}".strip() for r in rows[:5])
        raise BenchmarkError(f"nothing imported from {created_from} (statuses {statuses}); e.g. {examples}", rows)
    items = sorted(items, key=lambda i: i.key)
    out.table("index.parquet", items, BENCH_INDEX)
    out.table("import_report.parquet", rows, IMPORT_REPORT)
    scale = items[0].scale
    out.publish(_manifest(name, kind, scale, len(items), created_from, settings))
    return {
        "name": name,
        "kind": kind,
        "path": str(out.final),
        "count": len(items),
        "scale": scale,
        "statuses": statuses,
    }


def verify_benchmark(path: str | Path) -> list[str]:
    """Problems found in a built benchmark (missing files, hash mismatches, index/manifest disagreement); [] if ok."""
    root = Path(path)
    try:
        manifest = json.loads(safety.read_capped(root / "manifest.json", root, 64 << 20))
    except (OSError, ValueError) as e:  # safety.UnsafeInput is a ValueError
        return [f"manifest.json unreadable: {e}"]
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or "index.parquet" not in files:
        return ["manifest.json lists no files (or no index.parquet)"]
    problems = []
    for rel, digest in files.items():
        try:
            p = safety.inside(root, rel, "manifest file")
        except ValueError as e:
            problems.append(str(e))
            continue
        if safety.classify(p, root).kind != "file":
            problems.append(f"{rel}: missing or not a regular file")
        elif sha256_file(p) != digest:
            problems.append(f"{rel}: sha256 differs from the manifest")
    if not problems:
        rows = pq.read_table(root / "index.parquet").to_pylist()
        if len(rows) != manifest.get("count"):
            problems.append(f"index.parquet has {len(rows)} rows, manifest count {manifest.get('count')}")
        problems += _index_problems(root, rows, files)
    return problems


def _index_problems(root: Path, rows: list[dict[str, Any]], files: dict[str, str] | None) -> list[str]:
    """Keys must be safe names (``safety.NAME_PATTERN``: they become file and folder names downstream, e.g. the
    evaluation's crop folders) and each row's ``lr_path``/``hr_path`` must be ``lr/<key>.png``/``hr/<key>.png``,
    listed in the verified manifest and resolved inside the benchmark folder."""
    problems = []
    for i, r in enumerate(rows):
        key = r.get("key")
        if not safety.is_name(key):
            problems.append(f"index row {i}: key {key!r} is not a valid key ({safety.NAME_RULE})")
            continue
        for col, want in (("lr_path", f"lr/{key}.png"), ("hr_path", f"hr/{key}.png")):
            rel = r.get(col)
            if rel is None and col == "hr_path":
                continue
            if rel != want:
                problems.append(f"index row {i} ({key}): {col} {rel!r} is not {want!r}")
                continue
            try:
                safety.inside(root, rel, f"index row {i} ({key}) {col}", files)
            except ValueError as e:
                problems.append(str(e))
    return problems


def index_rows(path: str | Path) -> list[dict[str, Any]]:
    """The index rows of a benchmark, sorted by key, after the cheap checks of :func:`verify_benchmark` (keys and
    paths inside the folder, no hashing): for readers called per work unit once the flow ran :func:`read_index`."""
    root = Path(path)
    rows = sorted(pq.read_table(root / "index.parquet").to_pylist(), key=lambda r: r["key"])
    if problems := _index_problems(root, rows, None):
        raise ValueError(
            f"benchmark {root.name}: {problems[0]}; rebuild it with `sr4k bench build` / `sr4k bench import`"
        )
    return rows


def read_index(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, index rows sorted by key) of a benchmark that passes :func:`verify_benchmark`; else a one-line
    ValueError naming the first problems and the fix. Every consumer of a benchmark's paths reads them here."""
    root = Path(path)
    if problems := verify_benchmark(root):
        more = f" (+{len(problems) - 2} more)" if len(problems) > 2 else ""
        raise ValueError(
            f"benchmark {root.name} fails verification: {'; '.join(problems[:2])}{more}; rebuild it with "
            "`sr4k bench build` / `sr4k bench import` (or restore its files)"
        )
    manifest = json.loads((root / "manifest.json").read_text())
    rows = sorted(pq.read_table(root / "index.parquet").to_pylist(), key=lambda r: r["key"])
    return manifest, rows


def sr_output_too_large(width: int, height: int, scale: int, limit: int = MAX_SR_PIXELS) -> str | None:
    """Why an LR of ``width`` x ``height`` cannot be a benchmark item at ``scale`` (its SR output, LR x scale^2, is
    over ``limit`` pixels), or None when it can. The text names both sizes and the limit."""
    out = width * height * scale * scale
    if out <= limit:
        return None
    return (
        f"LR {width}x{height} at x{scale} gives a {width * scale}x{height * scale} output = {out:,} px > the "
        f"limit of {limit:,} px (LR x scale^2 <= MAX_SR_PIXELS)"
    )


def _versions() -> dict[str, str]:
    return {"bench": BENCH_VERSION, "decode": DECODE_VERSION, "crop": CROP_VERSION, "degrade": DEGRADE_VERSION}


# The builders live in their own modules (synthetic.py, imports.py), which import the helpers above; this module stays
# the one entry point for every benchmark operation by resolving their names on first use (PEP 562: a plain import
# here would be circular).
_BUILDERS = {"build_synthetic": "synthetic", "import_paired": "imports", "import_lr_only": "imports"}


def __getattr__(name: str) -> Any:
    if name in _BUILDERS:
        import importlib

        return getattr(importlib.import_module(f"pipelines.bench.{_BUILDERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
