import dataclasses

import pytest

from schemas import bench, labels, pairs
from schemas.records import SCHEMA_VERSION, SHARD_INDEX, TABLES, Rejection, RejectRec, to_table

ALL_TABLES = TABLES | bench.TABLES | labels.TABLES | pairs.TABLES


@pytest.mark.parametrize("name", sorted(ALL_TABLES))
def test_dataclass_fields_match_the_table_schema(name):
    rec_type, schema = ALL_TABLES[name]
    assert [f.name for f in dataclasses.fields(rec_type)] == schema.names
    version = next(f.default for f in dataclasses.fields(rec_type) if f.name == "schema_version")
    assert schema.metadata[b"schema_version"] == str(version).encode()  # the rows and the file say the same
    assert "schema_version" in schema.names


def test_bench_results_version_1_and_2_parts_read_together(tmp_path):
    """bench_results 2 added niqe/musiq/clipiqa/maniqa, periodicity_excess_* and periodic_flag; a part written at
    version 1 still reads beside a version-2 part through the catalog (``sr4k sql``), its new columns NULL."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.store import catalog
    from pipelines.store.workspace import Workspace, write_table

    assert bench.BENCH_RESULTS.metadata[b"schema_version"] == b"2"
    added = {
        "niqe",
        "musiq",
        "clipiqa",
        "maniqa",
        "periodicity_excess_peak",
        "periodicity_excess_stride",
        "periodic_flag",
    }
    v1 = pa.schema([f for f in bench.BENCH_RESULTS if f.name not in added]).with_metadata({"schema_version": "1"})
    common = dict(
        bench="b",
        kind="synthetic",
        key="k0",
        model="bicubic",
        model_version="cv2",
        scale=4,
        ssim_y=0.8,
        lpips=None,
        dists=None,
        nr_sharpness=1.0,
        nr_hf_energy=2.0,
        periodicity_peak=0.001,
        periodicity_stride_mean=0.0,
        periodicity_stride_peak=0.0,
        seconds=0.1,
        peak_mem_mb=5.0,
    )
    ws = Workspace(tmp_path)
    ws.table_dir("bench_results").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist([common | {"psnr_y": 30.0, "run": "old", "schema_version": 1}], v1),
        ws.part("bench_results", "b-old"),
    )
    new = bench.ResultRow(
        **common,
        psnr_y=31.0,
        niqe=4.5,
        musiq=60.0,
        clipiqa=0.5,
        maniqa=0.4,
        periodic_flag=True,
        periodicity_excess_peak=0.0,
        periodicity_excess_stride=0.0,
        run="new",
    )
    write_table(ws.part("bench_results", "b-new"), [new], bench.BENCH_RESULTS)
    sql = "select run, schema_version, psnr_y, niqe, periodic_flag from bench_results order by run desc"
    got = catalog.connect(tmp_path).execute(sql).fetchall()
    assert got == [("old", 1, 30.0, None, None), ("new", 2, 31.0, 4.5, True)]


def test_shard_index_has_a_schema_version():
    assert "schema_version" in SHARD_INDEX.names


def test_to_table_enforces_types_and_rejects_missing_values():
    recs = [RejectRec("/a.jpg", "decode", "truncated", "image file is truncated", unit="u0")]
    t = to_table(recs, TABLES["rejects"][1])
    assert t.column("schema_version").to_pylist() == [SCHEMA_VERSION]
    assert t.schema.field("key").nullable
    bad = [RejectRec(None, "decode", "x", "y")]  # uri is not nullable
    with pytest.raises(ValueError, match="uri"):
        to_table(bad, TABLES["rejects"][1])


def test_rejection_defaults_to_an_empty_detail():
    assert Rejection("too_small").detail == ""


def test_every_table_the_code_writes_has_a_record_type_known_to_the_catalog():
    """Each ``ws.part("<table>", ...)`` / ``ws.table_dir("<table>")`` in the product names a table with a record type
    in schemas/ that the DuckDB catalog (``sr4k sql``) knows, so an empty workspace still has its views."""
    import ast
    from pathlib import Path

    from pipelines.store import catalog

    root = Path(__file__).resolve().parents[1]
    written = set()
    for pkg in ("pipelines", "flows", "labelling", "training"):
        for path in (root / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("part", "table_dir")
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    written.add(node.args[0].value)
    assert {"sources", "images", "rejects", "candidates", "pairs", "pair_views", "annotations"} <= written
    assert written - set(catalog.TABLES) == set()
    assert set(ALL_TABLES) <= set(catalog.TABLES)
