"""Record types of the pair-building path: which comparisons annotators are asked for, and how each is shown.

Tables (``tables/<name>/part-*.parquet`` under a workspace, same conventions as ``schemas.records``):

- ``pairs``       one row per A/B comparison of two candidate outputs of one LR image (``pipelines.pairs.build``),
                  one part per named pair set (``sr4k pairs build --name``);
- ``pair_views``  one row per pair: the regions its comparison page shows and the stored PNG crops, rendered once at
                  ``pairs build`` (``labelling.compare``) so Label Studio only serves files.

``model_a < model_b`` always; ``left`` says which of the two is shown on the left, so a label is mapped back to
candidate terms (``schemas.labels``) whatever the screen order was.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

PAIRS_VERSION = "pairs/1"
PAIRS_SCHEMA_VERSION = 1
VIEWS_SCHEMA_VERSION = 1


@dataclass(slots=True)
class PairRec:
    pair_id: str  # "pr-" + 20 hex digits over (lr_key, model_a, version_a, model_b, version_b); no dots
    lr_key: str
    model_a: str  # model_a < model_b
    model_b: str
    version_a: str
    version_b: str
    path_a: str  # relative to the workspace (``recorded_path``), so a moved workspace still finds it
    path_b: str
    left: str  # "a" | "b": which candidate is shown on the left
    strategy: str  # balanced | all | active
    score: float | None  # informativeness at selection (active only)
    distance: float | None  # perceptual distance of the two outputs (null when no thumbnails were available)
    seed: int
    schema_version: int = PAIRS_SCHEMA_VERSION


_STR_COLUMNS = (
    "pair_id",
    "lr_key",
    "model_a",
    "model_b",
    "version_a",
    "version_b",
    "path_a",
    "path_b",
    "left",
    "strategy",
)
PAIRS = pa.schema(
    [pa.field(n, pa.string(), False) for n in _STR_COLUMNS]
    + [
        pa.field("score", pa.float64(), True),
        pa.field("distance", pa.float64(), True),
        pa.field("seed", pa.int64(), False),
        pa.field("schema_version", pa.int16(), False),
    ]
).with_metadata({"schema_version": str(PAIRS_SCHEMA_VERSION), "pairs_version": PAIRS_VERSION})


@dataclass(slots=True)
class ViewRec:
    pair_id: str
    side: int  # region side it was rendered with (HR pixels)
    regions: int  # region count asked for
    lr: str  # workspace path of the stored LR copy
    scale: int | None  # integer LR -> HR scale, null when not exact
    panels: str  # JSON [[x, y, w, h, lr_path, a_path, b_path], ...]: per region its box and PNGs, candidate a / b
    schema_version: int = VIEWS_SCHEMA_VERSION


VIEWS = pa.schema(
    [
        pa.field("pair_id", pa.string(), False),
        pa.field("side", pa.int32(), False),
        pa.field("regions", pa.int16(), False),
        pa.field("lr", pa.string(), False),
        pa.field("scale", pa.int16(), True),
        pa.field("panels", pa.string(), False),
        pa.field("schema_version", pa.int16(), False),
    ]
).with_metadata({"schema_version": str(VIEWS_SCHEMA_VERSION)})

TABLES: dict[str, tuple[type, pa.Schema]] = {
    "pairs": (PairRec, PAIRS),
    "pair_views": (ViewRec, VIEWS),
}
