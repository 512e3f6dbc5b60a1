"""Planning a candidate run (pipelines.pairs.candidates): the checks that need no model, and the units left to do."""

import cv2
import duckdb
import numpy as np
import pytest
from PIL import Image

from pipelines.bench.sets import import_lr_only
from pipelines.models.upscalers import Interpolation
from pipelines.pairs import candidates as cand
from pipelines.store.workspace import Workspace


@pytest.fixture
def ws(tmp_path) -> Workspace:
    src = tmp_path / "lr"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(src / f"im{i}.png")
    Image.new("RGB", (3000, 3000), (90, 120, 30)).save(src / "big.png")
    ws = Workspace(tmp_path / "ws")
    import_lr_only(src, ws.root / "benchmarks", "lq", scale=1)
    return ws


def test_run_keys_checks_name_set_and_output_size_before_any_model(ws):
    with pytest.raises(ValueError, match=r"--lr '\.\./lq' is not a valid name"):
        cand.run_keys(ws, "../lq", 4)
    with pytest.raises(ValueError, match=r"no benchmark or shard set 'zz'.*have: lq"):
        cand.run_keys(ws, "zz", 4)
    with pytest.raises(ValueError, match=r"LR big of lq: LR 3000x3000 at x4 .*; re-import the set with --square N"):
        cand.run_keys(ws, "lq", 4)
    assert cand.run_keys(ws, "lq", 2) == ["big", "im0", "im1", "im2"]  # 6000^2 = 36 MPx: allowed


def test_plan_run_leaves_out_finished_units_only(ws):
    keys = ["im0", "im1", "im2"]
    models = {
        "bicubic": Interpolation("bicubic", cv2.INTER_CUBIC, 2),
        "area": Interpolation("area", cv2.INTER_AREA, 2),
    }
    plan, todo = cand.plan_run(ws, "lq", keys, models, unit_size=2)
    chunks = [("bicubic", ["im0", "im1"]), ("bicubic", ["im2"]), ("area", ["im0", "im1"]), ("area", ["im2"])]
    assert [(s, u.keys) for s, u in plan] == chunks
    assert todo == plan
    spec, unit = plan[1]
    items = {it.key: it for it in cand.lr_items(ws, "lq")}
    assert cand.run_unit(ws, "lq", unit, models[spec], items) == 1
    _, todo = cand.plan_run(ws, "lq", keys, models, unit_size=2)
    assert todo == [plan[0], *plan[2:]]
    part = ws.part("candidates", unit.name)
    assert duckdb.execute("select lr_key, model from read_parquet(?)", [str(part)]).fetchall() == [("im2", "bicubic")]
