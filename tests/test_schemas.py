import dataclasses

import pytest

from schemas import bench, labels, pairs
from schemas.records import SCHEMA_VERSION, SHARD_INDEX, TABLES, Rejection, RejectRec, to_table

ALL_TABLES = TABLES | bench.TABLES | labels.TABLES | pairs.TABLES


@pytest.mark.parametrize("name", sorted(ALL_TABLES))
def test_dataclass_fields_match_the_table_schema(name):
    rec_type, schema = ALL_TABLES[name]
    assert [f.name for f in dataclasses.fields(rec_type)] == schema.names
    assert schema.metadata[b"schema_version"] == str(SCHEMA_VERSION).encode()
    assert "schema_version" in schema.names


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
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("part", "table_dir") and node.args
                        and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):  # fmt: skip
                    written.add(node.args[0].value)
    assert {"sources", "images", "rejects", "candidates", "pairs", "pair_views", "annotations"} <= written
    assert written - set(catalog.TABLES) == set()
    assert set(ALL_TABLES) <= set(catalog.TABLES)
