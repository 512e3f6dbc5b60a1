import dataclasses

import pytest

from schemas import bench, labels
from schemas.records import SCHEMA_VERSION, SHARD_INDEX, TABLES, Rejection, RejectRec, to_table


@pytest.mark.parametrize("name", sorted(TABLES | bench.TABLES | labels.TABLES))
def test_dataclass_fields_match_the_table_schema(name):
    rec_type, schema = (TABLES | bench.TABLES | labels.TABLES)[name]
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
