"""The shared input rules (pipelines.store.safety): regular files only, links inside the root, capped reads that never
block, strict names, index paths inside their folder, one-line YAML errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipelines.store import safety


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(b"A" * 10)
    (root / "sub" / "b.png").write_bytes(b"B")
    (tmp_path / "secret.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    os.mkfifo(root / "pipe.png")
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "outside.png").symlink_to(tmp_path / "secret.txt")
    (root / "inside.png").symlink_to(root / "a.png")
    (root / "dangling.png").symlink_to(root / "nope.png")
    (root / "dirlink").symlink_to(root / "sub")
    (root / ".hidden").write_bytes(b"x")
    return root


def _by_name(entries: list[safety.Entry]) -> dict[str, tuple[str, str]]:
    return {e.path.name: (e.kind, e.reason) for e in entries}


@pytest.mark.timeout(20)
def test_list_folder_classifies_every_entry_without_opening_it(folder: Path):
    t0 = time.monotonic()
    got = _by_name(safety.list_folder(folder))
    assert time.monotonic() - t0 < 5  # a FIFO with no writer would block an open() forever
    assert got == {
        ".hidden": ("hidden", ""),
        "a.png": ("file", ""),
        "dangling.png": ("rejected", "missing"),
        "dirlink": ("folder", ""),
        "inside.png": ("file", ""),
        "outside.png": ("rejected", "symlink_outside_root"),
        "pipe.png": ("rejected", "not_a_file"),
        "sub": ("folder", ""),
        "zero.png": ("rejected", "symlink_outside_root"),  # /dev/zero lies outside the root too
    }


@pytest.mark.timeout(20)
def test_walk_does_not_follow_folder_links_and_reports_each_entry_once(folder: Path):
    got = [(str(e.path.relative_to(folder)), e.kind) for e in safety.walk(folder)]
    names = [n for n, _ in got]
    assert len(names) == len(set(names))
    assert ("sub/b.png", "file") in got and ("dirlink", "folder") in got
    assert not any(n.startswith("dirlink/") for n in names)
    assert ("pipe.png", "rejected") in got and ("outside.png", "rejected") in got


@pytest.mark.timeout(20)
def test_reads_refuse_fifos_devices_and_outside_links_without_blocking(folder: Path, tmp_path: Path):
    t0 = time.monotonic()
    for name, reason in (
        ("pipe.png", "not_a_file"),
        ("outside.png", "symlink_outside_root"),
        ("zero.png", "symlink_outside_root"),
        ("dangling.png", "missing"),
    ):
        with pytest.raises(safety.UnsafeInput) as e:
            safety.read_capped(folder / name, folder)
        assert e.value.reason == reason and name in str(e.value)
    with pytest.raises(safety.UnsafeInput) as e:  # a device given directly (no root): refused from its fstat
        safety.read_capped("/dev/zero", None, 1 << 20)
    assert e.value.reason == "not_a_file" and "character device" in str(e.value)
    assert time.monotonic() - t0 < 5
    assert safety.read_capped(folder / "inside.png", folder) == b"A" * 10
    with pytest.raises(safety.UnsafeInput) as e:
        safety.read_capped(folder / "a.png", folder, max_bytes=9)
    assert e.value.reason == "too_large" and "9 bytes" in str(e.value)
    assert safety.read_capped(folder / "a.png", folder, max_bytes=10) == b"A" * 10


def test_names_are_strict():
    for ok in ("syn4k", "RealSR_v3-x4", "_private", "a" * 200):
        assert safety.check_name(ok, "--name") == ok
    bad_names = ("../x", "../../../x", "a\n", "a/b", "a.b", ".hidden", "-rf", "", "a b", "x'y", "a" * 201, None, 3)
    for bad in (*bad_names, "é"):
        with pytest.raises(ValueError, match=r"--name .* is not a valid name: use letters, digits"):
            safety.check_name(bad, "--name")


def test_inside_keeps_index_paths_in_their_folder(tmp_path: Path):
    root = tmp_path / "bench"
    (root / "lr").mkdir(parents=True)
    (root / "lr" / "a.png").write_bytes(b"x")
    (root / "lr" / "evil.png").symlink_to(tmp_path)
    listed = {"lr/a.png": "h", "lr/evil.png": "h"}
    assert safety.inside(root, "lr/a.png", "lr_path", listed) == root / "lr" / "a.png"
    for rel, msg in (
        ("/etc/passwd", "not a relative path"),
        ("../../x.png", "leaves or hides"),
        ("lr/../../x", "leaves or hides"),
        ("lr/b.png", "not listed in the verified manifest"),
        ("lr/evil.png/..", "leaves or hides"),
        (None, "not a relative path"),
    ):
        with pytest.raises(ValueError, match=msg):
            safety.inside(root, rel, "lr_path", listed)
    (root / "lr" / "out.png").symlink_to("/etc/hostname")
    with pytest.raises(ValueError, match="outside"):
        safety.inside(root, "lr/out.png", "lr_path", {"lr/out.png": "h"})


@pytest.mark.timeout(20)
def test_yaml_errors_are_one_line_and_name_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scale: 4\nfilters:\n  min_short_side: [1, 2\n")
    with pytest.raises(ValueError) as e:
        safety.read_yaml_mapping(bad)
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and "not valid YAML at line" in msg and "fix the file" in msg
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        safety.read_yaml_mapping(tmp_path / "list.yaml")
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(ValueError, match="FIFO"):
        safety.read_yaml_mapping(tmp_path / "fifo.yaml")
    with pytest.raises(ValueError, match="does not exist"):
        safety.read_yaml_mapping(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert safety.read_yaml_mapping(tmp_path / "empty.yaml") == {}
    (tmp_path / "ok.yaml").write_text("scale: 4\n")
    assert safety.read_yaml_mapping(tmp_path / "ok.yaml") == {"scale": 4}
