"""Record types of the curation path, one per stage, and the pyarrow schema of each table.

Every table row carries ``schema_version`` (also stored in the Parquet schema metadata) so a reader can tell which
layout it holds. Field order in a dataclass is the column order of its table; ``tests/test_schemas.py`` checks that
the two never drift apart.

Tables (``tables/<name>/part-<unit>.parquet`` under a workspace):

- ``sources``  one row per input the flow saw (whatever became of it);
- ``images``   one row per input that decoded, with its measurements (filter scores, hashes), kept or not;
- ``rejects``  one row per input that was not kept, with the stage and a reason code;
- ``samples``  one row per HR/LR pair written to a shard: crop box, degradation parameters, seed, provenance.

``seen = kept + rejected`` holds per run: every source is either in ``rejects`` or has samples in the shards.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1
# images: 2 adds the effective-resolution columns (effective_scale .. reupsample_ratio). Version-1 parts stay
# readable: the catalog reads parts with union_by_name, so their rows have those columns as NULL. 3 adds the rest
# of the effres evidence (period_factor, reupsample_ratio_15), so every rejected or kept decision can be re-derived.
IMAGES_SCHEMA_VERSION = 3


@dataclass(slots=True)
class Rejection:
    """Why an input was not kept: ``reason`` is a stable code (``truncated``, ``too_small``), ``detail`` prose."""

    reason: str
    detail: str = ""


@dataclass(slots=True)
class SourceRec:
    uri: str  # absolute local path or fsspec URL
    unit: str  # the work unit that owns it (deterministic from the sorted input list)
    origin: str  # "folder" | "list" | "fsspec"
    schema_version: int = SCHEMA_VERSION


@dataclass(slots=True)
class ImageRec:
    uri: str
    key: str  # image key: the first 24 hex digits of pixel_sha256 (dot-free, stable across moves and renames)
    source_sha256: str  # of the file's bytes
    pixel_sha256: str  # of the decoded, normalised 8-bit RGB pixels and their shape
    source_bytes: int
    width: int
    height: int
    format: str  # decoder's name for the container (JPEG, PNG, WEBP ...)
    mode_in: str  # PIL mode before normalisation (RGB, CMYK, I;16, P, RGBA ...)
    decode_notes: str  # comma-separated normalisation steps applied (exif_rotate, icc_to_srgb, alpha_over_white ...)
    phash: str  # 64-bit perceptual hash, 16 hex digits (resolution-invariant, for near-duplicates)
    sharpness: float
    jpeg_quality: float | None  # estimated from the quantisation tables; None for non-JPEG
    flat_fraction: float
    mean_luma: float
    clip_low: float
    clip_high: float
    photo_score: float
    passed_filters: bool
    unit: str
    # version 2: effective resolution (pipelines.curate.effres); NULL in version-1 parts
    effective_scale: float | None = None  # estimated upscale factor (1.0 native, ~1.5, 2.0)
    effective_long_side: int | None = None  # estimated native long side: max(width, height) / effective_scale
    period_snr: float | None = None  # evidence: resampling-periodicity SNR near 1/3 cycles/px
    reupsample_ratio: float | None = None  # evidence: re-upsampling ratio R(2); None without a structured tile
    # version 3: the rest of the effres evidence; NULL in version-1 and -2 parts
    period_factor: float | None = None  # evidence: the upscale factor the periodicity peak gives
    reupsample_ratio_15: float | None = None  # evidence: R(1.5), low when the band above 1/3 cycles/px is empty
    schema_version: int = IMAGES_SCHEMA_VERSION


@dataclass(slots=True)
class RejectRec:
    uri: str
    stage: str  # ingest | decode | filter | crop | dedup
    reason: str
    detail: str
    key: str | None = None  # image key when the input decoded
    duplicate_of: str | None = None  # image key of the kept copy, for exact/near duplicates
    unit: str = ""
    schema_version: int = SCHEMA_VERSION


@dataclass(slots=True)
class SampleRec:
    key: str  # sample key "<image key>-c<crop index>", no dots (webdataset splits keys at the first dot)
    image_key: str
    uri: str  # provenance: the source
    source_sha256: str
    crop_x: int
    crop_y: int
    hr_width: int
    hr_height: int
    lr_width: int
    lr_height: int
    scale: int
    seed: int
    degradation: str  # JSON: every sampled parameter of the degradation, enough to reproduce the LR
    detail_score: float  # the crop rule's score of this window
    hr_sha256: str
    lr_sha256: str
    versions: str  # JSON: step name -> version, and the config hash
    unit: str
    schema_version: int = SCHEMA_VERSION

    def meta(self) -> dict[str, Any]:
        """The JSON stored next to the images in the shard (everything but the unit bookkeeping)."""
        d = dataclasses.asdict(self)
        d.pop("unit")
        d["degradation"] = json.loads(self.degradation)
        d["versions"] = json.loads(self.versions)
        return d


@dataclass(slots=True)
class ShardInfo:
    name: str  # file name, e.g. train-000000.tar
    count: int
    bytes: int
    sha256: str


@dataclass(slots=True)
class ShardManifest:
    dataset: str
    split: str
    samples: int
    shards: list[ShardInfo] = field(default_factory=list)
    config_hash: str = ""
    schema_version: int = SCHEMA_VERSION


def _t(*fields: tuple[str, pa.DataType, bool], version: int = SCHEMA_VERSION) -> pa.Schema:
    schema = pa.schema([pa.field(n, t, nullable=nullable) for n, t, nullable in fields])
    return schema.with_metadata({"schema_version": str(version)})


S, I64, I32, F64, B = pa.string(), pa.int64(), pa.int32(), pa.float64(), pa.bool_()
V = ("schema_version", pa.int16(), False)

SOURCES = _t(("uri", S, False), ("unit", S, False), ("origin", S, False), V)
IMAGES = _t(
    ("uri", S, False),
    ("key", S, False),
    ("source_sha256", S, False),
    ("pixel_sha256", S, False),
    ("source_bytes", I64, False),
    ("width", I32, False),
    ("height", I32, False),
    ("format", S, False),
    ("mode_in", S, False),
    ("decode_notes", S, False),
    ("phash", S, False),
    ("sharpness", F64, False),
    ("jpeg_quality", F64, True),
    ("flat_fraction", F64, False),
    ("mean_luma", F64, False),
    ("clip_low", F64, False),
    ("clip_high", F64, False),
    ("photo_score", F64, False),
    ("passed_filters", B, False),
    ("unit", S, False),
    ("effective_scale", F64, True),
    ("effective_long_side", I32, True),
    ("period_snr", F64, True),
    ("reupsample_ratio", F64, True),
    ("period_factor", F64, True),
    ("reupsample_ratio_15", F64, True),
    V,
    version=IMAGES_SCHEMA_VERSION,
)
REJECTS = _t(
    ("uri", S, False),
    ("stage", S, False),
    ("reason", S, False),
    ("detail", S, False),
    ("key", S, True),
    ("duplicate_of", S, True),
    ("unit", S, False),
    V,
)
SAMPLES = _t(
    ("key", S, False),
    ("image_key", S, False),
    ("uri", S, False),
    ("source_sha256", S, False),
    ("crop_x", I32, False),
    ("crop_y", I32, False),
    ("hr_width", I32, False),
    ("hr_height", I32, False),
    ("lr_width", I32, False),
    ("lr_height", I32, False),
    ("scale", I32, False),
    ("seed", I64, False),
    ("degradation", S, False),
    ("detail_score", F64, False),
    ("hr_sha256", S, False),
    ("lr_sha256", S, False),
    ("versions", S, False),
    ("unit", S, False),
    V,
)
SHARD_INDEX = _t(("key", S, False), ("shard", S, False), ("split", S, False), ("image_key", S, False), V)

TABLES: dict[str, tuple[type, pa.Schema]] = {
    "sources": (SourceRec, SOURCES),
    "images": (ImageRec, IMAGES),
    "rejects": (RejectRec, REJECTS),
    "samples": (SampleRec, SAMPLES),  # packed: one part per dataset, written when the shards are
    "staged_samples": (SampleRec, SAMPLES),  # built by the units, before dedup decides what ships
}


def to_table(records: list[Any], schema: pa.Schema) -> pa.Table:
    """Records (slots dataclasses) to a pyarrow table with exactly ``schema`` (column order and types enforced)."""
    cols = {f.name: [getattr(r, f.name) for r in records] for f in schema}
    for f in schema:
        if not f.nullable and any(v is None for v in cols[f.name]):
            raise ValueError(f"column {f.name!r} is not nullable but a record has None")
    return pa.Table.from_pydict(cols, schema=schema)
