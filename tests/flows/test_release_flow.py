"""aggregate -> release with a real local Prefect API, through the flows and through the `sr4k` CLI."""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from benchfixtures import forge_index
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from pipelines.bench import sets as benchsets
from pipelines.pairs.build import PAIRS, build_pairs
from pipelines.store.workspace import encode_png, write_bytes_atomic, write_table
from schemas.bench import CANDIDATES, CandidateRec
from schemas.labels import ANNOTATIONS, LABEL_TASKS, AnnotationRec, LabelTaskRec

pytestmark = pytest.mark.slow
QUALITY = {"blurry": 0, "crisp": 1}


@pytest.fixture(scope="module")
def ws(tmp_path_factory, prefect_local):
    """An LR-only benchmark of 3 photos, 2 candidate models, 3 pairs, 3 annotators of whom ann3 always picks left."""
    from skimage import data

    root = tmp_path_factory.mktemp("relflow")
    src = root / "lq"
    src.mkdir()
    for k, img in enumerate((data.astronaut(), data.coffee(), data.chelsea())):
        Image.fromarray(cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA)).save(src / f"p{k}.png")
    ws = root / "ws"
    benchsets.import_lr_only(src, ws / "benchmarks", "lq", scale=4)
    cands = []
    for lr_path in sorted((ws / "benchmarks/lq/lr").glob("*.png")):
        lr = cv2.cvtColor(cv2.imread(str(lr_path)), cv2.COLOR_BGR2RGB)
        for model, q in QUALITY.items():
            up = cv2.resize(lr, (64, 64), interpolation=cv2.INTER_CUBIC if q else cv2.INTER_NEAREST)
            png = encode_png(np.ascontiguousarray(up), 3)
            sha = hashlib.sha256(png).hexdigest()
            write_bytes_atomic(ws / f"images/{sha[:2]}/{sha}.png", png)
            cands.append(
                CandidateRec(
                    "lq", lr_path.stem, model, "v1", f"images/{sha[:2]}/{sha}.png", sha, 64, 64, 0.1, 1.0, "u"
                )
            )
    write_table(ws / "tables/candidates/part-u.parquet", cands, CANDIDATES)
    rows = [
        {"lr_key": c.lr_key, "model": c.model, "model_version": "v1", "output_path": str(ws / c.output_path)}
        for c in cands
    ]
    pairs, _ = build_pairs(rows, 0, "all", min_distance=0)
    write_table(ws / "tables/pairs/part-p.parquet", pairs, PAIRS)
    tasks, anns = [], []
    for k, p in enumerate(pairs):
        tasks.append(LabelTaskRec(p.pair_id, k, 1, p.lr_key, p.left, False, None, None, "t"))
        better = "a" if QUALITY[p.model_a] > QUALITY[p.model_b] else "b"
        for n, who in enumerate(("ann1@x", "ann2@x", "ann3@x")):
            ans = p.left if who == "ann3@x" else better
            anns.append(
                AnnotationRec(
                    10 * k + n, k, 1, p.pair_id, who, p.left, ans, ans, False, True, None, False, 12.0, "t", "t", "[]"
                )
            )
    write_table(ws / "tables/label_tasks/part-l.parquet", tasks, LABEL_TASKS)
    write_table(ws / "tables/annotations/part-l.parquet", anns, ANNOTATIONS)
    return ws


def test_aggregate_then_release_flows(ws):
    from flows.release import aggregate_flow, release_flow

    out = aggregate_flow(str(ws), exclude=["ann3@x"], bootstrap=10)
    assert out["report"]["excluded_annotators"] == ["ann3@x"] and out["report"]["preferences"] == 3
    assert out["qc"]["annotators"]["ann3@x"]["reason"] == "excluded by hand"
    assert [r["model"] for r in out["rankings"]["naturalness"]] == ["crisp", "blurry"]
    prefs = pq.read_table(ws / "tables/preferences/part-all.parquet").to_pylist()
    assert all(p["naturalness_agreement"] == 1.0 and p["n_annotators"] == 2 for p in prefs)
    assert all(p["lr_path"].startswith("benchmarks/lq/lr/") for p in prefs)
    s = release_flow(str(ws), "preferences", "refsr", "0.1.0", max_count=2)
    assert (s["samples"], s["shards"]) == (3, 2)
    manifest = json.loads(Path(s["path"], "manifest.json").read_text())
    for shard in manifest["shards"]:
        assert hashlib.sha256(Path(s["path"], shard["name"]).read_bytes()).hexdigest() == shard["sha256"]
    with pytest.raises(FileExistsError, match="bump --version"):
        release_flow(str(ws), "preferences", "refsr", "0.1.0")


def test_cli_aggregate_and_release(ws):
    runner = CliRunner()
    r = runner.invoke(app, ["aggregate", "-w", str(ws), "--bootstrap", "10"])
    assert r.exit_code == 0, r.output
    assert "Bradley–Terry ranking: consistency" in r.output and "annotators" in r.output
    # no gold here, but 6 decisive answers are too few for the left-share rule (needs 20): nobody is excluded
    assert json.loads((ws / "labelling/ranking.json").read_text())["report"]["excluded_annotators"] == []
    r = runner.invoke(app, ["aggregate", "-w", str(ws), "--exclude", "nobody@x"])
    assert r.exit_code == 2 and "cannot exclude nobody@x" in r.output
    r = runner.invoke(app, ["release", "preferences", "--name", "cli", "--version", "1.0.0", "-w", str(ws)])
    assert r.exit_code == 0, r.output
    assert (ws / "releases/cli-1.0.0/README.md").exists() and "samples" in r.output
    r = runner.invoke(app, ["release", "preferences", "--name", "cli", "--version", "1.0.0", "-w", str(ws)])
    assert r.exit_code == 2 and "immutable" in r.output
    r = runner.invoke(app, ["release", "benchmark", "--name", "lq", "--version", "0.1.0", "-w", str(ws)])
    assert r.exit_code == 0, r.output
    assert len(list((ws / "releases/lq-0.1.0").glob("test-*.tar"))) == 1
    r = runner.invoke(app, ["release", "trainset", "--name", "t", "--version", "0.1.0", "-w", str(ws)])
    assert r.exit_code == 2 and "no curated shard dataset in this workspace: run `sr4k curate` first" in r.output


def test_cli_release_refuses_hostile_names_and_forged_benchmarks_in_one_line(ws, tmp_path):
    import shutil

    def one_line(args):
        res = CliRunner().invoke(app, [*args, "--workspace", str(ws)])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        assert res.exit_code == 2 and len(errors) == 1 and lines[-1] == errors[0], res.output
        assert "Traceback" not in res.output, res.output
        return errors[0]

    assert "--bench '../lq' is not a valid name" in one_line(
        ["release", "benchmark", "--name", "b", "--version", "0.1.0", "--bench", "../lq"]
    )
    assert "release name '../../b' is not a valid name" in one_line(
        ["release", "benchmark", "--name", "../../b", "--version", "0.1.0", "--bench", "lq"]
    )
    forged = ws / "benchmarks" / "forged"
    shutil.copytree(ws / "benchmarks" / "lq", forged)
    (tmp_path / "outside.png").write_bytes(encode_png(np.zeros((8, 8, 3), np.uint8), 3) + b"SECRET")
    forge_index(forged, lr_path=str(tmp_path / "outside.png"))
    try:
        line = one_line(["release", "benchmark", "--name", "forged", "--version", "0.1.0", "--bench", "forged"])
    finally:
        shutil.rmtree(forged)
    assert "benchmark forged fails verification" in line and "lr_path" in line and "outside.png" in line
    assert not (ws / "releases" / "forged-0.1.0").exists()
    assert (
        not any(b"SECRET" in p.read_bytes() for p in (ws / "releases").rglob("*.tar"))
        if (ws / "releases").exists()
        else True
    )
