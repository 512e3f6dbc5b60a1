"""Which pairs a push takes: ``select_pairs(workspace, selection)``, an untrusted ``--pairs`` value made safe.

Selection (``--pairs``): ``all``; the name of a pairs part (``tables/pairs/part-<name>.parquet``); or a SQL boolean
expression over the ``pairs`` view (``"lr_key like 'b%' and distance > 0.01"``), evaluated as one read-only
expression in a sandbox without file access (``select_pairs``).
"""

from __future__ import annotations

from pipelines.store import safety
from pipelines.store.workspace import Workspace

FILTER_SECONDS = 30.0  # a --pairs filter that runs longer is interrupted (an untrusted expression never hangs)


def select_pairs(ws: Workspace, selection: str = "all") -> list[dict]:
    """Rows of the pairs table chosen by ``selection`` (module doc), one per pair_id, in pair_id order.

    A SQL condition is untrusted input (it also arrives through the ``label-push`` deployment), so it is evaluated as
    one read-only expression in a sandbox: the pairs rows are copied into a fresh in-memory DuckDB (the catalog's views
    read files, so they are resolved first, on another connection), then that connection sets
    ``enable_external_access = false`` and ``lock_configuration = true`` (no file, URL or extension access, and no way
    to switch it back), and the condition must parse as exactly one ``SELECT`` statement once wrapped as
    ``select pair_id from pairs where (<condition>)``; a ``;`` is refused before parsing. The query is interrupted
    after ``FILTER_SECONDS``. The ids it returns only select rows of the pairs table."""
    from pipelines.store import catalog

    con = catalog.connect(ws.root)
    try:
        table = con.sql("select * from pairs").to_arrow_table()
        sizes = dict(
            ((r[0], r[1]), (r[2], r[3]))
            for r in con.execute("select lr_key, output_path, width, height from candidates").fetchall()
        )
        lr_sets = dict(con.execute("select lr_key, min(lr_set) from candidates group by 1").fetchall())
        if selection != "all" and safety.is_name(selection) and ws.part("pairs", selection).exists():
            part = con.execute("select distinct pair_id from read_parquet(?)", [str(ws.part("pairs", selection))])
            want = {r[0] for r in part.fetchall()}
        else:
            want = None
    finally:
        con.close()
    if selection != "all" and want is None:
        want = _filter_ids(ws, table, selection)
    rows = table.to_pylist()
    if want is not None:
        rows = [r for r in rows if r["pair_id"] in want]
    if not rows:
        raise ValueError(f"--pairs {selection!r} selects no pairs in {ws.root}: build them with `sr4k pairs build`")
    out: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["pair_id"]):
        r["size_a"] = sizes.get((r["lr_key"], r["path_a"]))
        r["size_b"] = sizes.get((r["lr_key"], r["path_b"]))
        r["lr_set"] = lr_sets.get(r["lr_key"])
        out.setdefault(r["pair_id"], r)
    return list(out.values())


def _filter_ids(ws: Workspace, table, condition: str) -> set[str]:
    """pair_ids of ``table`` (the pairs rows, Arrow) where the SQL ``condition`` holds, in the sandbox of
    ``select_pairs``."""
    import threading

    import duckdb

    def bad(why: str) -> ValueError:
        have = sorted(p.stem.removeprefix("part-") for p in ws.table_dir("pairs").glob("part-*.parquet"))
        return ValueError(
            f"--pairs {condition!r} is neither 'all', a pairs part ({', '.join(have[:8]) or 'none'}) "
            f"nor a valid SQL condition over pairs: {why}"
        )

    if ";" in condition:
        raise bad("';' is not allowed (one read-only condition, no statements)")
    sql = f"select pair_id from pairs where ({condition}\n)"
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise bad(str(e).splitlines()[0]) from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise bad("only a condition is allowed")
    con = duckdb.connect(":memory:")
    timer = threading.Timer(FILTER_SECONDS, con.interrupt)
    try:
        con.register("pairs_arrow", table)
        con.execute("create table pairs as select * from pairs_arrow")
        con.unregister("pairs_arrow")
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
        timer.start()
        return {r[0] for r in con.execute(sql).fetchall()}
    except duckdb.InterruptException:
        raise bad(f"it ran longer than {FILTER_SECONDS:.0f} s") from None
    except duckdb.Error as e:  # parser / binder / permission errors: a bad --pairs expression is user input
        raise bad(str(e).splitlines()[0]) from None
    finally:
        timer.cancel()
        con.close()
