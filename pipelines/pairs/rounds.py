"""Rounds of pairs in a workspace: the data side of ``sr4k pairs build`` (``flows/candidates.py`` only wires it).

One round is one part ``tables/pairs/part-<name>.parquet``, chosen from the workspace's candidates by
``pipelines.pairs.build.build_pairs``. Pairs of the workspace's *other* parts (earlier rounds) are never built again
and, for the ``active`` strategy, count as already asked; rebuilding a round replaces its own part only.

Queries bind every value with ``?`` and read part files listed one by one, so a workspace path with quotes or glob
characters (``[``, ``*``, ``?``) is neither SQL nor a pattern; set and round names are checked names
(``pipelines.store.safety.check_name``) before any path is made from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from pipelines.pairs import build as pairs
from pipelines.store import catalog, safety
from pipelines.store.workspace import Workspace, write_table


def read_candidates(ws: Workspace, lr_set: str | None = None) -> list[dict[str, Any]]:
    """The workspace's candidate rows (of ``lr_set`` only, when given) as dicts, ordered by (lr_set, lr_key, model);
    ``output_path`` stays workspace-relative (pairs record it). A clear error when there are none."""
    where, params = ("", []) if lr_set is None else ("where lr_set = ?", [lr_set])
    con = catalog.connect(ws.root)
    try:
        rel = con.execute(f"select * from candidates {where} order by lr_set, lr_key, model", params)
        cols = [d[0] for d in rel.description]
        rows = rel.fetchall()
    finally:
        con.close()
    if not rows:
        raise ValueError(f"no candidates in {ws.root}{' for ' + lr_set if lr_set else ''}: run `sr4k candidates run`")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def earlier_pair_ids(ws: Workspace, name: str) -> list[str]:
    """``pair_id`` of every pair in the workspace's pairs parts other than ``part-<name>`` (the earlier rounds)."""
    own = ws.part("pairs", name)
    parts = [str(p) for p in sorted(ws.table_dir("pairs").glob("part-*.parquet")) if p != own]
    if not parts:
        return []
    return [r[0] for r in duckdb.execute("select pair_id from read_parquet(?)", [parts]).fetchall()]


def build_round(
    ws: Workspace,
    name: str,
    target: int,
    strategy: str = "balanced",
    seed: int = 0,
    lr_set: str | None = None,
    min_distance: float | None = None,
    estimates: Any = None,
    min_per_pair: int = 0,
    acquisition: str = "order",
) -> dict[str, Any]:
    """Build the round ``name`` (pairs of earlier rounds excluded) and write ``tables/pairs/part-<name>.parquet``;
    returns ``build_pairs``' report (JSON-safe) with ``table``, the part written. ``estimates``: see
    :func:`load_estimates`."""
    safety.check_name(name, "--name")
    if lr_set is not None:
        safety.check_name(lr_set, "--lr")
    cands = read_candidates(ws, lr_set)
    dist = pairs.MIN_DISTANCE if min_distance is None else min_distance
    earlier = earlier_pair_ids(ws, name)
    built, report = pairs.build_pairs(
        cands,
        target,
        strategy,
        seed,
        dist,
        estimates,
        exclude=earlier,
        min_per_pair=min_per_pair,
        acquisition=acquisition,
        root=ws.root,
    )
    part = ws.part("pairs", name)
    write_table(part, built, pairs.PAIRS)
    report["table"] = str(part)
    return json.loads(json.dumps(report, default=str))


def load_estimates(path: str | Path, criteria: list[str] | None = None) -> Any:
    """The estimates of an ``active`` round, from ``path``: ``labelling/ranking.json`` as ``sr4k aggregate`` writes
    it (-> one ``BTEstimates`` per criterion; ``criteria`` picks among them, default all) or a plain JSON
    ``{model: [mean, std]}`` (e.g. reward-model scores with uncertainty). Errors name the file and what was
    expected."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(
            f"estimates file {path} does not exist (run `sr4k aggregate` to write ranking.json)"
        ) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"estimates file {path} is not JSON: {e}") from None
    if isinstance(doc, dict) and "rankings" in doc:
        return pairs.estimates_from_ranking(doc, criteria)
    if criteria:
        raise ValueError(f"{path} is a plain {{model: [mean, std]}} file: it has no criteria to choose from")
    try:
        return {str(m): (float(v[0]), float(v[1])) for m, v in doc.items()}
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        raise ValueError(f"estimates file {path}: expected labelling/ranking.json or {{model: [mean, std]}}") from None
