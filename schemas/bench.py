"""Record types and table schemas of benchmarks, evaluation results and candidate runs.

- ``BENCH_INDEX``    ``benchmarks/<name>/index.parquet``: one row per benchmark item (pipelines.bench.sets);
- ``IMPORT_REPORT``  ``benchmarks/<name>/import_report.parquet``: what became of every input file of an import;
- ``BENCH_RESULTS``  ``tables/bench_results/``: one row per (item, model) of an evaluation run (bench.evaluate);
- ``CANDIDATES``     ``tables/candidates/``: one row per (model version, LR key) output (pipelines.pairs.candidates).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from schemas.records import SCHEMA_VERSION

BENCH_SCHEMA_VERSION = SCHEMA_VERSION
# bench_results 2 = 1 + niqe, musiq, clipiqa, maniqa, periodicity_excess_peak, periodicity_excess_stride and
# periodic_flag (issue 14). Version-1 parts stay readable beside version-2 ones: the catalog reads every part with
# ``union_by_name``, so a column a part lacks is NULL there.
RESULTS_SCHEMA_VERSION = 2


@dataclass(slots=True)
class BenchItem:
    key: str  # no dots; file names lr/<key>.png, hr/<key>.png
    lr_path: str  # relative to the benchmark folder
    hr_path: str | None  # None for lr_only
    lr_width: int
    lr_height: int
    hr_width: int | None
    hr_height: int | None
    scale: int
    seed: int | None  # synthetic only: the degradation seed
    degradation: str | None  # synthetic only: JSON of every sampled degradation parameter
    source_uri: str  # synthetic/paired: the HR source; lr_only: the LR file
    image_key: str  # pixel-hash key (24 hex) of that source, as in tables/images
    schema_version: int = BENCH_SCHEMA_VERSION


@dataclass(slots=True)
class ReportRow:
    file: str  # absolute path of the input entry
    status: str  # one of pipelines.bench.sets.STATUSES
    detail: str = ""
    key: str | None = None  # the benchmark key it was (or would have been) imported under
    schema_version: int = BENCH_SCHEMA_VERSION


@dataclass(slots=True)
class ResultRow:
    bench: str
    kind: str
    key: str
    model: str
    model_version: str
    scale: int
    psnr_y: float | None
    ssim_y: float | None
    lpips: float | None  # pyiqa metrics: None when the weights are not at the configured path
    dists: float | None
    niqe: float | None  # no reference, lower is better
    musiq: float | None
    clipiqa: float | None
    maniqa: float | None
    nr_sharpness: float | None
    nr_hf_energy: float | None
    periodicity_peak: float  # absolute periodicity score of the output (pipelines.bench.metrics.periodicity)
    periodicity_stride_mean: float
    periodicity_stride_peak: float
    periodicity_excess_peak: float  # the same beyond the bicubic of the same LR (metrics.periodicity_excess)
    periodicity_excess_stride: float
    periodic_flag: bool  # periodicity_excess(...).flag: a periodic artefact the model added
    seconds: float
    peak_mem_mb: float
    run: str
    schema_version: int = RESULTS_SCHEMA_VERSION


@dataclass(slots=True)
class CandidateRec:
    lr_set: str
    lr_key: str
    model: str
    model_version: str
    output_path: str  # relative to the workspace root: images/<sha[:2]>/<sha>.png
    output_sha256: str
    width: int
    height: int
    seconds: float
    peak_mem_mb: float
    unit: str
    schema_version: int = SCHEMA_VERSION


def _schema(*fields: tuple[str, pa.DataType, bool], version: int = SCHEMA_VERSION) -> pa.Schema:
    schema = pa.schema([pa.field(n, t, nullable=nullable) for n, t, nullable in fields])
    return schema.with_metadata({"schema_version": str(version)})


_S, _I32, _I64, _F = pa.string(), pa.int32(), pa.int64(), pa.float64()
_V = ("schema_version", pa.int16(), False)
BENCH_INDEX = _schema(
    ("key", _S, False),
    ("lr_path", _S, False),
    ("hr_path", _S, True),
    ("lr_width", _I32, False),
    ("lr_height", _I32, False),
    ("hr_width", _I32, True),
    ("hr_height", _I32, True),
    ("scale", _I32, False),
    ("seed", _I64, True),
    ("degradation", _S, True),
    ("source_uri", _S, False),
    ("image_key", _S, False),
    _V,
)
IMPORT_REPORT = _schema(("file", _S, False), ("status", _S, False), ("detail", _S, False), ("key", _S, True), _V)
BENCH_RESULTS = _schema(
    ("bench", _S, False),
    ("kind", _S, False),
    ("key", _S, False),
    ("model", _S, False),
    ("model_version", _S, False),
    ("scale", _I32, False),
    ("psnr_y", _F, True),
    ("ssim_y", _F, True),
    ("lpips", _F, True),
    ("dists", _F, True),
    ("niqe", _F, True),
    ("musiq", _F, True),
    ("clipiqa", _F, True),
    ("maniqa", _F, True),
    ("nr_sharpness", _F, True),
    ("nr_hf_energy", _F, True),
    ("periodicity_peak", _F, False),
    ("periodicity_stride_mean", _F, False),
    ("periodicity_stride_peak", _F, False),
    ("periodicity_excess_peak", _F, False),
    ("periodicity_excess_stride", _F, False),
    ("periodic_flag", pa.bool_(), False),
    ("seconds", _F, False),
    ("peak_mem_mb", _F, False),
    ("run", _S, False),
    _V,
    version=RESULTS_SCHEMA_VERSION,
)
CANDIDATES = _schema(
    ("lr_set", _S, False),
    ("lr_key", _S, False),
    ("model", _S, False),
    ("model_version", _S, False),
    ("output_path", _S, False),
    ("output_sha256", _S, False),
    ("width", _I32, False),
    ("height", _I32, False),
    ("seconds", _F, False),
    ("peak_mem_mb", _F, False),
    ("unit", _S, False),
    _V,
)

TABLES: dict[str, tuple[type, pa.Schema]] = {
    "bench_index": (BenchItem, BENCH_INDEX),
    "import_report": (ReportRow, IMPORT_REPORT),
    "bench_results": (ResultRow, BENCH_RESULTS),
    "candidates": (CandidateRec, CANDIDATES),
}
