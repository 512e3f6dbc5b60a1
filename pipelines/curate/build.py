"""The curation steps, without an orchestrator: plan units → build each unit → dedup → pack shards → summary.

1. ``plan`` lists the input and splits it into deterministic units (pipelines.curate.ingest).
2. ``build_unit`` runs read → decode → measure/filter → hash → crop → degrade → PNG-encode for one unit and writes,
   each atomically: the unit's staged samples (``staging/<unit>.tar``), its table parts (sources, images, rejects,
   staged_samples), thumbnails, and last its completion marker. A unit whose marker exists with the same config
   hash is skipped on rerun; a unit without one is rebuilt from scratch, overwriting its parts (no duplicates).
   The HR PNG of a sample is encoded on a second thread while its degradation runs (``overlap_encode``, ``_encoder``).
3. ``dedup`` needs every image of the run, so it runs after all units, on the images table (hashes) and the 256-px
   thumbnails (crop-aware matching, pipelines.curate.dedup); no source is decoded again.
   Duplicates become rejects (stage ``dedup``) in ``tables/rejects/part-dedup.parquet``.
4. ``holdout`` keeps benchmark images out of training (pipelines.curate.split): rejects of stage ``split``.
5. ``pack`` copies the staged samples of the kept images, sorted by sample key (a content hash, so the order is a
   fixed pseudo-random shuffle), into size/count-limited shards, and writes the final ``samples`` table; then the
   staging tars are removed (a rerun reads shipped samples back from the shards; ``units_to_restage``).
   Building before dedup means near and crop duplicates cost a build each (exact copies only a decode, see
   ``claim_pixels``), but every source is decoded exactly once.

The account ``seen = kept + rejected`` is checked by ``summarize`` at the end of every run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tarfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pyarrow.parquet as pq
import webdataset as wds
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.curate.crop import CROP_VERSION, choose_crops
from pipelines.curate.decode import DECODE_VERSION, Decoded, DecodeSettings, decode_image
from pipelines.curate.dedup import DEDUP_VERSION, DedupItem, MatchView, find_duplicates, small_gray
from pipelines.curate.degrade import DEGRADE_VERSION, DegradeSettings, degrade, seed_for
from pipelines.curate.filters import FILTERS_VERSION, FilterSettings, judge, measure, upscale_estimate
from pipelines.curate.ingest import Listing, Unit, list_inputs, read_source, split_units
from pipelines.curate.photo import PHOTO2, PHOTO3
from pipelines.curate.split import holdout_split
from pipelines.store import catalog
from pipelines.store.shards import FIXED_MTIME, ShardWriter
from pipelines.store.workspace import (
    Workspace,
    atomic_open,
    encode_png,
    write_content_addressed,
    write_json_atomic,
    write_table,
)
from schemas.records import (
    IMAGES,
    REJECTS,
    SAMPLES,
    SOURCES,
    ImageRec,
    Rejection,
    RejectRec,
    SampleRec,
    SourceRec,
)

TOKEN_STRIDE = 32  # OP4KSR: F16 VAE x 2x2 token packing; HR sides must be multiples so the latent grid is whole


class CurateConfig(BaseModel):
    """Settings of ``sr4k curate`` (YAML via ``--config``, CLI flags override). Defaults are for a 4K training set.

    Default HR crop 3840x2144: the largest UHD-wide crop whose sides are multiples of 32 (OP4KSR's token stride)
    that a UHD 3840x2160 source yields (2160 = 67.5 x 32, so 2144 = 67 x 32). UHD, DCI 4096x2160, 5K 5120x2880 and
    3:2 6K photos (6000x4000) all produce it, while a 4096 square needs a short side >= 4096, which few photos have.
    LR at scale 4 is 960x536. Portrait sources narrower than 3840 are rejected ``smaller_than_crop`` with the size
    they do fit (e.g. 2144x3840): curate a portrait set with that ``hr_size``, or pass ``4096`` for a square set.
    """

    model_config = ConfigDict(extra="forbid")

    hr_size: tuple[int, int] = Field(
        (3840, 2144), description="HR crop (width, height); '3840x2144' (UHD, the default) or '4096' (square)"
    )
    scale: int = Field(4, description="SR scale factor; LR = HR / scale exactly")
    crops_per_image: int = Field(1, ge=1, description="crops per source image, most detailed first")
    crop_max_overlap: float = Field(0.25, ge=0, le=1, description="max IoU between crops of one image")
    seed: int = Field(0, description="base seed of the degradation; each sample's seed derives from its key")
    dataset: str = Field("train4k", pattern=r"^[A-Za-z0-9_-]+$", description="shard folder name under shards/")
    unit_size: int = Field(8, ge=1, description="sources per work unit (the resume granularity)")
    shard_max_count: int = Field(1000, ge=1, description="samples per shard at most")
    shard_max_bytes: int = Field(2 << 30, ge=1, description="bytes per shard at most (one bigger sample still fits)")
    holdout_permille: int = Field(
        10, ge=0, le=1000, description="per-mille of images held out of training for benchmarks (curate.split)"
    )
    near_dup_max_distance: int = Field(
        6, ge=-1, le=15, description="phash Hamming distance for near-duplicates; -1 off"
    )
    crop_dup_min_ncc: float | None = Field(
        0.96,
        gt=0,
        le=1,
        description="crop/rescale/re-layout match score that marks a duplicate (pipelines.curate.dedup); "
        "null turns crop matching off",
    )
    png_compression: int = Field(3, ge=0, le=9, description="PNG deflate level for HR/LR (speed vs size)")
    overlap_encode: bool = Field(
        True,
        description="encode the HR PNG on a second thread while the degradation runs (same bytes; faster when "
        "fewer units than cores run at once)",
    )
    decode: DecodeSettings = Field(default_factory=DecodeSettings)
    filters: FilterSettings = Field(default_factory=FilterSettings)
    degrade: DegradeSettings = Field(default_factory=DegradeSettings)

    @field_validator("hr_size", mode="before")
    @classmethod
    def _parse_size(cls, v):
        if isinstance(v, int):
            return (v, v)
        if isinstance(v, str):
            parts = v.lower().replace("×", "x").split("x")
            if len(parts) == 1:
                return (int(parts[0]), int(parts[0]))
            if len(parts) == 2:
                return (int(parts[0]), int(parts[1]))
            raise ValueError(f"hr_size {v!r}: use '4096' or '3840x2144'")
        return v

    @model_validator(mode="after")
    def _check(self):
        w, h = self.hr_size
        if self.scale < 1:
            raise ValueError("scale must be >= 1")
        step = hr_step(self.scale)
        if w <= 0 or h <= 0:
            raise ValueError(f"hr_size {w}x{h}: sides must be positive multiples of {step}, e.g. 3840x2144 or 4096")
        for side in (w, h):
            if side % step:
                fit = f"{max(step, w - w % step)}x{max(step, h - h % step)}"
                raise ValueError(
                    f"hr_size {w}x{h}: each side must be a multiple of {TOKEN_STRIDE} (OP4KSR token stride) and of "
                    f"scale {self.scale}, i.e. of {step}; e.g. {fit}"
                )
        return self

    def config_hash(self) -> str:
        """Hash of everything that changes the output: the settings (unit_size only regroups work, overlap_encode
        only schedules it) and the step versions. A new ``FILTERS_VERSION`` or ``DEGRADE_VERSION`` means other
        decisions or other bytes, so a resumed curation must rebuild its units, not keep the old ones: the unit
        markers, the pixel claims and the packed-shard reuse all compare this hash."""
        data = self.model_dump(mode="json", exclude={"unit_size", "overlap_encode"})
        data["step_versions"] = step_versions(self.filters)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def versions(self) -> str:
        return json.dumps(step_versions(self.filters) | {"config": self.config_hash()}, sort_keys=True)


def step_versions(filters: FilterSettings | None = None) -> dict[str, str]:
    """The version of every step whose output a sample depends on (read at call time); the filters' names the photo
    model ``filters`` selects (photo/3, or photo/2 with ``photo_prior: false``)."""
    filters_version = FILTERS_VERSION
    if filters is not None and not filters.photo_prior:
        filters_version = filters_version.replace(PHOTO3.version, PHOTO2.version)
    steps = {"decode": DECODE_VERSION, "filters": filters_version, "crop": CROP_VERSION}
    return steps | {"degrade": DEGRADE_VERSION, "dedup": DEDUP_VERSION}


def hr_step(scale: int) -> int:
    """HR sides must be multiples of the token stride and of the scale (LR = HR / scale exactly): of their lcm."""
    return math.lcm(TOKEN_STRIDE, scale)


def smaller_than_crop(w: int, h: int, cfg: CurateConfig) -> Rejection:
    """The reject of a source smaller than the HR crop, naming the largest HR size (and square) it does fit."""
    cw, ch = cfg.hr_size
    step = hr_step(cfg.scale)
    fw, fh = min(cw, w - w % step), min(ch, h - h % step)
    hint = "no HR size fits" if min(fw, fh) < step else f"it fits --hr-size {fw}x{fh} (or {min(fw, fh)} square)"
    return Rejection("smaller_than_crop", f"{w}x{h} < crop {cw}x{ch}; {hint}")


@dataclass(slots=True)
class Plan:
    listing: Listing
    units: list[Unit]


def plan(input_spec: str, cfg: CurateConfig, workspace: str | Path | None = None) -> Plan:
    """List the input (leaving out ``workspace`` if it lies inside it) and split it into units."""
    listing = list_inputs(input_spec, exclude=workspace)
    return Plan(listing, split_units(listing.uris, cfg.unit_size))


def unit_done(ws: Workspace, unit: str, cfg: CurateConfig) -> bool:
    marker = ws.marker(unit)
    if not marker.exists():
        return False
    return json.loads(marker.read_text()).get("config_hash") == cfg.config_hash()


def prune_stale_units(ws: Workspace, units: list[Unit]) -> int:
    """Remove the outputs of units that are not in this plan (an earlier run over a different input), and the pixel
    claims of sources that left it. A unit that skipped building a copy because a lower-URI copy claimed it
    (``relies_on`` in its marker) is marked for a rebuild when that copy left the input."""
    live = {u.name for u in units}
    live_uris = {uri for u in units for uri in u.uris}
    removed = 0
    for marker in sorted((ws.root / "units").glob("*.done")) if (ws.root / "units").exists() else []:
        if marker.stem not in live:
            for table in ("sources", "images", "rejects", "staged_samples"):
                ws.part(table, marker.stem).unlink(missing_ok=True)
            ws.staging(marker.stem).unlink(missing_ok=True)
            marker.unlink()
            removed += 1
        elif not set(json.loads(marker.read_text()).get("relies_on", [])) <= live_uris:
            marker.unlink()  # rebuilt this run: the copy it relied on is gone, so this one builds
    for claim in sorted(_claims_root(ws).glob("*/*/*")) if _claims_root(ws).exists() else []:
        if not claim.name.startswith(".") and claim.read_text() not in live_uris:
            claim.unlink()
    return removed


def _claims_root(ws: Workspace) -> Path:
    return ws.root / "claims"


def claim_pixels(ws: Workspace, cfg: CurateConfig, key: str, uri: str) -> str | None:
    """Hash before the expensive build: claim the right to build the samples of the pixels ``key`` for ``uri``.

    Each copy that reaches the build writes a claim ``claims/<config hash>/<key>/<sha256(uri)[:16]>`` holding its
    URI, then reads the claims of its key. Returns the lowest URI below ``uri`` that claimed (this copy then skips
    crop/degrade/encode), or None (build). Dedup keeps the lowest URI of identical pixels, so the copy that is kept
    never skips, whatever the runner's timing: the shards are the same as when every copy is built, and a copy
    that came first builds too (a wasted build, never a missing one). Identical pixels give identical samples
    (keys and seeds derive from the pixel hash), so nothing of the skipped copy is lost; it stays in the images
    table and dedup rejects it as ``exact_duplicate`` of the kept one. Claims of URIs that leave the input are
    removed by :func:`prune_stale_units`, which also rebuilds the units that relied on them."""
    folder = _claims_root(ws) / cfg.config_hash() / key
    folder.mkdir(parents=True, exist_ok=True)
    mine = folder / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if not mine.exists():
        with atomic_open(mine) as f:
            f.write(uri.encode())
    lower = [u for u in (p.read_text() for p in folder.iterdir() if not p.name.startswith(".")) if u < uri]
    return min(lower) if lower else None


@dataclass(slots=True)
class _UnitOut:
    sources: list[SourceRec] = field(default_factory=list)
    images: list[ImageRec] = field(default_factory=list)
    rejects: list[RejectRec] = field(default_factory=list)
    samples: list[SampleRec] = field(default_factory=list)
    relies_on: list[str] = field(default_factory=list)  # lower-URI identical copies whose build stands for ours


def build_unit(unit: Unit, root: str | None, origin: str, ws_root: str | Path, cfg: CurateConfig) -> dict:
    """Build one unit end to end and mark it complete. Returns its counters."""
    ws = Workspace(ws_root)
    out = _UnitOut()
    staging = ws.staging(unit.name)
    with atomic_open(staging) as f:
        tar = wds.TarWriter(f, mtime=FIXED_MTIME, user="sr4k", group="sr4k", encoder=False)
        for uri in unit.uris:
            out.sources.append(SourceRec(uri, unit.name, origin))
            _build_source(uri, root, origin != "list", unit.name, ws, cfg, out, tar)
        tar.close()
    write_table(ws.part("sources", unit.name), out.sources, SOURCES)
    write_table(ws.part("images", unit.name), out.images, IMAGES)
    write_table(ws.part("rejects", unit.name), out.rejects, REJECTS)
    write_table(ws.part("staged_samples", unit.name), out.samples, SAMPLES)
    counts = {
        "seen": len(out.sources),
        "built": len({s.image_key for s in out.samples}),
        "samples": len(out.samples),
        "not_built_copies": len(out.relies_on),
        **Counter(f"rejected_{r.reason}" for r in out.rejects),
    }
    marker = {"unit": unit.name, "config_hash": cfg.config_hash(), "counts": counts, "relies_on": out.relies_on}
    write_json_atomic(ws.marker(unit.name), marker)
    return counts


def _reject(out: _UnitOut, uri: str, unit: str, stage: str, rej: Rejection, key: str | None = None) -> None:
    out.rejects.append(RejectRec(uri, stage, rej.reason, rej.detail, key, None, unit))


def _build_source(uri, root: str | None, walked: bool, unit: str, ws: Workspace, cfg: CurateConfig, out, tar) -> None:
    data = read_source(uri, root, walked)
    if isinstance(data, Rejection):
        return _reject(out, uri, unit, "ingest", data)
    dec = decode_image(data, os.path.basename(uri), cfg.decode)
    if isinstance(dec, Rejection):
        return _reject(out, uri, unit, "decode", dec)
    h, w = dec.rgb.shape[:2]
    key = dec.pixel_sha256[:24]
    source_sha = hashlib.sha256(data).hexdigest()
    scores = measure(dec.rgb, dec.quantization, cfg.filters.photo_prior)
    verdict = judge(w, h, scores, cfg.filters)
    upscale = upscale_estimate(scores, cfg.filters)
    small = cv2.resize(dec.rgb, (128, 128), interpolation=cv2.INTER_AREA)
    out.images.append(
        ImageRec(
            uri,
            key,
            source_sha,
            dec.pixel_sha256,
            len(data),
            w,
            h,
            dec.format,
            dec.mode_in,
            ",".join(dec.notes),
            str(imagehash.phash(Image.fromarray(small))),
            scores.sharpness,
            scores.jpeg_quality,
            scores.flat_fraction,
            scores.mean_luma,
            scores.clip_low,
            scores.clip_high,
            scores.photo_score,
            verdict is None,
            unit,
            upscale,
            round(max(w, h) / upscale),
            scores.period_snr,
            scores.reupsample_ratio,
            scores.period_factor,
            scores.reupsample_ratio_15,
        )
    )
    _write_thumb(ws.thumb(key), dec.rgb)
    if verdict is not None:
        return _reject(out, uri, unit, "filter", verdict, key)
    boxes = choose_crops(dec.rgb, cfg.hr_size, cfg.crops_per_image, cfg.crop_max_overlap, TOKEN_STRIDE)
    if not boxes:
        return _reject(out, uri, unit, "crop", smaller_than_crop(w, h, cfg), key)
    kept_copy = claim_pixels(ws, cfg, key, uri)
    if kept_copy is not None:  # an identical picture with a lower URI builds these samples: dedup keeps that one
        out.relies_on.append(kept_copy)
        return None
    for i, box in enumerate(boxes):
        _build_sample(f"{key}-c{i}", key, uri, source_sha, dec, box, unit, cfg, out, tar)


def _build_sample(key, image_key, uri, source_sha, dec: Decoded, box, unit, cfg: CurateConfig, out, tar) -> None:
    hr = np.ascontiguousarray(dec.rgb[box.y : box.y + box.h, box.x : box.x + box.w])
    hr.flags.writeable = False  # read by the encoder thread while the degradation runs
    seed = seed_for(key, cfg.seed)
    hr_job = _encoder().submit(encode_png, hr, cfg.png_compression) if cfg.overlap_encode else None
    lr, params = degrade(hr, cfg.scale, seed, cfg.degrade)
    lr_png = encode_png(lr, cfg.png_compression)
    hr_png = hr_job.result() if hr_job is not None else encode_png(hr, cfg.png_compression)
    rec = SampleRec(
        key,
        image_key,
        uri,
        source_sha,
        box.x,
        box.y,
        box.w,
        box.h,
        lr.shape[1],
        lr.shape[0],
        cfg.scale,
        seed,
        json.dumps(params, sort_keys=True),
        box.score,
        hashlib.sha256(hr_png).hexdigest(),
        hashlib.sha256(lr_png).hexdigest(),
        cfg.versions(),
        unit,
    )
    meta = json.dumps(rec.meta(), sort_keys=True).encode()
    tar.write({"__key__": staging_key(uri, key), "hr.png": hr_png, "lr.png": lr_png, "json": meta})
    out.samples.append(rec)


_ENCODER: list[tuple[int, ThreadPoolExecutor]] = []  # (pid that made it, pool)
_ENCODER_LOCK = threading.Lock()


def _encoder() -> ThreadPoolExecutor:
    """The process's HR-encode threads (one per core: each building thread has at most one encode in flight).

    The HR PNG encode (deflate in OpenCV's libpng, ~1.1 s CPU per 3840x2144 crop) and the degradation (NumPy/OpenCV)
    both release the GIL, so they run on two cores at once. Measured on the 2-core machine at load 8-10 (4 crops,
    interleaved A/B, medians of 3): one building thread 30.7 s -> 20.1 s wall with the overlap, CPU unchanged (7.3-8.0
    s); two building threads (both cores already busy) 18.6 s vs 20.9 s, within the run-to-run spread (11-24 s).
    So it pays when fewer units than cores are running: a run of one unit (<= ``unit_size`` sources), and the tail
    of every run. Made again in a forked child (a process runner), where the parent's threads do not exist."""
    with _ENCODER_LOCK:
        if not _ENCODER or _ENCODER[0][0] != os.getpid():
            pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="sr4k-png")
            _ENCODER[:] = [(os.getpid(), pool)]
        return _ENCODER[0][1]


def staging_key(uri: str, key: str) -> str:
    """Exact duplicates share sample keys (keys hash the pixels), so staged members are told apart by source."""
    return f"{hashlib.sha256(uri.encode()).hexdigest()[:12]}-{key}"


def _write_thumb(path: Path, rgb: np.ndarray, side: int = 256) -> None:
    """A JPEG preview; its name is the pixel hash, so an existing one (an identical file seen before) is kept."""

    def encode() -> bytes:
        h, w = rgb.shape[:2]
        f = side / max(h, w)
        small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        _, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        return buf.tobytes()

    write_content_addressed(path, encode)


def dedup(ws_root: str | Path, cfg: CurateConfig) -> int:
    """Find duplicates among the images that produced samples; write them as rejects. Returns how many."""
    ws = Workspace(ws_root)
    con = catalog.connect(ws.root)
    rows = con.execute(
        """select key, uri, pixel_sha256, phash, width * height, sharpness, jpeg_quality, unit from images
           where key in (select distinct image_key from staged_samples) order by uri"""
    ).fetchall()
    con.close()
    items = [DedupItem(*r[:7]) for r in rows]
    unit_of = {r[1]: r[7] for r in rows}
    views = {}
    if cfg.crop_dup_min_ncc is not None:  # the thumbnails: 256-px views of the decoded (EXIF-turned, sRGB) pixels
        for key in {it.key for it in items}:
            gray = cv2.imread(str(ws.thumb(key)), cv2.IMREAD_GRAYSCALE)
            if gray is not None:
                views[key] = MatchView(small_gray(gray))
    dups = find_duplicates(items, cfg.near_dup_max_distance, views, cfg.crop_dup_min_ncc or 1.0)
    uri_of = {it.key: it.uri for it in reversed(items) if it.uri not in {d.uri for d in dups}}

    def detail(d) -> str:
        how = f"crop match ncc {d.ncc}" if d.reason == "crop_duplicate" else f"hamming {d.distance}"
        return f"{how} to {uri_of.get(d.duplicate_of)}"

    recs = [RejectRec(d.uri, "dedup", d.reason, detail(d), d.key, d.duplicate_of, unit_of[d.uri]) for d in dups]
    write_table(ws.part("rejects", "dedup"), recs, REJECTS)
    return len(recs)


def holdout(ws_root: str | Path, cfg: CurateConfig) -> int:
    """Hold out of training the images that the split reserves for benchmarks and those that a benchmark in this
    workspace already uses (rejects of stage ``split``). Runs after dedup, on the surviving images only."""
    ws = Workspace(ws_root)
    con = catalog.connect(ws.root)
    rows = con.execute(
        """select distinct image_key, uri, unit from staged_samples
           where uri not in (select uri from rejects where stage = 'dedup') order by uri"""
    ).fetchall()
    con.close()
    in_bench = benchmark_keys(ws.root)
    recs = []
    for key, uri, unit in rows:
        if key in in_bench:
            recs.append(RejectRec(uri, "split", "in_benchmark", f"used by benchmark {in_bench[key]}", key, None, unit))
        elif holdout_split(key, cfg.holdout_permille):
            recs.append(
                RejectRec(uri, "split", "held_out", f"benchmark holdout ({cfg.holdout_permille}‰)", key, None, unit)
            )
    write_table(ws.part("rejects", "split"), recs, REJECTS)
    return len(recs)


def benchmark_keys(root: Path) -> dict[str, str]:
    """image key -> benchmark name, for every benchmark built in this workspace."""
    keys: dict[str, str] = {}
    for index in sorted(Workspace(root).benchmarks.glob("*/index.parquet")):
        for key in pq.read_table(index, columns=["image_key"]).column("image_key").to_pylist():
            if key:
                keys.setdefault(key, index.parent.name)
    return keys


def pack(ws_root: str | Path, cfg: CurateConfig, split: str = "train") -> dict:
    """Copy the kept samples into shards, sorted by key; write the samples table; then remove the staging tars.

    A sample's bytes come from its unit's staging tar, or, once staging is gone (a rerun after a finished run), from
    the shard that already holds it: the previous shards of this dataset are opened before any is replaced (an open
    file keeps its inode through ``os.replace``) and used only if their manifest has this run's config hash, so the
    bytes are the ones a rebuild would give. Samples found in neither place are an error here;
    ``units_to_restage`` lists their units, which the flow rebuilds before packing. Returns the manifest counts."""
    ws = Workspace(ws_root)
    kept = kept_samples(ws)
    cols = [kept.column(c).to_pylist() for c in ("key", "image_key", "unit", "uri")]
    staged_units = {u for u in set(cols[2]) if ws.staging(u).exists()}
    members = _staging_members(ws, staged_units)
    with _PackedShards(ws.shard_dir(cfg.dataset), cfg.config_hash()) as old:
        missing = sorted({u for k, u in zip(cols[0], cols[2], strict=True) if u not in staged_units and k not in old})
        if missing:
            raise RuntimeError(f"staged samples of units {missing} are gone; rebuild them (units_to_restage)")
        writer = ShardWriter(ws.shard_dir(cfg.dataset), split, cfg.shard_max_count, cfg.shard_max_bytes)
        try:
            for key, image_key, unit, uri in zip(*cols, strict=True):
                if unit in staged_units:
                    staged = members[unit]
                    files = {e: _read_member(ws.staging(unit), *staged[f"{staging_key(uri, key)}.{e}"]) for e in _EXTS}
                else:
                    files = old.files(key)
                writer.write(key, files, image_key)
        except BaseException:
            writer.abort()
            raise
        manifest = writer.finish(cfg.dataset, cfg.config_hash())
    with atomic_open(ws.part("samples", cfg.dataset)) as f:
        pq.write_table(kept.cast(SAMPLES), f, compression="zstd")
    for tar in sorted((ws.root / "staging").glob("*.tar")) if (ws.root / "staging").exists() else []:
        tar.unlink()  # every kept sample is in a shard now; rejected ones are not needed again (see pack)
    return {
        "samples": manifest.samples,
        "shards": len(manifest.shards),
        "bytes": sum(s.bytes for s in manifest.shards),
    }


def kept_samples(ws: Workspace):
    """The staged samples that survive dedup and holdout, by key. Exact duplicates share their image key (a hash of
    the pixels), so the kept set is decided by URI."""
    con = catalog.connect(ws.root)
    kept = con.sql(
        """select * from staged_samples where uri not in
           (select uri from rejects where stage in ('dedup', 'split')) order by key"""
    ).to_arrow_table()
    con.close()
    return kept


def units_to_restage(ws_root: str | Path, cfg: CurateConfig) -> list[str]:
    """Units with a kept sample whose bytes are in no staging tar and no shard of this config: a source that an
    earlier run rejected as a duplicate (its staging removed after packing) and that is kept now, e.g. because the
    copy it duplicated left the input. The flow rebuilds these units before ``pack``."""
    ws = Workspace(ws_root)
    kept = kept_samples(ws)
    with _PackedShards(ws.shard_dir(cfg.dataset), cfg.config_hash()) as old:
        pairs = zip(kept.column("key").to_pylist(), kept.column("unit").to_pylist(), strict=True)
        return sorted({u for k, u in pairs if not ws.staging(u).exists() and k not in old})


class _PackedShards:
    """Read access to the samples of a dataset's current shards (when their manifest has ``config_hash``)."""

    def __init__(self, shard_dir: Path, config_hash: str):
        self.members: dict[str, tuple[int, dict[str, tuple[int, int]]]] = {}
        self.files_open: list = []
        manifest = shard_dir / "manifest.json"
        if not manifest.exists() or json.loads(manifest.read_text()).get("config_hash") != config_hash:
            return
        for info in json.loads(manifest.read_text())["shards"]:
            if not (shard_dir / info["name"]).is_file():  # removed by hand: its samples are rebuilt (units_to_restage)
                continue
            f = open(shard_dir / info["name"], "rb")  # noqa: SIM115 - closed in __exit__
            self.files_open.append(f)
            with tarfile.open(fileobj=f) as tf:
                for m in tf.getmembers():
                    key, ext = m.name.split(".", 1)
                    self.members.setdefault(key, (len(self.files_open) - 1, {}))[1][ext] = (m.offset_data, m.size)

    def __contains__(self, key: str) -> bool:
        return key in self.members and all(e in self.members[key][1] for e in _EXTS)

    def files(self, key: str) -> dict[str, bytes]:
        i, exts = self.members[key]
        f = self.files_open[i]
        out = {}
        for e in _EXTS:
            f.seek(exts[e][0])
            out[e] = f.read(exts[e][1])
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for f in self.files_open:
            f.close()


_EXTS = ("hr.png", "lr.png", "json")


def _staging_members(ws: Workspace, units: set[str]) -> dict[str, dict[str, tuple[int, int]]]:
    index = {}
    for unit in units:
        with tarfile.open(ws.staging(unit)) as tf:
            index[unit] = {m.name: (m.offset_data, m.size) for m in tf.getmembers()}
    return index


def _read_member(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def summarize(ws_root: str | Path, cfg: CurateConfig) -> dict:
    """Counts of the finished run; raises if an input is unaccounted for (seen != kept + rejected)."""
    con = catalog.connect(ws_root)
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    seen = q("select count(distinct uri) from sources")[0][0]
    kept = q("select count(distinct uri) from samples")[0][0]
    rejected = q("select count(distinct uri) from rejects")[0][0]
    by_reason = dict(q("select stage || ':' || reason, count(*) from rejects group by 1 order by 2 desc, 1"))
    overlap = q(
        "select count(*) from (select distinct uri from samples) join (select distinct uri from rejects) using (uri)"
    )[0][0]
    con.close()
    manifest = json.loads((Workspace(ws_root).shard_dir(cfg.dataset) / "manifest.json").read_text())
    summary = {
        "seen": seen,
        "kept": kept,
        "rejected": rejected,
        "rejected_by_reason": by_reason,
        "samples": manifest["samples"],
        "shards": len(manifest["shards"]),
        "bytes": sum(s["bytes"] for s in manifest["shards"]),
    }
    if seen != kept + rejected or overlap:
        raise AccountingError(
            f"inputs unaccounted for: seen {seen} != kept {kept} + rejected {rejected} "
            f"(overlap {overlap}); this is a bug, please report it with the workspace"
        )
    return summary


class AccountingError(RuntimeError):
    pass
