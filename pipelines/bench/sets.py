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

Alignment rule (``check_alignment=True``): PSNR of the luma of the HR, area-downscaled to the LR size, against the LR
luma (integer BT.601 luma from OpenCV, so the value is exact). A pair is ``misaligned`` when its PSNR is below
``ALIGN_MIN_PSNR_DB`` (15 dB) AND more than ``ALIGN_GAP_DB`` (6 dB) below the median of all size-matched pairs.
The absolute bound keeps a uniformly noisy set from being flagged at all, the relative one keeps a set whose LRs
are all far from a downscaled HR (strong blur, colour shifts) from being emptied; swapped or wrong-scene pairs of
the test photos score 8-14 dB against ~40 dB for matched ones. The rule catches swaps and gross misregistration, not
few-pixel shifts; a set of one pair is never flagged (its median is itself).

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
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from pipelines.bench.metrics import lr_consistency_psnr
from pipelines.curate.build import TOKEN_STRIDE
from pipelines.curate.crop import CROP_VERSION, choose_crops
from pipelines.curate.decode import ACCEPTED_FORMATS, DECODE_VERSION, Decoded, DecodeSettings, decode_image
from pipelines.curate.degrade import DEGRADE_VERSION, DegradeSettings, degrade, seed_for
from pipelines.curate.ingest import read_source
from pipelines.curate.split import holdout_split
from pipelines.store import catalog, safety
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
    "build_synthetic",
    "check_bench_name",
    "holdout_split",
    "import_lr_only",
    "import_paired",
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
    "imported", "unmatched", "ambiguous", "size_mismatch", "misaligned", "partner_rejected", "not_an_image",
    "decode_failed", "unreadable", "too_small", "duplicate", "skipped_hidden", "skipped_folder",
    "symlink_outside_root", "not_a_file", "missing", "too_large",
)  # fmt: skip
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
        "name": name, "kind": kind, "version": f"{kind}/1", "bench_version": BENCH_VERSION, "scale": scale,
        "count": count, "created_from": str(created_from), "settings": settings,
    }  # fmt: skip


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
    return {"name": name, "kind": kind, "path": str(out.final), "count": len(items), "scale": scale,
            "statuses": statuses}  # fmt: skip


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
        raise ValueError(f"benchmark {root.name}: {problems[0]}; rebuild it with `sr4k bench build` / `sr4k bench "
                         "import`")  # fmt: skip
    return rows


def read_index(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, index rows sorted by key) of a benchmark that passes :func:`verify_benchmark`; else a one-line
    ValueError naming the first problems and the fix. Every consumer of a benchmark's paths reads them here."""
    root = Path(path)
    if problems := verify_benchmark(root):
        more = f" (+{len(problems) - 2} more)" if len(problems) > 2 else ""
        raise ValueError(f"benchmark {root.name} fails verification: {'; '.join(problems[:2])}{more}; rebuild it with "
                         "`sr4k bench build` / `sr4k bench import` (or restore its files)")  # fmt: skip
    manifest = json.loads((root / "manifest.json").read_text())
    rows = sorted(pq.read_table(root / "index.parquet").to_pylist(), key=lambda r: r["key"])
    return manifest, rows


# ----------------------------------------------------------------------------------------------------------------- #
# Synthetic
# ----------------------------------------------------------------------------------------------------------------- #


@dataclass(slots=True)
class _Candidate:
    key: str
    uri: str
    image_key: str | None  # known up front in a workspace; from the pixels for a folder


def build_synthetic(
    src: str | Path,
    out_dir: Path,
    name: str,
    count: int = 100,
    hr_size: tuple[int, int] = (4096, 4096),
    scale: int = 4,
    seed: int = 0,
    holdout_permille: int = 10,
    degrade_settings: DegradeSettings | None = None,
) -> dict[str, Any]:
    """Fixed-seed degraded LR/HR pairs from held-out workspace images or a dedicated folder of HR images.

    ``src`` with a ``tables/`` folder is a workspace: candidates are its images that passed the filters, are held out
    by ``holdout_split(key, holdout_permille)`` (use the curation's permille) and were not shipped in training
    (``tables/samples``; a larger permille here than in curation would otherwise leak training images). Any other
    folder: every file in it (top level). Candidates are taken in key order until ``count`` are built: one
    detail-aware ``hr_size`` crop each, LR by ``degrade`` with ``seed_for(key, bench_base_seed(name, seed))``.
    Returns a summary (count, requested, base_seed, skipped: [{source, key, reason, detail}], also in the manifest);
    skip reasons: in_training, too_small, not_an_image, decode_failed, duplicate, missing, skipped_hidden,
    skipped_folder. Fewer than ``count`` usable candidates is not an error; none is (ValueError naming the fix).
    """
    _check_name(name)
    scale = _check_scale(scale)
    count = _check_scale(count, "count")
    w, h = (int(hr_size), int(hr_size)) if isinstance(hr_size, int) else (int(v) for v in hr_size)
    if not 0 <= holdout_permille <= 1000:
        raise ValueError(f"holdout_permille must be in 0..1000, got {holdout_permille}")
    if w < 1 or h < 1 or w % TOKEN_STRIDE or h % TOKEN_STRIDE or w % scale or h % scale:
        raise ValueError(f"hr_size {w}x{h}: each side must be a multiple of {TOKEN_STRIDE} and of scale {scale}")
    settings = degrade_settings or DegradeSettings()
    src_path = _existing_dir(src, "src")
    if (src_path / "tables").is_dir():
        candidates, skipped = _workspace_candidates(src_path, holdout_permille)
        origin = "workspace"
    else:
        candidates, skipped = _folder_candidates(src_path)
        origin = "folder"
    base_seed = bench_base_seed(name, seed)
    with _building(out_dir, name, [src_path]) as out:
        items = _synthetic_items(candidates, out, count, (w, h), scale, base_seed, settings, skipped)
        if not items:
            reasons = dict(Counter(s["reason"] for s in skipped))
            raise BenchmarkError(
                f"no synthetic pair could be built from {src_path}: {len(candidates)} candidates, skipped {reasons} "
                f"(hr_size {w}x{h}: pass a smaller hr_size or larger images)"
            )
        out.table("index.parquet", items, BENCH_INDEX)
        settings_json = {
            "source": origin, "count_requested": count, "hr_size": [w, h], "seed": seed, "base_seed": base_seed,
            "holdout_permille": holdout_permille if origin == "workspace" else None, "png_level": PNG_LEVEL,
            "degrade": asdict(settings), "versions": _versions(),
        }  # fmt: skip
        manifest = _manifest(name, "synthetic", scale, len(items), src_path, settings_json)
        manifest["skipped"] = skipped
        out.publish(manifest)
    return {"name": name, "kind": "synthetic", "path": str(out.final), "count": len(items), "requested": count,
            "scale": scale, "base_seed": base_seed, "source": origin, "skipped": skipped}  # fmt: skip


def _versions() -> dict[str, str]:
    return {"bench": BENCH_VERSION, "decode": DECODE_VERSION, "crop": CROP_VERSION, "degrade": DEGRADE_VERSION}


def _workspace_candidates(root: Path, permille: int) -> tuple[list[_Candidate], list[dict]]:
    con = catalog.connect(root)
    try:
        total = con.execute("select count(distinct key) from images").fetchone()[0]
        rows = con.execute(
            "select key, min(uri) from images where passed_filters group by key order by key"
        ).fetchall()
        shipped = {k for (k,) in con.execute("select distinct image_key from samples").fetchall()}
    finally:
        con.close()
    if not total:
        raise ValueError(f"the workspace {root} has no decoded images (tables/images is empty): run `sr4k curate` "
                         f"on it first or pass a folder of HR images")  # fmt: skip
    held = [(k, uri) for k, uri in rows if holdout_split(k, permille)]
    skipped = [{"source": uri, "key": k, "reason": "in_training", "detail": "shipped in tables/samples"}
               for k, uri in held if k in shipped]  # fmt: skip
    cands = [_Candidate(k, uri, k) for k, uri in held if k not in shipped]
    if not cands:
        raise ValueError(
            f"the workspace {root} has no held-out images ({len(rows)} passed the filters, {len(held)} held out at "
            f"{permille}‰, {len(skipped)} of those shipped in training): curate with a larger --holdout-permille "
            f"or pass a folder of HR images"
        )
    return cands, skipped


def _folder_candidates(root: Path) -> tuple[list[_Candidate], list[dict]]:
    listing = _list_dir(root, "src")
    skipped = [{"source": r.file, "key": None, "reason": r.status, "detail": r.detail} for r in listing.rows]
    taken: set[str] = set()
    cands = [_Candidate(_unique_key(sanitize_key(p.stem), p.name, taken), str(p), None) for p in listing.files]
    if not cands:
        raise ValueError(f"src {root} holds no files (only {len(listing.rows)} hidden entries or subfolders)")
    return sorted(cands, key=lambda c: c.key), skipped


def _synthetic_items(
    cands: list[_Candidate], out: _Out, count: int, size: tuple[int, int], scale: int, base_seed: int,
    settings: DegradeSettings, skipped: list[dict],
) -> list[BenchItem]:  # fmt: skip
    items: list[BenchItem] = []
    seen_pixels: dict[str, str] = {}
    for cand in cands:
        if len(items) == count:
            break
        made = _synthetic_item(cand, out, size, scale, base_seed, settings, seen_pixels)
        if isinstance(made, BenchItem):
            items.append(made)
        else:
            skipped.append({"source": cand.uri, "key": cand.key, "reason": made[0], "detail": made[1]})
    return items


def _synthetic_item(
    cand: _Candidate, out: _Out, size: tuple[int, int], scale: int, base_seed: int, settings: DegradeSettings,
    seen_pixels: dict[str, str],
) -> BenchItem | tuple[str, str]:  # fmt: skip
    if cand.image_key is None:  # a file of a plain folder (listed by _list_dir): the safe read, inside its folder
        try:
            data = safety.read_capped(cand.uri, os.path.dirname(cand.uri))
        except safety.UnsafeInput as e:
            return e.reason, str(e)
    else:
        data = read_source(cand.uri, None)
    if isinstance(data, Rejection):
        return data.reason, data.detail
    dec = decode_image(data, os.path.basename(cand.uri))
    if isinstance(dec, Rejection):
        return ("not_an_image" if dec.reason in _NOT_IMAGE_REASONS else "decode_failed"), f"{dec.reason}: {dec.detail}"
    image_key = cand.image_key or dec.pixel_sha256[:24]
    if dec.pixel_sha256 in seen_pixels:
        return "duplicate", f"same pixels as {seen_pixels[dec.pixel_sha256]}"
    boxes = choose_crops(dec.rgb, size, 1, align=TOKEN_STRIDE)
    if not boxes:
        h, w = dec.rgb.shape[:2]
        return "too_small", f"{w}x{h} < hr_size {size[0]}x{size[1]}"
    seen_pixels[dec.pixel_sha256] = cand.uri
    box = boxes[0]
    hr = np.ascontiguousarray(dec.rgb[box.y : box.y + box.h, box.x : box.x + box.w])
    item_seed = seed_for(cand.key, base_seed)
    lr, params = degrade(hr, scale, item_seed, settings)
    params["crop"] = {"x": box.x, "y": box.y, "w": box.w, "h": box.h, "score": box.score}
    out.png(f"hr/{cand.key}.png", hr)
    out.png(f"lr/{cand.key}.png", lr)
    return BenchItem(
        cand.key, f"lr/{cand.key}.png", f"hr/{cand.key}.png", lr.shape[1], lr.shape[0], hr.shape[1], hr.shape[0],
        scale, item_seed, json.dumps(params, sort_keys=True), cand.uri, image_key,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------- #
# Paired real LR/HR
# ----------------------------------------------------------------------------------------------------------------- #


@dataclass(slots=True)
class _Pair:
    key: str
    hr: Path
    lr: Path
    hint: int | None  # scale named by the LR suffix (_LR4, _x4)


def _sides(hr_dir: Path, lr_dir: Path) -> tuple[list[Path], list[Path], list[ReportRow]]:
    """HR files, LR files and the rows of entries that are neither (skipped, or roleless in a shared folder)."""
    if hr_dir == lr_dir:
        listing = _list_dir(hr_dir, "hr_dir/lr_dir")
        hr, lr, rows = [], [], list(listing.rows)
        for p in listing.files:
            role = match_stem(p.stem)[1]
            if role is None:
                detail = "no role suffix (_HR, _x1 / _LR<n>, _x<n>) in a folder that holds both HR and LR"
                rows.append(ReportRow(str(p), *(_sniff(p) or ("unmatched", detail))))
            else:
                (hr if role == "hr" else lr).append(p)
        return hr, lr, rows
    hr_l, lr_l = _list_dir(hr_dir, "hr_dir"), _list_dir(lr_dir, "lr_dir")
    return hr_l.files, lr_l.files, hr_l.rows + lr_l.rows


def _match(hr_files: list[Path], lr_files: list[Path]) -> tuple[list[_Pair], list[ReportRow]]:
    """Pairs by match stem, and report rows for the files that are not pictures or have no unique partner."""
    groups: dict[str, tuple[list[Path], list[Path]]] = {}
    pairs, rows, taken = [], [], set()
    for side, files in ((0, hr_files), (1, lr_files)):
        for p in files:
            # Header-only check first, so a caption or metadata file beside a picture (0001.png + 0001.json) is
            # reported as what it is instead of making its picture's match ambiguous.
            bad = _sniff(p)
            if bad:
                rows.append(ReportRow(str(p), *bad))
            else:
                groups.setdefault(match_stem(p.stem)[0], ([], []))[side].append(p)
    for stem in sorted(groups):
        hrs, lrs = groups[stem]
        key = _unique_key(sanitize_key(stem), stem, taken)
        if len(hrs) == 1 and len(lrs) == 1:
            pairs.append(_Pair(key, hrs[0], lrs[0], match_stem(lrs[0].stem)[2]))
        elif len(hrs) > 1 or len(lrs) > 1:
            names = ", ".join(p.name for p in hrs + lrs)
            rows += [ReportRow(str(p), "ambiguous", f"match stem {stem!r} shared by {names}", key) for p in hrs + lrs]
        else:
            detail = f"no {'LR' if hrs else 'HR'} file with match stem {stem!r} (suffixes _HR/_LR<n>/_x<n>, any ext)"
            rows += [ReportRow(str(p), "unmatched", detail, key) for p in hrs + lrs]
    return pairs, rows


def import_paired(
    hr_dir: Path, lr_dir: Path, out_dir: Path, name: str, scale: int | None = None, *, check_alignment: bool = True
) -> dict[str, Any]:
    """Import a real paired LR/HR set (RealSR / DRealSR / plain names); see the module docstring for the rules.

    Returns a summary (count, scale, statuses); the benchmark's ``import_report.parquet`` has one row per entry of
    both folders. Raises ValueError for a missing or empty folder, BenchmarkError (a ValueError carrying the
    report) when no pair could be imported, and ValueError when the scale cannot be inferred.
    """
    _check_name(name)
    if scale is not None:
        scale = _check_scale(scale)
    hr_dir, lr_dir = _existing_dir(hr_dir, "hr_dir"), _existing_dir(lr_dir, "lr_dir")
    hr_files, lr_files, rows = _sides(hr_dir, lr_dir)
    pairs, match_rows = _match(hr_files, lr_files)
    with _building(out_dir, name, [hr_dir, lr_dir]) as out:
        job = _PairedImport(out, scale)
        for pair in pairs:
            job.add(pair)
        if check_alignment:
            job.flag_misaligned()
        settings = {"hr_dir": str(hr_dir), "lr_dir": str(lr_dir), "scale_given": scale,
                    "check_alignment": check_alignment, "align_min_psnr_db": ALIGN_MIN_PSNR_DB,
                    "align_gap_db": ALIGN_GAP_DB, "png_level": PNG_LEVEL, "versions": _versions()}  # fmt: skip
        all_rows = rows + match_rows + list(job.rows.values())
        return _finish_import(out, "paired", name, hr_dir, settings, list(job.items.values()), all_rows)


class _PairedImport:
    """State of one paired import: the scale (given or inferred), items, PSNRs and report rows of matched files."""

    def __init__(self, out: _Out, scale: int | None):
        self.out, self.scale = out, scale
        self.items: dict[str, BenchItem] = {}
        self.pairs: dict[str, _Pair] = {}
        self.psnr: dict[str, float] = {}
        self.rows: dict[Path, ReportRow] = {}

    def _both(self, pair: _Pair, status: str, detail: str) -> None:
        for p in (pair.hr, pair.lr):
            self.rows[p] = ReportRow(str(p), status, detail, pair.key)

    def add(self, pair: _Pair) -> None:
        hr, lr = _load(pair.hr), _load(pair.lr)
        if isinstance(hr, tuple) or isinstance(lr, tuple):
            return self._rejected(pair, hr, lr)
        scale = self._scale(pair, hr.rgb, lr.rgb)
        fitted = _fit_hr(hr.rgb, lr.rgb, scale)
        if isinstance(fitted, str):
            return self._both(pair, "size_mismatch", fitted)
        hr_rgb, note = fitted
        psnr = lr_consistency_psnr(lr.rgb, hr_rgb)
        self.out.png(f"hr/{pair.key}.png", hr_rgb)
        self.out.png(f"lr/{pair.key}.png", lr.rgb)
        lh, lw = lr.rgb.shape[:2]
        self.items[pair.key] = BenchItem(
            pair.key, f"lr/{pair.key}.png", f"hr/{pair.key}.png", lw, lh, lw * scale, lh * scale, scale, None, None,
            str(pair.hr), hr.pixel_sha256[:24],
        )  # fmt: skip
        self.pairs[pair.key], self.psnr[pair.key] = pair, psnr
        self._both(pair, "imported", "; ".join(filter(None, [f"psnr_y {psnr:.2f} dB vs area-downscaled HR", note])))

    def _rejected(self, pair: _Pair, hr: Decoded | tuple[str, str], lr: Decoded | tuple[str, str]) -> None:
        """Rows of a pair where one side (or both) is not a usable picture: its own status, or partner_rejected."""
        for p, mine, other, label in ((pair.hr, hr, lr, "LR"), (pair.lr, lr, hr, "HR")):
            if isinstance(mine, tuple):
                self.rows[p] = ReportRow(str(p), *mine, pair.key)
            else:
                self.rows[p] = ReportRow(str(p), "partner_rejected", f"its {label} was rejected: {other[0]}", pair.key)

    def _scale(self, pair: _Pair, hr: np.ndarray, lr: np.ndarray) -> int:
        if self.scale is not None:
            return self.scale
        (hh, hw), (lh, lw) = hr.shape[:2], lr.shape[:2]
        s = hw // lw
        # The same tolerance as _fit_hr: up to s - 1 extra HR pixels per side (none at s = 1).
        if s < 1 or not 0 <= hw - lw * s < s or not 0 <= hh - lh * s < s:
            raise ValueError(
                f"cannot infer the scale from the first pair {pair.hr.name} ({hw}x{hh}) / {pair.lr.name} ({lw}x{lh}): "
                f"not an integer ratio; pass scale= (or are hr_dir and lr_dir swapped?)"
            )
        if s == 1 and (pair.hint or 1) > 1:
            raise ValueError(f"{pair.lr.name} is the size of its HR ({hw}x{hh}) although its name says x{pair.hint}: "
                             f"this set stores LR upsampled to the HR size; downscale the LR images first, or pass "
                             f"scale=1 to import them as they are")  # fmt: skip
        self.scale = s
        return s

    def flag_misaligned(self) -> None:
        if not self.psnr:
            return
        median = statistics.median(self.psnr.values())
        for key, psnr in self.psnr.items():
            if psnr < ALIGN_MIN_PSNR_DB and psnr < median - ALIGN_GAP_DB:
                self.out.remove(f"hr/{key}.png")
                self.out.remove(f"lr/{key}.png")
                del self.items[key]
                detail = (f"psnr_y {psnr:.2f} dB vs set median {median:.2f} dB (rule: < {ALIGN_MIN_PSNR_DB:g} dB and "
                          f"more than {ALIGN_GAP_DB:g} dB below the median)")  # fmt: skip
                self._both(self.pairs[key], "misaligned", detail)


def _fit_hr(hr: np.ndarray, lr: np.ndarray, scale: int) -> tuple[np.ndarray, str] | str:
    """(HR cropped to LR * scale, note) when within the modcrop tolerance, else the size_mismatch detail."""
    (hh, hw), (lh, lw) = hr.shape[:2], lr.shape[:2]
    dw, dh = hw - lw * scale, hh - lh * scale
    if dw == 0 and dh == 0:
        return hr, ""
    if 0 <= dw < scale and 0 <= dh < scale:
        return hr[: lh * scale, : lw * scale], f"hr cropped from {hw}x{hh} to {lw * scale}x{lh * scale} (modcrop)"
    return f"hr {hw}x{hh} != lr {lw}x{lh} x {scale} = {lw * scale}x{lh * scale}"


# ----------------------------------------------------------------------------------------------------------------- #
# LR-only real images
# ----------------------------------------------------------------------------------------------------------------- #


def import_lr_only(
    lr_dir: Path, out_dir: Path, name: str, square: int | None = None, scale: int = 4
) -> dict[str, Any]:
    """Import LR-only real images (RealLQ style). ``square=None``: every image as decoded (varying sizes);
    ``square=N``: one detail-aware N x N crop per image, smaller images reported ``too_small``. ``scale`` is the
    SR factor the benchmark is meant for (recorded in the index). Exact pixel duplicates are reported, not imported.
    """
    _check_name(name)
    scale = _check_scale(scale)
    if square is not None:
        square = _check_scale(square, "square")
        if too_big := sr_output_too_large(square, square, scale):
            raise ValueError(f"--square {square}: {too_big}; pass a smaller --square or --scale")
    lr_dir = _existing_dir(lr_dir, "lr_dir")
    listing = _list_dir(lr_dir, "lr_dir")
    taken: set[str] = set()
    keyed = sorted((_unique_key(sanitize_key(p.stem), p.name, taken), p) for p in listing.files)
    rows, items = list(listing.rows), []
    seen: dict[str, str] = {}
    with _building(out_dir, name, [lr_dir]) as out:
        for key, path in keyed:
            row, item = _lr_only_item(path, key, out, square, scale, seen)
            rows.append(row)
            if item is not None:
                items.append(item)
        settings = {"mode": "varying" if square is None else "square", "square": square, "png_level": PNG_LEVEL,
                    "versions": _versions()}  # fmt: skip
        return _finish_import(out, "lr_only", name, lr_dir, settings, items, rows)


def sr_output_too_large(width: int, height: int, scale: int, limit: int = MAX_SR_PIXELS) -> str | None:
    """Why an LR of ``width`` x ``height`` cannot be a benchmark item at ``scale`` (its SR output, LR x scale^2, is
    over ``limit`` pixels), or None when it can. The text names both sizes and the limit."""
    out = width * height * scale * scale
    if out <= limit:
        return None
    return (f"LR {width}x{height} at x{scale} gives a {width * scale}x{height * scale} output = {out:,} px > the "
            f"limit of {limit:,} px (LR x scale^2 <= MAX_SR_PIXELS)")  # fmt: skip


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the picture's header (no pixels decoded), or None when the header cannot tell."""
    try:
        with safety.open_regular(path, path.parent) as f, Image.open(f, formats=ACCEPTED_FORMATS) as im:
            return im.size
    except Exception:  # not a picture, unreadable, unsafe: _load reports it with its own reason
        return None


def _lr_only_item(
    path: Path, key: str, out: _Out, square: int | None, scale: int, seen: dict[str, str]
) -> tuple[ReportRow, BenchItem | None]:
    size = None if square is not None else _header_size(path)
    if size is not None and (too_big := sr_output_too_large(*size, scale)):
        return ReportRow(str(path), "too_large", f"{too_big}: import with --square N or downscale it", key), None
    dec = _load(path)
    if isinstance(dec, tuple):
        return ReportRow(str(path), *dec, key), None
    if dec.pixel_sha256 in seen:
        return ReportRow(str(path), "duplicate", f"same pixels as {seen[dec.pixel_sha256]}", key), None
    rgb, detail = dec.rgb, ""
    if square is None and (too_big := sr_output_too_large(rgb.shape[1], rgb.shape[0], scale)):
        return ReportRow(str(path), "too_large", f"{too_big}: import with --square N or downscale it", key), None
    if square is not None:
        boxes = choose_crops(rgb, (square, square), 1)
        if not boxes:
            h, w = rgb.shape[:2]
            return ReportRow(str(path), "too_small", f"{w}x{h} < square {square}x{square}", key), None
        b = boxes[0]
        rgb, detail = rgb[b.y : b.y + b.h, b.x : b.x + b.w], f"crop {b.w}x{b.h} at ({b.x}, {b.y})"
    seen[dec.pixel_sha256] = path.name
    out.png(f"lr/{key}.png", rgb)
    h, w = rgb.shape[:2]
    item = BenchItem(key, f"lr/{key}.png", None, w, h, None, None, scale, None, None, str(path), dec.pixel_sha256[:24])
    return ReportRow(str(path), "imported", detail, key), item
