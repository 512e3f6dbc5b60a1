"""Hashing before the expensive build (pipelines.curate.build.claim_pixels): an exact copy of a picture that a
lower-URI copy builds costs a decode, not a crop/degrade/encode, and the shards stay the ones every-copy-built gives.

The steps run without an orchestrator, in a chosen unit order, so the two extremes of a runner's timing are both
tested: lowest URI first (every other copy skips) and lowest URI last (no copy can skip, all are built).
"""

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest
from PIL import Image
from skimage import data

from pipelines.curate import build as steps
from pipelines.store.workspace import Workspace

COPIES = ("a.png", "b.png", "c.png", "d.png", "e.png")


def small_cfg() -> steps.CurateConfig:
    base = {
        "hr_size": "128",
        "scale": 4,
        "unit_size": 1,
        "dataset": "t",
        "holdout_permille": 0,
        "filters": {"min_short_side": 128},
    }
    return steps.CurateConfig.model_validate(base)


def run(src: Path, ws: Path, reverse: bool = False) -> tuple[list[dict], dict]:
    """plan -> prune -> build the units not done (in sorted or reversed order) -> dedup -> holdout -> pack."""
    cfg = small_cfg()
    p = steps.plan(str(src), cfg, workspace=ws)
    steps.prune_stale_units(Workspace(ws), p.units)
    todo = [u for u in p.units if not steps.unit_done(Workspace(ws), u.name, cfg)]
    order = todo[::-1] if reverse else todo
    counts = [steps.build_unit(u, p.listing.root, p.listing.origin, ws, cfg) for u in order]
    steps.dedup(ws, cfg)
    steps.holdout(ws, cfg)
    by_name = {u.name: u for u in p.units}
    for name in steps.units_to_restage(ws, cfg):
        steps.build_unit(by_name[name], p.listing.root, p.listing.origin, ws, cfg)
    steps.pack(ws, cfg)
    return counts, steps.summarize(ws, cfg)


def shards(ws: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((ws / "shards" / "t").glob("*.tar"))}


def outcome(ws: Path) -> dict[str, tuple[str, str | None]]:
    con = duckdb.connect()
    kept = con.execute(f"select distinct uri from read_parquet('{ws}/tables/samples/*.parquet')").fetchall()
    sql = f"select uri, reason, duplicate_of from read_parquet('{ws}/tables/rejects/*.parquet')"
    rej = con.execute(sql).fetchall()
    return {Path(u).name: ("kept", None) for (u,) in kept} | {Path(u).name: (r, d) for u, r, d in rej}


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hashfirst") / "in"
    root.mkdir()
    Image.fromarray(data.astronaut()).save(root / COPIES[0])
    for name in COPIES[1:]:
        shutil.copy(root / COPIES[0], root / name)
    return root


def test_identical_copies_are_built_once_when_the_kept_copy_comes_first(copies, tmp_path):
    counts, summary = run(copies, tmp_path / "ws")
    assert [c["built"] for c in counts] == [1, 0, 0, 0, 0]
    assert [c["not_built_copies"] for c in counts] == [0, 1, 1, 1, 1]
    assert summary["seen"] == 5 and summary["kept"] == 1 and summary["rejected"] == 4
    got = outcome(tmp_path / "ws")
    assert got["a.png"] == ("kept", None)
    con = duckdb.connect()
    keys = con.execute(f"select distinct key from read_parquet('{tmp_path}/ws/tables/images/*.parquet')").fetchall()
    assert len(keys) == 1
    key = keys[0][0]
    assert {got[n] for n in COPIES[1:]} == {("exact_duplicate", key)}


def test_any_build_order_gives_the_same_shards_and_keeps_the_lowest_uri(copies, tmp_path):
    _, first = run(copies, tmp_path / "forward")
    counts, last = run(copies, tmp_path / "reverse", reverse=True)
    assert sum(c["built"] for c in counts) == 5  # lowest URI last: no copy could rely on it, each was built
    assert first == last
    assert shards(tmp_path / "forward") == shards(tmp_path / "reverse")
    assert outcome(tmp_path / "forward") == outcome(tmp_path / "reverse")


def test_a_copy_that_relied_on_a_removed_one_is_built_on_the_rerun(copies, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(copies, src)
    ws = tmp_path / "ws"
    run(src, ws)
    (src / "a.png").unlink()
    counts, summary = run(src, ws)
    assert summary["seen"] == 4 and summary["kept"] == 1
    assert outcome(ws)["b.png"] == ("kept", None)
    assert sum(c["built"] for c in counts) == 1  # b's unit is rebuilt; c, d, e still rely on b
    fresh = tmp_path / "fresh"
    run(src, fresh)
    assert shards(ws) == shards(fresh)


def test_prune_rebuilds_units_whose_kept_copy_left_and_drops_its_claim(copies, tmp_path):
    """The same units without the lowest copy (unit names unchanged, as when a URL list loses one entry): each unit
    that skipped its build because of that copy is no longer done, and the copy's claim is gone."""
    ws = tmp_path / "ws"
    run(copies, ws)
    cfg = small_cfg()
    units = steps.plan(str(copies), cfg, workspace=ws).units
    survivors = [u for u in units if Path(u.uris[0]).name != "a.png"]
    assert all(steps.unit_done(Workspace(ws), u.name, cfg) for u in units)
    steps.prune_stale_units(Workspace(ws), survivors)
    assert not any(steps.unit_done(Workspace(ws), u.name, cfg) for u in survivors)
    held = {p.read_text() for p in (ws / "claims").rglob("*") if p.is_file()}
    assert held and not any(Path(u).name == "a.png" for u in held)


@pytest.mark.parametrize("name", ["FILTERS_VERSION", "DEGRADE_VERSION", "DECODE_VERSION", "CROP_VERSION"])
def test_a_step_version_bump_rebuilds_every_unit_of_a_resumed_curation(copies, tmp_path, monkeypatch, name):
    """New filter or degradation code means other decisions or other bytes: after a step-version bump no finished
    unit counts as done, the rerun builds again (the lowest copy at least; the others skip it under the new
    claims) and every sample records the new version. Before, ``unit_done`` compared the settings only, so a
    resumed curation kept the old samples and shards."""
    import json

    ws = tmp_path / "ws"
    run(copies, ws)
    cfg = small_cfg()
    units = steps.plan(str(copies), cfg, workspace=ws).units
    assert all(steps.unit_done(Workspace(ws), u.name, cfg) for u in units)
    monkeypatch.setattr(steps, name, getattr(steps, name) + "+bumped")
    assert not any(steps.unit_done(Workspace(ws), u.name, cfg) for u in units)
    counts, summary = run(copies, ws)
    assert len(counts) == len(units) and sum(c["built"] for c in counts) >= 1 and summary["kept"] == 1
    con = duckdb.connect()
    stamped = con.execute(f"select distinct versions from read_parquet('{ws}/tables/samples/*.parquet')").fetchall()
    assert [json.loads(v)[name.split("_")[0].lower()] for (v,) in stamped] == [getattr(steps, name)]


# --- the build's scheduling leaves every record and byte unchanged (issue 16: overlapping encode) --------------------

MATE = Path("/usr/share/backgrounds/mate/nature")


def tables(ws: Path) -> dict[str, list[tuple]]:
    """Every row of the images, rejects and samples tables (read with DuckDB), in a fixed order."""
    con = duckdb.connect()
    return {
        t: con.execute(f"select * from read_parquet('{ws}/tables/{t}/*.parquet') order by all").fetchall()
        for t in ("images", "rejects", "samples")
    }


@pytest.mark.skipif(not MATE.exists(), reason="needs the mate-backgrounds Debian package")
def test_overlapped_hr_encode_gives_identical_records_and_shards(tmp_path):
    """Real photo windows (native pixels of Debian's MATE wallpapers, one also as a crop) curated with the HR PNG
    encoded on a second thread during the degradation and without: the same rows in every table and the same shard
    bytes."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("Storm.jpg", "Garden.jpg", "LadyBird.jpg", "TwoWings.jpg"):
        rgb = Image.open(MATE / name).convert("RGB")
        w, h = rgb.size
        rgb.crop((w // 2 - 320, h // 2 - 224, w // 2 + 320, h // 2 + 224)).save(src / f"{name[:-4]}.png")
    Image.open(src / "Storm.png").crop((64, 0, 576, 448)).save(src / "Storm-crop.png")
    out = {}
    for overlap in (True, False):
        cfg = small_cfg().model_copy(update={"hr_size": (256, 256), "overlap_encode": overlap, "unit_size": 2})
        cfg.filters.photos_only = False
        ws = tmp_path / f"ws-{overlap}"
        p = steps.plan(str(src), cfg, workspace=ws)
        for u in p.units:
            steps.build_unit(u, p.listing.root, p.listing.origin, ws, cfg)
        steps.dedup(ws, cfg)
        steps.holdout(ws, cfg)
        steps.pack(ws, cfg)
        out[overlap] = (tables(ws), shards(ws), steps.summarize(ws, cfg))
    assert out[True] == out[False]
    rows, tars, summary = out[True]
    assert summary["samples"] >= 3 and tars  # something was built and shipped
    assert any(r[2] == "crop_duplicate" for r in rows["rejects"])  # the crop found by dedup


def _encode_in_child(rgb):
    """In a forked worker: an HR encode through the build's encoder pool, bounded (a pool whose threads stayed in
    the parent would never run it)."""
    return steps._encoder().submit(steps.encode_png, rgb, 1).result(timeout=10)


def test_the_encoder_pool_is_made_again_in_a_forked_child():
    """A process runner forks workers from a parent that may have built with the overlapped encode already: the
    child must get its own encode threads (the parent's do not exist there), and encode the same bytes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    rgb = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    want = steps._encoder().submit(steps.encode_png, rgb, 1).result(timeout=30)  # the parent's pool exists
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        assert pool.submit(_encode_in_child, rgb).result(timeout=60) == want
