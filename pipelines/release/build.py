"""One release path for every dataset kind: human preferences, the curated training set, and benchmarks.

``release(workspace, kind, name, version)`` writes ``<workspace>/releases/<name>-<version>/``::

    <split>-000000.tar ...   webdataset shards (store.shards.ShardWriter: fixed mtime/owner, byte-reproducible)
    index.parquet            one row per sample: key, shard, split, image_key, schema_version (SHARD_INDEX), then
                             the sample's JSON fields (nested values as JSON text), so DuckDB answers questions
                             about the release without opening a tar
    README.md                the dataset card (Hugging Face front matter, counts, agreement, tables, plots)
    plots/*.png              the card's figures (matplotlib)
    manifest.json            ShardManifest (per shard: name, count, bytes, sha256) plus kind, name, version, source,
                             and ``files``: the sha256 of every other file; written last

Kinds and their samples (keys contain no dots):

- ``preferences`` (split ``train``): one sample per row of the ``preferences`` table (``sr4k aggregate``), key =
  pair_id, members ``lr.png`` (the LR input), ``a.png`` and ``b.png`` (the two candidates) and ``json`` (the
  ``PreferenceRec`` as a dict, its three paths replaced by the member names). The card reads
  ``labelling/ranking.json`` for agreement, QC and the ranking; annotators appear as "annotator 1..N", never by
  e-mail (a public card must not carry personal data).
- ``trainset`` (split ``train``): the curated shards ``shards/<source>/`` (``sr4k curate``), sample by sample (members
  ``hr.png``, ``lr.png``, ``json`` as curated); each source shard's sha256 is checked against its manifest first.
  The card adds the curation account (seen / kept / rejected by reason) when the workspace tables are there.
- ``benchmark`` (split ``test``): ``benchmarks/<source>/`` (``sr4k bench``), checked with
  ``pipelines.bench.sets.verify_benchmark`` first; members ``lr.png``, ``hr.png`` (when the benchmark has HR) and
  ``json`` (the ``BenchItem`` with paths replaced by member names).

A released version is immutable: a second release under the same name and version is refused (bump the version).
The release is built in a hidden sibling ``.<name>-<version>.build-<pid>`` and renamed into place when complete, so a
crash never leaves a partial release under the real name; build folders of dead processes are removed by the next
release. Load a release with ``webdataset.WebDataset(sorted(glob("<dir>/*.tar")))`` or
``datasets.load_dataset("webdataset", data_files={"<split>": "<dir>/*.tar"})``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.release.cards import benchmark_card, front_matter, loading, preferences_card, trainset_card
from pipelines.store import safety
from pipelines.store.shards import ShardWriter
from pipelines.store.workspace import (
    Workspace,
    atomic_open,
    pid_alive,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
)

KINDS = ("preferences", "trainset", "benchmark")
RELEASE_VERSION = "release/1"
_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
_PNG = b"\x89PNG\r\n\x1a\n"


class ReleaseError(ValueError):
    """The release cannot be built from what the workspace holds; the message names the fix."""


@dataclass(slots=True)
class _Source:
    """What a kind contributes: the samples (key, image_key, files, json meta), a fingerprint of the inputs, and the
    card's body and plots (called after the samples were written, with their metas)."""

    split: str
    samples: Iterator[tuple[str, str, dict[str, bytes], dict[str, Any]]]
    fingerprint: str
    source: str
    card: Callable[[list[dict[str, Any]], Path], tuple[str, list[str]]]
    tags: list[str] = field(default_factory=list)


def release(
    workspace: str | Path,
    kind: str,
    name: str,
    version: str,
    *,
    source: str | None = None,
    max_count: int = 1000,
    max_bytes: int = 2 << 30,
) -> dict[str, Any]:
    """Build the release ``<workspace>/releases/<name>-<version>/`` of ``kind`` (module doc). ``source``: the shard
    dataset (trainset) or benchmark name (benchmark); optional when the workspace has exactly one. Returns a summary
    (path, samples, shards, bytes, kind, name, version, source)."""
    if kind not in KINDS:
        raise ReleaseError(f"unknown release kind {kind!r}: choose one of {', '.join(KINDS)}")
    if not safety.is_name(name):
        raise ReleaseError(f"release name {name!r} is not a valid name: use {safety.NAME_RULE}")
    if source is not None and not safety.is_name(source):
        flag = {"trainset": "--dataset", "benchmark": "--bench"}.get(kind, "source")
        raise ReleaseError(f"{flag} {source!r} is not a valid name: use {safety.NAME_RULE}")
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ReleaseError(f"release version {version!r} must look like 1.2.3 (semantic versioning, e.g. 0.1.0)")
    ws = Workspace(workspace)
    if not ws.root.is_dir():
        raise ReleaseError(f"workspace {ws.root} does not exist")
    final = ws.release_dir(name, version)
    if final.exists():
        raise FileExistsError(
            f"release {name}-{version} already exists at {final}; released versions are immutable: "
            "bump --version (e.g. 0.1.1) to publish a new one"
        )
    src = {"preferences": _preferences, "trainset": _trainset, "benchmark": _benchmark}[kind](ws, source)
    _remove_dead_builds(final)
    tmp = final.with_name(f".{final.name}.build-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        summary = _build(tmp, src, kind, name, version, max_count, max_bytes)
        if final.exists():
            raise FileExistsError(
                f"release {name}-{version} appeared at {final} while this one was built; bump --version"
            )
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary | {"path": str(final)}


def _build(tmp: Path, src: _Source, kind: str, name: str, version: str, max_count: int, max_bytes: int) -> dict:
    writer = ShardWriter(tmp, src.split, max_count, max_bytes)
    metas = []
    try:
        for key, image_key, files, meta in src.samples:
            writer.write(key, files, image_key)
            metas.append(meta)
    except BaseException:
        writer.abort()
        raise
    if not metas:
        writer.abort()
        raise ReleaseError(f"nothing to release: the {kind} source {src.source!r} has no samples")
    manifest = writer.finish(name, src.fingerprint[:16])
    _write_index(tmp / "index.parquet", metas)
    (tmp / "plots").mkdir()
    body, plots = src.card(metas, tmp / "plots")
    size = sum(s.bytes for s in manifest.shards)
    head = front_matter(name, version, kind, src.split, len(metas), src.tags)
    intro = (
        f"# {name} {version}\n\nAn sr4k {kind} release: {len(metas):,} samples in {len(manifest.shards)} "
        f"webdataset shard(s), {size / 1e6:,.1f} MB; source `{src.source}`.\n\n"
    )
    write_bytes_atomic(tmp / "README.md", (head + intro + body + loading(src.split)).encode())
    files = {
        p.relative_to(tmp).as_posix(): sha256_file(p)
        for p in sorted(tmp.rglob("*"))
        if p.is_file() and p.name != "manifest.json" and not p.name.endswith(".tar")
    }
    doc = asdict(manifest) | {
        "kind": kind,
        "name": name,
        "version": version,
        "source": src.source,
        "release_version": RELEASE_VERSION,
        "files": files,
        "plots": plots,
    }
    write_json_atomic(tmp / "manifest.json", doc)
    return {
        "kind": kind,
        "name": name,
        "version": version,
        "source": src.source,
        "samples": len(metas),
        "shards": len(manifest.shards),
        "bytes": size,
        "split": src.split,
    }


def _remove_dead_builds(final: Path) -> None:
    for old in final.parent.glob(f".{final.name}.build-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _write_index(path: Path, metas: list[dict[str, Any]]) -> None:
    """ShardWriter's key index, then each sample's JSON fields (nested ones as JSON text) in the same row order."""
    index = pq.read_table(path)
    cols = [c for c in dict.fromkeys(k for m in metas for k in m) if c not in index.column_names]
    flat = [
        {c: (json.dumps(m.get(c), sort_keys=True) if isinstance(m.get(c), dict | list) else m.get(c)) for c in cols}
        for m in metas
    ]
    extra = pa.Table.from_pylist(flat) if cols else None
    if extra is not None:
        for c in extra.column_names:
            index = index.append_column(c, extra.column(c))
    with atomic_open(path) as f:
        pq.write_table(index, f, compression="zstd")


def _json(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True).encode()


# ---------------------------------------------------------------------------------------------------- reading


class _Files:
    """Reads workspace locations: a path (absolute, or relative to the workspace root) or ``<tar>#<member>``.

    Only what lies inside the workspace ships: a path that resolves (links followed) outside the root, or that is
    not a regular file (``pipelines.store.safety``), is refused, and so is a tar member that is not a regular file."""

    def __init__(self, root: Path):
        self.root = root
        self._members: dict[Path, dict[str, tuple[int, int] | str]] = {}

    def read(self, location: str, what: str) -> bytes:
        path, _, member = location.partition("#")
        p = Path(path) if Path(path).is_absolute() else self.root / path
        if location and not safety.within(p, self.root):
            raise ReleaseError(
                f"{what}: {location} lies outside the workspace {self.root}; a release ships only "
                "workspace files: rebuild the pairs/preferences from this workspace"
            )
        if not location or safety.classify(p, self.root).kind != "file":
            raise ReleaseError(
                f"{what}: {location or '(no path)'} is missing; restore the workspace's images (or "
                "rerun `sr4k candidates run` / rebuild the LR set) and run `sr4k aggregate` again"
            )
        if not member:
            return safety.read_capped(p, self.root)
        if p not in self._members:
            with tarfile.open(p) as tf:
                self._members[p] = {
                    m.name: (m.offset_data, m.size) if m.isfile() else _member_kind(m) for m in tf.getmembers()
                }
        if member not in self._members[p]:
            raise ReleaseError(f"{what}: {member} is not in {p}")
        if isinstance(self._members[p][member], str):
            raise ReleaseError(
                f"{what}: tar member {member} of {p} is a {self._members[p][member]}, not a file; "
                "shards hold regular files only: rebuild the set (`sr4k curate`)"
            )
        offset, size = self._members[p][member]
        with open(p, "rb") as f:
            f.seek(offset)
            return f.read(size)


def _member_kind(m: tarfile.TarInfo) -> str:
    if m.issym() or m.islnk():
        return f"link to {m.linkname!r}"
    return "folder" if m.isdir() else "special member"


def _png(data: bytes, what: str) -> bytes:
    if not data.startswith(_PNG):
        raise ReleaseError(f"{what} is not a PNG file; releases carry PNG members (re-encode the source)")
    return data


def _only(candidates: list[str], what: str, flag: str, make: str) -> str:
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ReleaseError(f"no {what} in this workspace: {make} first")
    raise ReleaseError(f"which {what}? pass {flag} (this workspace has: {', '.join(candidates)})")


# ---------------------------------------------------------------------------------------------------- preferences


def _preferences(ws: Workspace, source: str | None) -> _Source:
    parts = sorted(ws.table_dir("preferences").glob("part-*.parquet"))
    ranking_path = ws.ranking
    if not parts or not ranking_path.exists():
        raise ReleaseError(
            f"no aggregated preferences in {ws.root}: run `sr4k aggregate` first (it writes "
            "tables/preferences and labelling/ranking.json)"
        )
    rows = sorted((r for p in parts for r in pq.read_table(p).to_pylist()), key=lambda r: r["pair_id"])
    ranking = json.loads(ranking_path.read_text())
    if ranking["report"]["preferences"] != len(rows):
        raise ReleaseError(
            f"labelling/ranking.json describes {ranking['report']['preferences']} preferences but the "
            f"table holds {len(rows)}: run `sr4k aggregate` again"
        )
    if bad := [r["pair_id"] for r in rows if not safety.is_name(r["pair_id"])]:
        raise ReleaseError(
            f"preference pair_id {bad[0]!r} is not a valid key ({safety.NAME_RULE}); rebuild the pairs "
            "with `sr4k pairs build` and run `sr4k aggregate` again"
        )
    if missing := [r["pair_id"] for r in rows if not r["lr_path"]]:
        raise ReleaseError(
            f"{len(missing)} preference(s) have no LR image (e.g. {missing[0]}): the LR set named in "
            "the candidates table is not in the workspace; rebuild it and run `sr4k aggregate` again"
        )
    digest = hashlib.sha256()
    for p in [*parts, ranking_path]:
        digest.update(sha256_file(p).encode())
    files = _Files(ws.root)

    def samples():
        for r in rows:
            meta = dict(r) | {"lr_path": "lr.png", "path_a": "a.png", "path_b": "b.png"}
            pid = r["pair_id"]
            out = {
                "lr.png": _png(files.read(r["lr_path"], f"pair {pid} LR"), f"pair {pid} LR {r['lr_path']}"),
                "a.png": _png(files.read(r["path_a"], f"pair {pid} A"), f"pair {pid} A {r['path_a']}"),
                "b.png": _png(files.read(r["path_b"], f"pair {pid} B"), f"pair {pid} B {r['path_b']}"),
                "json": _json(meta),
            }
            yield pid, r["lr_key"], out, meta

    return _Source(
        "train",
        samples(),
        digest.hexdigest(),
        "tables/preferences",
        lambda metas, plots: preferences_card(metas, ranking, plots),
        ["preference", "human-feedback", "reward-model"],
    )


# ---------------------------------------------------------------------------------------------------- trainset


def _trainset(ws: Workspace, source: str | None) -> _Source:
    have = sorted(p.parent.name for p in ws.shards.glob("*/manifest.json"))
    source = source or _only(have, "curated shard dataset", "--dataset", "run `sr4k curate`")
    folder = ws.shard_dir(source)
    if not (folder / "manifest.json").exists():
        raise ReleaseError(
            f"no curated shard dataset {source!r} in {ws.root} (have: {', '.join(have) or 'none'}); "
            "run `sr4k curate` first"
        )
    manifest = json.loads((folder / "manifest.json").read_text())
    for s in manifest["shards"]:
        try:
            safety.inside(folder, s["name"], "shard")
        except ValueError as e:
            raise ReleaseError(f"curated set {source!r}: {e}; rerun `sr4k curate` on the same input") from None
        if (
            safety.classify(folder / s["name"], folder).kind != "file"
            or sha256_file(folder / s["name"]) != s["sha256"]
        ):
            raise ReleaseError(
                f"shard {folder / s['name']} is missing or differs from its manifest (sha256): the "
                "curated set is damaged; rerun `sr4k curate` on the same input"
            )
    fingerprint = sha256_file(folder / "manifest.json")

    def samples():
        for s in manifest["shards"]:
            yield from _tar_samples(folder / s["name"])

    account = _curation_account(ws)
    return _Source(
        manifest["split"],
        samples(),
        fingerprint,
        f"shards/{source}",
        lambda metas, plots: trainset_card(metas, account, plots),
        ["training-data"],
    )


def _tar_samples(path: Path) -> Iterator[tuple[str, str, dict[str, bytes], dict[str, Any]]]:
    """Samples of one webdataset tar, in order: members grouped by the key before the first dot."""
    key, files = None, {}
    with tarfile.open(path) as tf:
        for m in tf:
            if not m.isfile():
                raise ReleaseError(
                    f"shard {path}: member {m.name} is a {_member_kind(m)}, not a file; shards hold "
                    "regular files only: rebuild the set (`sr4k curate`)"
                )
            k, _, ext = m.name.partition(".")
            if not safety.is_name(k):
                raise ReleaseError(
                    f"shard {path}: member {m.name!r} has no valid key ({safety.NAME_RULE}); rebuild "
                    "the set (`sr4k curate`)"
                )
            if key is not None and k != key:
                yield _sample(key, files)
                files = {}
            key = k
            files[ext] = tf.extractfile(m).read()
    if key is not None:
        yield _sample(key, files)


def _sample(key: str, files: dict[str, bytes]) -> tuple[str, str, dict[str, bytes], dict[str, Any]]:
    meta = json.loads(files["json"]) if "json" in files else {}
    return key, str(meta.get("image_key", "")), files, meta


def _curation_account(ws: Workspace) -> dict[str, Any] | None:
    """seen / kept / rejected by reason from the curation tables, when present."""
    from pipelines.store import catalog

    if not ws.table_dir("sources").is_dir():
        return None
    con = catalog.connect(ws.root)
    try:
        seen = con.execute("select count(distinct uri) from sources").fetchone()[0]
        kept = con.execute("select count(distinct uri) from samples").fetchone()[0]
        reasons = con.execute("select stage || ':' || reason, count(*) from rejects group by 1 order by 2 desc, 1")
        return {"seen": seen, "kept": kept, "rejected_by_reason": dict(reasons.fetchall())}
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------------- benchmark


def _benchmark(ws: Workspace, source: str | None) -> _Source:
    from pipelines.bench.sets import read_index

    have = sorted(p.parent.name for p in ws.benchmarks.glob("*/manifest.json"))
    source = source or _only(have, "benchmark", "--bench", "run `sr4k bench build` or `sr4k bench import`")
    folder = ws.bench_dir(source)
    if not (folder / "manifest.json").exists():
        raise ReleaseError(
            f"no benchmark {source!r} in {ws.root} (have: {', '.join(have) or 'none'}); build it "
            "with `sr4k bench build` or `sr4k bench import`"
        )
    try:  # keys, paths inside the folder and listed in the verified manifest (pipelines.bench.sets.read_index)
        bench, rows = read_index(folder)
    except ValueError as e:
        raise ReleaseError(str(e)) from None

    def samples():
        for r in rows:
            files = {"lr.png": _png(safety.read_capped(folder / r["lr_path"], folder), f"{source}/{r['lr_path']}")}
            meta = dict(r) | {"lr_path": "lr.png", "hr_path": None, "bench": source, "bench_kind": bench["kind"]}
            if r["hr_path"]:
                files["hr.png"] = _png(safety.read_capped(folder / r["hr_path"], folder), f"{source}/{r['hr_path']}")
                meta["hr_path"] = "hr.png"
            files["json"] = _json(meta)
            yield r["key"], r["image_key"], files, meta

    return _Source(
        "test",
        samples(),
        sha256_file(folder / "manifest.json"),
        f"benchmarks/{source}",
        lambda metas, plots: benchmark_card(metas, bench, plots),
        ["benchmark"],
    )
