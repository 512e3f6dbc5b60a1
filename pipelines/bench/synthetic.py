"""Synthetic benchmarks: HR crops of real 4K sources (a workspace's held-out images, or a folder) and their LR made by
the training degradation with a seed space disjoint from training's (``pipelines.bench.sets`` module doc: layout,
determinism, atomicity, keys, seeds)."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.bench.sets import (
    _NOT_IMAGE_REASONS,
    PNG_LEVEL,
    BenchmarkError,
    _building,
    _check_name,
    _check_scale,
    _existing_dir,
    _list_dir,
    _manifest,
    _Out,
    _unique_key,
    _versions,
    bench_base_seed,
    sanitize_key,
)
from pipelines.curate.build import TOKEN_STRIDE
from pipelines.curate.crop import choose_crops
from pipelines.curate.decode import decode_image
from pipelines.curate.degrade import DegradeSettings, degrade, seed_for
from pipelines.curate.ingest import read_source
from pipelines.curate.split import holdout_split
from pipelines.store import catalog, safety
from schemas.bench import BENCH_INDEX, BenchItem
from schemas.records import Rejection

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
            "source": origin,
            "count_requested": count,
            "hr_size": [w, h],
            "seed": seed,
            "base_seed": base_seed,
            "holdout_permille": holdout_permille if origin == "workspace" else None,
            "png_level": PNG_LEVEL,
            "degrade": asdict(settings),
            "versions": _versions(),
        }
        manifest = _manifest(name, "synthetic", scale, len(items), src_path, settings_json)
        manifest["skipped"] = skipped
        out.publish(manifest)
    return {
        "name": name,
        "kind": "synthetic",
        "path": str(out.final),
        "count": len(items),
        "requested": count,
        "scale": scale,
        "base_seed": base_seed,
        "source": origin,
        "skipped": skipped,
    }


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
        raise ValueError(
            f"the workspace {root} has no decoded images (tables/images is empty): run `sr4k curate` "
            f"on it first or pass a folder of HR images"
        )
    held = [(k, uri) for k, uri in rows if holdout_split(k, permille)]
    skipped = [
        {"source": uri, "key": k, "reason": "in_training", "detail": "shipped in tables/samples"}
        for k, uri in held
        if k in shipped
    ]
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
    cands: list[_Candidate],
    out: _Out,
    count: int,
    size: tuple[int, int],
    scale: int,
    base_seed: int,
    settings: DegradeSettings,
    skipped: list[dict],
) -> list[BenchItem]:
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
    cand: _Candidate,
    out: _Out,
    size: tuple[int, int],
    scale: int,
    base_seed: int,
    settings: DegradeSettings,
    seen_pixels: dict[str, str],
) -> BenchItem | tuple[str, str]:
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
        cand.key,
        f"lr/{cand.key}.png",
        f"hr/{cand.key}.png",
        lr.shape[1],
        lr.shape[0],
        hr.shape[1],
        hr.shape[0],
        scale,
        item_seed,
        json.dumps(params, sort_keys=True),
        cand.uri,
        image_key,
    )
