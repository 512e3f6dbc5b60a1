"""Releases of the three kinds, read back with independent readers: tarfile, webdataset, Hugging Face datasets
(``load_dataset("webdataset")``, offline), DuckDB over index.parquet, and hashlib against manifest.json."""

import glob
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import cv2
import duckdb
import numpy as np
import pytest
import webdataset as wds
from benchfixtures import forge_index
from PIL import Image

from labelling.aggregate import aggregate_workspace
from pipelines.bench import sets as benchsets
from pipelines.curate import build as steps
from pipelines.pairs.build import PAIRS, build_pairs
from pipelines.release.build import ReleaseError, release
from pipelines.store.workspace import encode_png, write_bytes_atomic, write_table
from schemas.bench import CANDIDATES, CandidateRec
from schemas.labels import ANNOTATIONS, CRITERIA, LABEL_TASKS, AnnotationRec, LabelTaskRec

os.environ["HF_DATASETS_OFFLINE"] = "1"
MODELS = {"bicubic": 0, "sharp": 1, "sharper": 2}  # the index is the true quality order


def photo(seed: int, side: int) -> np.ndarray:
    from skimage import data

    img = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()][seed % 4]
    return cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)


def build_labelled_workspace(root: Path) -> Path:
    """A workspace with an LR-only benchmark of 4 images, 3 candidate "models" (4x upscales, sharpened more and
    more), all 12 pairs, 3 annotators who prefer the sharper model, and the aggregation done."""
    src = root / "lq-src"
    src.mkdir(parents=True)
    for k in range(4):
        Image.fromarray(photo(k, 24)).save(src / f"img{k}.png")
    ws = root / "ws"
    benchsets.import_lr_only(src, ws / "benchmarks", "lq", scale=4)
    keys = sorted(p.stem for p in (ws / "benchmarks/lq/lr").glob("*.png"))
    cands = []
    for key in keys:
        lr = cv2.cvtColor(cv2.imread(str(ws / f"benchmarks/lq/lr/{key}.png")), cv2.COLOR_BGR2RGB)
        up = cv2.resize(lr, (96, 96), interpolation=cv2.INTER_CUBIC)
        for model, q in MODELS.items():
            out = np.clip(up + q * (up.astype(np.float32) - cv2.GaussianBlur(up, (0, 0), 2)), 0, 255).astype(np.uint8)
            png = encode_png(out, 3)
            sha = hashlib.sha256(png).hexdigest()
            write_bytes_atomic(ws / f"images/{sha[:2]}/{sha}.png", png)
            rel = f"images/{sha[:2]}/{sha}.png"
            cands.append(CandidateRec("lq", key, model, "v1", rel, sha, 96, 96, 0.1, 1.0, "u"))
    write_table(ws / "tables/candidates/part-u.parquet", cands, CANDIDATES)
    rows = [
        {
            "lr_key": c.lr_key,
            "model": c.model,
            "model_version": c.model_version,
            "output_path": str(ws / c.output_path),
            "output_sha256": c.output_sha256,
        }
        for c in cands
    ]
    pairs, _ = build_pairs(rows, 0, "all", min_distance=0)
    write_table(ws / "tables/pairs/part-pairs.parquet", pairs, PAIRS)
    tasks, anns, aid = [], [], 0
    for k, p in enumerate(pairs):
        tasks.append(LabelTaskRec(p.pair_id, k, 1, p.lr_key, p.left, k == 0, "b" if k == 0 else None, None, "t"))
        better = "a" if MODELS[p.model_a] > MODELS[p.model_b] else "b"
        for who in ("ann1@x", "ann2@x", "ann3@x"):
            aid += 1
            ans = better if (aid % 5) else "tie"
            anns.append(
                AnnotationRec(
                    aid, k, 1, p.pair_id, who, p.left, ans, better, False, True, None, k == 0, 9.0, "t", "t", "[]"
                )
            )
    write_table(ws / "tables/label_tasks/part-l.parquet", tasks, LABEL_TASKS)
    write_table(ws / "tables/annotations/part-l.parquet", anns, ANNOTATIONS)
    aggregate_workspace(ws, bootstrap=20)
    return ws


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return build_labelled_workspace(tmp_path_factory.mktemp("rel"))


def check_manifest(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    for s in manifest["shards"]:
        assert hashlib.sha256((out / s["name"]).read_bytes()).hexdigest() == s["sha256"]
        assert (out / s["name"]).stat().st_size == s["bytes"]
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert {"README.md", "index.parquet"} <= set(manifest["files"])
    assert sorted(p.name for p in out.glob("*.tar")) == [s["name"] for s in manifest["shards"]]
    return manifest


def test_preferences_release_reads_back_everywhere(labelled):
    s = release(labelled, "preferences", "refsr", "0.1.0", max_count=5)
    out = Path(s["path"])
    assert out == labelled / "releases" / "refsr-0.1.0"
    assert (s["samples"], s["shards"]) == (12, 3)  # 12 pairs, 5 per shard
    manifest = check_manifest(out)
    assert (manifest["kind"], manifest["version"], manifest["samples"]) == ("preferences", "0.1.0", 12)
    # tarfile: members per sample, PNGs that decode, JSON in candidate terms with member names as paths
    with tarfile.open(out / "train-000000.tar") as tf:
        names = tf.getnames()
        first = names[0].split(".")[0]
        assert sorted(n for n in names if n.startswith(first + ".")) == [
            f"{first}.{e}" for e in ("a.png", "b.png", "json", "lr.png")
        ]
        meta = json.loads(tf.extractfile(f"{first}.json").read())
        lr = Image.open(io.BytesIO(tf.extractfile(f"{first}.lr.png").read()))
        a = Image.open(io.BytesIO(tf.extractfile(f"{first}.a.png").read()))
    assert (meta["lr_path"], meta["path_a"], meta["path_b"]) == ("lr.png", "a.png", "b.png")
    assert lr.size == (24, 24) and a.size == (96, 96)
    # webdataset
    samples = list(wds.WebDataset(sorted(glob.glob(str(out / "*.tar"))), shardshuffle=False).decode("pil"))
    assert len(samples) == 12 and {s["__key__"] for s in samples} == {s2["json"]["pair_id"] for s2 in samples}
    for x in samples:
        better = "a" if MODELS[x["json"]["model_a"]] > MODELS[x["json"]["model_b"]] else "b"
        assert x["json"]["naturalness"] == better and x["json"]["naturalness_agreement"] == 1.0
        assert x["json"]["n_annotators"] == 3 and x["b.png"].size == (96, 96)
    # Hugging Face datasets, offline
    import datasets

    ds = datasets.load_dataset(
        "webdataset",
        data_files={"train": sorted(glob.glob(str(out / "*.tar")))},
        split="train",
        cache_dir=str(out.parent / ".hf-cache"),
    )
    assert len(ds) == 12 and set(ds.column_names) >= {"lr.png", "a.png", "b.png", "json"}
    assert ds[0]["a.png"].size == (96, 96) and ds[0]["json"]["pair_id"] == ds[0]["__key__"]
    # DuckDB over the index: one row per sample, the labels queryable without opening a tar
    con = duckdb.connect()
    idx = str(out / "index.parquet")
    assert con.execute(f"select count(*), count(distinct key), count(distinct shard) from '{idx}'").fetchone() == (
        12,
        12,
        3,
    )
    wins = dict(
        con.execute(f"""select case when naturalness = 'a' then model_a else model_b end, count(*)
                                from '{idx}' group by 1""").fetchall()
    )
    assert wins == {"sharper": 8, "sharp": 4}  # 4 LRs x (sharper beats 2 models; sharp beats bicubic)
    # the card: counts, agreement, the ranking table, plots that exist; no annotator e-mail
    card = (out / "README.md").read_text()
    assert card.startswith("---\npretty_name: refsr 0.1.0")
    assert "| pairs (samples) | 12 |" in card and "Krippendorff α" in card and "### naturalness" in card
    assert "| 1 | sharper |" in card and "@x" not in card
    for c in CRITERIA:
        assert (out / f"plots/ranking_{c}.png").read_bytes().startswith(b"\x89PNG")
        assert f"plots/ranking_{c}.png" in card
    assert not list((labelled / "releases").glob(".refsr-0.1.0.build-*"))


def test_release_is_immutable_and_names_the_fix(labelled):
    release(labelled, "preferences", "immut", "1.0.0")
    before = (labelled / "releases/immut-1.0.0/manifest.json").read_bytes()
    with pytest.raises(FileExistsError, match="immutable: bump --version"):
        release(labelled, "preferences", "immut", "1.0.0")
    assert (labelled / "releases/immut-1.0.0/manifest.json").read_bytes() == before
    with pytest.raises(ReleaseError, match="semantic versioning"):
        release(labelled, "preferences", "immut", "v1")
    with pytest.raises(ReleaseError, match=r"name 'a\.b'"):
        release(labelled, "preferences", "a.b", "1.0.0")
    with pytest.raises(ReleaseError, match="unknown release kind"):
        release(labelled, "models", "x", "1.0.0")


def test_same_inputs_give_identical_shards(labelled):
    a = json.loads(Path(release(labelled, "preferences", "det", "1.0.0")["path"], "manifest.json").read_text())
    b = json.loads(Path(release(labelled, "preferences", "det", "1.0.1")["path"], "manifest.json").read_text())
    assert a["shards"] == b["shards"]  # byte-identical tars
    assert a["files"].pop("README.md") != b["files"].pop("README.md")  # the card names the version
    assert a["files"] == b["files"]  # index and plots identical


def test_preferences_release_errors(tmp_path, labelled):
    with pytest.raises(ReleaseError, match="run `sr4k aggregate` first"):
        release(tmp_path, "preferences", "x", "0.1.0")
    # a missing candidate image is named, and nothing is left under the release name
    img = next((labelled / "images").rglob("*.png"))
    data = img.read_bytes()
    img.unlink()
    try:
        with pytest.raises(ReleaseError, match=r"pair pr-\w+ [AB]: .*is missing"):
            release(labelled, "preferences", "broken", "0.1.0")
    finally:
        img.write_bytes(data)
    assert not (labelled / "releases/broken-0.1.0").exists()
    assert not list((labelled / "releases").glob(".broken-*"))


def test_trainset_release_from_a_curated_workspace(tmp_path):
    from skimage import data

    src = tmp_path / "photos"
    src.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        Image.fromarray(getattr(data, name)()).save(src / f"{name}.png")
    Image.fromarray(photo(0, 64)).save(src / "tiny.png")  # rejected: too small
    ws = tmp_path / "ws"
    cfg = steps.CurateConfig.model_validate(
        {
            "hr_size": "128",
            "scale": 4,
            "unit_size": 3,
            "shard_max_count": 2,
            "dataset": "t",
            "holdout_permille": 0,
            "filters": {"min_short_side": 128},
        }
    )
    plan = steps.plan(str(src), cfg)
    for unit in plan.units:
        steps.build_unit(unit, plan.listing.root, plan.listing.origin, ws, cfg)
    steps.dedup(ws, cfg)
    steps.holdout(ws, cfg)
    packed = steps.pack(ws, cfg)
    s = release(ws, "trainset", "train4k", "0.1.0", max_count=3)
    out = Path(s["path"])
    manifest = check_manifest(out)
    assert s["samples"] == packed["samples"] == manifest["samples"] >= 3
    with tarfile.open(out / "train-000000.tar") as tf:
        key = tf.getnames()[0].split(".")[0]
        hr = Image.open(io.BytesIO(tf.extractfile(f"{key}.hr.png").read()))
        meta = json.loads(tf.extractfile(f"{key}.json").read())
    assert hr.size == (128, 128) and meta["key"] == key and meta["scale"] == 4
    # same bytes as the curated shards, sample by sample
    curated = {
        x["__key__"]: x for x in wds.WebDataset(sorted(glob.glob(str(ws / "shards/t/*.tar"))), shardshuffle=False)
    }
    released = list(wds.WebDataset(sorted(glob.glob(str(out / "*.tar"))), shardshuffle=False))
    assert len(released) == len(curated)
    for x in released:
        assert x["hr.png"] == curated[x["__key__"]]["hr.png"] and x["json"] == curated[x["__key__"]]["json"]
    import datasets

    ds = datasets.load_dataset(
        "webdataset",
        data_files={"train": sorted(glob.glob(str(out / "*.tar")))},
        split="train",
        cache_dir=str(tmp_path / ".hf-cache"),
    )
    assert len(ds) == s["samples"] and ds[0]["hr.png"].size == (128, 128) and ds[0]["lr.png"].size == (32, 32)
    con = duckdb.connect()
    assert con.execute(f"select count(*), min(scale), max(hr_width) from '{out / 'index.parquet'}'").fetchone() == (
        s["samples"],
        4,
        128,
    )
    card = (out / "README.md").read_text()
    assert "seen 5, kept 4" in card and "| filter:too_small | 1 |" in card  # tiny.png: every input accounted for
    assert (out / "plots/detail_score.png").exists()
    # a damaged source shard is refused
    shard = next((ws / "shards/t").glob("*.tar"))
    shard.write_bytes(shard.read_bytes()[:-1024] + b"\0" * 1024 + b"x")
    with pytest.raises(ReleaseError, match="differs from its manifest"):
        release(ws, "trainset", "train4k", "0.2.0")


def test_benchmark_release(tmp_path):
    src = tmp_path / "hr"
    src.mkdir()
    for k in range(3):
        Image.fromarray(photo(k, 256)).save(src / f"p{k}.png")
    ws = tmp_path / "ws"
    benchsets.build_synthetic(src, ws / "benchmarks", "syn", count=3, hr_size=(128, 128), scale=4)
    with pytest.raises(ReleaseError, match=r"no benchmark 'nope'.*have: syn"):
        release(ws, "benchmark", "bench", "0.1.0", source="nope")
    s = release(ws, "benchmark", "syn4k", "0.1.0")  # the only benchmark: no --bench needed
    out = Path(s["path"])
    check_manifest(out)
    samples = list(wds.WebDataset(sorted(glob.glob(str(out / "test-*.tar"))), shardshuffle=False).decode("pil"))
    assert len(samples) == s["samples"] == 3
    for x in samples:
        assert x["hr.png"].size == (128, 128) and x["lr.png"].size == (32, 32)
        assert x["json"]["hr_path"] == "hr.png" and x["json"]["bench"] == "syn" and x["json"]["seed"] is not None
    import datasets

    ds = datasets.load_dataset(
        "webdataset",
        data_files={"test": sorted(glob.glob(str(out / "*.tar")))},
        split="test",
        cache_dir=str(tmp_path / ".hf-cache"),
    )
    assert len(ds) == 3 and ds[0]["lr.png"].size == (32, 32)
    assert "Benchmark `syn` of kind `synthetic`" in (out / "README.md").read_text()


# ---------------------------------------------------------------------------------------------------- untrusted input


@pytest.mark.parametrize("row", [{"lr_path": "ABSOLUTE"}, {"hr_path": "../../../outside.png"}, {"key": "../../X"}])
def test_a_forged_benchmark_index_ships_nothing(tmp_path, row):
    src = tmp_path / "hr"
    src.mkdir()
    for k in range(2):
        Image.fromarray(photo(k, 256)).save(src / f"p{k}.png")
    ws = tmp_path / "ws"
    benchsets.build_synthetic(src, ws / "benchmarks", "syn", count=2, hr_size=(128, 128), scale=4)
    secret = encode_png(np.full((8, 8, 3), 7, np.uint8), 3) + b"SECRET-OUTSIDE-THE-WORKSPACE"
    (tmp_path / "outside.png").write_bytes(secret)
    forge_index(
        ws / "benchmarks" / "syn",
        **{k: str(tmp_path / "outside.png") if v == "ABSOLUTE" else v for k, v in row.items()},
    )
    with pytest.raises(ReleaseError) as e:
        release(ws, "benchmark", "syn4k", "0.1.0")
    msg = str(e.value)
    assert "\n" not in msg and "fails verification" in msg and "rebuild it" in msg
    assert not (ws / "releases" / "syn4k-0.1.0").exists() and not list((ws / "releases").glob(".syn4k*"))
    shipped = b"".join(p.read_bytes() for p in ws.rglob("*.tar"))
    assert b"SECRET-OUTSIDE" not in shipped


def test_preferences_paths_outside_the_workspace_are_not_shipped(tmp_path, labelled):
    import shutil

    import pyarrow.parquet as pq

    ws = tmp_path / "ws"
    shutil.copytree(labelled, ws, ignore=shutil.ignore_patterns("releases"))
    (tmp_path / "outside.png").write_bytes(encode_png(np.zeros((8, 8, 3), np.uint8), 3) + b"SECRET")
    part = ws / "tables/preferences/part-all.parquet"
    table = pq.read_table(part)
    paths = table.column("path_a").to_pylist()
    paths[0] = str(tmp_path / "outside.png")
    pq.write_table(table.set_column(table.column_names.index("path_a"), "path_a", [paths]), part)
    with pytest.raises(ReleaseError, match=r"outside\.png lies outside the workspace .*; a release ships only"):
        release(ws, "preferences", "refsr", "0.1.0")
    assert not (ws / "releases" / "refsr-0.1.0").exists()


def test_release_names_and_sources_are_validated(tmp_path):
    (tmp_path / "ws").mkdir()
    for kwargs, match in (
        ({"name": "../../x"}, "release name '../../x' is not a valid name"),
        ({"name": "ok", "source": "../x"}, "--bench '../x' is not a valid name"),
    ):
        with pytest.raises(ReleaseError, match=match):
            release(tmp_path / "ws", "benchmark", version="0.1.0", **{"source": None} | kwargs)
    with pytest.raises(ReleaseError, match=r"must look like 1\.2\.3"):  # "$" alone lets a trailing newline through
        release(tmp_path / "ws", "benchmark", "ok", "0.1.0\n")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["ws"]


def test_a_link_member_in_a_shard_is_a_one_line_error(tmp_path):
    ws = tmp_path / "ws"
    folder = ws / "shards" / "t"
    folder.mkdir(parents=True)
    with tarfile.open(folder / "train-000000.tar", "w") as tf:
        png = encode_png(np.zeros((8, 8, 3), np.uint8), 3)
        info = tarfile.TarInfo("k1.hr.png")
        info.size = len(png)
        tf.addfile(info, io.BytesIO(png))
        link = tarfile.TarInfo("k1.lr.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    digest = hashlib.sha256((folder / "train-000000.tar").read_bytes()).hexdigest()
    shards = [{"name": "train-000000.tar", "count": 1, "bytes": 1, "sha256": digest}]
    (folder / "manifest.json").write_text(json.dumps({"split": "train", "shards": shards}))
    with pytest.raises(ReleaseError) as e:
        release(ws, "trainset", "t", "0.1.0")
    msg = str(e.value)
    assert "\n" not in msg and "k1.lr.png is a link to '/etc/passwd', not a file" in msg and "sr4k curate" in msg
    (folder / "manifest.json").write_text(json.dumps({"split": "train", "shards": [shards[0] | {"name": "../x.tar"}]}))
    with pytest.raises(ReleaseError, match=r"'\.\./x\.tar' leaves or hides its folder"):
        release(ws, "trainset", "t", "0.1.0")
    assert not (ws / "releases" / "t-0.1.0").exists()


def test_curate_rerun_and_release_in_a_workspace_path_with_quotes(tmp_path):
    from skimage import data

    src = tmp_path / "photos"
    src.mkdir()
    for name in ("astronaut", "coffee"):
        Image.fromarray(getattr(data, name)()).save(src / f"{name}.png")
    ws = tmp_path / 'it\'s "my" [ws]*'
    cfg = steps.CurateConfig.model_validate(
        {
            "hr_size": "128",
            "scale": 4,
            "unit_size": 2,
            "dataset": "t",
            "holdout_permille": 0,
            "filters": {"min_short_side": 128},
        }
    )
    for _ in range(2):  # the rerun reads the catalog views of the first run
        plan = steps.plan(str(src), cfg)
        for unit in plan.units:
            steps.build_unit(unit, plan.listing.root, plan.listing.origin, ws, cfg)
        steps.dedup(ws, cfg)
        steps.holdout(ws, cfg)
        packed = steps.pack(ws, cfg)
    s = release(ws, "trainset", "t", "0.1.0")
    assert s["samples"] == packed["samples"] == 2
    assert "seen 2, kept 2" in (Path(s["path"]) / "README.md").read_text()  # the account came through the views
