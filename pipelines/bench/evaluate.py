"""Benchmark evaluation: run upscalers over a benchmark, measure, and write results + side-by-side crops.

Per (item, model) row: full-reference metrics where the benchmark has HR (PSNR/SSIM on Y with a border crop of
``scale`` px, the BasicSR convention — pipelines.bench.metrics), the pyiqa metrics (LPIPS, DISTS, NIQE, MUSIQ, CLIPIQA,
MANIQA — pipelines.bench.iqa) when their weights are in the configured folder (otherwise NULL, and the run records "not
available: put FILE at PATH"), offline no-reference metrics, the periodicity score (overall, and at lags that are
multiples of the OP4KSR token stride), the periodicity the model added beyond the bicubic of the same LR and its
verdict ``periodic_flag`` (metrics.periodicity_excess), wall time and peak memory.

Peak memory is the peak of allocations visible to ``tracemalloc`` (Python objects and numpy/OpenCV output arrays)
during ``upscale``; GPU models will report ``torch.cuda.max_memory_allocated`` instead. Results go to
``tables/bench_results/part-<bench>-<run>.parquet`` (a ``bench_results`` view in ``sr4k sql``); crops for the HTML
report to ``evals/<bench>/crops/<key>/<model>.png``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from pipelines.bench import iqa, metrics
from pipelines.curate.crop import choose_crops
from pipelines.models.upscalers import Upscaler, timed_upscale
from pipelines.store.workspace import Workspace, write_bytes_atomic, write_table
from schemas.bench import BENCH_RESULTS, ResultRow

EVAL_VERSION = "eval/1"
CROP = 192  # side of the comparison crops in the HTML report (HR pixels)


def load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read benchmark image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_bench(ws: Workspace, name: str, verify: bool = False) -> tuple[Path, dict, list[dict]]:
    """(folder, manifest, index rows) of the benchmark ``name``; one-line errors for a bad name, a missing benchmark
    or index rows whose keys or paths leave the folder. ``verify``: first the full verification
    (``pipelines.bench.sets.read_index``: every listed file present with its sha256), as ``sr4k bench eval`` does."""
    from pipelines.bench.sets import check_bench_name, read_index

    check_bench_name(name, "--bench")
    bench_dir = ws.bench_dir(name)
    manifest_path = bench_dir / "manifest.json"
    if not manifest_path.exists():
        have = sorted(p.parent.name for p in ws.benchmarks.glob("*/manifest.json"))
        raise ValueError(
            f"no benchmark {name!r} in {ws.root} (have: {', '.join(have) or 'none'}); "
            "build one with `sr4k bench build synthetic` or `sr4k bench import`"
        )
    from pipelines.bench.sets import index_rows

    if verify:
        read_index(bench_dir)
    manifest = json.loads(manifest_path.read_text())
    # keys and paths checked (strict names, inside the folder) for callers of evaluate() that skipped the flow's
    # full verification (pipelines.bench.sets.read_index): results are written under evals/<bench>/crops/<key>/
    return bench_dir, manifest, index_rows(bench_dir)


def evaluate(
    ws_root: str | Path,
    bench: str,
    models: list[Upscaler],
    token_stride: int = 32,
    lpips_weights: str | None = None,
    dists_weights: str | None = None,
    on_item: Callable[[], None] | None = None,
    iqa_weights: str | None = None,
) -> tuple[Path, dict]:
    """Evaluate ``models`` on benchmark ``bench``; returns (results parquet path, run info). The pyiqa weights
    folder is ``iqa_weights`` (``lpips_weights`` / ``dists_weights``: older names of the same folder), else
    ``$SR4K_IQA_WEIGHTS``."""
    ws = Workspace(ws_root)
    bench_dir, manifest, items = open_bench(ws, bench)
    scale = int(manifest["scale"])
    for m in models:
        if m.scale != scale:
            raise ValueError(f"model {m.name} is x{m.scale} but benchmark {bench} is x{scale}")
    run = hashlib.sha256(json.dumps([bench, [(m.name, m.version) for m in models]]).encode()).hexdigest()[:10]
    scorer = iqa.IqaScorer(iqa_weights or lpips_weights or dists_weights)
    availability = scorer.availability()
    rows: list[ResultRow] = []
    crops_dir = ws.root / "evals" / bench / "crops"
    for item in items:
        lr = load_rgb(bench_dir / item["lr_path"])
        hr = load_rgb(bench_dir / item["hr_path"]) if item.get("hr_path") else None
        box = _crop_box(hr if hr is not None else cv2.resize(lr, None, fx=scale, fy=scale), scale)
        _save_crop(
            crops_dir / item["key"] / "_lr.png",
            cv2.resize(lr, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST),
            box,
        )
        if hr is not None:
            _save_crop(crops_dir / item["key"] / "_hr.png", hr, box)
        for m in models:
            row, sr = _measure(m, lr, hr, item, bench, manifest["kind"], run, token_stride, scale, scorer)
            rows.append(row)
            _save_crop(crops_dir / item["key"] / f"{m.name}.png", sr, box)
        if on_item:
            on_item()
    out = ws.part("bench_results", f"{bench}-{run}")
    write_table(out, rows, BENCH_RESULTS)
    info = {
        "bench": bench,
        "run": run,
        "items": len(items),
        "models": [m.name for m in models],
        "availability": {k: v[1] for k, v in availability.items()},
        "version": EVAL_VERSION,
    }
    write_bytes_atomic(ws.root / "evals" / bench / f"run-{run}.json", json.dumps(info, indent=1).encode())
    return out, info


def _measure(m: Upscaler, lr, hr, item, bench, kind, run, stride, scale, scorer) -> tuple[ResultRow, np.ndarray]:
    sr, seconds, peak_mb = timed_upscale(m, lr)
    psnr = ssim = None
    if hr is not None:
        psnr, ssim = metrics.psnr_y(sr, hr, scale), metrics.ssim_y(sr, hr, scale)
        psnr = None if np.isinf(psnr) else psnr
    nr = metrics.no_reference(sr)
    per = metrics.periodicity(sr, stride=stride)
    # the reference with the same interpolation and compression history: the bicubic of the same LR
    ref = cv2.resize(lr, (lr.shape[1] * scale, lr.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    excess = metrics.periodicity_excess(sr, ref, stride=stride)
    learned = {name: scorer.score(name, sr, hr) for name in iqa.IQA_METRICS}
    row = ResultRow(
        bench=bench,
        kind=kind,
        key=item["key"],
        model=m.name,
        model_version=m.version,
        scale=scale,
        psnr_y=psnr,
        ssim_y=ssim,
        **learned,
        nr_sharpness=nr.get("sharpness"),
        nr_hf_energy=nr.get("hf_energy"),
        periodicity_peak=per.peak,
        periodicity_stride_mean=per.stride_mean,
        periodicity_stride_peak=per.stride_peak,
        periodicity_excess_peak=excess.peak,
        periodicity_excess_stride=excess.stride_mean,
        periodic_flag=excess.flag,
        seconds=seconds,
        peak_mem_mb=peak_mb,
        run=run,
    )
    return row, sr


def _crop_box(ref: np.ndarray, scale: int) -> tuple[int, int, int]:
    side = min(CROP, ref.shape[0], ref.shape[1])
    side -= side % scale
    boxes = choose_crops(ref, (side, side), 1, align=scale)
    b = boxes[0]
    return b.x, b.y, side


def _save_crop(path: Path, img: np.ndarray, box: tuple[int, int, int]) -> None:
    x, y, s = box
    crop = np.ascontiguousarray(img[y : y + s, x : x + s])
    _, buf = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    write_bytes_atomic(path, buf.tobytes())


SUMMARY_COLUMNS = (
    "psnr_y",
    "ssim_y",
    "lpips",
    "dists",
    "niqe",
    "musiq",
    "clipiqa",
    "maniqa",
    "periodicity_peak",
    "periodicity_excess_stride",
    "seconds",
    "peak_mem_mb",
)


def summarize_results(path: Path) -> list[dict]:
    """Mean of every metric per model (NULLs ignored), the share of items with ``periodic_flag``, sorted by model
    name. The parquet path is a bound parameter, never pasted into the SQL."""
    import duckdb

    sel = ", ".join(f"avg({c}) as {c}" for c in SUMMARY_COLUMNS)
    sql = (
        f"select model, count(*) as items, {sel}, avg(periodic_flag::int) as periodic_share "
        "from read_parquet(?) group by model order by 1"
    )
    rel = duckdb.connect().execute(sql, [str(path)])
    names = [d[0] for d in rel.description]
    return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]
