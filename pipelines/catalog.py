"""A DuckDB catalog over a workspace's Parquet tables (``sr4k sql``).

Each table folder ``tables/<name>/`` becomes a view ``<name>`` over all its part files (``union_by_name`` so parts
written by different schema versions still read); every dataset's shard index becomes ``shard_index`` (with a
``dataset`` column). DuckDB runs embedded, in memory: no server, nothing to keep in sync — the Parquet parts are the
truth and the views are rebuilt on each connection.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from schemas import bench, labels
from schemas.records import TABLES as _RECORD_TABLES

TABLES = _RECORD_TABLES | bench.TABLES | labels.TABLES


def connect(root: str | Path) -> duckdb.DuckDBPyConnection:
    root = Path(root)
    if not (root / "tables").is_dir():
        raise FileNotFoundError(f"{root} is not an sr4k workspace (no tables/ folder); run `sr4k curate --out {root}`")
    con = duckdb.connect()
    for table_dir in sorted((root / "tables").iterdir()):
        if table_dir.is_dir() and any(table_dir.glob("part-*.parquet")):
            glob = str(table_dir / "part-*.parquet").replace("'", "''")
            con.execute(f"create view {table_dir.name} as select * from read_parquet('{glob}', union_by_name=true)")
    for name in TABLES:  # known tables exist as (empty) views even before anything was written to them
        if not _has_view(con, name):
            schema = TABLES[name][1]
            cols = ", ".join(f"cast(null as {_duck_type(f.type)}) as {f.name}" for f in schema)
            con.execute(f"create view {name} as select {cols} where false")
    indexes = sorted((root / "shards").glob("*/index.parquet"))
    if indexes:
        parts = " union all ".join(f"select '{p.parent.name}' as dataset, * from read_parquet('{p}')" for p in indexes)
        con.execute(f"create view shard_index as {parts}")
    return con


def _has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("select count(*) from duckdb_views() where view_name = ?", [name]).fetchone()[0])


def _duck_type(t) -> str:
    import pyarrow as pa

    if pa.types.is_string(t):
        return "varchar"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_floating(t):
        return "double"
    return "bigint"


def query(root: str | Path, sql: str) -> tuple[list[str], list[tuple]]:
    con = connect(root)
    try:
        rel = con.execute(sql)
        cols = [d[0] for d in rel.description] if rel.description else []
        return cols, rel.fetchall()
    finally:
        con.close()
