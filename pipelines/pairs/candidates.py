"""Candidate runs: every model over every LR image of a set, cached, resumable, content-addressed.

An LR set is a benchmark in the workspace (``benchmarks/<name>/index.parquet``) or a shard dataset
(``shards/<name>/*.tar``, its ``lr.png`` members). Work is split into units of (model, model version, chunk of LR
keys); a unit writes each output as ``images/<sha256[:2]>/<sha256>.png`` (content-addressed: identical outputs are
stored once), then its rows to ``tables/candidates/part-<unit>.parquet``, then its completion marker. So:

- the cache key is (model version, LR key): a rerun with the same models does nothing (no model call);
- a new weights file changes the model version, hence the unit names, and only that model reruns;
- a run killed mid-way redoes only its unfinished units (finished outputs are content-addressed, so a redone unit
  rewrites identical files, never duplicates).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipelines.models.upscalers import Upscaler, timed_upscale
from pipelines.store import safety
from pipelines.store.workspace import Workspace, encode_png, write_bytes_atomic, write_json_atomic, write_table
from schemas.bench import CANDIDATES, CandidateRec

CANDIDATES_VERSION = "candidates/1"


@dataclass(slots=True)
class LrItem:
    key: str
    load: Callable[[], np.ndarray]  # RGB uint8


def lr_items(ws: Workspace, lr_set: str) -> list[LrItem]:
    """The LR images of a benchmark or shard dataset, sorted by key; a clear error when neither exists."""
    bench = ws.bench_dir(lr_set)
    if (bench / "index.parquet").exists():
        from pipelines.bench.sets import (
            index_rows,  # keys and lr_paths checked to stay inside the benchmark (issue 13)
        )

        return [LrItem(r["key"], _file_loader(bench / r["lr_path"])) for r in index_rows(bench)]
    shards = sorted((ws.shard_dir(lr_set)).glob("*.tar"))
    if shards:
        return [LrItem(key, loader) for key, loader in sorted(_shard_lrs(shards), key=lambda x: x[0])]
    have = sorted(
        {p.parent.name for p in ws.benchmarks.glob("*/index.parquet")}
        | {p.parent.name for p in ws.shards.glob("*/manifest.json")}
    )
    raise ValueError(f"no benchmark or shard set {lr_set!r} in {ws.root} (have: {', '.join(have) or 'none'})")


def check_output_sizes(ws: Workspace, lr_set: str, scale: int) -> None:
    """Refuse, before any model runs, a benchmark LR whose output (LR x scale^2) would exceed
    ``bench.sets.MAX_SR_PIXELS`` (sizes from the verified index; curated shard LRs are bounded by curation's crop).
    The message names the LR, the set and the fix, on one line."""
    from pipelines.bench.sets import read_index, sr_output_too_large

    bench = ws.bench_dir(lr_set)
    if not (bench / "index.parquet").exists():
        return
    _, rows = read_index(bench)
    for r in rows:
        if too_big := sr_output_too_large(int(r["lr_width"]), int(r["lr_height"]), scale):
            fix = "re-import the set with --square N (or a smaller --scale)"
            raise ValueError(f"LR {r['key']} of {lr_set}: {too_big}; {fix}")


def run_keys(ws: Workspace, lr_set: str, scale: int) -> list[str]:
    """The LR keys a candidate run over ``lr_set`` at ``scale`` covers, after the checks that need no model: the
    set's name (``--lr``), that the set exists, and the output sizes (:func:`check_output_sizes`)."""
    safety.check_name(lr_set, "--lr")
    keys = [it.key for it in lr_items(ws, lr_set)]
    check_output_sizes(ws, lr_set, scale)
    return keys


def plan_run(
    ws: Workspace, lr_set: str, keys: list[str], models: dict[str, Upscaler], unit_size: int = 8
) -> tuple[list[tuple[str, CandUnit]], list[tuple[str, CandUnit]]]:
    """Every (model spec, unit) of a run of ``models`` (spec -> upscaler) over ``keys``, and those still to do
    (no completion marker: a rerun submits only these)."""
    plan = [(spec, u) for spec, up in models.items() for u in plan_units(lr_set, keys, up, unit_size)]
    return plan, [(spec, u) for spec, u in plan if not unit_done(ws, u)]


def _file_loader(path: Path) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"LR image {path} is missing or unreadable")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    return load


def _shard_lrs(shards: list[Path]) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    for shard in shards:
        with tarfile.open(shard) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".lr.png") and not m.isfile():  # a link member would reach OpenCV as empty bytes
                    raise ValueError(
                        f"shard {shard}: member {m.name} is not a regular file (a link or folder); "
                        "rebuild the shard set with `sr4k curate`"
                    )
                if m.name.endswith(".lr.png"):
                    yield m.name.split(".", 1)[0], _member_loader(shard, m.offset_data, m.size)


def _member_loader(path: Path, offset: int, size: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        with open(path, "rb") as f:
            f.seek(offset)
            buf = np.frombuffer(f.read(size), np.uint8)
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    return load


@dataclass(slots=True)
class CandUnit:
    name: str
    model: str
    keys: list[str]


def plan_units(lr_set: str, keys: list[str], model: Upscaler, unit_size: int = 8) -> list[CandUnit]:
    """Units named by (LR set, model, model version, member keys): any change gives new names, so stale caches are
    never mistaken for current ones."""
    units = []
    for i in range(0, len(keys), unit_size):
        chunk = keys[i : i + unit_size]
        ident = json.dumps([lr_set, model.name, model.version, chunk])
        units.append(CandUnit(f"{model.name}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}", model.name, chunk))
    return units


def unit_done(ws: Workspace, unit: CandUnit) -> bool:
    return ws.marker(f"cand-{unit.name}").exists()


def run_unit(ws: Workspace, lr_set: str, unit: CandUnit, model: Upscaler, items: dict[str, LrItem]) -> int:
    """Run ``model`` on the unit's LR images; write outputs, the table part, the marker. Returns images written."""
    rows = []
    for key in unit.keys:
        lr = items[key].load()
        sr, seconds, peak_mb = timed_upscale(model, lr)
        png = encode_png(sr, 3)
        sha = hashlib.sha256(png).hexdigest()
        rel = f"images/{sha[:2]}/{sha}.png"
        if not (ws.root / rel).exists():
            write_bytes_atomic(ws.root / rel, png)
        rows.append(
            CandidateRec(
                lr_set, key, model.name, model.version, rel, sha, sr.shape[1], sr.shape[0], seconds, peak_mb, unit.name
            )
        )
    write_table(ws.part("candidates", unit.name), rows, CANDIDATES)
    write_json_atomic(ws.marker(f"cand-{unit.name}"), {"unit": unit.name, "images": len(rows)})
    return len(rows)
