"""The push's resume bookkeeping: the pair -> task mapping (``tables/label_tasks``) and its reconciliation with the
tasks on the server, so that a push killed at any point and rerun leaves each pair exactly once (step 3 of the
``labelling.push`` module doc).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from labelling.api import Api
from labelling.project import list_tasks, now, server_tasks, task_count
from labelling.selection import select_pairs
from labelling.settings import LabelStudioError
from pipelines.store.workspace import Workspace, write_table
from schemas.labels import LABEL_TASKS, LabelTaskRec


def mapping(ws: Workspace, project_id: int | None = None) -> dict[str, dict]:
    """pair_id -> its latest label_tasks row (of ``project_id`` if given). The parts are read and filtered by Arrow
    (one read of ~20 parts at 18K tasks) and only the kept rows become Python objects."""
    import pyarrow.compute as pc

    parts = sorted(ws.table_dir("label_tasks").glob("part-*.parquet"))
    if not parts:
        return {}
    table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
    if project_id is not None:
        table = table.filter(pc.equal(table["project_id"], project_id))
    table = table.take(pc.sort_indices(table, [("pushed_at", "ascending")]))  # stable: part order breaks ties
    return {r["pair_id"]: r for r in table.to_pylist()}


def write_mapping(ws: Workspace, pid: int, rows: list[tuple[dict, int, str]], tag: str = "push") -> None:
    """Append mapping rows ``(pair, task id, on-screen left)`` as one atomic Parquet part of ``tables/label_tasks``."""
    at = now()
    recs = [
        LabelTaskRec(
            p["pair_id"],
            int(tid),
            pid,
            p["lr_key"],
            left,
            bool(p.get("gold_consistency")),
            p.get("gold_consistency"),
            p.get("gold_naturalness"),
            at,
        )
        for p, tid, left in rows
    ]
    ident = hashlib.sha256(json.dumps(sorted(r.pair_id for r in recs)).encode()).hexdigest()[:12]
    write_table(ws.part("label_tasks", f"p{pid}-{tag}-{ident}-{int(time.time())}"), recs, LABEL_TASKS)


def reconcile(api: Api, ws: Workspace, project: str, pid: int, golds: dict) -> tuple[dict[str, list[dict]], int, str]:
    """(pair_id -> the server's tasks, tasks adopted, which listing was needed): ``labelling.push`` module doc, step 3.

    Listing all 18,000 tasks costs tens of seconds, so the server is asked only what the workspace cannot know: the
    tasks with an id above the largest id in the mapping (Label Studio's task ids only grow, so a push that died after
    an import left its tasks there), and the project's task count. When the count equals the mapped tasks plus those
    new ones, every mapped task is on the server and nothing else is (a deleted task, or one imported with a smaller
    id, would change the count): the mapping plus the new tasks is the server's state. Otherwise the full listing
    settles it."""
    known = mapping(ws, pid)
    ids = {m["task_id"] for m in known.values()}
    tail = [t for page, _now in list_tasks(api, pid, "id,data", after_id=max(ids, default=0)) for t in page]
    if task_count(api, pid) == len(ids) + len(tail):
        on_server = {k: [{"id": m["task_id"], "sr4k_left": m["left"]}] for k, m in known.items()}
        for t in tail:
            d = t.get("data") or {}
            on_server.setdefault(d.get("pair_id"), []).append({"id": t["id"], "sr4k_left": d.get("sr4k_left")})
        how = "tasks after the mapped ones"
    else:
        on_server, how = server_tasks(api, pid), "every task (the count did not match the mapping)"
    return on_server, adopt(ws, project, pid, on_server, golds), how


def adopt(ws: Workspace, project: str, pid: int, on_server: dict[str, list[dict]], golds: dict) -> int:
    """Mapping rows for server tasks the workspace does not know (``labelling.push`` module doc, step 3)."""
    known = mapping(ws, pid)
    missing = [
        (k, ts[0])
        for k, ts in on_server.items()
        if k and (k not in known or known[k]["task_id"] not in {t["id"] for t in ts})
    ]
    if not missing:
        return 0
    pairs = {p["pair_id"]: p for p in _pairs_by_id(ws, [k for k, _ in missing])}
    rows = []
    for key, task in missing:
        pair = golds.get(key) or pairs.get(key)
        if pair is None:
            raise LabelStudioError(
                f"task {task['id']} on the server is for pair {key}, which is neither in the "
                f"pairs table nor a gold pair of {project!r}: imported by hand?"
            )
        rows.append((pair, task["id"], task["sr4k_left"] or pair["left"]))
    write_mapping(ws, pid, rows, tag="adopt")
    return len(rows)


def _pairs_by_id(ws: Workspace, ids: Iterable[str]) -> list[dict]:
    want = set(ids)
    return [p for p in select_pairs(ws, "all") if p["pair_id"] in want] if want else []
