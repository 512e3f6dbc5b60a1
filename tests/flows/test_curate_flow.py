"""The curate flow end to end on real photographs (scikit-image's bundled photos) with a real local Prefect API.

Small sizes (HR 128 px, scale 4) so it runs in seconds; the same code runs at 4096 px.
"""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import cv2
import duckdb
import pytest
import webdataset as wds
from PIL import Image

from pipelines.curate import CurateConfig

pytestmark = pytest.mark.slow
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def small_cfg(**kw) -> CurateConfig:
    base = {"hr_size": "128", "scale": 4, "unit_size": 3, "shard_max_count": 4, "dataset": "t",
            "holdout_permille": 0, "filters": {"min_short_side": 128}}  # fmt: skip
    base.update(kw)
    return CurateConfig.model_validate(base)


def make_input(root: Path) -> dict[str, str]:
    """Real photos, exact duplicates under other names, one photo at three sizes, and broken files."""
    from skimage import data

    root.mkdir(parents=True)
    expect = {}
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).save(root / f"{name}.png")
    astro = data.astronaut()
    (root / "sizes").mkdir()
    for side in (384, 256, 192):
        Image.fromarray(cv2.resize(astro, (side, side), interpolation=cv2.INTER_AREA)).save(
            root / "sizes" / f"astro{side}.jpg", quality=95
        )
        expect[f"sizes/astro{side}.jpg"] = "near_duplicate"
    expect["astronaut.png"] = "kept"  # the largest copy of the picture wins
    (root / "dups").mkdir()
    (root / "dups" / "coffee-copy.png").write_bytes((root / "coffee.png").read_bytes())
    Image.open(root / "coffee.png").save(root / "dups" / "coffee.bmp")  # same pixels, different bytes
    expect["dups/coffee-copy.png"] = expect["dups/coffee.bmp"] = "exact_duplicate"
    (root / "bad").mkdir()
    jpg = (root / "sizes" / "astro384.jpg").read_bytes()
    (root / "bad" / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "bad" / "zero.jpg").write_bytes(b"")
    (root / "bad" / "text.jpg").write_text("not an image")
    Image.fromarray(cv2.resize(astro, (64, 64))).save(root / "bad" / "tiny.png")
    expect |= {"bad/truncated.jpg": "truncated", "bad/zero.jpg": "empty_file", "bad/text.jpg": "not_an_image"}
    expect["bad/tiny.png"] = "too_small"
    return expect


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("curate") / "in"
    return root, make_input(root)


@pytest.fixture(scope="module")
def first_run(photo_dir, tmp_path_factory, prefect_local):
    from flows.curate import curate_flow

    ws = tmp_path_factory.mktemp("ws")
    summary = curate_flow(input=str(photo_dir[0]), out=str(ws), cfg=small_cfg(), show_progress=False)
    return ws, summary


def outcome(ws: Path, root: Path) -> dict[str, str]:
    con = duckdb.connect()
    rej = dict(con.sql(f"select uri, reason from '{ws}/tables/rejects/*.parquet'").fetchall())
    kept = {u for (u,) in con.sql(f"select distinct uri from '{ws}/tables/samples/*.parquet'").fetchall()}
    return {os.path.relpath(u, root): ("kept" if u in kept else rej[u]) for u in kept | set(rej)}


def test_every_input_is_accounted_for(first_run, photo_dir):
    ws, s = first_run
    root, expect = photo_dir
    n_files = sum(1 for p in root.rglob("*") if p.is_file())
    assert s["seen"] == n_files == s["kept"] + s["rejected"]
    got = outcome(ws, root)
    assert len(got) == n_files
    for rel, want in expect.items():
        assert got[rel] == want, rel


def test_near_duplicates_point_to_the_kept_copy(first_run):
    ws, _ = first_run
    rows = duckdb.sql(
        f"select r.uri, s.uri from '{ws}/tables/rejects/*.parquet' r "
        f"left join '{ws}/tables/samples/*.parquet' s on s.image_key = r.duplicate_of where r.stage = 'dedup'"
    ).fetchall()
    assert len(rows) == 5
    assert all(kept is not None and kept.endswith(("astronaut.png", "coffee.png")) for _, kept in rows), rows


def test_shards_read_back_with_independent_readers(first_run):
    ws, s = first_run
    shard_dir = ws / "shards" / "t"
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    tars = [str(shard_dir / sh["name"]) for sh in manifest["shards"]]
    assert len(tars) == s["shards"] >= 2 and sum(sh["count"] for sh in manifest["shards"]) == s["samples"]
    keys = []
    for t in tars:
        with tarfile.open(t) as tf:
            keys += sorted({m.name.split(".", 1)[0] for m in tf.getmembers()})
    assert keys == sorted(keys) and len(set(keys)) == s["samples"]  # sorted by key across shards, no repeats
    for sample in wds.WebDataset(tars, shardshuffle=False).decode("rgb8"):
        hr, lr, meta = sample["hr.png"], sample["lr.png"], sample["json"]
        assert hr.shape == (128, 128, 3) and lr.shape == (32, 32, 3)
        assert meta["key"] == sample["__key__"] and "." not in meta["key"]
        assert meta["degradation"]["seed"] == meta["seed"]
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("webdataset", data_files={"train": tars}, split="train", cache_dir=str(ws / ".hf"))
    assert len(ds) == s["samples"]
    idx = duckdb.sql(f"select count(*), count(distinct key) from '{shard_dir}/index.parquet'").fetchall()[0]
    assert idx == (s["samples"], s["samples"])


def test_tables_have_schema_version_and_sql_command_works(first_run):
    ws, s = first_run
    from pipelines.catalog import query

    cols, rows = query(ws, "select reason, count(*) n from rejects group by 1 order by 1")
    assert cols == ["reason", "n"] and sum(n for _, n in rows) == s["rejected"]
    for table in ("sources", "images", "rejects", "samples"):
        assert query(ws, f"select distinct schema_version from {table}")[1] == [(1,)]


def test_rerun_skips_finished_units_and_is_byte_identical(first_run, photo_dir):
    from flows.curate import curate_flow

    ws, s = first_run
    before = {p.name: p.read_bytes() for p in (ws / "shards" / "t").glob("*.tar")}
    again = curate_flow(input=str(photo_dir[0]), out=str(ws), cfg=small_cfg(), show_progress=False)
    assert again["units"]["built_now"] == 0
    assert {k: again[k] for k in ("seen", "kept", "rejected", "samples")} == {
        k: s[k] for k in ("seen", "kept", "rejected", "samples")
    }
    assert {p.name: p.read_bytes() for p in (ws / "shards" / "t").glob("*.tar")} == before


def test_changed_settings_rebuild_units(first_run, photo_dir, tmp_path):
    from flows.curate import curate_flow

    ws, _ = first_run
    cfg = small_cfg(seed=7)
    s = curate_flow(input=str(photo_dir[0]), out=str(ws), cfg=cfg, show_progress=False)
    assert s["units"]["built_now"] == s["units"]["total"]
    # put the workspace back as the other tests expect it
    curate_flow(input=str(photo_dir[0]), out=str(ws), cfg=small_cfg(), show_progress=False)


@pytest.mark.timeout(600)
def test_sigkill_mid_run_then_rerun_gives_identical_shards(photo_dir, first_run, tmp_path):
    """Kill the CLI with SIGKILL after some units finished; the rerun completes and matches the clean run."""
    root, _ = photo_dir
    ref_ws, _ = first_run
    ws = tmp_path / "ws"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(json.dumps(json.loads(small_cfg(unit_size=1).model_dump_json())))
    cmd = [sys.executable, "-m", "flows.cli", "curate", "-i", str(root), "-o", str(ws), "-c", str(cfg_path),
           "--quiet", "--workers", "1"]  # fmt: skip
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "ph")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((ws / "units").glob("*.done"))) < 3 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stdout.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its ephemeral Prefect server: leave no orphan
    proc.wait()
    n_units = len(list(Path(root).rglob("*.*")))
    assert len(list((ws / "units").glob("*.done"))) < n_units
    assert not (ws / "shards" / "t" / "manifest.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "seen" in done.stdout and "ok" in done.stdout
    shards = lambda w: {p.name: p.read_bytes() for p in (w / "shards" / "t").glob("*.tar")}  # noqa: E731
    assert shards(ws) == shards(ref_ws)
    assert not list(ws.rglob(".*.tmp-*"))


@pytest.mark.parametrize("runner", ["processes", "dask"])
def test_other_task_runners_give_identical_shards(runner, first_run, photo_dir, tmp_path):
    """The process pool and a local Dask cluster (prefect-dask) run the same units to the same bytes."""
    from flows.curate import curate_flow, make_task_runner

    ref_ws, ref = first_run
    flow = curate_flow.with_options(task_runner=make_task_runner(runner, workers=2))
    s = flow(input=str(photo_dir[0]), out=str(tmp_path), cfg=small_cfg(), show_progress=False)
    assert (s["seen"], s["kept"], s["samples"]) == (ref["seen"], ref["kept"], ref["samples"])
    shards = lambda w: {p.name: p.read_bytes() for p in (w / "shards" / "t").glob("*.tar")}  # noqa: E731
    assert shards(tmp_path) == shards(ref_ws)


def test_held_out_and_benchmark_images_never_reach_the_training_shards(first_run, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines import curate as steps

    ws = tmp_path / "ws"
    shutil.copytree(first_run[0], ws)
    kept = sorted(
        k for (k,) in duckdb.sql(f"select distinct image_key from '{ws}/tables/samples/*.parquet'").fetchall()
    )
    (ws / "benchmarks" / "b1").mkdir(parents=True)
    pq.write_table(pa.table({"image_key": [kept[0]]}), ws / "benchmarks" / "b1" / "index.parquet")
    cfg = small_cfg(holdout_permille=1000)  # everything else is held out
    assert steps.holdout(ws, cfg) == len(kept)
    steps.pack(ws, cfg)
    s = steps.summarize(ws, cfg)
    assert s["samples"] == 0 and s["kept"] == 0 and s["seen"] == s["rejected"]
    reasons = dict(duckdb.sql(f"select key, reason from '{ws}/tables/rejects/part-split.parquet'").fetchall())
    assert reasons[kept[0]] == "in_benchmark" and set(reasons.values()) == {"in_benchmark", "held_out"}
