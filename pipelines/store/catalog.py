"""A DuckDB catalog over a workspace's Parquet tables (``sr4k sql``).

Each table folder ``tables/<name>/`` becomes a view ``<name>`` over all its part files (``union_by_name`` so parts
written by different schema versions still read); every dataset's shard index becomes ``shard_index`` (with a
``dataset`` column). DuckDB runs embedded, in memory: no server, nothing to keep in sync — the Parquet parts are the
truth and the views are rebuilt on each connection.

Workspace paths with any character (quotes included) work: paths go into the view definitions as quoted literals
(:func:`literal`) and names as quoted identifiers (:func:`ident`); a table or dataset folder whose name is not a safe
name (``pipelines.store.safety``) gets no view.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.store import safety
from pipelines.store.workspace import Workspace
from schemas import bench, labels, pairs
from schemas.records import TABLES as _RECORD_TABLES

TABLES = _RECORD_TABLES | bench.TABLES | labels.TABLES | pairs.TABLES


def connect(root: str | Path) -> duckdb.DuckDBPyConnection:
    ws = Workspace(root)
    if not ws.tables.is_dir():
        raise FileNotFoundError(f"{root} is not an sr4k workspace (no tables/ folder); run `sr4k curate --out {root}`")
    con = duckdb.connect()
    for table_dir in sorted(ws.tables.iterdir()):
        parts = sorted(table_dir.glob("part-*.parquet")) if table_dir.is_dir() else []
        if parts and safety.is_name(table_dir.name):
            # the part files listed one by one, not as a glob: a workspace path holding "[", "*" or "?" is no pattern
            files = ", ".join(literal(str(p)) for p in parts)
            con.execute(
                f"create view {ident(table_dir.name)} as select * from read_parquet([{files}], union_by_name=true)"
            )
    for name in TABLES:  # known tables exist as (empty) views even before anything was written to them
        if not _has_view(con, name):
            schema = TABLES[name][1]
            cols = ", ".join(f"cast(null as {_duck_type(f.type)}) as {ident(f.name)}" for f in schema)
            con.execute(f"create view {ident(name)} as select {cols} where false")
    indexes = sorted(p for p in ws.shards.glob("*/index.parquet") if safety.is_name(p.parent.name))
    if indexes:
        parts = " union all ".join(
            f"select {literal(p.parent.name)} as dataset, * from read_parquet({literal(str(p))})" for p in indexes
        )
        con.execute(f"create view shard_index as {parts}")
    return con


def literal(value: str) -> str:
    """``value`` as a SQL string literal: quoted, with every ``'`` doubled (the SQL standard's only escape in a
    string literal; DuckDB treats backslashes literally). For DDL such as ``create view``, where DuckDB takes no
    bound parameters; everything else binds its values with ``?``."""
    return "'" + str(value).replace("'", "''") + "'"


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (``"`` doubled), so no name can end the identifier early."""
    return '"' + str(name).replace('"', '""') + '"'


def _has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    # fetchall, not fetchone: DuckDB 2 keeps a result that was not read to the end open, and the connection then
    # refuses any other statement ("connection has an unfinished result")
    return bool(con.execute("select count(*) from duckdb_views() where view_name = ?", [name]).fetchall()[0][0])


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
