"""Curate flow: staging removed after packing (reruns still byte-identical) and one source per picture across crops,
rescales and colour-mode variants. Real photos (scikit-image's bundled ones), small sizes, a real local Prefect API."""

import hashlib
import shutil
from pathlib import Path

import cv2
import duckdb
import pytest
from PIL import Image

from pipelines.curate.build import CurateConfig

pytestmark = pytest.mark.slow


def small_cfg(**kw) -> CurateConfig:
    base = {
        "hr_size": "128",
        "scale": 4,
        "unit_size": 2,
        "shard_max_count": 3,
        "dataset": "t",
        "holdout_permille": 0,
        "filters": {"min_short_side": 128},
    }
    return CurateConfig.model_validate(base | kw)


def shard_bytes(ws: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((ws / "shards" / "t").glob("*.tar"))}


def outcome(ws: Path) -> dict[str, str]:
    con = duckdb.connect()
    kept = con.execute(f"select distinct uri from read_parquet('{ws}/tables/samples/*.parquet')").fetchall()
    rej = con.execute(f"select uri, reason from read_parquet('{ws}/tables/rejects/*.parquet')").fetchall()
    return {Path(u).name: "kept" for (u,) in kept} | {Path(u).name: r for u, r in rej}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("staging") / "in"
    root.mkdir()
    for name in ("coffee", "chelsea", "rocket"):
        Image.fromarray(getattr(data, name)()).save(root / f"{name}.png")
    astro = data.astronaut()
    Image.fromarray(astro).save(root / "zz_astro.png")  # sorts last: removing it leaves the other units as they are
    small = cv2.resize(astro, (256, 256), interpolation=cv2.INTER_AREA)
    Image.fromarray(small).save(root / "astro256.jpg", quality=95)
    return root


def test_staging_is_removed_after_packing_and_a_rerun_is_byte_identical(photos, tmp_path, prefect_local):
    from flows.curate import curate_flow

    ws = tmp_path / "ws"
    first = curate_flow(input=str(photos), out=str(ws), cfg=small_cfg(), show_progress=False)
    assert first["kept"] == 4 and outcome(ws)["astro256.jpg"] == "near_duplicate"
    assert first["units"]["total"] == 3
    assert not list((ws / "staging").glob("*")), "staging tars left after packing"
    shards = shard_bytes(ws)
    assert len(shards) == 2  # 4 samples, 3 per shard
    again = curate_flow(input=str(photos), out=str(ws), cfg=small_cfg(), show_progress=False)
    assert again["units"]["built_now"] == 0 and again["kept"] == 4
    assert shard_bytes(ws) == shards
    assert not list((ws / "staging").glob("*"))
    (ws / "shards" / "t" / "train-000000.tar").unlink()  # a shard lost by hand: its samples' units are rebuilt
    third = curate_flow(input=str(photos), out=str(ws), cfg=small_cfg(), show_progress=False)
    assert third["kept"] == 4 and shard_bytes(ws) == shards


def test_a_duplicate_kept_later_is_rebuilt_when_its_staging_is_gone(photos, tmp_path, prefect_local):
    """Run 1 rejects astro256 as a copy of zz_astro (and removes all staging); run 2 without zz_astro keeps astro256,
    whose unit is done but whose samples are in no shard: it is rebuilt, and the shards equal a fresh curation's."""
    from flows.curate import curate_flow

    src = tmp_path / "in"
    shutil.copytree(photos, src)
    ws = tmp_path / "ws"
    curate_flow(input=str(src), out=str(ws), cfg=small_cfg(), show_progress=False)
    (src / "zz_astro.png").unlink()
    second = curate_flow(input=str(src), out=str(ws), cfg=small_cfg(), show_progress=False)
    assert second["units"]["built_now"] == 0  # the two remaining units were done: only the restage rebuilt one
    assert outcome(ws)["astro256.jpg"] == "kept" and second["kept"] == 4
    fresh = tmp_path / "fresh"
    curate_flow(input=str(src), out=str(fresh), cfg=small_cfg(), show_progress=False)
    assert shard_bytes(ws) == shard_bytes(fresh)
    assert not list((ws / "staging").glob("*"))


def test_crops_rescales_and_colour_modes_of_one_picture_leave_one_source(tmp_path, prefect_local):
    """coffee as a portrait re-crop, a 0.6x rescale and a CMYK JPEG beside the original and two other photos: the
    original is kept, each other form is a dedup reject pointing to it (the crop found by crop matching)."""
    from skimage import data

    from flows.curate import curate_flow

    src = tmp_path / "in"
    src.mkdir()
    coffee = data.coffee()  # 400x600
    Image.fromarray(coffee).save(src / "coffee.png")
    Image.fromarray(coffee[:, 200:425]).save(src / "coffee-portrait.jpg", quality=92)
    Image.fromarray(cv2.resize(coffee, (360, 240), interpolation=cv2.INTER_AREA)).save(src / "coffee-small.jpg")
    Image.fromarray(coffee).convert("CMYK").save(src / "coffee-cmyk.jpg", quality=92)
    for name in ("chelsea", "rocket"):
        Image.fromarray(getattr(data, name)()).save(src / f"{name}.png")
    ws = tmp_path / "ws"
    summary = curate_flow(input=str(src), out=str(ws), cfg=small_cfg(), show_progress=False)
    got = outcome(ws)
    assert {k: v for k, v in got.items() if v == "kept"} == dict.fromkeys(
        ("coffee.png", "chelsea.png", "rocket.png"), "kept"
    )
    assert got["coffee-portrait.jpg"] == "crop_duplicate" and summary["kept"] == 3
    con = duckdb.connect()
    rows = con.execute(
        f"select uri, duplicate_of, detail from read_parquet('{ws}/tables/rejects/*.parquet') where stage = 'dedup'"
    ).fetchall()
    kept_key = con.execute(
        f"select distinct image_key from read_parquet('{ws}/tables/samples/*.parquet') where uri like '%coffee.png'"
    ).fetchall()[0][0]
    assert {Path(u).name for u, _, _ in rows} == {"coffee-portrait.jpg", "coffee-small.jpg", "coffee-cmyk.jpg"}
    assert all(dup == kept_key for _, dup, _ in rows)
    assert any("crop match ncc" in d for _, _, d in rows)
