"""Preference loading: a release written with webdataset.TarWriter and a workspace table, each checked against an
independent reader (webdataset, duckdb)."""

import json

import numpy as np
import pytest
from refreward_fixtures import pair_images, write_release, write_workspace

from training.reward.data import load_preferences, split_by_lr


def test_release_round_trip(tmp_path):
    import webdataset as wds

    folder = write_release(tmp_path / "prefs-v1", n=5, per_shard=2)  # 3 shards
    samples = load_preferences(folder)
    assert [s.rec.pair_id for s in samples] == [f"pair{i:03d}" for i in range(5)]
    ds = wds.WebDataset(sorted(str(p) for p in folder.glob("*.tar")), shardshuffle=False)
    for s, ref in zip(samples, ds, strict=True):
        meta = json.loads(ref["json"])
        assert ref["__key__"] == s.rec.pair_id == meta["pair_id"]
        assert (s.rec.consistency, s.rec.naturalness) == (meta["consistency"], meta["naturalness"])
        assert s.lr.read() == ref["lr.png"] and s.a.read() == ref["a.png"] and s.b.read() == ref["b.png"]
    lr, a, b = samples[3].load()
    for got, want in zip((lr, a, b), pair_images(3), strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    assert load_preferences(folder / "train-000001.tar")[0].rec.pair_id == "pair002"  # one shard alone


def test_release_sample_missing_member(tmp_path):
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "train-000000.tar")) as w:
        w.write({"__key__": "p1", "lr.png": b"x", "a.png": b"x", "json": b"{}"})
    with pytest.raises(ValueError, match=r"lacks members \['b.png'\]"):
        load_preferences(tmp_path)


def test_workspace_table(tmp_path):
    import duckdb

    root = write_workspace(tmp_path / "ws", n=4)
    samples = load_preferences(root)
    rows = duckdb.sql(
        f"select pair_id, naturalness, path_a from read_parquet('{root}/tables/preferences/*.parquet') order by 1"
    ).fetchall()
    assert [(s.rec.pair_id, s.rec.naturalness) for s in samples] == [(r[0], r[1]) for r in rows]
    assert samples[0].a.path == str(root / rows[0][2])  # relative paths resolve against the workspace root
    np.testing.assert_array_equal(np.asarray(samples[1].load()[2]), pair_images(1)[2])


def test_workspace_lr_inside_a_shard_is_read_from_the_tar(tmp_path):
    """LR inputs of a curated shard dataset are located as ``shards/<set>/<shard>.tar#<key>.lr.png``."""
    import io
    import tarfile

    import pyarrow.parquet as pq

    from pipelines.store.workspace import write_table
    from schemas.labels import PREFERENCES, PreferenceRec

    root = write_workspace(tmp_path / "ws", n=2)
    lr_bytes = (root / "images" / "pair001_lr.png").read_bytes()
    shard = root / "shards" / "train4k" / "train-000000.tar"
    shard.parent.mkdir(parents=True)
    with tarfile.open(shard, "w") as tf:
        for name, data in (("k0.hr.png", b"not this one"), ("k1.lr.png", lr_bytes)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    part = root / "tables" / "preferences" / "part-000.parquet"
    rows = pq.read_table(part).to_pylist()
    rows[1]["lr_path"] = "shards/train4k/train-000000.tar#k1.lr.png"
    write_table(part, [PreferenceRec(**r) for r in rows], PREFERENCES)
    sample = load_preferences(root)[1]
    assert sample.lr.path == str(shard) and sample.lr.read() == lr_bytes
    np.testing.assert_array_equal(np.asarray(sample.load()[0]), pair_images(1)[0])
    rows[1]["lr_path"] = "shards/train4k/train-000000.tar#missing.lr.png"
    write_table(part, [PreferenceRec(**r) for r in rows], PREFERENCES)
    with pytest.raises(FileNotFoundError, match=r"no member 'missing\.lr\.png'"):
        load_preferences(root)


def test_missing_sources_say_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_preferences(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="sr4k release preferences"):
        load_preferences(tmp_path)


def test_split_keeps_each_lr_on_one_side(tmp_path):
    samples = load_preferences(write_release(tmp_path / "r", n=40, per_shard=40))
    train, held = split_by_lr(samples + samples[:5], holdout=0.25, seed=1)
    assert {s.rec.lr_key for s in train}.isdisjoint({s.rec.lr_key for s in held})
    assert 3 <= len(held) <= 20 and len(train) + len(held) == 45


def test_min_agreement_filter(tmp_path):
    from training.reward.data import filter_samples

    samples = load_preferences(write_release(tmp_path / "r", n=4))
    assert len(filter_samples(samples, 0.9)) == 4  # naturalness is unanimous on every pair
    for s in samples:
        s.rec.naturalness_agreement = 0.5
    assert filter_samples(samples, 0.9) == [] and len(filter_samples(samples, 2 / 3)) == 4
