"""Benchmark evaluation: run upscalers over a benchmark, measure, and write results + side-by-side crops.

Per (item, model) row: full-reference metrics where the benchmark has HR (PSNR/SSIM on Y with a border crop of
``scale`` px, the BasicSR convention — pipelines.metrics), LPIPS/DISTS when their weights exist at the configured
path (otherwise NULL, and the run records "not available" with the reason), offline no-reference metrics, the
periodicity score (overall, and at lags that are multiples of the OP4KSR token stride), wall time and peak memory.

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
import pyarrow.parquet as pq

from pipelines import metrics
from pipelines.crop import choose_crops
from pipelines.storage import Workspace, write_bytes_atomic, write_table
from pipelines.upscalers import Upscaler, timed_upscale
from schemas.bench import BENCH_RESULTS, ResultRow

EVAL_VERSION = "eval/1"
CROP = 192  # side of the comparison crops in the HTML report (HR pixels)


def load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read benchmark image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_bench(ws: Workspace, name: str) -> tuple[Path, dict, list[dict]]:
    bench_dir = ws.root / "benchmarks" / name
    manifest_path = bench_dir / "manifest.json"
    if not manifest_path.exists():
        have = sorted(p.parent.name for p in (ws.root / "benchmarks").glob("*/manifest.json"))
        raise ValueError(
            f"no benchmark {name!r} in {ws.root} (have: {', '.join(have) or 'none'}); "
            "build one with `sr4k bench build synthetic` or `sr4k bench import`"
        )
    manifest = json.loads(manifest_path.read_text())
    items = pq.read_table(bench_dir / "index.parquet").to_pylist()
    return bench_dir, manifest, sorted(items, key=lambda r: r["key"])


def evaluate(
    ws_root: str | Path,
    bench: str,
    models: list[Upscaler],
    token_stride: int = 32,
    lpips_weights: str | None = None,
    dists_weights: str | None = None,
    on_item: Callable[[], None] | None = None,
) -> tuple[Path, dict]:
    """Evaluate ``models`` on benchmark ``bench``; returns (results parquet path, run info)."""
    ws = Workspace(ws_root)
    bench_dir, manifest, items = open_bench(ws, bench)
    scale = int(manifest["scale"])
    for m in models:
        if m.scale != scale:
            raise ValueError(f"model {m.name} is x{m.scale} but benchmark {bench} is x{scale}")
    run = hashlib.sha256(json.dumps([bench, [(m.name, m.version) for m in models]]).encode()).hexdigest()[:10]
    availability = {"lpips": metrics.lpips_available(lpips_weights), "dists": metrics.dists_available(dists_weights)}
    rows: list[ResultRow] = []
    crops_dir = ws.root / "evals" / bench / "crops"
    for item in items:
        lr = load_rgb(bench_dir / item["lr_path"])
        hr = load_rgb(bench_dir / item["hr_path"]) if item.get("hr_path") else None
        box = _crop_box(hr if hr is not None else cv2.resize(lr, None, fx=scale, fy=scale), scale)
        _save_crop(crops_dir / item["key"] / "_lr.png", cv2.resize(lr, None, fx=scale, fy=scale,
                                                                   interpolation=cv2.INTER_NEAREST), box)  # fmt: skip
        if hr is not None:
            _save_crop(crops_dir / item["key"] / "_hr.png", hr, box)
        for m in models:
            row, sr = _measure(m, lr, hr, item, bench, manifest["kind"], run, token_stride, scale)
            rows.append(row)
            _save_crop(crops_dir / item["key"] / f"{m.name}.png", sr, box)
        if on_item:
            on_item()
    out = ws.part("bench_results", f"{bench}-{run}")
    write_table(out, rows, BENCH_RESULTS)
    info = {"bench": bench, "run": run, "items": len(items), "models": [m.name for m in models],
            "availability": {k: v[1] for k, v in availability.items()}, "version": EVAL_VERSION}  # fmt: skip
    write_bytes_atomic(ws.root / "evals" / bench / f"run-{run}.json", json.dumps(info, indent=1).encode())
    return out, info


def _measure(m: Upscaler, lr, hr, item, bench, kind, run, stride, scale) -> tuple[ResultRow, np.ndarray]:
    sr, seconds, peak_mb = timed_upscale(m, lr)
    psnr = ssim = None
    if hr is not None:
        psnr, ssim = metrics.psnr_y(sr, hr, scale), metrics.ssim_y(sr, hr, scale)
        psnr = None if np.isinf(psnr) else psnr
    nr = metrics.no_reference(sr)
    per = metrics.periodicity(sr, stride=stride)
    row = ResultRow(
        bench, kind, item["key"], m.name, m.version, scale, psnr, ssim, None, None, nr.get("sharpness"),
        nr.get("hf_energy"), per.peak, per.stride_mean, per.stride_peak, seconds, peak_mb, run,
    )  # fmt: skip
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


def summarize_results(path: Path) -> list[dict]:
    """Mean of every metric per model (NULLs ignored), sorted by model name."""
    import duckdb

    cols = ["psnr_y", "ssim_y", "lpips", "dists", "nr_sharpness", "periodicity_peak", "periodicity_stride_mean",
            "seconds", "peak_mem_mb"]  # fmt: skip
    sel = ", ".join(f"avg({c}) as {c}" for c in cols)
    rel = duckdb.sql(f"select model, count(*) as items, {sel} from read_parquet('{path}') group by model order by 1")
    names = rel.columns
    return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]
