"""Pull annotations from Label Studio into ``tables/annotations``: incremental, validated, mapped to candidates.

``pull_annotations(workspace)`` reads the project's tasks that changed since the last pull, with their annotations,
and writes one row per annotation *version* it has not seen:

- What is read, and how: Label Studio bumps a task's ``updated_at`` whenever one of its annotations is created or
  edited. A routine pull lists the tasks with ``updated_at`` after the last pull's mark through the task listing
  (``/api/tasks/?fields=all&include=id,updated_at,annotations,result,...``: flex-fields ``include`` applies to the
  nested annotations too, so the task ``data`` — a large HTML view — is not sent). The listing is paged by id
  (``push.list_tasks``: keyset pages of ``PAGE`` tasks, each request a few seconds, never one that can outlive its
  timeout; a page that times out is asked again smaller, so the server never computes the same page twice). A full
  pull (the first one, or ``full=True``: a repair that can only add missing rows) lists every task the same way:
  it costs about what Label Studio's own JSON export costs (measured in ``benchmarks/labelling.py``) but never as
  one request (that one request took ~100 s at 18K tasks and was retried into failure). Label Studio's database is
  never read directly.
- The mark is the server's clock (``Date`` of the first page's answer) minus ``MARGIN`` (60 s): a write that commits
  up to a minute after its timestamp (an annotation submit, an import batch) is still caught; what is read twice is
  dropped by the key below. It is saved in ``labelstudio/projects/<project>-pull.json`` only after the rows are
  written. So a pull right after a bulk import reads that last minute of tasks again, later pulls only what changed.
- Incremental and idempotent: the key of a row is (annotation_id, updated_at). Keys already in the table are
  skipped, so a rerun with nothing new writes nothing, and an annotation that an annotator edits later comes back as a
  new row with the new ``updated_at`` (readers take the latest row per annotation_id: nothing is counted twice, the
  history is kept). An annotation deleted on the server keeps its rows here: nothing pulled is lost.
- Atomic: all new rows of one pull are one Parquet part, written to a temporary name and renamed; a pull holds an
  exclusive lock (``labelstudio/pull.lock``) so two concurrent pulls cannot both write the same new rows. A pull
  killed (or whose Label Studio dies) before the write leaves nothing and its mark unchanged: the rerun reads it all.
- Validated: Label Studio stores whatever a client sends (an unknown choice, a missing question, a skip). Every
  annotation becomes a row; an invalid one has ``valid = False`` and ``invalid_reason`` (``skipped``,
  ``missing:<criterion>``, ``unknown_choice:<criterion>=<value>``, ``multiple:<criterion>``,
  ``unknown_control:<name>``, ``unknown_task``), never a silent drop.
- Mapped: answers are stored in screen terms (left / right / tie); the mapping's ``left`` (``tables/label_tasks``:
  which candidate was on the left, the truth of what was displayed; the task's own ``sr4k_left`` for a task the
  workspace did not push) turns them into candidate terms: left -> that candidate, right -> the other, tie -> tie.
  ``lead_time`` (seconds Label Studio measured) and created/updated times are kept; the annotator is the user's
  e-mail.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq

from labelling import gold as goldmod
from labelling.interface import FLIP, SCREEN_VALUES, UNUSABLE, UNUSABLE_VALUE
from labelling.push import DEFAULT_PROJECT, LS_TIME, list_tasks, mapping, project_file
from labelling.server import Api, LabelSettings, LabelStudioError, list_users
from pipelines.store.workspace import Workspace, write_json_atomic, write_table
from schemas.labels import ANNOTATIONS, CRITERIA, AnnotationRec


def project_id(ws: Workspace, project: str) -> int:
    try:
        path = project_file(ws, project)
    except ValueError as e:  # not a safe name: the same one-line error as every Label Studio problem
        raise LabelStudioError(str(e)) from None
    if not path.exists():
        raise LabelStudioError(
            f"no Label Studio project {project!r} in {ws.root}: push pairs first "
            f"(`sr4k label push --pairs all -w {ws.root}`)"
        )
    return json.loads(path.read_text())["id"]


def seen_keys(ws: Workspace) -> dict[int, set[str]]:
    """annotation_id -> the updated_at values already pulled."""
    out: dict[int, set[str]] = {}
    for p in sorted(ws.table_dir("annotations").glob("part-*.parquet")):
        t = pq.read_table(p, columns=["annotation_id", "updated_at"]).to_pydict()
        for aid, up in zip(t["annotation_id"], t["updated_at"], strict=True):
            out.setdefault(aid, set()).add(up)
    return out


def to_candidate(screen: str, left: str) -> str:
    """A screen answer (left/right/tie) in candidate terms (a/b/tie), given which candidate was on the left."""
    if screen == "tie":
        return "tie"
    other = "b" if left == "a" else "a"
    return left if screen == "left" else other


def parse_result(result: list[dict], left: str) -> tuple[dict[str, str | None], bool, list[str]]:
    """Label Studio's result list -> ({criterion: a|b|tie|None}, both_unusable, reasons it is invalid)."""
    answers: dict[str, str | None] = dict.fromkeys(CRITERIA)
    reasons: list[str] = []
    unusable = False
    seen: Counter[str] = Counter()
    for item in result or []:
        name = item.get("from_name")
        choices = (item.get("value") or {}).get("choices")
        seen[name] += 1
        if name == UNUSABLE:
            unusable = unusable or UNUSABLE_VALUE in (choices or [])
            continue
        if name == FLIP:  # a view toggle (A/B flicker), not an answer
            continue
        if name not in answers:
            reasons.append(f"unknown_control:{name}")
            continue
        if not isinstance(choices, list) or len(choices) != 1 or seen[name] > 1:
            reasons.append(f"multiple:{name}" if isinstance(choices, list) and choices else f"missing:{name}")
            answers[name] = None
            continue
        if choices[0] not in SCREEN_VALUES:
            reasons.append(f"unknown_choice:{name}={str(choices[0])[:40]}")
            continue
        answers[name] = to_candidate(choices[0], left)
    for c in CRITERIA:
        if answers[c] is None and not any(r.endswith(f":{c}") or f":{c}=" in r for r in reasons):
            reasons.append(f"missing:{c}")
    if reasons:
        answers = dict.fromkeys(CRITERIA)
    return answers, unusable, reasons


@contextmanager
def _lock(ws: Workspace):
    path = ws.labelstudio / "pull.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


MARGIN = timedelta(seconds=60)
PAGE = 500  # tasks per listing page: ~1-3 s each with 3 annotations per task, far below the request timeout
INCLUDE = "id,updated_at,annotations,result,completed_by,lead_time,was_cancelled,created_at"


def changed_tasks(api: Api, pid: int, since: str | None, page_size: int = PAGE) -> Iterator[tuple[list[dict], str]]:
    """Pages of the project's tasks updated after ``since`` (all tasks when None), each task with its annotations,
    and the server's clock when the page was answered (``push.list_tasks``: keyset pages in id order, a page that
    times out is asked again smaller, never the same work twice)."""
    filters = (
        []
        if since is None
        else [{"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": since}]
    )
    yield from list_tasks(api, pid, INCLUDE, filters=filters, page_size=page_size, fields="all")


def _mark_file(ws: Workspace, project: str):
    return project_file(ws, project).with_name(f"{project}-pull.json")


def _fetch(
    api: Api, ws: Workspace, project: str, pid: int, full: bool, margin: timedelta
) -> tuple[list[dict], str | None, str]:
    """(annotated tasks, the new high-water mark or None, "full" | "incremental") — module doc."""
    mark = _mark_file(ws, project)
    since = None if full or not mark.exists() else json.loads(mark.read_text())["since"]
    tasks: list[dict] = []
    newest = clock = None
    for page, server_now in changed_tasks(api, pid, since):
        clock = clock or server_now
        for t in page:
            newest = max(newest or t["updated_at"], t["updated_at"])
            if t.get("annotations"):
                tasks.append(t)
    horizon = max(clock or "", newest or "") or None  # both are times the server had reached (Date: 1 s resolution)
    new_mark = None
    if horizon:
        t = datetime.fromisoformat(horizon.replace("Z", "+00:00")).astimezone(UTC) - margin
        new_mark = max(t.strftime(LS_TIME), since or "")
    return tasks, new_mark, "full" if since is None else "incremental"


def pull_annotations(
    workspace: str | Workspace,
    project: str = DEFAULT_PROJECT,
    settings: LabelSettings | None = None,
    full: bool = False,
    margin: timedelta = MARGIN,
) -> dict[str, Any]:
    """Write the annotations not pulled yet (module doc). Returns a report dict."""
    t0 = time.monotonic()
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    pid = project_id(ws, project)
    api = Api.for_workspace(ws, settings)
    with _lock(ws):
        tasks, new_mark, mode = _fetch(api, ws, project, pid, full, margin)
        t_export = time.monotonic() - t0
        emails = {u["id"]: u["email"] for u in list_users(api)}
        known = {r["task_id"]: r for r in mapping(ws, pid).values()}
        for task in tasks:  # a task this workspace did not push: its pair and side come from its own data
            if task["id"] not in known:
                task["data"] = api.get(f"/api/tasks/{task['id']}").get("data") or {}
        golds = goldmod.load_gold(ws, project)
        seen = seen_keys(ws)
        rows, updated = [], 0
        total = 0
        for task in tasks:
            for ann in task.get("annotations") or []:
                total += 1
                if ann["updated_at"] in seen.get(ann["id"], ()):
                    continue
                updated += ann["id"] in seen
                rows.append(_row(task, ann, pid, known, golds, emails))
        if rows:
            ident = hashlib.sha256(json.dumps(sorted([r.annotation_id, r.updated_at] for r in rows)).encode())
            write_table(
                ws.part("annotations", f"p{pid}-{int(time.time())}-{ident.hexdigest()[:12]}"), rows, ANNOTATIONS
            )
        if new_mark:
            write_json_atomic(_mark_file(ws, project), {"since": new_mark})
    invalid = Counter(r.invalid_reason.split("=")[0] for r in rows if not r.valid)
    return {
        "project": project,
        "project_id": pid,
        "mode": mode,
        "tasks_exported": len(tasks),
        "annotations_exported": total,
        "new_rows": len(rows),
        "updated": updated,
        "invalid_new": sum(invalid.values()),
        "invalid_by_reason": dict(invalid),
        "seconds": round(time.monotonic() - t0, 2),
        "export_seconds": round(t_export, 2),
    }


def _row(task: dict, ann: dict, pid: int, known: dict, golds: dict, emails: dict) -> AnnotationRec:
    data = task.get("data") or {}
    m = known.get(task["id"])
    pair_id = data.get("pair_id") or (m or {}).get("pair_id")
    left = data.get("sr4k_left") or (m or {}).get("left")
    gold = golds.get(pair_id) if pair_id else None
    is_gold = bool(m["is_gold"]) if m else gold is not None
    by = ann.get("completed_by")
    by = by.get("id") if isinstance(by, dict) else by
    base = {
        "annotation_id": int(ann["id"]),
        "task_id": int(task["id"]),
        "project_id": pid,
        "pair_id": pair_id or "",
        "annotator": emails.get(by, f"user:{by}"),
        "left": left or "",
        "is_gold": is_gold,
        "lead_time": ann.get("lead_time"),
        "created_at": ann["created_at"],
        "updated_at": ann["updated_at"],
        "raw_result": json.dumps(ann.get("result") or [], sort_keys=True),
    }
    if not pair_id or left not in ("a", "b"):
        return AnnotationRec(
            **base, consistency=None, naturalness=None, both_unusable=False, valid=False, invalid_reason="unknown_task"
        )
    if ann.get("was_cancelled"):
        return AnnotationRec(
            **base, consistency=None, naturalness=None, both_unusable=False, valid=False, invalid_reason="skipped"
        )
    answers, unusable, reasons = parse_result(ann.get("result") or [], left)
    return AnnotationRec(
        **base,
        consistency=answers["consistency"],
        naturalness=answers["naturalness"],
        both_unusable=unusable,
        valid=not reasons,
        invalid_reason=";".join(reasons) if reasons else None,
    )


def latest_annotations(ws: Workspace, project_id: int | None = None) -> list[dict]:
    """The annotations table reduced to the latest row per annotation_id (of ``project_id`` if given)."""
    latest: dict[int, dict] = {}
    for p in sorted(ws.table_dir("annotations").glob("part-*.parquet")):
        for r in pq.read_table(p).to_pylist():
            if project_id is not None and r["project_id"] != project_id:
                continue
            cur = latest.get(r["annotation_id"])
            if cur is None or r["updated_at"] > cur["updated_at"]:
                latest[r["annotation_id"]] = r
    return list(latest.values())


def project_status(
    workspace: str | Workspace,
    project: str = DEFAULT_PROJECT,
    settings: LabelSettings | None = None,
    refresh: bool = True,
) -> dict[str, Any]:
    """Server-side progress plus per-annotator counts and gold accuracy from the pulled table (pulls first when
    ``refresh``). Agreement comes from ``labelling.qc`` (the CLI adds it)."""
    import statistics

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    pid = project_id(ws, project)
    api = Api.for_workspace(ws, settings)
    pulled = pull_annotations(ws, project, settings) if refresh else None
    proj = api.get(f"/api/projects/{pid}")
    tasks = mapping(ws, pid)
    gold_answers = {
        r["pair_id"]: (r["gold_consistency"], r["gold_naturalness"]) for r in tasks.values() if r["is_gold"]
    }
    rows = latest_annotations(ws, pid)
    per: dict[str, dict[str, Any]] = {}
    for r in rows:
        a = per.setdefault(r["annotator"], {"n": 0, "valid": 0, "gold_n": 0, "gold_correct": 0, "_lt": []})
        a["n"] += 1
        a["valid"] += r["valid"]
        if r["lead_time"] is not None:
            a["_lt"].append(r["lead_time"])
        if r["valid"] and r["pair_id"] in gold_answers:
            a["gold_n"] += 1
            a["gold_correct"] += (r["consistency"], r["naturalness"]) == gold_answers[r["pair_id"]]
    for a in per.values():
        lt = a.pop("_lt")
        a["median_lead_time"] = statistics.median(lt) if lt else None
    overlap = proj.get("maximum_annotations") or 1
    progress = {
        "url": api.url,
        "tasks": proj.get("task_number"),
        "gold tasks": len(gold_answers),
        "overlap": overlap,
        "tasks with an annotation": proj.get("num_tasks_with_annotations"),
        "tasks finished (overlap reached)": proj.get("finished_task_number"),
        "annotations on server": proj.get("total_annotations_number"),
        "skipped on server": proj.get("skipped_annotations_number"),
        "annotation_rows": len(rows),
        "invalid rows": sum(not r["valid"] for r in rows),
        "pulled now": None if pulled is None else pulled["new_rows"],
    }
    return {"project_id": pid, "progress": progress, "annotators": per}
