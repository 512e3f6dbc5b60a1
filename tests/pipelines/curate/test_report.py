"""The HTML curation report on a tiny hand-made workspace (real schemas, real Parquet parts, real thumbnails)."""

import json
import re
from html.parser import HTMLParser

import cv2
import numpy as np

from pipelines.curate.report import REPORT_NAME, write_report
from pipelines.store.workspace import Workspace, write_json_atomic, write_table
from schemas.records import IMAGES, REJECTS, SAMPLES, SOURCES, ImageRec, RejectRec, SampleRec, SourceRec

EVIL = "/data/in/<script>alert(1)</script>&x.jpg"
VOID = {"meta", "img", "br", "hr", "input", "link", "source", "col", "area", "base", "wbr"}


def _image(uri, key, w, h, sharpness, quality, photo, passed=True):
    return ImageRec(
        uri,
        key,
        "s" * 64,
        key * 2,
        1000,
        w,
        h,
        "JPEG" if quality else "PNG",
        "RGB",
        "",
        "0" * 16,
        sharpness,
        quality,
        0.1,
        0.45,
        0.0,
        0.01,
        photo,
        passed,
        "u0",
    )


def _sample(key, image_key, uri, seed):
    deg = {
        "blur1": {"type": "iso", "size": 7, "sigma_x": 1.25},
        "jpeg1": {"quality": 55},
        "blur2": None,
        "final": {"order": "jpeg_resize_sinc", "quality": 90},
        "seed": seed,
        "scale": 4,
        "version": "d/1",
    }
    return SampleRec(
        key,
        image_key,
        uri,
        "s" * 64,
        32,
        64,
        512,
        512,
        128,
        128,
        4,
        seed,
        json.dumps(deg),
        0.7,
        "h" * 64,
        "l" * 64,
        json.dumps({"decode": "decode/1", "config": "abc123"}),
        "u0",
    )


def _fake_workspace(root):
    ws = Workspace(root)
    keep = [(f"/data/in/keep{i}.jpg", f"{i:024x}") for i in range(1, 4)]
    blurry = ("/data/in/blurry.jpg", "b" * 24)
    small = (EVIL, "c" * 24)
    dup = ("/data/in/copy of keep1.jpg", keep[0][1])
    broken = ["/data/in/broken1.jpg", "/data/in/broken2.png"]
    uris = [u for u, _ in keep] + [blurry[0], small[0], dup[0], *broken, "/data/in/missing.jpg"]
    write_table(ws.part("sources", "u0"), [SourceRec(u, "u0", "folder") for u in uris], SOURCES)
    images = [_image(u, k, 1200 + 100 * i, 900, 10.0 ** (i + 1), 92.0, 0.9) for i, (u, k) in enumerate(keep)]
    images += [
        _image(blurry[0], blurry[1], 1000, 800, 0.5, None, 0.8, False),
        _image(small[0], small[1], 300, 200, 50.0, 80.0, 0.7, False),
        _image(dup[0], dup[1], 1200, 900, 10.0, 92.0, 0.9),
    ]
    write_table(ws.part("images", "u0"), images, IMAGES)
    rejects = [
        RejectRec(blurry[0], "filter", "blurry", "sharpness 0.5 < 20", blurry[1], None, "u0"),
        RejectRec(small[0], "filter", "too_small", "300x200", small[1], None, "u0"),
        RejectRec(broken[0], "decode", "truncated", "image file is truncated <eof>", None, None, "u0"),
        RejectRec(broken[1], "decode", "truncated", "bad CRC", None, None, "u0"),
        RejectRec("/data/in/missing.jpg", "ingest", "unreadable", "No such file", None, None, "u0"),
    ]
    write_table(ws.part("rejects", "u0"), rejects, REJECTS)
    dedup = [RejectRec(dup[0], "dedup", "exact_duplicate", "hamming 0", dup[1], keep[0][1], "u0")]
    write_table(ws.part("rejects", "dedup"), dedup, REJECTS)
    samples = [_sample(f"{k}-c0", k, u, 100 + i) for i, (u, k) in enumerate(keep)]
    write_table(ws.part("samples", "train4k"), samples, SAMPLES)
    rng = np.random.default_rng(0)
    for _, key in [*keep[:2], blurry, small]:  # keep3 has no thumbnail: must be skipped gracefully
        ws.thumb(key).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(ws.thumb(key)), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    shards = [{"name": "train-000000.tar", "count": 3, "bytes": 123456, "sha256": "0" * 64}]
    manifest = {"dataset": "train4k", "split": "train", "samples": 3, "shards": shards, "config_hash": "abc"}
    write_json_atomic(ws.shard_dir("train4k") / "manifest.json", manifest)
    return ws


class _Checker(HTMLParser):
    """Checks that every non-void tag is closed in order (well-formed enough for a browser not to guess)."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.tags = [], [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def _parse(text):
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, checker.stack
    return checker


def _row(text, reason):
    m = re.search(rf"<td>{reason}</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", text)
    assert m, reason
    return int(m.group(1)), int(m.group(2))


def test_report_on_fake_workspace(tmp_path):
    ws = _fake_workspace(tmp_path)
    path = write_report(tmp_path)
    assert path == ws.reports / REPORT_NAME and path.is_file()
    assert not [p for p in ws.reports.iterdir() if p != path]  # no temp file left behind
    text = path.read_text()
    checker = _parse(text)
    assert {"html", "head", "body", "table", "img", "h2"} <= checker.tags
    for name, value in {"seen": 9, "kept": 3, "rejected": 6, "samples": 3, "shards": 1, "bytes": 123456}.items():
        assert f'data-name="{name}" data-value="{value}"' in text
    assert "✓ ok: seen 9 = kept 3 + rejected 6" in text and "mismatch" not in text
    assert _row(text, "truncated") == (2, 2)
    for reason in ("blurry", "too_small", "unreadable", "exact_duplicate"):
        assert _row(text, reason) == (1, 1)
    assert "22.2%" in text  # truncated: 2 of 9 inputs
    assert text.count("data:image/png;base64,") == 7  # six scores + short side
    assert "data:image/jpeg;base64," in text
    assert "no thumbnail" in text  # keep3's thumb is missing
    assert "<script>" not in text and EVIL not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;x.jpg" in text
    assert "image file is truncated &lt;eof&gt;" in text  # decode reject listed as text, escaped
    assert "/data/in/broken2.png" in text and "/data/in/missing.jpg" in text
    assert "left:2.667%;top:7.111%;width:42.667%;height:56.889%" in text  # crop box on keep1 (1200x900)
    assert "jpeg1" in text and "iso size=7 sigma_x=1.25" in text and ">100<" in text  # degradation, seed
    assert "train4k" in text and "decode=decode/1" in text


def test_report_limits_thumbnails(tmp_path):
    _fake_workspace(tmp_path)
    text = write_report(tmp_path, max_thumbs=1).read_text()
    _parse(text)
    assert "1 of 3 kept inputs" in text
    assert text.count("data:image/jpeg;base64,") == 1 + 3 + 2  # 1 kept, 1 per decoded reject reason, 2 samples
    text = write_report(tmp_path, max_thumbs=0).read_text()
    assert "(1, 1 not shown)" in text  # every reason still listed, its thumbnails counted as not shown
    assert text.count("data:image/jpeg;base64,") == 2  # only the samples' sources
    assert "3 kept inputs, no thumbnails shown." in text


def test_report_flags_mismatch(tmp_path):
    ws = _fake_workspace(tmp_path)
    write_table(ws.part("sources", "u1"), [SourceRec("/data/in/lost.jpg", "u1", "folder")], SOURCES)
    text = write_report(tmp_path).read_text()
    assert "✗ mismatch: seen 10 ≠ kept 3 + rejected 6" in text and "/data/in/lost.jpg" in text
    _parse(text)


def test_report_shows_staged_samples_before_packing(tmp_path):
    ws = _fake_workspace(tmp_path)
    staged = [_sample("0" * 23 + "1-c0", "0" * 23 + "1", "/data/in/keep1.jpg", 7)]
    write_table(ws.part("staged_samples", "u0"), staged, SAMPLES)
    write_table(ws.part("samples", "train4k"), [], SAMPLES)
    text = write_report(tmp_path).read_text()
    assert "from the staged_samples table" in text and "mismatch" in text  # nothing kept yet: 3 unaccounted


def test_report_on_empty_workspace(tmp_path):
    ws = Workspace(tmp_path)
    for table, schema in (("sources", SOURCES), ("images", IMAGES), ("rejects", REJECTS), ("samples", SAMPLES)):
        write_table(ws.part(table, "u0"), [], schema)
    path = write_report(tmp_path, max_thumbs=0)
    text = path.read_text()
    _parse(text)
    assert 'data-name="seen" data-value="0"' in text and "✓ ok: seen 0 = kept 0 + rejected 0" in text
    assert "No rejects." in text and "No decoded images." in text and "No samples." in text
    assert "data:image" not in text
    assert [p.name for p in ws.reports.iterdir()] == [REPORT_NAME]


def test_report_without_parts_or_manifest(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "shards" / "train4k").mkdir(parents=True)  # a dataset folder whose manifest was never written
    text = write_report(tmp_path, dataset=None).read_text()
    _parse(text)
    assert "no manifest.json" in text and "samples table (no shard manifest)" in text


def test_quotes_in_the_workspace_path_work_for_sql_and_the_report(tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.store.catalog import query

    root = tmp_path / 'it\'s a "ws" [1]*?; drop table x --'
    _fake_workspace(root)
    index = pa.table({"key": ["a", "b"], "shard": ["train-000000.tar"] * 2})
    pq.write_table(index, root / "shards/train4k/index.parquet")
    cols, rows = query(root, "select count(*) as n from sources")
    assert cols == ["n"] and rows == [(9,)]
    assert query(root, "select dataset, count(*) from shard_index group by 1")[1] == [("train4k", 2)]
    # independent reader: the same parts through a plain DuckDB with a bound parameter
    parts = [str(p) for p in (root / "tables/sources").glob("*.parquet")]
    assert duckdb.connect().execute("select count(*) from read_parquet(?)", [parts]).fetchall() == [(9,)]
    text = write_report(root).read_text()
    assert 'data-name="seen" data-value="9"' in text


def test_report_refuses_a_dataset_name_that_leaves_shards(tmp_path):
    import pytest

    _fake_workspace(tmp_path)
    with pytest.raises(ValueError, match=r"--dataset '\.\./\.\./etc' is not a valid name"):
        write_report(tmp_path, dataset="../../etc")


def test_a_fifo_or_outside_link_as_thumbnail_neither_hangs_nor_leaks(tmp_path):
    import os
    import time

    ws = _fake_workspace(tmp_path / "ws")
    (tmp_path / "secret.jpg").write_bytes(b"\xff\xd8\xffSECRET")
    keep1, keep2 = f"{1:024x}", f"{2:024x}"
    ws.thumb(keep1).unlink()
    os.mkfifo(ws.thumb(keep1))
    ws.thumb(keep2).unlink()
    ws.thumb(keep2).symlink_to(tmp_path / "secret.jpg")
    t0 = time.monotonic()
    text = write_report(tmp_path / "ws").read_text()
    assert time.monotonic() - t0 < 60
    import base64

    assert base64.b64encode(b"\xff\xd8\xffSECRET").decode() not in text and "no thumbnail" in text
