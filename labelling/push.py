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

Task data (what the browser receives): ``pair_id``, ``sr4k_left`` ("a"/"b": which candidate is on the left, the
truth of what was displayed, copied into the mapping), the image URLs ``lr``, ``left``, ``right`` (the full images),
``view`` (the comparison page: the regions where the two candidates differ most, ``LR | Left | Right`` at 1:1, see
``labelling.compare``) and ``preload`` (the next task's comparison images, hidden, so the browser has them before the
annotator gets there). Model names are not shown. Every URL is ``/data/local-files/?d=<workspace-relative path>``:
paths are recorded relative to the workspace (``pairs.build.recorded_path``), so the tasks of a moved or copied
workspace still load. ``crop`` is the region side in HR pixels (default ``compare.SIDE``). A pair's comparison is
rendered once, when ``sr4k pairs build`` records the pair (``compare.record_views``), so the push only assembles task
JSON; gold pairs, and pairs recorded before that (or for another ``crop``), are rendered during the push, once each,
and counted in the report (``rendered_gold``, ``rendered_unrecorded`` with a ``note``).

Selection (``--pairs``): ``all``; the name of a pairs part (``tables/pairs/part-<name>.parquet``); or a SQL boolean
expression over the ``pairs`` view (``"lr_key like 'b%' and distance > 0.01"``), evaluated as one read-only
expression in a sandbox without file access (``select_pairs``). ``--project`` is a safe name
(``pipelines.store.safety``): it names files under ``labelstudio/projects/``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import requests

from labelling import compare
from labelling import gold as goldmod
from labelling.interface import INSTRUCTIONS, VIEW_SETTINGS, label_config
from labelling.server import Api, LabelSettings, LabelStudioError, LabelStudioUnavailable, served_images
from pipelines.store import safety
from pipelines.store.workspace import Workspace, write_json_atomic, write_table
from schemas.labels import LABEL_TASKS, LabelTaskRec

DEFAULT_PROJECT = "pairs"
DEFAULT_CROP = compare.SIDE  # region side of the comparison (HR pixels)
BATCH = 1000  # tasks per import request: ~1-2 s each (with 3 embedded annotations ~9 s), far below the timeout
CONNECT_TIMEOUT = 10.0  # s: a local server that does not accept a connection in 10 s is down, not busy
LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # the only format Label Studio's Datetime filter accepts


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------------------------ selection

FILTER_SECONDS = 30.0  # a --pairs filter that runs longer is interrupted (an untrusted expression never hangs)


def check_project(project: str) -> str:
    """``project`` if it is a safe name (it names files under ``labelstudio/projects/``), else a one-line
    ValueError."""
    # fullmatch: a ``^...$`` match would let a trailing newline through ("pairs\n" names another file)
    if not isinstance(project, str) or not re.fullmatch(safety.NAME_PATTERN, project):
        raise ValueError(f"--project {project!r} is not a valid name: use {safety.NAME_RULE}")
    return project


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


# ------------------------------------------------------------------------------------------------ project


def project_file(ws: Workspace, project: str):
    return ws.ls_project(check_project(project))


def project_title(ws: Workspace, project: str) -> str:
    tag = hashlib.sha256(str(ws.root).encode()).hexdigest()[:6]
    return f"sr4k {project} ({tag})"


def ensure_project(api: Api, ws: Workspace, project: str, overlap: int) -> int:
    """The project's id (module doc, step 1 and 2)."""
    path = project_file(ws, project)
    title = project_title(ws, project)
    settings = {
        "label_config": label_config(),
        "maximum_annotations": overlap,
        "expert_instruction": INSTRUCTIONS,
        "show_skip_button": True,
        "show_overlap_first": True,
        **VIEW_SETTINGS,
    }
    pid = json.loads(path.read_text())["id"] if path.exists() else None
    if pid is None:
        found = [p for p in _all(api, "/api/projects/?page_size=100") if p["title"] == title]
        pid = found[0]["id"] if found else api.post("/api/projects/", {"title": title, **settings})["id"]
        write_json_atomic(path, {"id": pid, "title": title, "created_at": now()})
    try:
        proj = api.get(f"/api/projects/{pid}")
    except LabelStudioError as e:
        if "404" not in str(e):
            raise
        raise LabelStudioError(
            f"project {pid} recorded in {path} is not on the server at {api.url} (a different or reset Label Studio "
            f"database?). Point sr4k at the right server, or move {path} away to start a new project."
        ) from None
    changed = {
        k: v
        for k, v in settings.items()
        if k in ("label_config", "maximum_annotations", *VIEW_SETTINGS) and proj.get(k) != v
    }
    if changed:
        api.patch(f"/api/projects/{pid}", changed)
    storages = api.get(f"/api/storages/localfiles/?project={pid}")
    images = str(served_images(ws))  # <ws>/served/images -> ../images (server.served_root)
    if not any(s.get("path") == images for s in storages):
        ws.images.mkdir(parents=True, exist_ok=True)
        api.post(
            "/api/storages/localfiles/",
            {"project": pid, "path": images, "title": "sr4k images", "use_blob_urls": False},
        )
    return pid


def _all(api: Api, path: str) -> list[dict]:
    data = api.get(path)
    return data["results"] if isinstance(data, dict) else data


def _server_now(resp) -> str | None:
    """The server's clock (``Date`` header, 1 s resolution) in Label Studio's filter format, or None."""
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(resp.headers["Date"]).astimezone(UTC).strftime(LS_TIME)
    except (KeyError, TypeError, ValueError):
        return None


def get_bounded(api: Api, path: str, what: str):
    """GET ``path`` -> the response; a heavy read that must not pile up on the server.

    ``Api.request`` retries a timed-out request as it is; for a page of tasks with their annotations that would leave
    the server computing the same page several times over (the failure issue 17 reports: one export request retried
    four times). Here a timeout is not retried: it raises ``PageTimeout`` and the caller asks for a smaller page —
    different, smaller work. A refused connection or a 5xx / 429 (the server is down or finished the work with an
    error) is retried with the settings' doubling back-off, a bounded number of times, like ``Api.request``."""
    s = api.settings
    wait, last = s.retry_wait, ""
    for attempt in range(s.retries):
        try:
            r = api.session.get(f"{api.url}{path}", timeout=(CONNECT_TIMEOUT, s.request_timeout))
        except requests.Timeout as e:
            if isinstance(e, requests.ConnectTimeout):
                last = f"ConnectTimeout: {e}"
            else:
                raise PageTimeout(f"{what}: no answer within {s.request_timeout:.0f} s") from None
        except requests.ConnectionError as e:
            last = f"ConnectionError: {e}"
        else:
            if r.status_code < 400:
                return r
            if r.status_code != 429 and r.status_code < 500:
                raise LabelStudioError(f"Label Studio GET {path} -> {r.status_code}: {r.text[:500]}")
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        if attempt + 1 < s.retries:
            time.sleep(wait)
            wait *= 2
    raise LabelStudioUnavailable(
        f"Label Studio at {api.url} did not answer {what} after {s.retries} tries ({last}); "
        "start it with `sr4k label serve` (port: --port / SR4K_LABEL_PORT), see its server.log"
    )


class PageTimeout(LabelStudioError):
    """One page request ran past the request timeout (the caller retries with a smaller page)."""


def list_tasks(
    api: Api,
    pid: int,
    include: str = "id,data",
    after_id: int = 0,
    filters: list[dict] | None = None,
    page_size: int = 1000,
    fields: str = "task_only",
    min_page: int = 25,
) -> Iterator[tuple[list[dict], str | None]]:
    """Pages of the project's tasks in id order (``include``: the fields to return, nested ones included — an
    annotation's ``result`` only comes back if ``result`` is listed; ``fields="all"`` makes Label Studio attach the
    annotations at all), each with the server's clock when it was answered.

    Keyset pagination: each page asks for the tasks with ``id >`` the last id seen, ordered by id (Data Manager filter
    ``filter:tasks:id``, ordering ``tasks:id``), so a page costs the same at the start and at the end of 18,000 tasks
    (``page=N`` makes the server count and skip N pages of rows every time) and tasks created during the listing
    cannot shift a page. A page that times out is asked again at half the size (``get_bounded``), down to
    ``min_page``."""
    last, size = after_id, page_size
    while True:
        items = [
            {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": last},
            *(filters or []),
        ]
        query = {"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]}
        q = urllib.parse.quote(json.dumps(query, separators=(",", ":")))
        path = f"/api/tasks/?project={pid}&fields={fields}&include={include}&page_size={size}&page=1&query={q}"
        try:
            r = get_bounded(api, path, f"the tasks after id {last} of project {pid}")
        except PageTimeout:
            if size <= min_page:
                raise
            size = max(min_page, size // 2)
            continue
        data = r.json()
        tasks = data["tasks"]
        if tasks:
            yield tasks, _server_now(r)
            last = max(t["id"] for t in tasks)
        if len(tasks) < size or len(tasks) >= data.get("total", size + 1):  # total: the filtered tasks from here on
            return


def server_tasks(api: Api, project_id: int, page_size: int = 2000) -> dict[str, list[dict]]:
    """pair_id -> the server's tasks for it ({"id", "sr4k_left"}): the full listing (``list_tasks``, ids and data)."""
    out: dict[str, list[dict]] = {}
    for tasks, _now in list_tasks(api, project_id, "id,data", page_size=page_size):
        for t in tasks:
            d = t.get("data") or {}
            out.setdefault(d.get("pair_id"), []).append({"id": t["id"], "sr4k_left": d.get("sr4k_left")})
    return out


def task_count(api: Api, project_id: int) -> int:
    """The number of tasks of the project on the server (one request; Label Studio counts them in SQL)."""
    return int(api.get(f"/api/projects/{project_id}")["task_number"])


def reconcile(api: Api, ws: Workspace, project: str, pid: int, golds: dict) -> tuple[dict[str, list[dict]], int, str]:
    """(pair_id -> the server's tasks, tasks adopted, which listing was needed) — module doc, step 3.

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
    return on_server, _adopt(ws, project, pid, on_server, golds), how


def point_storages(ws: Workspace, settings: LabelSettings | None = None) -> int:
    """Point every project's local-files storage at this workspace's served images; returns how many were moved.

    Label Studio records a storage's *absolute* path and serves a file only under a storage of the task's project,
    so after the workspace folder is moved or copied every image would answer 404 although the tasks' URLs (relative
    to the workspace) are still right. ``server.start`` calls this once Label Studio is up: a storage of ours
    (``sr4k images``) whose path is not the current one is PATCHed to it (Label Studio checks that the new path exists
    under its document root)."""
    images = str(served_images(ws))
    api = Api.for_workspace(ws, settings)
    moved = 0
    for f in sorted((ws.labelstudio / "projects").glob("*.json")):
        doc = json.loads(f.read_text())
        if not (isinstance(doc, dict) and {"id", "title"} <= doc.keys()):
            continue  # gold definitions, pull marks
        storages = api.get(f"/api/storages/localfiles/?project={doc['id']}")
        if any(st.get("path") == images for st in storages):
            continue
        for st in storages:
            if st.get("title") == "sr4k images":
                api.patch(f"/api/storages/localfiles/{st['id']}", {"project": doc["id"], "path": images})
                moved += 1
    return moved


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


# ------------------------------------------------------------------------------------------------ images


def url(rel: str) -> str:
    """The local-files URL of a workspace-relative image path. Label Studio's document root is ``<ws>/served``, whose
    only entry ``images`` links to ``../images`` (``labelling.server.served_root``), so ``d`` is the path as recorded;
    anything else cannot be served, and says how to fix it."""
    if not rel.startswith("images/") or ".." in rel.split("/"):
        raise ValueError(
            f"image path {rel!r} is not a workspace-relative path under images/ (a pairs table "
            "written before paths were recorded so?): rebuild it with `sr4k pairs build`"
        )
    return f"/data/local-files/?d={rel}"


def _store_png(ws: Workspace, rgb: np.ndarray) -> str:
    """``compare.store_png`` into this workspace: content-addressed, lossless."""
    return compare.store_png(ws.root, rgb)


LR_CACHE = 32  # LR images kept in memory by ImageCache


class ImageCache:
    """Task data of pairs: the LR image and the comparison panels (``labelling.compare``). A pair's comparison comes
    from its recorded view (``views``: pair_id -> ``compare.VIEWS`` row, rendered by ``sr4k pairs build``) when one
    was rendered with this region side and count; otherwise (gold pairs, pairs built before views were recorded) it
    is rendered here, once per push, and counted in ``rendered``. ``order`` (the import order of the pairs) lets each
    task preload the images of the task after it."""

    def __init__(
        self, ws: Workspace, crop: int, order: list[dict] | None = None, views: dict[str, dict] | None = None
    ):
        self.ws, self.crop = ws, crop
        self.views = {k: v for k, v in (views or {}).items() if v["side"] == crop and v["regions"] == compare.REGIONS}
        # the stored LR copy a recorded view names serves every pair of that LR (gold pairs too): read it back instead
        # of opening the LR set (its readers cost seconds of imports)
        self.lr_copies = {p["lr_key"]: views[p["pair_id"]]["lr"] for p in order or [] if p["pair_id"] in (views or {})}
        self.rendered: set[str] = set()  # pair_ids whose comparison was rendered here (no usable recorded view)
        self.lr_loaders: dict[str, dict[str, Callable[[], np.ndarray]]] = {}
        self.lr: OrderedDict[str, np.ndarray] = OrderedDict()  # the last LR_CACHE LR images (pairs come shuffled)
        self.lr_paths: dict[str, str] = {}
        self.panels: dict[tuple[str, str, str], compare.Comparison] = {}
        self.following = {p["pair_id"]: q for p, q in zip(order or [], (order or [])[1:], strict=False)}

    def lr_image(self, lr_set: str | None, lr_key: str) -> tuple[str, np.ndarray]:
        """The LR image (workspace path of its stored copy, RGB), loaded at most once while it stays among the
        ``LR_CACHE`` most recent: 18,000 pairs over 1,500 4K-sized LRs (~1.5 MB each) must not all stay in memory."""
        if lr_key in self.lr:
            self.lr.move_to_end(lr_key)
            return self.lr_paths[lr_key], self.lr[lr_key]
        if lr_key in self.lr_copies:
            self.lr_paths[lr_key] = self.lr_copies[lr_key]
            self.lr[lr_key] = compare.read_rgb(self.ws.root, self.lr_copies[lr_key])
            return self._keep(lr_key)
        if lr_set is None:
            raise ValueError(f"LR {lr_key!r} has no row in the candidates table: cannot find its LR image")
        if lr_set not in self.lr_loaders:
            self.lr_loaders[lr_set] = _lr_loaders(self.ws, lr_set)
        rgb = self.lr_loaders[lr_set][lr_key]()
        if lr_key not in self.lr_paths:
            self.lr_paths[lr_key] = _store_png(self.ws, rgb)
        self.lr[lr_key] = rgb
        return self._keep(lr_key)

    def _keep(self, lr_key: str) -> tuple[str, np.ndarray]:
        if len(self.lr) > LR_CACHE:
            self.lr.popitem(last=False)
        return self.lr_paths[lr_key], self.lr[lr_key]

    def comparison(self, pair: dict) -> compare.Comparison:
        """The pair's comparison in screen order (Left = the candidate that ``pair["left"]`` names)."""
        view = self.views.get(pair["pair_id"])
        if view is not None:
            return compare.from_view(view, pair["left"])
        _lr_rel, lr = self.lr_image(pair.get("lr_set"), pair["lr_key"])
        left, right = ("a", "b") if pair["left"] == "a" else ("b", "a")
        key = (pair["lr_key"], pair[f"path_{left}"], pair[f"path_{right}"])
        if key not in self.panels:
            self.rendered.add(pair["pair_id"])
            self.panels[key] = compare.render(
                lr,
                compare.read_rgb(self.ws.root, key[1]),
                compare.read_rgb(self.ws.root, key[2]),
                lambda rgb: _store_png(self.ws, rgb),
                self.crop,
            )
        return self.panels[key]

    def task_data(self, pair: dict) -> dict[str, str]:
        """What the browser receives (module doc): ids, the full images' URLs, the comparison page and a preload of
        the next task's images."""
        view = self.views.get(pair["pair_id"])
        lr_rel = view["lr"] if view is not None else self.lr_image(pair.get("lr_set"), pair["lr_key"])[0]
        left, right = ("a", "b") if pair["left"] == "a" else ("b", "a")
        nxt = self.following.get(pair["pair_id"])
        return {
            "pair_id": pair["pair_id"],
            "sr4k_left": pair["left"],
            "lr": url(lr_rel),
            "left": url(pair[f"path_{left}"]),
            "right": url(pair[f"path_{right}"]),
            "view": self.comparison(pair).html(url),
            "preload": self.comparison(nxt).preload(url) if nxt else compare.Comparison([], None).preload(url),
        }


def _lr_loaders(ws: Workspace, lr_set: str) -> dict[str, Callable[[], np.ndarray]]:
    """key -> RGB loader of an LR set (a benchmark or a shard dataset)."""
    from pipelines.pairs.candidates import lr_items

    return {it.key: it.load for it in lr_items(ws, lr_set)}


# ------------------------------------------------------------------------------------------------ push


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
        _write_mapping(ws, pid, [(p, tid, p["left"]) for p, tid in zip(batch, ids, strict=True)])
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


def _adopt(ws: Workspace, project: str, pid: int, on_server: dict[str, list[dict]], golds: dict) -> int:
    """Mapping rows for server tasks the workspace does not know (module doc, step 3)."""
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
    _write_mapping(ws, pid, rows, tag="adopt")
    return len(rows)


def _pairs_by_id(ws: Workspace, ids: Iterable[str]) -> list[dict]:
    want = set(ids)
    return [p for p in select_pairs(ws, "all") if p["pair_id"] in want] if want else []


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


def _write_mapping(ws: Workspace, pid: int, rows: list[tuple[dict, int, str]], tag: str = "push") -> None:
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
