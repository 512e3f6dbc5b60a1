import csv
import os

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.curate.ingest import list_inputs, read_source, split_units
from schemas.records import Rejection


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    for rel in ["a.jpg", "sub/b.png", "sub/deeper/c.webp", ".DS_Store"]:
        (root / rel).write_bytes(b"x")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "d.jpg").write_bytes(b"x")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"outside")
    os.symlink(outside, root / "link.jpg")
    return root


def test_folder_is_walked_recursively_and_hidden_entries_are_rows(tree):
    lst = list_inputs(str(tree))
    names = [os.path.relpath(u, tree) for u in lst.uris]
    assert names == [".DS_Store", ".hidden/d.jpg", "a.jpg", "link.jpg", "sub/b.png", "sub/deeper/c.webp"]
    assert lst.hidden == 2 and lst.origin == "folder"
    for rel in (".DS_Store", ".hidden/d.jpg"):
        assert read_source(str(tree / rel), lst.root, walked=True).reason == "hidden"
        assert read_source(str(tree / rel), lst.root, walked=False) == b"x"  # named in a list: read
    assert read_source(str(tree / "sub/b.png"), lst.root, walked=True) == b"x"


def test_the_workspace_inside_the_input_is_not_listed(tree):
    (tree / "ws" / "thumbs").mkdir(parents=True)
    (tree / "ws" / "thumbs" / "t.jpg").write_bytes(b"x")
    assert str(tree / "ws" / "thumbs" / "t.jpg") not in list_inputs(str(tree), exclude=tree / "ws").uris
    assert str(tree / "ws" / "thumbs" / "t.jpg") in list_inputs(str(tree)).uris


def test_special_files_are_rejected_without_opening(tree):
    fifo = tree / "pipe.jpg"
    os.mkfifo(fifo)  # open() on it would block until a writer came
    lst = list_inputs(str(tree))
    assert str(fifo) in lst.uris
    assert read_source(str(fifo), lst.root, walked=True).reason == "not_a_file"
    assert read_source("/dev/zero", None).reason == "not_a_file"


def test_bad_urls_are_rejects_not_crashes(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rej = read_source(f"http://127.0.0.1:{port}/x.jpg", None)
    assert isinstance(rej, Rejection) and rej.reason == "unreadable" and rej.detail
    assert read_source("nosuchproto://host/x.jpg", None).reason == "unknown_protocol"
    assert read_source("memory:///nope/x.jpg", None).reason == "missing"


def test_empty_inputs_are_one_line_errors(tmp_path):
    from pipelines.curate.ingest import probe_input

    (tmp_path / "empty" / "sub").mkdir(parents=True)
    for check in (list_inputs, probe_input):
        with pytest.raises(ValueError, match="holds no files"):
            check(str(tmp_path / "empty"))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no files"):
        list_inputs(str(tmp_path / "empty.txt"))


def test_symlink_outside_the_root_is_rejected_not_read(tree):
    lst = list_inputs(str(tree))
    rej = read_source(str(tree / "link.jpg"), lst.root)
    assert isinstance(rej, Rejection) and rej.reason == "symlink_outside_root"
    assert read_source(str(tree / "a.jpg"), lst.root) == b"x"


def test_list_files_txt_csv_parquet_resolve_relative_paths(tree, tmp_path):
    (tmp_path / "l.txt").write_text("# comment\nin/a.jpg\n\nin/sub/b.png\nin/a.jpg\n")
    with open(tmp_path / "l.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", "path"], [1, "in/a.jpg"], [2, "in/sub/b.png"]])
    pq.write_table(pa.table({"url": ["in/a.jpg", "in/sub/b.png"]}), tmp_path / "l.parquet")
    want = [str(tree / "a.jpg"), str(tree / "sub/b.png")]
    for name in ("l.txt", "l.csv", "l.parquet"):
        lst = list_inputs(str(tmp_path / name))
        assert lst.uris == want and lst.origin == "list"


def test_fsspec_url_input_and_read():
    fs = fsspec.filesystem("memory")
    fs.pipe({"/photos/x.jpg": b"1", "/photos/y/z.png": b"2"})
    lst = list_inputs("memory://photos")
    assert lst.uris == ["memory:///photos/x.jpg", "memory:///photos/y/z.png"]
    assert read_source(lst.uris[1], None) == b"2"
    assert read_source("memory:///photos/nope.jpg", None).reason == "missing"


def test_missing_input_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist; pass a folder"):
        list_inputs(str(tmp_path / "nope"))
    (tmp_path / "one.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="pass its folder"):
        list_inputs(str(tmp_path / "one.jpg"))


def test_units_are_deterministic_and_cover_every_uri():
    uris = [f"/x/{i:03d}.jpg" for i in range(23)]
    units = split_units(uris, 5)
    assert [len(u.uris) for u in units] == [5, 5, 5, 5, 3]
    assert [x for u in units for x in u.uris] == uris
    assert [u.name for u in units] == [u.name for u in split_units(list(uris), 5)]
    assert units[0].name != split_units(["/other.jpg", *uris[1:]], 5)[0].name
