"""The push's Label Studio project on the server: find or create it, keep its settings and its images' storage
right, and list its tasks in pages that never pile up on the server (``labelling.push`` module doc, steps 1, 2).

``--project`` is a safe name (``pipelines.store.safety``, ``check_project``): it names files under
``labelstudio/projects/``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime

import requests

from labelling.accounts import served_images
from labelling.api import Api
from labelling.interface import INSTRUCTIONS, VIEW_SETTINGS, label_config
from labelling.settings import LabelSettings, LabelStudioError, LabelStudioUnavailable
from pipelines.store import safety
from pipelines.store.workspace import Workspace, write_json_atomic

CONNECT_TIMEOUT = 10.0  # s: a local server that does not accept a connection in 10 s is down, not busy
LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # the only format Label Studio's Datetime filter accepts


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_project(project: str) -> str:
    """``project`` if it is a safe name (it names files under ``labelstudio/projects/``), else a one-line
    ValueError."""
    # fullmatch: a ``^...$`` match would let a trailing newline through ("pairs\n" names another file)
    if not isinstance(project, str) or not re.fullmatch(safety.NAME_PATTERN, project):
        raise ValueError(f"--project {project!r} is not a valid name: use {safety.NAME_RULE}")
    return project


def project_file(ws: Workspace, project: str):
    return ws.ls_project(check_project(project))


def project_title(ws: Workspace, project: str) -> str:
    tag = hashlib.sha256(str(ws.root).encode()).hexdigest()[:6]
    return f"sr4k {project} ({tag})"


def ensure_project(api: Api, ws: Workspace, project: str, overlap: int) -> int:
    """The project's id (``labelling.push`` module doc, steps 1 and 2)."""
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
