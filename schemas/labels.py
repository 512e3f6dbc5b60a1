"""Record types of the labelling path (pairwise human rankings) and the pyarrow schema of each table.

Tables (``tables/<name>/part-*.parquet`` under a workspace, same conventions as ``schemas.records``):

- ``label_tasks``   one row per pair pushed to Label Studio (the pair -> task mapping kept in the workspace, so a
                    pair is never imported twice; reconciled with the server on every push);
- ``annotations``   one row per (annotation id, updated_at) pulled from Label Studio: the raw result, its
                    validation, and the answer mapped back from the on-screen side to the candidates;
- ``preferences``   one row per annotated pair after QC and aggregation: per criterion the label, votes,
                    agreement and the Dawid–Skene posterior. This is what a preferences release holds and what the
                    reward model trains on.

Labels are always in *candidate* terms, never screen terms: ``"a"`` means the candidate ``model_a`` (``path_a``)
is better, ``"b"`` the candidate ``model_b``, ``"tie"`` neither. (The pairs table's ``left`` column says which
candidate was shown on the left; the pull maps left/right back to a/b.)

Criteria (``CRITERIA``): ``consistency`` — is the HR output faithful to the LR input (content, colour, structure)?
``naturalness`` — does the HR output look like a real high-resolution photograph (no artifacts, no over-smoothing)?

A preferences *release* (``sr4k release preferences``) is a webdataset: each sample is one pair, with members
``lr.png``, ``a.png``, ``b.png`` and ``json`` (a ``PreferenceRec`` as a dict; the three paths are then the member
names), plus ``manifest.json`` and ``index.parquet`` beside the shards.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

LABELS_SCHEMA_VERSION = 1
CRITERIA = ("consistency", "naturalness")
LABEL_VALUES = ("a", "b", "tie")


@dataclass(slots=True)
class LabelTaskRec:
    pair_id: str
    task_id: int
    project_id: int
    lr_key: str
    left: str  # "a" | "b": the candidate shown on the left
    is_gold: bool
    gold_consistency: str | None  # known answer of a gold pair, in candidate terms ("a" | "b" | "tie")
    gold_naturalness: str | None
    pushed_at: str  # ISO 8601 UTC
    schema_version: int = LABELS_SCHEMA_VERSION


@dataclass(slots=True)
class AnnotationRec:
    annotation_id: int
    task_id: int
    project_id: int
    pair_id: str
    annotator: str  # Label Studio user e-mail
    left: str  # "a" | "b" at the time of annotation
    consistency: str | None  # "a" | "b" | "tie" in candidate terms; None when invalid or skipped
    naturalness: str | None
    both_unusable: bool
    valid: bool
    invalid_reason: str | None  # e.g. "unknown_choice:consistency=C", "missing:naturalness", "skipped"
    is_gold: bool
    lead_time: float | None  # seconds the annotator spent, as Label Studio measured it
    created_at: str  # ISO 8601 UTC
    updated_at: str
    raw_result: str  # Label Studio's result list, JSON
    schema_version: int = LABELS_SCHEMA_VERSION


@dataclass(slots=True)
class PreferenceRec:
    pair_id: str
    lr_key: str
    lr_path: str
    model_a: str
    model_b: str
    version_a: str
    version_b: str
    path_a: str
    path_b: str
    consistency: str  # "a" | "b" | "tie"
    consistency_votes_a: int
    consistency_votes_b: int
    consistency_votes_tie: int
    consistency_agreement: float  # share of valid votes equal to the label, in [0, 1]
    consistency_ds: float | None  # Dawid–Skene posterior probability of the label
    naturalness: str
    naturalness_votes_a: int
    naturalness_votes_b: int
    naturalness_votes_tie: int
    naturalness_agreement: float
    naturalness_ds: float | None
    n_annotators: int
    both_unusable_votes: int
    schema_version: int = LABELS_SCHEMA_VERSION


def _s(name: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, pa.string(), nullable)


def _meta(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({"schema_version": str(LABELS_SCHEMA_VERSION)})


LABEL_TASKS = _meta(
    pa.schema(
        [
            _s("pair_id"),
            pa.field("task_id", pa.int64(), False),
            pa.field("project_id", pa.int64(), False),
            _s("lr_key"),
            _s("left"),
            pa.field("is_gold", pa.bool_(), False),
            _s("gold_consistency", True),
            _s("gold_naturalness", True),
            _s("pushed_at"),
            pa.field("schema_version", pa.int16(), False),
        ]
    )
)

ANNOTATIONS = _meta(
    pa.schema(
        [
            pa.field("annotation_id", pa.int64(), False),
            pa.field("task_id", pa.int64(), False),
            pa.field("project_id", pa.int64(), False),
            _s("pair_id"),
            _s("annotator"),
            _s("left"),
            _s("consistency", True),
            _s("naturalness", True),
            pa.field("both_unusable", pa.bool_(), False),
            pa.field("valid", pa.bool_(), False),
            _s("invalid_reason", True),
            pa.field("is_gold", pa.bool_(), False),
            pa.field("lead_time", pa.float64(), True),
            _s("created_at"),
            _s("updated_at"),
            _s("raw_result"),
            pa.field("schema_version", pa.int16(), False),
        ]
    )
)

_CRIT = []
for _c in CRITERIA:
    _CRIT += [
        _s(_c),
        pa.field(f"{_c}_votes_a", pa.int32(), False),
        pa.field(f"{_c}_votes_b", pa.int32(), False),
        pa.field(f"{_c}_votes_tie", pa.int32(), False),
        pa.field(f"{_c}_agreement", pa.float64(), False),
        pa.field(f"{_c}_ds", pa.float64(), True),
    ]

PREFERENCES = _meta(
    pa.schema(
        [
            _s(n)
            for n in (
                "pair_id",
                "lr_key",
                "lr_path",
                "model_a",
                "model_b",
                "version_a",
                "version_b",
                "path_a",
                "path_b",
            )
        ]
        + _CRIT
        + [
            pa.field("n_annotators", pa.int32(), False),
            pa.field("both_unusable_votes", pa.int32(), False),
            pa.field("schema_version", pa.int16(), False),
        ]
    )
)

TABLES = {
    "label_tasks": (LabelTaskRec, LABEL_TASKS),
    "annotations": (AnnotationRec, ANNOTATIONS),
    "preferences": (PreferenceRec, PREFERENCES),
}
