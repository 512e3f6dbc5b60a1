"""Benchmark sets: synthetic (folder and workspace), paired import, LR-only import; read back with DuckDB and cv2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import duckdb
import numpy as np
import pytest
import skimage.data
from benchfixtures import forge_index

from pipelines.bench import sets as bs
from pipelines.bench import synthetic
from pipelines.curate import split
from pipelines.curate.degrade import degrade, seed_for
from pipelines.store.workspace import write_table
from schemas.records import IMAGES, SAMPLES, ImageRec, SampleRec

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # real photos, 300x451 up to 512x512
HR = 128
SCALE = 4


def _photo(name: str) -> np.ndarray:
    return getattr(skimage.data, name)()


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _read(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _index(bench: Path) -> list[dict]:
    rel = duckdb.sql(f"select * from '{bench}/index.parquet' order by key")
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def _report(bench: Path) -> dict[str, tuple[str, str, str | None]]:
    rows = duckdb.sql(f"select file, status, detail, key from '{bench}/import_report.parquet'").fetchall()
    return {Path(f).name: (s, d, k) for f, s, d, k in rows}


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    for name in PHOTOS:
        _write(d / f"{name}.png", _photo(name))
    return d


# ----------------------------------------------------------------------------------------------------------------- #
# Split, keys, names
# ----------------------------------------------------------------------------------------------------------------- #


def test_holdout_split_is_the_curation_rule_deterministic_and_at_the_rate():
    assert bs.holdout_split is split.holdout_split  # curation excludes exactly what the builder takes
    keys = [f"{i:024x}" for i in range(10000)]
    for permille, lo, hi in ((10, 60, 140), (500, 4800, 5200)):  # +-4 sd of a binomial
        held = [k for k in keys if bs.holdout_split(k, permille)]
        assert held == [k for k in keys if bs.holdout_split(k, permille)]
        assert lo <= len(held) <= hi


def test_keys_and_match_stems():
    assert bs.sanitize_key("IMG 0001.final") == "IMG_0001_final"
    assert bs.sanitize_key("...") == "img"
    assert bs.match_stem("Canon_001_HR") == ("Canon_001", "hr", None)
    assert bs.match_stem("Canon_001_LR4") == ("Canon_001", "lr", 4)
    assert bs.match_stem("DSC_1454_x1") == ("DSC_1454", "hr", None)
    assert bs.match_stem("DSC_1454_x4") == ("DSC_1454", "lr", 4)
    assert bs.match_stem("0801_lr") == ("0801", "lr", None)
    assert bs.match_stem("0801") == ("0801", None, None)
    taken: set[str] = set()
    keys = [bs._unique_key(bs.sanitize_key(stem), stem, taken) for stem in ("x y", "x_y", "X_Y")]
    assert (
        keys[0] == "x_y"
        and len({k.lower() for k in keys}) == 3
        and all(k.startswith(("x_y-", "X_Y-")) for k in keys[1:])
    )
    base = bs.bench_base_seed("syn", 0)
    assert 2**62 <= base < 2**63 and base != bs.bench_base_seed("syn", 1) != bs.bench_base_seed("other", 1)


# ----------------------------------------------------------------------------------------------------------------- #
# Synthetic
# ----------------------------------------------------------------------------------------------------------------- #


def test_synthetic_from_folder(photo_dir: Path, tmp_path: Path):
    _write(photo_dir / "aaa_tiny.png", _photo("coffee")[:64, :64])
    (photo_dir / "notes.txt").write_text("not a picture")
    summary = bs.build_synthetic(photo_dir, tmp_path / "benchmarks", "syn", count=4, hr_size=(HR, HR), scale=SCALE)
    bench = tmp_path / "benchmarks" / "syn"
    assert summary["count"] == 4 and summary["path"] == str(bench)
    # key order: aaa_tiny (too small), astronaut, chelsea, coffee, notes (not an image), rocket
    assert {s["key"]: s["reason"] for s in summary["skipped"]} == {"aaa_tiny": "too_small", "notes": "not_an_image"}

    rows = _index(bench)
    assert [r["key"] for r in rows] == sorted(PHOTOS)
    base = bs.bench_base_seed("syn", 0)
    for r in rows:
        hr, lr = _read(bench / r["hr_path"]), _read(bench / r["lr_path"])
        assert hr.shape == (HR, HR, 3) and lr.shape == (HR // SCALE, HR // SCALE, 3)
        assert (r["hr_width"], r["hr_height"], r["lr_width"], r["lr_height"]) == (HR, HR, HR // SCALE, HR // SCALE)
        assert r["scale"] == SCALE and r["schema_version"] == bs.BENCH_SCHEMA_VERSION
        assert r["seed"] == seed_for(r["key"], base)
        assert r["source_uri"] == str(photo_dir / f"{r['key']}.png") and len(r["image_key"]) == 24
        params = json.loads(r["degradation"])
        assert params["seed"] == r["seed"] and set(params["crop"]) == {"x", "y", "w", "h", "score"}
        # The LR is reproducible from the stored seed, and not the one training would draw for this key.
        assert np.array_equal(degrade(hr, SCALE, r["seed"])[0], lr)
        assert not np.array_equal(degrade(hr, SCALE, seed_for(r["key"], 0))[0], lr)

    manifest = json.loads((bench / "manifest.json").read_text())
    assert (manifest["kind"], manifest["version"], manifest["count"], manifest["scale"]) == (
        "synthetic",
        "synthetic/1",
        4,
        SCALE,
    )
    assert set(manifest["files"]) == set(_tree(bench)) - {"manifest.json"}
    assert manifest["created_from"] == str(photo_dir.resolve())
    assert bs.verify_benchmark(bench) == []
    (bench / "lr" / "rocket.png").write_bytes(b"tampered")
    assert bs.verify_benchmark(bench) == ["lr/rocket.png: sha256 differs from the manifest"]


def test_synthetic_rebuild_is_byte_identical_and_the_seed_changes_the_lr(photo_dir: Path, tmp_path: Path):
    out = tmp_path / "benchmarks"
    kw = {"count": 2, "hr_size": (HR, HR), "scale": SCALE}
    bs.build_synthetic(photo_dir, out, "syn", **kw)
    first = _tree(out / "syn")
    bs.build_synthetic(photo_dir, out, "syn", **kw)  # replaces the existing benchmark
    assert _tree(out / "syn") == first
    assert [p.name for p in out.iterdir()] == ["syn"]  # no build or old folders left behind

    bs.build_synthetic(photo_dir, tmp_path / "other", "syn", seed=1, **kw)
    second = _tree(tmp_path / "other" / "syn")
    assert all(second[f"hr/{k}.png"] == first[f"hr/{k}.png"] for k in ("astronaut", "chelsea"))
    assert all(second[f"lr/{k}.png"] != first[f"lr/{k}.png"] for k in ("astronaut", "chelsea"))


def test_a_failed_rebuild_leaves_the_old_benchmark_untouched(photo_dir: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "benchmarks"
    bs.build_synthetic(photo_dir, out, "syn", count=2, hr_size=(HR, HR), scale=SCALE)
    before = _tree(out / "syn")
    calls = []

    def failing_degrade(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return degrade(*args, **kwargs)

    monkeypatch.setattr(synthetic, "degrade", failing_degrade)
    with pytest.raises(RuntimeError, match="simulated crash"):
        bs.build_synthetic(photo_dir, out, "syn", count=2, hr_size=(HR, HR), scale=SCALE, seed=5)
    assert _tree(out / "syn") == before
    assert [p.name for p in out.iterdir()] == ["syn"]


def _keys(n_held: int, n_not: int, permille: int) -> tuple[list[str], list[str]]:
    held, other, i = [], [], 0
    while len(held) < n_held or len(other) < n_not:
        key = f"{i:024x}"
        (held if bs.holdout_split(key, permille) else other).append(key)
        i += 1
    return held[:n_held], other[:n_not]


def _image_rec(key: str, uri: Path, passed: bool) -> ImageRec:
    return ImageRec(
        str(uri),
        key,
        "0" * 64,
        "0" * 64,
        1,
        512,
        512,
        "PNG",
        "RGB",
        "",
        "0" * 16,
        1.0,
        None,
        0.0,
        0.5,
        0.0,
        0.0,
        1.0,
        passed,
        "u0",
    )


def _workspace(root: Path, photo_dir: Path, permille: int) -> dict[str, str]:
    """Images: astronaut, coffee held out; chelsea not held out; rocket held out but failed the filters; a flipped
    astronaut held out but shipped in training. Returns name -> key."""
    _write(photo_dir / "flipped.png", np.ascontiguousarray(_photo("astronaut")[:, ::-1]))
    held, other = _keys(4, 1, permille)
    names = {"astronaut": held[0], "coffee": held[1], "rocket": held[2], "flipped": held[3], "chelsea": other[0]}
    recs = [_image_rec(k, photo_dir / f"{n}.png", n != "rocket") for n, k in names.items()]
    write_table(root / "tables" / "images" / "part-x.parquet", recs, IMAGES)
    shipped = SampleRec(
        f"{names['flipped']}-c0",
        names["flipped"],
        str(photo_dir / "flipped.png"),
        "0" * 64,
        0,
        0,
        HR,
        HR,
        32,
        32,
        4,
        1,
        "{}",
        0.5,
        "0" * 64,
        "0" * 64,
        "{}",
        "u0",
    )
    write_table(root / "tables" / "samples" / "part-train4k.parquet", [shipped], SAMPLES)
    return names


def test_synthetic_from_workspace_uses_only_held_out_images(photo_dir: Path, tmp_path: Path):
    ws = tmp_path / "ws"
    names = _workspace(ws, photo_dir, 500)
    summary = bs.build_synthetic(ws, ws / "benchmarks", "syn", hr_size=(HR, HR), scale=SCALE, holdout_permille=500)
    rows = _index(ws / "benchmarks" / "syn")
    assert sorted(r["key"] for r in rows) == sorted([names["astronaut"], names["coffee"]])
    assert all(r["image_key"] == r["key"] for r in rows)
    assert [(s["key"], s["reason"]) for s in summary["skipped"]] == [(names["flipped"], "in_training")]
    manifest = json.loads((ws / "benchmarks" / "syn" / "manifest.json").read_text())
    assert manifest["settings"]["source"] == "workspace" and manifest["settings"]["holdout_permille"] == 500

    with pytest.raises(ValueError, match=r"no held-out images.*--holdout-permille"):
        bs.build_synthetic(ws, ws / "benchmarks", "none", hr_size=(HR, HR), holdout_permille=0)
    assert not (ws / "benchmarks" / "none").exists()


def test_synthetic_errors_name_the_fix(tmp_path: Path, photo_dir: Path):
    (tmp_path / "ws" / "tables").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no decoded images.*sr4k curate"):
        bs.build_synthetic(tmp_path / "ws", tmp_path / "out", "s", hr_size=(HR, HR))
    with pytest.raises(ValueError, match="does not exist"):
        bs.build_synthetic(tmp_path / "missing", tmp_path / "out", "s", hr_size=(HR, HR))
    with pytest.raises(ValueError, match="smaller hr_size"):
        bs.build_synthetic(photo_dir, tmp_path / "out", "s", hr_size=(1024, 1024))
    with pytest.raises(ValueError, match="multiple of 32"):
        bs.build_synthetic(photo_dir, tmp_path / "out", "s", hr_size=(100, 100))
    with pytest.raises(ValueError, match="name"):
        bs.build_synthetic(photo_dir, tmp_path / "out", "a.b", hr_size=(HR, HR))
    assert not any((tmp_path / "out").iterdir())  # failed builds leave nothing behind


def test_a_folder_that_is_not_a_benchmark_is_never_replaced(photo_dir: Path, tmp_path: Path):
    (tmp_path / "out" / "mine").mkdir(parents=True)
    (tmp_path / "out" / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not a benchmark"):
        bs.build_synthetic(photo_dir, tmp_path / "out", "mine", count=1, hr_size=(HR, HR))
    with pytest.raises(ValueError, match="inside the benchmark"):
        bs.import_lr_only(tmp_path / "out" / "mine", tmp_path / "out", "mine")
    assert (tmp_path / "out" / "mine" / "thesis.tex").read_text() == "precious"


# ----------------------------------------------------------------------------------------------------------------- #
# Paired
# ----------------------------------------------------------------------------------------------------------------- #


def _hr(name: str, y: int = 100, x: int = 100, size: tuple[int, int] = (HR, HR)) -> np.ndarray:
    return np.ascontiguousarray(_photo(name)[y : y + size[1], x : x + size[0]])


def _lr(hr: np.ndarray, scale: int = SCALE, seed: int = 0) -> np.ndarray:
    """A "real" LR: area downscale plus mild noise (PSNR against the downscaled HR ~40 dB)."""
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    lr = cv2.resize(hr[: h * scale, : w * scale], (w, h), interpolation=cv2.INTER_AREA).astype(np.int16)
    lr += np.random.default_rng(seed).integers(-6, 7, lr.shape, dtype=np.int16)
    return np.clip(lr, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "hr_name,lr_name,key",
    [
        ("{}_HR.png", "{}_LR4.png", "{}"),  # RealSR
        ("{}_x1.png", "{}_x4.png", "{}"),  # DRealSR
        ("{}.png", "{}.jpg", "{}"),  # plain, different extensions
    ],
)
def test_paired_naming_styles(tmp_path: Path, hr_name: str, lr_name: str, key: str):
    stems = ["Canon_001", "Canon_002", "DSC 7"]
    for i, (stem, photo) in enumerate(zip(stems, PHOTOS, strict=False)):
        hr = _hr(photo)
        _write(tmp_path / "HR" / hr_name.format(stem), hr)
        _write(tmp_path / "LR" / lr_name.format(stem), _lr(hr, seed=i))
    summary = bs.import_paired(tmp_path / "HR", tmp_path / "LR", tmp_path / "out", "real")
    assert summary["count"] == 3 and summary["scale"] == SCALE and summary["statuses"] == {"imported": 6}
    rows = _index(tmp_path / "out" / "real")
    assert [r["key"] for r in rows] == ["Canon_001", "Canon_002", "DSC_7"]
    for r in rows:
        assert (r["hr_width"], r["lr_width"], r["seed"], r["degradation"]) == (HR, HR // SCALE, None, None)
        assert _read(tmp_path / "out" / "real" / r["hr_path"]).shape == (HR, HR, 3)


def test_paired_realsr_layout_with_hr_and_lr_in_one_folder(tmp_path: Path):
    d = tmp_path / "Canon" / "Test" / "4"
    for i, photo in enumerate(PHOTOS[:2]):
        hr = _hr(photo)
        _write(d / f"Canon_{i:03d}_HR.png", hr)
        _write(d / f"Canon_{i:03d}_LR4.png", _lr(hr, seed=i))
    _write(d / "stray.png", _hr("coffee"))
    summary = bs.import_paired(d, d, tmp_path / "out", "realsr")
    assert summary["count"] == 2
    report = _report(tmp_path / "out" / "realsr")
    assert len(report) == 5 and report["stray.png"][0] == "unmatched"


def test_paired_problems_are_reported_per_file(tmp_path: Path):
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    good = {"a": ("astronaut", 0), "b": ("chelsea", 0), "c": ("coffee", 0), "d": ("rocket", 0), "e": ("rocket", 250)}
    for i, (stem, (photo, x)) in enumerate(good.items()):
        hr = _hr(photo, x=x)
        _write(hr_dir / f"{stem}_HR.png", hr)
        _write(lr_dir / f"{stem}_LR4.png", _lr(hr, seed=i))
    odd = _hr("astronaut", y=300, size=(HR + 3, HR + 2))  # within scale - 1 px: cropped, imported
    _write(hr_dir / "modcrop_HR.png", odd)
    _write(lr_dir / "modcrop_LR4.png", _lr(odd))
    _write(hr_dir / "wrongsize_HR.png", _hr("coffee"))
    _write(lr_dir / "wrongsize_LR4.png", _lr(_hr("coffee"))[:30, :30])
    _write(hr_dir / "swapped_HR.png", _hr("astronaut", y=0, x=0))
    _write(lr_dir / "swapped_LR4.png", _lr(_hr("coffee", y=0, x=0)))  # another scene: misaligned
    _write(hr_dir / "lonely_HR.png", _hr("chelsea"))
    _write(lr_dir / "orphan_LR4.png", _lr(_hr("chelsea")))
    (lr_dir / "readme.txt").write_text("camera notes")
    _write(hr_dir / "twice_HR.png", _hr("rocket"))
    _write(hr_dir / "twice_HR.jpg", _hr("rocket"))
    _write(lr_dir / "twice_LR4.png", _lr(_hr("rocket")))
    _write(hr_dir / "broken_HR.png", _hr("coffee"))
    png = _write(lr_dir / "broken_LR4.png", _lr(_hr("coffee"))).read_bytes()
    (lr_dir / "broken_LR4.png").write_bytes(png[: len(png) // 2])  # truncated: a picture that does not decode
    (lr_dir / ".DS_Store").write_bytes(b"\0")
    (lr_dir / "sub").mkdir()

    summary = bs.import_paired(hr_dir, lr_dir, tmp_path / "out", "mixed")
    bench = tmp_path / "out" / "mixed"
    report = _report(bench)
    assert len(report) == len(list(hr_dir.iterdir())) + len(list(lr_dir.iterdir()))  # every entry accounted for
    status = {name: s for name, (s, _, _) in report.items()}
    assert {n for n, s in status.items() if s == "imported"} == {
        f"{k}_{side}.png" for k in [*good, "modcrop"] for side in ("HR", "LR4")
    }
    expected = {
        "wrongsize_HR.png": "size_mismatch",
        "wrongsize_LR4.png": "size_mismatch",
        "swapped_HR.png": "misaligned",
        "swapped_LR4.png": "misaligned",
        "lonely_HR.png": "unmatched",
        "orphan_LR4.png": "unmatched",
        "readme.txt": "not_an_image",
        "twice_HR.png": "ambiguous",
        "twice_HR.jpg": "ambiguous",
        "twice_LR4.png": "ambiguous",
        "broken_LR4.png": "decode_failed",
        "broken_HR.png": "partner_rejected",
        ".DS_Store": "skipped_hidden",
        "sub": "skipped_folder",
    }
    assert {n: status[n] for n in expected} == expected
    assert "modcrop" in report["modcrop_HR.png"][1] and "psnr_y" in report["a_HR.png"][1]
    assert summary["count"] == 6 and summary["statuses"]["imported"] == 12
    rows = {r["key"]: r for r in _index(bench)}
    assert set(rows) == {*good, "modcrop"}
    assert _read(bench / rows["modcrop"]["hr_path"]).shape == (HR, HR, 3)
    assert not (bench / "hr" / "swapped.png").exists()  # files of misaligned pairs are removed
    assert set(json.loads((bench / "manifest.json").read_text())["files"]) == set(_tree(bench)) - {"manifest.json"}


def test_paired_scale_inference_and_explicit_scale(tmp_path: Path):
    hr = _hr("astronaut")
    _write(tmp_path / "HR" / "a.png", hr)
    _write(tmp_path / "LR" / "a.png", _lr(hr, scale=2))
    assert bs.import_paired(tmp_path / "HR", tmp_path / "LR", tmp_path / "out", "x2")["scale"] == 2
    with pytest.raises(bs.BenchmarkError, match="size_mismatch") as err:  # given scale 4, the x2 pair does not fit
        bs.import_paired(tmp_path / "HR", tmp_path / "LR", tmp_path / "out", "x4", scale=4)
    assert [r["status"] for r in err.value.report] == ["size_mismatch", "size_mismatch"]

    _write(tmp_path / "LR3" / "a.png", cv2.resize(hr, (50, 50), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match="not an integer ratio; pass scale="):
        bs.import_paired(tmp_path / "HR", tmp_path / "LR3", tmp_path / "out", "odd")
    _write(tmp_path / "UP" / "a_LR4.png", hr)
    with pytest.raises(ValueError, match="upsampled to the HR size"):
        bs.import_paired(tmp_path / "HR", tmp_path / "UP", tmp_path / "out", "up")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x2"]


def test_paired_folder_errors(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "HR" / "a.png", _hr("coffee"))
    with pytest.raises(ValueError, match="empty"):
        bs.import_paired(tmp_path / "HR", tmp_path / "empty", tmp_path / "out", "p")
    with pytest.raises(ValueError, match="does not exist"):
        bs.import_paired(tmp_path / "HR", tmp_path / "nope", tmp_path / "out", "p")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    (tmp_path / "text" / "b.csv").write_text("y")
    with pytest.raises(bs.BenchmarkError, match=r"nothing imported.*not_an_image") as err:
        bs.import_paired(tmp_path / "text", tmp_path / "text", tmp_path / "out", "p")
    assert {r["status"] for r in err.value.report} == {"not_an_image"}
    with pytest.raises(bs.BenchmarkError, match="not_an_image") as err:
        bs.import_paired(tmp_path / "HR", tmp_path / "text", tmp_path / "out", "p")
    assert len(err.value.report) == 3
    assert not (tmp_path / "out" / "p").exists()


# ----------------------------------------------------------------------------------------------------------------- #
# LR-only
# ----------------------------------------------------------------------------------------------------------------- #


def _lr_only_dir(d: Path) -> dict[str, tuple[int, int]]:
    sizes = {"wide": (120, 80), "tall": (70, 100), "small": (40, 30)}  # (width, height)
    for (name, (w, h)), photo in zip(sizes.items(), PHOTOS, strict=False):
        _write(d / f"{name}.png", _hr(photo, size=(w, h)))
    _write(d / "copy of wide.png", _hr(PHOTOS[0], size=sizes["wide"]))  # same pixels as wide.png
    (d / "list.txt").write_text("x")
    return sizes


def test_lr_only_varying_size_keeps_sizes(tmp_path: Path):
    sizes = _lr_only_dir(tmp_path / "lq")
    summary = bs.import_lr_only(tmp_path / "lq", tmp_path / "out", "lq")
    bench = tmp_path / "out" / "lq"
    rows = {r["key"]: r for r in _index(bench)}
    # "copy of wide" sorts before "wide", so it is the one kept; wide.png is reported as its duplicate
    assert set(rows) == {"copy_of_wide", "small", "tall"} and summary["count"] == 3
    assert (rows["tall"]["lr_width"], rows["tall"]["lr_height"]) == sizes["tall"]
    assert _read(bench / rows["small"]["lr_path"]).shape == (30, 40, 3)
    assert all(r["hr_path"] is None and r["hr_width"] is None and r["scale"] == 4 for r in rows.values())
    assert not (bench / "hr").exists()
    report = _report(bench)
    assert report["wide.png"][0] == "duplicate" and report["list.txt"][0] == "not_an_image"
    assert len(report) == len(list((tmp_path / "lq").iterdir()))


def test_lr_only_square_crops_and_reports_too_small(tmp_path: Path):
    _lr_only_dir(tmp_path / "lq")
    summary = bs.import_lr_only(tmp_path / "lq", tmp_path / "out", "sq", square=64, scale=4)
    bench = tmp_path / "out" / "sq"
    rows = _index(bench)
    assert {r["key"] for r in rows} == {"copy_of_wide", "tall"} and summary["count"] == 2
    assert all((r["lr_width"], r["lr_height"]) == (64, 64) for r in rows)
    assert all(_read(bench / r["lr_path"]).shape == (64, 64, 3) for r in rows)
    report = _report(bench)
    assert report["small.png"][0] == "too_small" and "40x30" in report["small.png"][1]
    assert report["tall.png"][1].startswith("crop 64x64 at")
    assert json.loads((bench / "manifest.json").read_text())["settings"]["square"] == 64


# ----------------------------------------------------------------------------------------------------------------- #
# Untrusted input (issue 13): hostile folders, crafted indexes, names, huge LRs
# ----------------------------------------------------------------------------------------------------------------- #


def _hostile(d: Path, outside: Path) -> None:
    """A FIFO, a link to /dev/zero, a link to /etc/passwd and one to a file outside ``d``, beside real pictures."""
    import os

    os.mkfifo(d / "pipe.png")
    (d / "zero.png").symlink_to("/dev/zero")
    (d / "passwd.png").symlink_to("/etc/passwd")
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (d / "away.png").symlink_to(outside)


def _all_report_text(bench: Path) -> str:
    return json.dumps(duckdb.sql(f"select * from '{bench}/import_report.parquet'").fetchall(), default=str)


@pytest.mark.timeout(60)
def test_lr_only_import_rejects_not_a_files_and_outside_links_without_reading_them(tmp_path: Path):
    import time

    lr = tmp_path / "lr"
    _lr_only_dir(lr)
    _hostile(lr, tmp_path / "secret.txt")
    (lr / "inside.png").symlink_to(lr / "wide.png")  # a link that stays inside the folder is an ordinary input
    t0 = time.monotonic()
    s = bs.import_lr_only(lr, tmp_path / "benchmarks", "lq")
    assert time.monotonic() - t0 < 30  # the FIFO did not block, /dev/zero was not read
    bench = tmp_path / "benchmarks" / "lq"
    rep = _report(bench)
    assert rep["pipe.png"][0] == "not_a_file" and "FIFO" in rep["pipe.png"][1]
    for name in ("zero.png", "passwd.png", "away.png"):
        assert rep[name][0] == "symlink_outside_root", rep[name]
    assert rep["inside.png"][0] == "duplicate"  # read (it is inside) and found to be wide.png
    text = _all_report_text(bench)
    assert "root:x:0" not in text and "/bin/bash" not in text  # no byte of an outside file reaches the report
    assert s["count"] == len(_index(bench)) and all(r["source_uri"].startswith(str(lr)) for r in _index(bench))
    assert sum(p.stat().st_size for p in bench.rglob("*") if p.is_file()) < 5_000_000  # nothing grew from /dev/zero


@pytest.mark.timeout(60)
def test_paired_and_synthetic_imports_reject_the_same_entries(tmp_path: Path, photo_dir: Path):
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    hr = _hr("astronaut")
    _write(hr_dir / "scene_HR.png", hr)
    _write(lr_dir / "scene_LR4.png", _lr(hr))
    _hostile(hr_dir, tmp_path / "secret.txt")
    bs.import_paired(hr_dir, lr_dir, tmp_path / "benchmarks", "real", 4)
    rep = _report(tmp_path / "benchmarks" / "real")
    assert rep["scene_HR.png"][0] == "imported" and rep["pipe.png"][0] == "not_a_file"
    assert {rep[n][0] for n in ("zero.png", "passwd.png", "away.png")} == {"symlink_outside_root"}
    assert "root:x:0" not in _all_report_text(tmp_path / "benchmarks" / "real")
    _hostile(photo_dir, tmp_path / "secret2.txt")
    s = bs.build_synthetic(photo_dir, tmp_path / "benchmarks", "syn", count=10, hr_size=(HR, HR), scale=SCALE)
    reasons = {Path(x["source"]).name: x["reason"] for x in s["skipped"]}
    assert reasons["pipe.png"] == "not_a_file" and reasons["passwd.png"] == "symlink_outside_root"
    assert s["count"] == len(PHOTOS) and "root:x:0" not in json.dumps(s)


@pytest.mark.parametrize(
    "row,message",
    [
        ({"key": "../../../../X"}, "key '../../../../X' is not a valid key"),
        ({"lr_path": "/etc/passwd"}, "lr_path '/etc/passwd' is not"),
        ({"hr_path": "../../outside.png"}, "hr_path '../../outside.png' is not"),
    ],
)
def test_a_forged_index_fails_verification_with_one_line(photo_dir: Path, tmp_path: Path, row: dict, message: str):
    bs.build_synthetic(photo_dir, tmp_path / "b", "syn", count=2, hr_size=(HR, HR), scale=SCALE)
    bench = tmp_path / "b" / "syn"
    assert bs.verify_benchmark(bench) == []
    forge_index(bench, **row)
    assert any(message in p for p in bs.verify_benchmark(bench)), bs.verify_benchmark(bench)
    with pytest.raises(ValueError) as e:
        bs.read_index(bench)
    assert message in str(e.value) and "\n" not in str(e.value) and "rebuild it" in str(e.value)
    with pytest.raises(ValueError, match=r"not a valid key|is not"):
        bs.index_rows(bench)


def test_a_manifest_naming_files_outside_the_benchmark_is_refused(photo_dir: Path, tmp_path: Path):
    bs.build_synthetic(photo_dir, tmp_path / "b", "syn", count=2, hr_size=(HR, HR), scale=SCALE)
    bench = tmp_path / "b" / "syn"
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nsecret")
    first = _index(bench)[0]
    (bench / first["lr_path"]).unlink()
    (bench / first["lr_path"]).symlink_to(tmp_path / "x.png")  # the listed file is a link out of the folder
    manifest = json.loads((bench / "manifest.json").read_text())
    manifest["files"][first["lr_path"]] = hashlib.sha256((tmp_path / "x.png").read_bytes()).hexdigest()
    manifest["files"]["../x.png"] = manifest["files"][first["lr_path"]]
    (bench / "manifest.json").write_text(json.dumps(manifest))
    problems = " | ".join(bs.verify_benchmark(bench))
    assert "outside" in problems and "'../x.png' leaves or hides its folder" in problems


@pytest.mark.parametrize("name", ["../x", "../../../x", "a/b", "x.y", "-rf"])
def test_benchmark_names_are_validated(photo_dir: Path, tmp_path: Path, name: str):
    with pytest.raises(ValueError, match="is not a valid name: use letters, digits"):
        bs.import_lr_only(photo_dir, tmp_path / "benchmarks", name)
    with pytest.raises(ValueError, match="is not a valid name"):
        bs.build_synthetic(photo_dir, tmp_path / "benchmarks", name, count=1, hr_size=(HR, HR))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # nothing created anywhere


def test_output_size_limit_counts_lr_times_scale_squared():
    limit = bs.MAX_SR_PIXELS
    assert limit == 16384 * 8192
    assert bs.sr_output_too_large(2896, 2896, 4) is None  # 134,189,056 px: just under
    msg = bs.sr_output_too_large(2897, 2896, 4)
    assert msg is not None and "11588x11584" in msg and f"{limit:,}" in msg
    assert bs.sr_output_too_large(11500, 11500, 1) is None  # as an x1 set it is what decode admits
    assert "46000x46000" in bs.sr_output_too_large(11500, 11500, 4)


@pytest.mark.timeout(120)
def test_a_huge_lr_is_reported_too_large_with_the_limit(tmp_path: Path):
    from PIL import Image

    lr = tmp_path / "lr"
    _lr_only_dir(lr)
    Image.new("1", (11500, 11500)).save(lr / "huge.png")  # 132 MPx: under decode's max_pixels, 2.1 GPx at x4
    s = bs.import_lr_only(lr, tmp_path / "benchmarks", "lq", scale=4)
    status, detail, _ = _report(tmp_path / "benchmarks" / "lq")["huge.png"]
    assert status == "too_large" and f"{bs.MAX_SR_PIXELS:,} px" in detail and "--square" in detail
    assert "huge" not in {r["key"] for r in _index(tmp_path / "benchmarks" / "lq")} and s["count"] >= 1
    with pytest.raises(ValueError, match=r"--square 4096: .* > the limit of 134,217,728 px"):
        bs.import_lr_only(lr, tmp_path / "benchmarks", "lq2", square=4096, scale=4)


def test_evaluate_called_directly_refuses_a_forged_index(photo_dir: Path, tmp_path: Path):
    """The Python API (pipelines.bench.evaluate.evaluate), not only the flow, refuses keys that would write outside."""
    from flows.upscalers import get_upscaler
    from pipelines.bench.evaluate import evaluate

    ws = tmp_path / "ws"
    bs.build_synthetic(photo_dir, ws / "benchmarks", "syn", count=2, hr_size=(HR, HR), scale=SCALE)
    forge_index(ws / "benchmarks" / "syn", key="../../../../X")
    with pytest.raises(ValueError, match="not a valid key"):
        evaluate(ws, "syn", [get_upscaler("bicubic", SCALE)])
    assert not (ws / "evals").exists() and not list(tmp_path.glob("**/X"))
    with pytest.raises(ValueError, match="--bench"):
        evaluate(ws, "../syn", [get_upscaler("bicubic", SCALE)])
