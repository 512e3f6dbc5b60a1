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
import io
import json
import os
import re
import shutil
import statistics
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

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
from schemas.labels import CRITERIA

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


def release(workspace: str | Path, kind: str, name: str, version: str, *, source: str | None = None,
            max_count: int = 1000, max_bytes: int = 2 << 30) -> dict[str, Any]:  # fmt: skip
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
        raise FileExistsError(f"release {name}-{version} already exists at {final}; released versions are immutable: "
                              "bump --version (e.g. 0.1.1) to publish a new one")  # fmt: skip
    src = {"preferences": _preferences, "trainset": _trainset, "benchmark": _benchmark}[kind](ws, source)
    _remove_dead_builds(final)
    tmp = final.with_name(f".{final.name}.build-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        summary = _build(tmp, src, kind, name, version, max_count, max_bytes)
        if final.exists():
            raise FileExistsError(f"release {name}-{version} appeared at {final} while this one was built; bump "
                                  "--version")  # fmt: skip
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
    head = _front_matter(name, version, kind, src.split, len(metas), src.tags)
    intro = (f"# {name} {version}\n\nAn sr4k {kind} release: {len(metas):,} samples in {len(manifest.shards)} "
             f"webdataset shard(s), {size / 1e6:,.1f} MB; source `{src.source}`.\n\n")  # fmt: skip
    write_bytes_atomic(tmp / "README.md", (head + intro + body + _loading(src.split)).encode())
    files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
             and p.name != "manifest.json" and not p.name.endswith(".tar")}  # fmt: skip
    doc = asdict(manifest) | {"kind": kind, "name": name, "version": version, "source": src.source,
                              "release_version": RELEASE_VERSION, "files": files, "plots": plots}  # fmt: skip
    write_json_atomic(tmp / "manifest.json", doc)
    return {"kind": kind, "name": name, "version": version, "source": src.source, "samples": len(metas),
            "shards": len(manifest.shards), "bytes": size, "split": src.split}  # fmt: skip


def _remove_dead_builds(final: Path) -> None:
    for old in final.parent.glob(f".{final.name}.build-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _write_index(path: Path, metas: list[dict[str, Any]]) -> None:
    """ShardWriter's key index, then each sample's JSON fields (nested ones as JSON text) in the same row order."""
    index = pq.read_table(path)
    cols = [c for c in dict.fromkeys(k for m in metas for k in m) if c not in index.column_names]
    flat = [{c: (json.dumps(m.get(c), sort_keys=True) if isinstance(m.get(c), dict | list) else m.get(c))
             for c in cols} for m in metas]  # fmt: skip
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
            raise ReleaseError(f"{what}: {location} lies outside the workspace {self.root}; a release ships only "
                               "workspace files: rebuild the pairs/preferences from this workspace")  # fmt: skip
        if not location or safety.classify(p, self.root).kind != "file":
            raise ReleaseError(
                f"{what}: {location or '(no path)'} is missing; restore the workspace's images (or "
                "rerun `sr4k candidates run` / rebuild the LR set) and run `sr4k aggregate` again"
            )
        if not member:
            return safety.read_capped(p, self.root)
        if p not in self._members:
            with tarfile.open(p) as tf:
                self._members[p] = {m.name: (m.offset_data, m.size) if m.isfile() else _member_kind(m)
                                    for m in tf.getmembers()}  # fmt: skip
        if member not in self._members[p]:
            raise ReleaseError(f"{what}: {member} is not in {p}")
        if isinstance(self._members[p][member], str):
            raise ReleaseError(f"{what}: tar member {member} of {p} is a {self._members[p][member]}, not a file; "
                               "shards hold regular files only: rebuild the set (`sr4k curate`)")  # fmt: skip
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
        raise ReleaseError(f"no aggregated preferences in {ws.root}: run `sr4k aggregate` first (it writes "
                           "tables/preferences and labelling/ranking.json)")  # fmt: skip
    rows = sorted((r for p in parts for r in pq.read_table(p).to_pylist()), key=lambda r: r["pair_id"])
    ranking = json.loads(ranking_path.read_text())
    if ranking["report"]["preferences"] != len(rows):
        raise ReleaseError(f"labelling/ranking.json describes {ranking['report']['preferences']} preferences but the "
                           f"table holds {len(rows)}: run `sr4k aggregate` again")  # fmt: skip
    if bad := [r["pair_id"] for r in rows if not safety.is_name(r["pair_id"])]:
        raise ReleaseError(f"preference pair_id {bad[0]!r} is not a valid key ({safety.NAME_RULE}); rebuild the pairs "
                           "with `sr4k pairs build` and run `sr4k aggregate` again")  # fmt: skip
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
            out = {"lr.png": _png(files.read(r["lr_path"], f"pair {pid} LR"), f"pair {pid} LR {r['lr_path']}"),
                   "a.png": _png(files.read(r["path_a"], f"pair {pid} A"), f"pair {pid} A {r['path_a']}"),
                   "b.png": _png(files.read(r["path_b"], f"pair {pid} B"), f"pair {pid} B {r['path_b']}"),
                   "json": _json(meta)}  # fmt: skip
            yield pid, r["lr_key"], out, meta

    return _Source("train", samples(), digest.hexdigest(), "tables/preferences",
                   lambda metas, plots: _preferences_card(metas, ranking, plots),
                   ["preference", "human-feedback", "reward-model"])  # fmt: skip


# ---------------------------------------------------------------------------------------------------- trainset


def _trainset(ws: Workspace, source: str | None) -> _Source:
    have = sorted(p.parent.name for p in ws.shards.glob("*/manifest.json"))
    source = source or _only(have, "curated shard dataset", "--dataset", "run `sr4k curate`")
    folder = ws.shard_dir(source)
    if not (folder / "manifest.json").exists():
        raise ReleaseError(f"no curated shard dataset {source!r} in {ws.root} (have: {', '.join(have) or 'none'}); "
                           "run `sr4k curate` first")  # fmt: skip
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
            raise ReleaseError(f"shard {folder / s['name']} is missing or differs from its manifest (sha256): the "
                               "curated set is damaged; rerun `sr4k curate` on the same input")  # fmt: skip
    fingerprint = sha256_file(folder / "manifest.json")

    def samples():
        for s in manifest["shards"]:
            yield from _tar_samples(folder / s["name"])

    account = _curation_account(ws)
    return _Source(manifest["split"], samples(), fingerprint, f"shards/{source}",
                   lambda metas, plots: _trainset_card(metas, account, plots), ["training-data"])  # fmt: skip


def _tar_samples(path: Path) -> Iterator[tuple[str, str, dict[str, bytes], dict[str, Any]]]:
    """Samples of one webdataset tar, in order: members grouped by the key before the first dot."""
    key, files = None, {}
    with tarfile.open(path) as tf:
        for m in tf:
            if not m.isfile():
                raise ReleaseError(f"shard {path}: member {m.name} is a {_member_kind(m)}, not a file; shards hold "
                                   "regular files only: rebuild the set (`sr4k curate`)")  # fmt: skip
            k, _, ext = m.name.partition(".")
            if not safety.is_name(k):
                raise ReleaseError(f"shard {path}: member {m.name!r} has no valid key ({safety.NAME_RULE}); rebuild "
                                   "the set (`sr4k curate`)")  # fmt: skip
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
        raise ReleaseError(f"no benchmark {source!r} in {ws.root} (have: {', '.join(have) or 'none'}); build it "
                           "with `sr4k bench build` or `sr4k bench import`")  # fmt: skip
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

    return _Source("test", samples(), sha256_file(folder / "manifest.json"), f"benchmarks/{source}",
                   lambda metas, plots: _benchmark_card(metas, bench, plots), ["benchmark"])  # fmt: skip


# ---------------------------------------------------------------------------------------------------- card frame


def _size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return label
    return "1M<n<10M"


def _front_matter(name: str, version: str, kind: str, split: str, n: int, tags: list[str]) -> str:
    tag_lines = "".join(f"- {t}\n" for t in ["super-resolution", "4k", "sr4k", *tags])
    return (f"---\npretty_name: {name} {version}\ntask_categories:\n- image-to-image\ntags:\n{tag_lines}"
            f"size_categories:\n- {_size_category(n)}\nconfigs:\n- config_name: default\n  data_files:\n"
            f"  - split: {split}\n    path: \"{split}-*.tar\"\n---\n\n")  # fmt: skip


def _loading(split: str) -> str:
    return f"""
## Loading

```python
import glob, webdataset as wds
ds = wds.WebDataset(sorted(glob.glob("{split}-*.tar")), shardshuffle=False).decode("pil")

import datasets  # Hugging Face
ds = datasets.load_dataset("webdataset", data_files={{"{split}": "{split}-*.tar"}}, split="{split}")
```

`manifest.json` lists every shard with its sha256 (check with `sha256sum`); `index.parquet` has one row per sample
(key, shard, and the sample's JSON fields): `duckdb -c "select * from 'index.parquet' limit 5"`.
"""


# ---------------------------------------------------------------------------------------------------- card bodies


def _md(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v).replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _figure(width: float = 6.0, height: float = 3.5):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, plots: Path, name: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version stamp: rebuilds are byte-identical
    write_bytes_atomic(plots / name, buf.getvalue())
    return f"plots/{name}"


def _preferences_card(metas: list[dict[str, Any]], ranking: dict[str, Any], plots: Path) -> tuple[str, list[str]]:
    qc, report, agreement = ranking["qc"], ranking["report"], ranking["agreement"]
    people = sorted(qc["annotators"])
    alias = {who: f"annotator {k}" for k, who in enumerate(people, 1)}
    kept = [w for w in people if not qc["annotators"][w]["excluded"]]
    models = sorted({m for r in metas for m in (r["model_a"], r["model_b"])})
    body = ["## Contents\n\n", _md(["what", "count"], [
        ["pairs (samples)", len(metas)], ["LR images", len({r["lr_key"] for r in metas})], ["models", len(models)],
        ["annotators (kept / excluded)", f"{len(kept)} / {len(people) - len(kept)}"],
        ["votes used", report["used"]], ["invalid annotations (not used)", report["invalid"]],
        ["votes of excluded annotators (not used)", report["excluded_annotator_votes"]],
        ["pairs annotated but without a vote on every criterion", sum(report["pairs_without_vote_on"].values())],
        ["gold pairs", report["gold_pairs"]],
    ])]  # fmt: skip
    body += ["\n## Labels\n\n", "Labels are in candidate terms: `a` = the output of `model_a` is better, `b` = "
             "`model_b`, `tie` = neither (the on-screen side was randomised and is mapped back).\n\n"]  # fmt: skip
    lab = {c: Counter(r[c] for r in metas) for c in CRITERIA}
    body.append(_md(["criterion", "a", "b", "tie"], [[c, lab[c]["a"], lab[c]["b"], lab[c]["tie"]] for c in CRITERIA]))
    kappas = {c: [v[c] for v in qc["kappa"].values() if v.get(c) is not None] for c in CRITERIA}
    body += ["\n## Agreement\n\n", _md(
        ["criterion", "Krippendorff α (all)", "α (kept)", "mean pair agreement", "unanimous pairs",
         "mean DS posterior", "Cohen κ median [min, max]"],
        [[c, qc["alpha"][c], qc["alpha_kept"][c], agreement[c]["mean_agreement"], agreement[c]["unanimous_share"],
          agreement[c]["mean_ds_posterior"],
          f"{statistics.median(kappas[c]):.3f} [{min(kappas[c]):.3f}, {max(kappas[c]):.3f}]" if kappas[c] else None]
         for c in CRITERIA],
    )]  # fmt: skip
    names = [_agreement_plot(metas, plots), _labels_plot(lab, plots)]
    body.append(f"\n![per-pair agreement]({names[0]})\n![labels]({names[1]})\n")
    body.append(
        "\n## Model ranking (Bradley–Terry)\n\nOne comparison per labelled pair (ties are dropped: BT has "
        "no tie outcome); θ from `choix.ilsr_pairwise` (α = {a}), 95 % interval θ ± 1.96 × bootstrap std "
        "({b} resamples of the pairs).\n".format(a=report["bt"]["alpha"], b=report["bt"]["bootstrap"])
    )
    for c in CRITERIA:
        rows = ranking["rankings"][c]
        table = [[r["rank"], r["model"], r["theta"], _ci(r), r["wins"], r["losses"], r["ties"]] for r in rows]
        body += [f"\n### {c}\n\n", _md(["rank", "model", "θ", "95 % CI", "wins", "losses", "ties"], table)]
        names.append(_ranking_plot(c, rows, plots))
        body.append(f"\n![{c} ranking]({names[-1]})\n")
    body += ["\n## Annotators (pseudonymised)\n\n", _md(
        ["annotator", "annotations", "gold judgements", "gold accuracy", "left share", "fast share", "excluded",
         "reason"],
        [[alias[w], s["n"], s["gold_n"], s["gold_accuracy"], s["left_share"], s["fast_share"],
          "yes" if s["excluded"] else "no", s["reason"]] for w, s in ((w, qc["annotators"][w]) for w in people)],
    )]  # fmt: skip
    pol = qc["policy"]
    body.append(
        "\n## How the labels were made\n\nAnnotators compared two SR outputs of the same LR image (shown with it) "
        "on two criteria: *consistency* (is the output faithful to the LR input?) and *naturalness* (does it look "
        "like a real high-resolution photograph?). Per pair and criterion the label is the strict plurality of the "
        "votes; without one it is `tie`. `<criterion>_agreement` is the share of votes equal to the label; "
        f"`<criterion>_ds` the Dawid–Skene posterior of the label (crowd-kit, {report['ds']['n_iter']} iterations, "
        f"tol {report['ds']['tol']}). Annotators were excluded when their gold accuracy was below "
        f"{pol['min_gold_accuracy']} (after {pol['min_gold']} gold judgements), their share of left choices was "
        f"outside 0.5 ± {pol['max_left_deviation']} (after {pol['min_decisive']} decisive answers), or more than "
        f"{pol['max_fast_share']:.0%} of their answers took under {pol['fast_seconds']} s; the labels were then "
        "recomputed without them.\n"
    )
    body.append(
        "\n## Fields\n\nEach sample: `lr.png`, `a.png`, `b.png` and `json` with pair_id, lr_key, model_a, "
        "model_b, version_a, version_b, and per criterion the label, votes_a / votes_b / votes_tie, agreement "
        "and ds; n_annotators, both_unusable_votes (votes saying both outputs are unusable).\n"
    )
    return "".join(body), names


def _ci(r: dict[str, Any]) -> str:
    if r["ci_low"] is None or r["ci_high"] is None:
        return "–"
    return f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def _ranking_plot(criterion: str, rows: list[dict[str, Any]], plots: Path) -> str:
    rows = [r for r in rows if r["ci_low"] is not None and r["ci_high"] is not None]
    fig = _figure(6, 0.4 * len(rows) + 1.2)
    ax = fig.add_subplot()
    y = list(range(len(rows)))[::-1]
    theta = [r["theta"] for r in rows]
    err = [[r["theta"] - r["ci_low"] for r in rows], [r["ci_high"] - r["theta"] for r in rows]]
    ax.errorbar(theta, y, xerr=err, fmt="o", capsize=3)
    ax.set_yticks(y, [r["model"] for r in rows])
    ax.set_xlabel("Bradley–Terry θ (95 % CI)")
    ax.set_title(f"{criterion}: model ranking")
    return _save(fig, plots, f"ranking_{criterion}.png")


def _labels_plot(lab: dict[str, Counter], plots: Path) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    for k, v in enumerate(("a", "b", "tie")):
        ax.bar([i + 0.27 * (k - 1) for i in range(len(CRITERIA))], [lab[c][v] for c in CRITERIA], 0.27, label=v)
    ax.set_xticks(range(len(CRITERIA)), list(CRITERIA))
    ax.set_ylabel("pairs")
    ax.legend(title="label")
    return _save(fig, plots, "labels.png")


def _agreement_plot(metas: list[dict[str, Any]], plots: Path) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist([[r[f"{c}_agreement"] for r in metas] for c in CRITERIA], bins=10, range=(0, 1), label=list(CRITERIA))
    ax.set_xlabel("share of votes equal to the pair's label")
    ax.set_ylabel("pairs")
    ax.legend()
    return _save(fig, plots, "agreement.png")


def _hist(values: list[float], xlabel: str, plots: Path, name: str) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(values, bins=min(30, max(5, len(values) // 3)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    return _save(fig, plots, name)


def _trainset_card(metas: list[dict[str, Any]], account: dict[str, Any] | None,
                   plots: Path) -> tuple[str, list[str]]:  # fmt: skip
    hr = Counter(f"{m.get('hr_width')}x{m.get('hr_height')}" for m in metas)
    lr = Counter(f"{m.get('lr_width')}x{m.get('lr_height')}" for m in metas)
    body = ["## Contents\n\nEach sample: `hr.png` (an HR crop of a curated photograph), `lr.png` (its synthetic "
            "degradation; every sampled parameter and the seed are in `json`) and `json` (provenance: source URI and "
            "sha256, crop box, degradation, step versions).\n\n", _md(["what", "count"], [
                ["samples (HR/LR pairs)", len(metas)], ["source images", len({m.get("image_key") for m in metas})],
                ["scale", ", ".join(str(s) for s in sorted({m.get("scale") for m in metas}))],
                *[[f"HR {k}", v] for k, v in sorted(hr.items())], *[[f"LR {k}", v] for k, v in sorted(lr.items())],
            ])]  # fmt: skip
    names = []
    scores = [float(m["detail_score"]) for m in metas if m.get("detail_score") is not None]
    if scores:
        names.append(_hist(scores, "crop detail score", plots, "detail_score.png"))
        body.append(f"\n![detail score]({names[-1]})\n")
    if account:
        body += [
            "\n## Curation account\n\nEvery input was kept or rejected with a reason: "
            f"seen {account['seen']}, kept {account['kept']}.\n\n",
            _md(["stage:reason", "rejected"], [[k, v] for k, v in account["rejected_by_reason"].items()]),
        ]
        if account["rejected_by_reason"]:
            fig = _figure()
            ax = fig.add_subplot()
            items = list(account["rejected_by_reason"].items())
            ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1])
            ax.set_xlabel("inputs rejected")
            names.append(_save(fig, plots, "rejects.png"))
            body.append(f"\n![rejects]({names[-1]})\n")
    return "".join(body), names


def _benchmark_card(metas: list[dict[str, Any]], bench: dict[str, Any], plots: Path) -> tuple[str, list[str]]:
    with_hr = sum(1 for m in metas if m.get("hr_path"))
    body = [
        f"## Contents\n\nBenchmark `{bench.get('name')}` of kind `{bench.get('kind')}` (scale "
        f"{bench.get('scale')}). Each sample: `lr.png`, `hr.png` when the benchmark has ground truth, and `json` "
        "(the index row: sizes, scale, seed and degradation parameters for synthetic items, source).\n\n",
        _md(
            ["what", "count"],
            [
                ["items", len(metas)],
                ["with HR", with_hr],
                ["distinct LR sizes", len({(m["lr_width"], m["lr_height"]) for m in metas})],
            ],
        ),
    ]
    fig = _figure(4.5, 4)
    ax = fig.add_subplot()
    ax.scatter([m["lr_width"] for m in metas], [m["lr_height"] for m in metas])
    ax.set_xlabel("LR width (px)")
    ax.set_ylabel("LR height (px)")
    ax.set_title("LR sizes")
    names = [_save(fig, plots, "lr_sizes.png")]
    body.append(f"\n![LR sizes]({names[0]})\n")
    return "".join(body), names
