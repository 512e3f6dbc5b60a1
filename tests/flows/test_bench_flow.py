"""Benchmarks end to end with a real local Prefect API: build a synthetic set from real photos, import a paired and
an LR-only set, evaluate two interpolation baselines, and read the results back through the catalog."""

import json
import shutil

import pytest
from benchfixtures import forge_index, one_line_error
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app

pytestmark = pytest.mark.slow
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def ws(tmp_path_factory, prefect_local):
    from skimage import data

    from flows.bench import bench_build_flow

    root = tmp_path_factory.mktemp("bench")
    photos = root / "photos"
    photos.mkdir()
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).save(photos / f"{name}.png")
    ws = root / "ws"
    s = bench_build_flow(str(ws), "synthetic", "syn", src=str(photos), count=3, hr_size=(128, 128), scale=4)
    assert s["count"] == 3
    return ws


def test_synthetic_rebuild_is_identical(ws, tmp_path):
    from flows.bench import bench_build_flow

    bench = ws / "benchmarks" / "syn"
    before = {p.relative_to(bench): p.read_bytes() for p in bench.rglob("*") if p.is_file()}
    src = json.loads((bench / "manifest.json").read_text())["created_from"]
    bench_build_flow(str(ws), "synthetic", "syn", src=src, count=3, hr_size=(128, 128), scale=4)
    assert {p.relative_to(bench): p.read_bytes() for p in bench.rglob("*") if p.is_file()} == before


def test_eval_two_baselines_lands_in_catalog_and_report(ws):
    from flows.bench import bench_eval_flow
    from pipelines.store.catalog import query

    out = bench_eval_flow(str(ws), "syn", ["bicubic", "lanczos"], show_progress=False)
    _, rows = query(ws, "select model, count(*), avg(psnr_y), avg(ssim_y) from bench_results group by 1 order by 1")
    assert [r[0] for r in rows] == ["bicubic", "lanczos"] and all(r[1] == 3 for r in rows)
    assert all(15 < r[2] < 40 and 0.2 < r[3] <= 1 for r in rows)
    html = (ws / "reports" / "bench-syn.html").read_text()
    assert out["report"].endswith("bench-syn.html")
    assert html.count("data:image/png;base64") >= 1 + 3 * 4  # plot + (LR, 2 models, HR) crops per item
    assert "not available" in html  # LPIPS/DISTS without local weights


def test_paired_and_lr_only_imports_and_eval(ws, tmp_path):
    from flows.bench import bench_build_flow, bench_eval_flow

    syn = ws / "benchmarks" / "syn"
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    hr_dir.mkdir()
    lr_dir.mkdir()
    for i, p in enumerate(sorted((syn / "hr").glob("*.png"))):
        shutil.copy(p, hr_dir / f"scene{i}_HR.png")
        shutil.copy(syn / "lr" / p.name, lr_dir / f"scene{i}_LR4.png")
    (lr_dir / "orphan_LR4.png").write_bytes((lr_dir / "scene0_LR4.png").read_bytes())
    (hr_dir / "notes.txt").write_text("not an image")
    s = bench_build_flow(str(ws), "paired", "real", hr=str(hr_dir), lr=str(lr_dir))
    assert s["count"] == 3
    statuses = json.dumps(s)
    assert "unmatched" in statuses and "not_an_image" in statuses
    s = bench_build_flow(str(ws), "lr_only", "lq", lr=str(lr_dir), square=24)
    assert s["count"] >= 3
    out = bench_eval_flow(str(ws), "lq", ["bicubic"], show_progress=False)
    assert out["items"] == s["count"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["bench", "import", "paired", "--hr", "{empty}", "--lr", "{empty}", "--name", "x"], "empty"),
        (["bench", "import", "lr-only", "--lr", "{missing}", "--name", "x"], "does not exist"),
        (["bench", "eval", "--bench", "nope", "--model", "bicubic"], "no benchmark 'nope'"),
        (["bench", "eval", "--bench", "syn", "--model", "esrgan-magic"], "unknown model"),
        (["bench", "build", "paired", "--from", ".", "--name", "x"], "bench import"),
    ],
)
def test_cli_errors_are_clear(ws, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", missing=tmp_path / "missing") for a in args]
    res = CliRunner().invoke(app, [*args, "--workspace", str(ws)] if args[1] != "build" else args)
    assert res.exit_code == 2, res.output
    assert message in res.output.lower() or message in res.output, res.output


# ---------------------------------------------------------------------------------------------------- untrusted input


@pytest.mark.timeout(300)
def test_cli_import_of_a_hostile_folder_neither_hangs_nor_leaks(ws, tmp_path):
    import os
    import time

    import duckdb

    lr = tmp_path / "lq"
    shutil.copytree(ws / "benchmarks" / "syn" / "lr", lr)
    os.mkfifo(lr / "pipe.png")
    (lr / "zero.png").symlink_to("/dev/zero")
    (lr / "passwd.png").symlink_to("/etc/passwd")
    t0 = time.monotonic()
    res = CliRunner().invoke(
        app, ["bench", "import", "lr-only", "--lr", str(lr), "--name", "hostile", "--workspace", str(ws)]
    )
    assert res.exit_code == 0, res.output
    assert time.monotonic() - t0 < 240
    bench = ws / "benchmarks" / "hostile"
    rows = dict(duckdb.sql(f"select file, status from '{bench}/import_report.parquet'").fetchall())
    assert rows[str(lr / "pipe.png")] == "not_a_file"
    assert rows[str(lr / "zero.png")] == rows[str(lr / "passwd.png")] == "symlink_outside_root"
    text = json.dumps(duckdb.sql(f"select * from '{bench}/import_report.parquet'").fetchall())
    assert "root:x:0" not in text and "/bin/" not in text
    assert sum(p.stat().st_size for p in bench.rglob("*") if p.is_file()) < 5_000_000


def test_eval_of_a_forged_index_writes_nothing_outside(ws, tmp_path):

    import pyarrow.parquet as pq

    forged = ws / "benchmarks" / "forged"
    shutil.copytree(ws / "benchmarks" / "syn", forged)
    first_lr = pq.read_table(forged / "index.parquet").to_pylist()[0]["lr_path"]
    target = tmp_path / "escaped"
    forge_index(forged, key=f"../../../../../../../..{target}", lr_path=str(ws / "benchmarks" / "syn" / first_lr))
    before = sorted(p for p in ws.parent.parent.rglob("*"))
    line = one_line_error(
        CliRunner().invoke(
            app, ["bench", "eval", "--bench", "forged", "--model", "bicubic", "--workspace", str(ws), "--quiet"]
        )
    )
    assert "benchmark forged fails verification" in line and "is not a valid key" in line and "rebuild it" in line
    assert not target.exists() and sorted(p for p in ws.parent.parent.rglob("*")) == before
    shutil.rmtree(forged)


@pytest.mark.parametrize("bench", ["../syn", "../../x", "syn/../syn"])
def test_eval_bench_names_are_validated(ws, bench):
    line = one_line_error(
        CliRunner().invoke(app, ["bench", "eval", "--bench", bench, "--model", "bicubic", "--workspace", str(ws)])
    )
    assert f"--bench {bench!r} is not a valid name" in line


def test_import_name_with_dots_is_one_line(ws, tmp_path):
    lr = str(ws / "benchmarks/syn/lr")
    args = ["bench", "import", "lr-only", "--lr", lr, "--name", "../../x", "--workspace", str(ws)]
    line = one_line_error(CliRunner().invoke(app, args))
    assert "benchmark name '../../x' is not a valid name" in line
    assert not (ws.parent / "x").exists() and not (ws / "x").exists()


def test_broken_yaml_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scale: 4\nfilters: {min_short_side: 100\n")
    line = one_line_error(
        CliRunner().invoke(
            app, ["curate", "--input", str(tmp_path), "--config", str(bad), "--out", str(tmp_path / "ws")]
        )
    )
    assert str(bad) in line and "not valid YAML at line" in line and "fix the file" in line
    assert not (tmp_path / "ws").exists()


def test_unconfigured_iqa_metrics_share_one_line_and_other_statuses_keep_theirs():
    from flows.printers import availability_lines
    from pipelines.bench import iqa

    status = {m: iqa.status(m, None)[1] for m in ("lpips", "musiq")}
    status["dists"] = "not available: put DISTS_weights-f5e65c96.pth at /w/pyiqa/DISTS_weights-f5e65c96.pth"
    lines = availability_lines(status)
    assert len(lines) == 2
    assert lines[0].startswith("dists: not available: put DISTS_weights")
    assert "lpips, musiq: no IQA weights folder" in lines[1] and "dists" not in lines[1]
