"""Shard writer round trips, read back with independent readers: tarfile, webdataset, HF datasets, DuckDB."""

import hashlib
import json
import os
import tarfile

import duckdb
import numpy as np
import pytest
import webdataset as wds

from pipelines.store.shards import ShardWriter, write_shards


def _samples(n, size=600):
    rng = np.random.default_rng(0)
    for i in range(n):
        yield f"k{i:04d}", f"img{i // 2}", {"hr.png": rng.bytes(size), "json": json.dumps({"i": i}).encode()}


def test_count_limit_manifest_and_tarfile_readback(tmp_path):
    m = write_shards(tmp_path, _samples(25), dataset="d", max_count=10)
    assert [s.count for s in m.shards] == [10, 10, 5]
    assert m.samples == 25
    for s in m.shards:
        path = tmp_path / s.name
        assert path.stat().st_size == s.bytes
        assert hashlib.sha256(path.read_bytes()).hexdigest() == s.sha256
        with tarfile.open(path) as tf:
            names = tf.getnames()
        assert len(names) == 2 * s.count
        assert all(n.count(".") in (1, 2) for n in names)  # key.hr.png / key.json
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["name"] for s in manifest["shards"]] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert not list(tmp_path.glob(".*tmp*"))


def test_size_limit_starts_new_shards(tmp_path):
    m = write_shards(tmp_path, _samples(6, size=4000), dataset="d", max_bytes=9000)
    assert all(s.count <= 2 for s in m.shards) and sum(s.count for s in m.shards) == 6


def test_webdataset_and_duckdb_read_back(tmp_path):
    write_shards(tmp_path, _samples(12), dataset="d", max_count=5)
    urls = sorted(str(p) for p in tmp_path.glob("train-*.tar"))
    got = {s["__key__"]: json.loads(s["json"]) for s in wds.WebDataset(urls, shardshuffle=False)}
    assert got == {f"k{i:04d}": {"i": i} for i in range(12)}
    rows = duckdb.sql(f"select shard, count(*) from '{tmp_path}/index.parquet' group by 1 order by 1").fetchall()
    assert rows == [("train-000000.tar", 5), ("train-000001.tar", 5), ("train-000002.tar", 2)]


def test_hf_datasets_reads_the_shards(tmp_path):
    datasets = pytest.importorskip("datasets")
    write_shards(tmp_path, _samples(7), dataset="d", max_count=3)
    files = sorted(str(p) for p in tmp_path.glob("train-*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "c"))
    assert len(ds) == 7
    assert sorted(ds["__key__"]) == [f"k{i:04d}" for i in range(7)]


def test_same_samples_give_byte_identical_shards(tmp_path):
    a = write_shards(tmp_path / "a", _samples(9), dataset="d", max_count=4)
    b = write_shards(tmp_path / "b", _samples(9), dataset="d", max_count=4)
    assert [s.sha256 for s in a.shards] == [s.sha256 for s in b.shards]


def test_rewrite_with_fewer_samples_removes_stale_shards(tmp_path):
    write_shards(tmp_path, _samples(9), dataset="d", max_count=3)
    write_shards(tmp_path, _samples(4), dataset="d", max_count=3)
    assert sorted(p.name for p in tmp_path.glob("train-*.tar")) == ["train-000000.tar", "train-000001.tar"]


@pytest.mark.parametrize("key", ["a.b", "", "x/y"])
def test_keys_with_dots_or_slashes_are_refused(tmp_path, key):
    w = ShardWriter(tmp_path)
    with pytest.raises(ValueError, match=r"no '\.'"):
        w.write(key, {"json": b"{}"})


def test_error_mid_write_leaves_no_partial_shard(tmp_path):
    def boom():
        yield from _samples(3)
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        write_shards(tmp_path, boom(), dataset="d", max_count=10)
    assert (
        not list(tmp_path.glob("*.tar"))
        and not list(tmp_path.glob(".*"))
        and not (tmp_path / "manifest.json").exists()
    )


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    import subprocess

    from pipelines.store.workspace import remove_stale_temps

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "units").mkdir()
    stale = tmp_path / "units" / f".u1.done.tmp-{dead.pid}"
    live = tmp_path / "units" / f".u2.done.tmp-{os.getpid()}"
    stale.write_text("x")
    live.write_text("x")
    assert remove_stale_temps(tmp_path) == 1
    assert not stale.exists() and live.exists()
