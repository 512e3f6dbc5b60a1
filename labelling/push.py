"""Push pairs to Label Studio as tasks: idempotent, crash-safe, with gold pairs and matched crops.

``push_pairs(workspace, selection)`` makes sure every selected pair is a task of the workspace's Label Studio project
``<project>`` (default ``pairs``), exactly once:

1. The project is found by the id in ``labelstudio/projects/<project>.json``, else by its title on the server (a
   crash between creating it and writing the file), else created: the labeling config of ``interface``, the
   instructions, ``maximum_annotations = overlap`` (Label Studio stops handing a task out once it has ``overlap``
   annotations: that is the overlap k). A changed overlap or config is PATCHed onto the existing project.
2. A local-files storage covering ``<workspace>/images`` lets Label Studio serve the images
   (``/data/local-files/?d=images/..``; the document root is ``served/``, see ``server.served_root``). LR inputs are
   materialised there content-addressed (benchmarks and shards keep LR elsewhere or inside tars).
3. Reconcile: the server's tasks are listed (``pair_id`` from each task's data) and compared with the workspace's
   pair -> task mapping (``tables/label_tasks``). A task on the server that the mapping lacks (a push that died after
   the import and before writing the mapping) is *adopted*: its mapping row is written, nothing is imported again.
   A pair is imported only if the server has no task for it — the server is the truth of what exists, the
   workspace of what it means (gold answers, on-screen side). Listing 18,000 tasks costs tens of seconds, so the
   server is asked only what the workspace cannot know (``reconcile``): the tasks above the largest mapped id, and
   the task count; the full listing runs only when the count disagrees.
4. New pairs and new gold pairs (``gold``; enough to keep ``gold_rate`` of the project's tasks gold) are shuffled
   together with ``seed`` and imported in batches; after each batch its mapping rows are written as one Parquet part
   (atomic). The import is not retried blindly — a lost response may hide a committed import — so a failure stops
   the push with an error, and the rerun's reconcile settles what got in. A gold pair's known answers are written
   just before the batch that imports it (adoption needs them); definitions left by a dead push whose task never
   reached the server are reused first by the rerun, or dropped — no orphan gold definition survives a rerun.

So a push killed at any point (or a Label Studio killed under it) and rerun ends with each pair exactly once. The
final task count is checked against what the push expects; only when it differs (someone imported by hand) are the
tasks listed to count duplicates (``duplicates`` in the report). ``benchmarks/labelling.py`` measures the push at
18,000 pairs next to Label Studio's raw import of the same task JSON.

The modules of a push: ``labelling.selection`` (which pairs, ``--pairs``), ``labelling.project`` (the project and
its tasks on the server, steps 1 and 2), ``labelling.ledger`` (the pair -> task mapping and the reconcile, step 3),
``labelling.taskdata`` (what each task shows) and this one (gold and the batched import, step 4). The names callers
use are importable from here as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from labelling import compare, ledger
from labelling import gold as goldmod
from labelling.api import Api
from labelling.ledger import mapping, reconcile
from labelling.project import (
    LS_TIME,
    PageTimeout,
    check_project,
    ensure_project,
    list_tasks,
    project_file,
    server_tasks,
    task_count,
)
from labelling.selection import select_pairs
from labelling.settings import LabelSettings, LabelStudioError
from labelling.taskdata import ImageCache
from pipelines.store.workspace import Workspace

# what callers import from here: a push's own names, and (defined in labelling.project / ledger / selection) the
# task listing, the mapping and the selection that pull, flows and tests use
__all__ = [
    "BATCH",
    "DEFAULT_CROP",
    "DEFAULT_PROJECT",
    "LS_TIME",
    "PageTimeout",
    "list_tasks",
    "mapping",
    "project_file",
    "push_pairs",
    "select_pairs",
    "server_tasks",
]

DEFAULT_PROJECT = "pairs"
DEFAULT_CROP = compare.SIDE  # region side of the comparison (HR pixels)
BATCH = 1000  # tasks per import request: ~1-2 s each (with 3 embedded annotations ~9 s), far below the timeout


def push_pairs(
    workspace: str | Workspace,
    selection: str = "all",
    overlap: int = 3,
    gold_rate: float = 0.05,
    project: str = DEFAULT_PROJECT,
    crop: int = DEFAULT_CROP,
    seed: int = 0,
    batch_size: int = BATCH,
    settings: LabelSettings | None = None,
    prelabelled: Callable[[dict, dict], list[dict]] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Make every selected pair a task of ``project`` exactly once (module doc). Returns a report dict.

    ``prelabelled(pair, task_data)`` may return annotations (Label Studio's format, ``completed_by`` a user id) to
    import embedded in the new task — for migrating labels collected elsewhere, and for simulated annotators (one
    import instead of ~0.13 s per ``annotations.create``). ``on_batch(done, total)`` reports progress."""
    check_project(project)
    if overlap < 1:
        raise ValueError("--overlap must be >= 1 (annotations per pair)")
    if not 0 <= gold_rate < 1:
        raise ValueError("--gold-rate must be in [0, 1)")
    t0 = time.monotonic()
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    pairs = select_pairs(ws, selection)
    api = Api.for_workspace(ws, settings)
    pid = ensure_project(api, ws, project, overlap)
    golds = goldmod.load_gold(ws, project)
    on_server, adopted, listing = reconcile(api, ws, project, pid, golds)
    known = mapping(ws, pid)
    new = [p for p in pairs if p["pair_id"] not in on_server]
    n_gold_have = sum(1 for r in known.values() if r["is_gold"])
    n_real = len(known) - n_gold_have + len(new)
    n_gold_new = max(0, round(gold_rate * n_real / (1 - gold_rate)) - n_gold_have) if gold_rate else 0
    kept = {k: g for k, g in golds.items() if k in on_server}  # definitions whose task exists
    gold_new = _new_gold(ws, new or pairs, n_gold_new, seed, golds, on_server)
    if set(kept) != set(golds):  # drop definitions of a dead push that never reached the server (orphans)
        goldmod.save_gold(ws, project, kept)
    items = [*new, *gold_new]
    np.random.default_rng(seed + len(known)).shuffle(items)
    cache = ImageCache(ws, crop, order=items, views=compare.read_views(ws, [p["pair_id"] for p in new]))
    done = _import_batches(api, ws, project, pid, items, batch_size, cache.task_data, prelabelled, kept, on_batch)
    imported = done["imported"]
    gold_ids = {g["pair_id"] for g in gold_new}
    unrecorded = len(cache.rendered - gold_ids)
    count, dup = task_count(api, pid), 0
    if count != sum(len(v) for v in on_server.values()) + imported:  # someone else imported too: count per pair
        final = server_tasks(api, pid)
        count, dup = sum(len(v) for v in final.values()), sum(1 for v in final.values() if len(v) > 1)
    return {
        "project": project,
        "project_id": pid,
        "url": api.url,
        "selected": len(pairs),
        "already_on_server": len(pairs) - len(new),
        "adopted": adopted,
        "imported": len(new),
        "gold_imported": len(gold_new),
        "gold_total": n_gold_have + len(gold_new),
        "tasks_on_server": count,
        "duplicates": dup,
        "listed": listing,
        "overlap": overlap,
        "seconds": round(time.monotonic() - t0, 2),
        "task_data_seconds": round(done["render"], 2),
        "import_wait_seconds": round(done["wait"], 2),
        "rendered_gold": len(cache.rendered & gold_ids),
        "rendered_unrecorded": unrecorded,
        **(
            {
                "note": f"{unrecorded} pair(s) had no comparison recorded for --crop {crop} (built before "
                "`sr4k pairs build` rendered them, or for another region side): rendered during this "
                "push; the next `sr4k pairs build` records those of the default side"
            }
            if unrecorded
            else {}
        ),
    }


def _import_batches(
    api: Api,
    ws: Workspace,
    project: str,
    pid: int,
    items: list[dict],
    batch_size: int,
    task_data: Callable[[dict], dict],
    prelabelled: Callable | None,
    kept: dict,
    on_batch: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    """Import ``items`` in batches (module doc, step 4): the next batch's task data (images, comparison pages) is made
    while Label Studio imports the previous one — at most one import in flight, its mapping part written as soon as it
    answers, so a crash leaves at most one batch to adopt. Returns {"imported", "render", "wait"} (seconds spent
    making task data, and waiting for imports)."""
    from concurrent.futures import ThreadPoolExecutor

    out: dict[str, Any] = {"imported": 0, "render": 0.0, "wait": 0.0}
    pending: list = []  # [(batch, future)] of the import in flight

    def settle() -> None:
        batch, fut = pending.pop()
        t = time.monotonic()
        ids = fut.result().get("task_ids") or []
        out["wait"] += time.monotonic() - t
        if len(ids) != len(batch):  # an old server without return_task_ids: the rerun's reconcile adopts them
            raise LabelStudioError(f"import returned {len(ids)} task ids for {len(batch)} tasks; rerun the push")
        ledger.write_mapping(ws, pid, [(p, tid, p["left"]) for p, tid in zip(batch, ids, strict=True)])
        out["imported"] += len(batch)
        if on_batch:
            on_batch(out["imported"], len(items))

    with ThreadPoolExecutor(1, thread_name_prefix="sr4k-import") as pool:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            t = time.monotonic()
            tasks = []
            for p in batch:
                task = {"data": task_data(p)}
                if prelabelled is not None and not p.get("gold_consistency"):
                    task["annotations"] = prelabelled(p, task["data"])
                tasks.append(task)
            out["render"] += time.monotonic() - t
            if pending:
                settle()
            gold_here = {p["pair_id"]: p for p in batch if p.get("gold_consistency")}
            if gold_here:  # the known answers are on disk before their tasks can exist (adoption needs them)
                kept |= gold_here
                goldmod.save_gold(ws, project, kept)
            path = f"/api/projects/{pid}/import?return_task_ids=true"
            pending.append((batch, pool.submit(api.post, path, tasks, retry=False)))
        if pending:
            settle()
    return out


def _new_gold(ws: Workspace, pool: list[dict], n: int, seed: int, golds: dict, on_server: dict) -> list[dict]:
    """``n`` gold pairs to import: first the definitions a dead push saved but never imported (``golds`` entries with
    no task on the server), then new ones made from distinct LRs of ``pool`` that are not gold yet. Their definitions
    are written batch by batch as they are imported (``push_pairs``), so none is left without a task."""
    if n <= 0:
        return []
    made = [g for k, g in sorted(golds.items()) if k not in on_server][:n]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    used = {g["lr_key"] for g in golds.values()}
    bases = []
    for i in order:
        if len(made) + len(bases) >= n:
            break
        p = pool[int(i)]
        gid = goldmod.gold_pair_id(p["lr_key"], p["model_a"], p["version_a"], seed)
        if p["lr_key"] in used or gid in golds or gid in on_server:
            continue
        used.add(p["lr_key"])
        bases.append(p)
    fresh = goldmod.make_gold(ws, bases, seed)
    for g in fresh:
        g["lr_set"] = next(p["lr_set"] for p in bases if p["lr_key"] == g["lr_key"])
        g["size_a"] = next(p["size_a"] for p in bases if p["lr_key"] == g["lr_key"])
    return made + fresh
