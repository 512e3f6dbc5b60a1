"""Candidate runs and pairs end to end with a real local Prefect API: cache, resume after SIGKILL, pairs table."""

import json
import os
import signal
import subprocess
import sys
import time

import duckdb
import numpy as np
import pytest
from benchfixtures import one_line_error
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws(tmp_path_factory, prefect_local):
    """A workspace with a 6-item synthetic benchmark of real photos (HR 128, LR 32)."""
    from skimage import data

    from flows.bench import bench_build_flow

    root = tmp_path_factory.mktemp("cand")
    photos = root / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry"):
        img = getattr(data, name)()
        Image.fromarray(img).convert("RGB").save(photos / f"{name}.png")
    ws = root / "ws"
    bench_build_flow(str(ws), "synthetic", "b", src=str(photos), count=6, hr_size=(128, 128), scale=4)
    return ws


def test_rerun_is_a_no_op_and_new_models_only_add(ws, monkeypatch):
    from flows.candidates import candidates_flow
    from pipelines.models.upscalers import Interpolation

    calls = []
    real = Interpolation.upscale
    monkeypatch.setattr(Interpolation, "upscale", lambda self, img: calls.append(self.name) or real(self, img))
    s = candidates_flow(str(ws), "b", ["bicubic", "lanczos"], unit_size=4, show_progress=False)
    assert (s["units_run"], s["images_written"], len(calls)) == (4, 12, 12)
    calls.clear()
    s = candidates_flow(str(ws), "b", ["bicubic", "lanczos"], unit_size=4, show_progress=False)
    assert (s["units_run"], s["units_cached"], len(calls)) == (0, 4, 0)
    s = candidates_flow(str(ws), "b", ["bicubic", "lanczos", "area"], unit_size=4, show_progress=False)
    assert s["units_run"] == 2 and set(calls) == {"area"} and len(calls) == 6
    rows = duckdb.sql(
        f"select model, count(*), count(distinct lr_key) from '{ws}/tables/candidates/*.parquet' group by 1 order by 1"
    ).fetchall()
    assert rows == [("area", 6, 6), ("bicubic", 6, 6), ("lanczos", 6, 6)]
    paths = duckdb.sql(f"select output_path, output_sha256 from '{ws}/tables/candidates/*.parquet'").fetchall()
    assert all((ws / p).is_file() and p.split("/")[-1] == f"{sha}.png" for p, sha in paths)


def test_unknown_model_and_missing_weights_are_clear_errors(ws, tmp_path):
    from flows.candidates import candidates_flow

    with pytest.raises(ValueError, match="unknown model 'magic'"):
        candidates_flow(str(ws), "b", ["magic"], show_progress=False)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.safetensors")):
        candidates_flow(str(ws), "b", [f"spandrel:{tmp_path / 'nope.safetensors'}"], show_progress=False)
    with pytest.raises(ValueError, match="no benchmark or shard set 'zzz'"):
        candidates_flow(str(ws), "zzz", ["bicubic"], show_progress=False)


def test_pairs_balanced_from_candidates(ws):
    from flows.candidates import candidates_flow, pairs_flow

    candidates_flow(str(ws), "b", ["bicubic", "lanczos", "area", "nearest"], unit_size=4, show_progress=False)
    r = pairs_flow(str(ws), target=30, strategy="balanced", seed=3, lr_set="b", min_distance=0.0)
    assert r["built"] == 30
    rows = duckdb.sql(
        f"select least(model_a, model_b) m1, greatest(model_a, model_b) m2, count(*) n "
        f"from '{ws}/tables/pairs/part-pairs.parquet' group by all"
    ).fetchall()
    counts = [n for *_, n in rows]
    assert len(rows) == 6 and max(counts) - min(counts) <= 1
    assert all(m1 != m2 for m1, m2, _ in rows)
    # a second round (another part) never repeats a pair of the first; rebuilding the first part is unaffected
    r2 = pairs_flow(
        str(ws),
        target=6,
        strategy="active",
        seed=4,
        lr_set="b",
        min_distance=0.0,
        name="round2",
        estimates_path=None,
        min_per_pair=3,
    )
    assert r2["built"] == 6 and r2["excluded"] == 30
    # each pair's comparison page is rendered once, where it is built (the push only assembles task JSON)
    assert (r["views"], r2["views"]) == (30, 6)
    views = duckdb.sql(
        f"select v.pair_id, v.side, v.panels from '{ws}/tables/pair_views/part-*.parquet' v "
        f"join '{ws}/tables/pairs/part-*.parquet' p using (pair_id)"
    ).fetchall()
    assert len(views) == 36 and {s for _, s, _ in views} == {224}
    assert all((ws / rel).is_file() for *_, panels in views for box in json.loads(panels) for rel in box[4:])
    parts = f"{ws}/tables/pairs/part-*.parquet"
    assert duckdb.sql(f"select pair_id from '{parts}' group by 1 having count(*) > 1").fetchall() == []
    assert pairs_flow(str(ws), target=30, strategy="balanced", seed=3, lr_set="b", min_distance=0.0)["built"] == 30


def test_cli_active_round_from_a_ranking_file(ws, tmp_path):
    """`sr4k pairs build --strategy active --estimates labelling/ranking.json`: the file `sr4k aggregate` writes
    (rows + covariance per criterion) drives the next round; bad flags are clear errors."""
    import json

    from typer.testing import CliRunner

    from flows.candidates import candidates_flow
    from flows.cli import app
    from pipelines.pairs.bradley_terry import fit_bradley_terry

    models = ["area", "bicubic", "bilinear", "lanczos", "nearest"]  # bilinear: new cells for the new rounds
    candidates_flow(str(ws), "b", models, unit_size=4, show_progress=False)
    rng = np.random.default_rng(0)
    comps = [(a, b) if rng.random() < 0.5 else (b, a) for a in models for b in models if a < b for _ in range(5)]
    doc = {"rankings": {}, "covariance": {}}
    for c in ("consistency", "naturalness"):
        est = fit_bradley_terry(comps, models, 50, seed=1)
        doc["rankings"][c] = [{"model": m, "theta": t, "std": s} for m, (t, s) in est.items()]
        doc["covariance"][c] = {"models": est.models, "matrix": est.covariance.tolist()}
    path = tmp_path / "ranking.json"
    path.write_text(json.dumps(doc))
    runner = CliRunner()
    args = ["pairs", "build", "--target", "6", "--strategy", "active", "--estimates", str(path), "-w", str(ws)]
    r = runner.invoke(app, [*args, "--name", "round3"])
    assert r.exit_code == 0, r.output
    rows = duckdb.sql(f"select strategy, score from '{ws}/tables/pairs/part-round3.parquet'").fetchall()
    assert len(rows) == 6 and all(st == "active" and sc is not None and sc > 0 for st, sc in rows)
    r = runner.invoke(app, [*args, "--name", "round4", "--criterion", "consistency", "--acquisition", "ranking"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--criterion", "sharpness"])
    assert r.exit_code == 2 and "criteria ['sharpness'] not in the ranking file" in r.output
    r = runner.invoke(app, [*args, "--acquisition", "magic"])
    assert r.exit_code == 2 and "--acquisition 'magic'" in r.output
    r = runner.invoke(app, ["pairs", "build", "--target", "6", "--estimates", str(path), "-w", str(ws)])
    assert r.exit_code == 2 and "are for --strategy active" in r.output
    r = runner.invoke(app, [*args[:-3], str(tmp_path / "missing.json"), "-w", str(ws)])
    assert r.exit_code == 2 and "does not exist" in r.output


@pytest.mark.timeout(600)
def test_sigkill_mid_run_then_rerun_completes(ws, tmp_path):
    pytest.importorskip("ncnn")
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "candidates",
        "run",
        "--lr",
        "b",
        "--model",
        "realesrgan-x4plus",
        "--unit-size",
        "1",
        "--workspace",
        str(ws),
        "--quiet",
    ]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "ph")}
    env.pop("PREFECT_API_URL", None)
    markers = lambda: list((ws / "units").glob("cand-realesrgan-x4plus-*.done"))  # noqa: E731
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not markers() and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its ephemeral Prefect server: leave no orphan
    proc.wait()
    done_before = len(markers())
    assert 1 <= done_before < 6
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert len(markers()) == 6
    n, keys = duckdb.sql(
        f"select count(*), count(distinct lr_key) from '{ws}/tables/candidates/*.parquet' "
        "where model = 'realesrgan-x4plus'"
    ).fetchall()[0]
    assert n == keys == 6


# ---------------------------------------------------------------------------------------------------- untrusted input


def test_refused_model_files_are_one_line_errors_and_run_nothing(ws, tmp_path):
    import json

    import torch
    from typer.testing import CliRunner

    from flows.cli import app

    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"params": Payload()}, tmp_path / "evil.pth")
    res = CliRunner().invoke(
        app,
        [
            "candidates",
            "run",
            "--lr",
            "b",
            "--model",
            f"spandrel:{tmp_path / 'evil.pth'}",
            "--workspace",
            str(ws),
            "--quiet",
        ],
    )
    line = one_line_error(res)
    assert "refused" in line and "evil.pth" in line and "pickled" in line and ".safetensors" in line
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": ["pipeline", "EvilPipeline"], "_diffusers_version": "0.42.1"})
    )
    (folder / "pipeline.py").write_text(f"import os\nos.system('touch {marker}')\n")
    res = CliRunner().invoke(
        app, ["candidates", "run", "--lr", "b", "--model", f"diffusers:{folder}", "--workspace", str(ws), "--quiet"]
    )
    line = one_line_error(res)
    assert "refused" in line and "own Python code" in line and "stock diffusers classes" in line
    assert not marker.exists()


@pytest.mark.parametrize("lr", ["../b", "b' or '1'='1", "b/../b"])
def test_lr_set_names_are_validated_not_stripped(ws, lr):
    from typer.testing import CliRunner

    from flows.cli import app

    for args in (
        ["candidates", "run", "--lr", lr, "--model", "bicubic"],
        ["pairs", "build", "--target", "2", "--lr", lr],
    ):
        line = one_line_error(CliRunner().invoke(app, [*args, "--workspace", str(ws)]))
        assert f"--lr {lr!r} is not a valid name" in line


def test_pairs_name_cannot_leave_the_workspace(ws):
    from typer.testing import CliRunner

    from flows.cli import app

    before = {p for p in ws.parent.rglob("*")}
    line = one_line_error(
        CliRunner().invoke(app, ["pairs", "build", "--target", "2", "--name", "../../../x", "--workspace", str(ws)])
    )
    assert "--name '../../../x' is not a valid name" in line
    assert {p for p in ws.parent.rglob("*")} == before  # nothing written anywhere


def test_lr_too_large_for_the_scale_is_refused_before_any_model_runs(ws, tmp_path):
    from flows.candidates import candidates_flow
    from pipelines.bench import sets as benchsets

    src = tmp_path / "big"
    src.mkdir()
    Image.new("RGB", (3000, 3000), (90, 120, 30)).save(src / "big.png")
    benchsets.import_lr_only(src, ws / "benchmarks", "big", scale=1)  # fine at x1: 9 MPx
    with pytest.raises(ValueError) as e:
        candidates_flow(str(ws), "big", ["bicubic"], scale=4, show_progress=False)
    msg = str(e.value)
    assert "LR big of big: LR 3000x3000 at x4 gives a 12000x12000 output" in msg and "134,217,728 px" in msg
    assert "\n" not in msg
    parts = [str(p) for p in (ws / "tables" / "candidates").glob("part-*.parquet")]
    sets = {r[0] for r in duckdb.execute("select lr_set from read_parquet(?)", [parts]).fetchall()} if parts else set()
    assert "big" not in sets  # no model ran on it


def test_a_link_member_in_an_lr_shard_is_aone_line_error(ws):
    import io
    import tarfile

    from flows.candidates import candidates_flow

    folder = ws / "shards" / "evil"
    folder.mkdir(parents=True)
    with tarfile.open(folder / "train-000000.tar", "w") as tf:
        link = tarfile.TarInfo("k1.lr.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        info = tarfile.TarInfo("k1.json")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(ValueError) as e:
        candidates_flow(str(ws), "evil", ["bicubic"], show_progress=False)
    assert "member k1.lr.png is not a regular file" in str(e.value) and "\n" not in str(e.value)
