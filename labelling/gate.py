"""The annotators' gate: a reverse proxy on 127.0.0.1 in front of Label Studio through which an annotator can label
and do nothing else.

Label Studio's community edition has no roles: every user it knows is an administrator of every project, who can
create a local-files storage over any folder of the document root and read its files, export every answer, PATCH
project settings and list the users. Its Enterprise edition sells roles; this module is the community substitute.
The options weighed: per-annotator projects (still one server whose every user is an administrator of all of them),
one server per annotator (N databases to pull from, and each annotator is still that server's administrator),
Label Studio settings (there is no switch for any of this) — and a gate, which is what this is: Label Studio listens on
its own port for sr4k (push, pull, the admin's browser), and annotators are handed the gate's port only.

Who is who. A request that carries the workspace's admin API token (``Authorization: Token <token>``, compared in
constant time) passes unchanged. Every other request — any browser session, any other user's token — is an
annotator's: it must match the allow-list ``RULES`` (method + path, nothing else), or it is answered 403 with a
sentence in the annotator's words. The allow-list is what the labelling stream itself calls (recorded from Label
Studio 1.23.2's browser bundle with the isolation test): the login and logout pages, the static bundles, the labelling
stream page, ``whoami``, one project's details, the data-manager views and task list of the stream, a task, the next
task, submitting an annotation and saving drafts. Not in it, so refused: storages, import, export, project changes,
users, organizations, tokens, webhooks, ML backends, actions, Django admin, API docs, uploads.

What an allowed answer may contain. Task JSON (a task, the next task, the task list) is rewritten so that it holds
only the requesting user's annotations and drafts: others' answers are dropped, predictions (which could name a model)
are dropped, the per-task lists of annotators keep only the user. With nobody else's annotation in the answer, Label
Studio's "Compare All" has nothing to compare. Changing or deleting an annotation or a draft is allowed only on the
user's own (the owner is looked up with the admin token). Images: ``/data/local-files/?d=<relative path>`` only for an
image file under ``images/`` named by plain path segments; Label Studio then keeps it inside its document root
(``<workspace>/served``, holding only a link to the images, see ``labelling.accounts.served_root``) and inside a
storage of a project. Image names there are sha256 digests,
so an image not referenced by a task the annotator received cannot be guessed.

Outbound requests. Every HTML page gets a Content-Security-Policy that allows this origin only (plus inline code,
``data:`` and ``blob:``, which the bundle needs): the browser cannot reach Sentry, a CDN or anything else even if a
setting were missed (Label Studio's own Sentry is switched off in ``labelling.accounts.server_env``).

Landing. After login an annotator is sent to ``/sr4k/stream``, which redirects to the labelling stream
(``/projects/<id>/data?labeling=1``) of the newest project (or ``?project=<id>``); ``/`` and ``/projects/`` go there
too, because the project list is not theirs to read.

Label Studio's own port. Browsers send 127.0.0.1's cookies to every port, so a session made through the gate also
reaches Label Studio's port. With ``SR4K_LABEL_LOCK`` (on by default) Label Studio runs with a middleware
(``labelling/lslock/sr4k_gate_lock.py``) that refuses any logged-in user but the admin unless the request carries the
gate's secret header (``GATE_HEADER``), which the gate adds to what it forwards and nobody else knows.

Limits (also in README): someone with a shell on the server machine as the same user reads everything anyway; an
annotator can log in on Label Studio's port (the login page is open) but do nothing there; an annotator can see the
task data and images of any task id they ask for (never its answers) and the number of tasks in the project.

The HTTP parts are libraries (Starlette serves, httpx forwards, uvicorn runs); what no library knows — Label Studio's
endpoints and which of them an annotator may use — is written here. Run (``labelling.server.start`` does):
``python -m labelling.gate --workspace WS --upstream http://127.0.0.1:8080 --port 8081``.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import re
import time
from collections.abc import Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

GATE_HEADER = "X-Sr4k-Gate"  # added to every request the gate forwards (Label Studio's side can require it)
STREAM = "/sr4k/stream"
CSP = (
    "default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:; connect-src 'self'; "
    "img-src 'self' data: blob:; font-src 'self' data:; frame-ancestors 'self'; form-action 'self'"
)
# hop-by-hop headers (RFC 9110 §7.6.1) and the ones the gate recomputes
_DROP_UP = {
    "host",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "accept-encoding",
    "content-length",
    GATE_HEADER.lower(),
}
_DROP_DOWN = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "upgrade"}
_IMAGE = re.compile(r"images/(?:[\w-]+/)*[\w-]+\.(?:png|jpe?g|webp|gif|bmp|tiff?)", re.IGNORECASE)
N = r"\d+"

# (methods, path regex, action): the annotator's allow-list. Actions: pass (forward as is), tasks (forward, keep only
# the user's answers), annotation / draft (only the user's own), image (local-files by image path), stream, home.
RULES: list[tuple[frozenset[str], re.Pattern[str], str]] = [
    (frozenset(m.split()), re.compile(p), a)
    for m, p, a in [
        ("GET HEAD", r"/(static|react-app|label-studio-frontend|dm|editor-files)/.+", "pass"),
        ("GET HEAD", r"/(favicon\.ico|robots\.txt|health|version|sw\.js)/?", "pass"),
        ("GET", r"/api/version/?", "pass"),
        ("GET", r"/heidi-tips/?", "absent"),  # Label Studio would fetch tips from GitHub for it
        ("GET", r"/api/ml/?", "empty"),  # the data manager asks for ML backends: there are none for annotators
        ("GET", r"/api/users/?", "self"),  # ... and for the users (avatars): the annotator sees only herself
        ("GET POST", r"/user/login/?", "pass"),
        ("GET", r"/(user/)?logout/?", "pass"),
        ("GET", r"/(|projects/?|user/account/?)", "home"),
        ("GET", STREAM + "/?", "stream"),
        ("GET", rf"/projects/{N}/data/?", "pass"),
        ("GET", r"/api/current-user/whoami/?", "pass"),
        ("GET", rf"/api/projects/{N}/?", "pass"),
        ("GET", rf"/api/projects/{N}/next/?", "tasks"),
        ("POST", r"/api/dm/actions/?", "next"),  # only ?id=next_task: the stream's next task
        ("GET", rf"/api/projects/{N}/label-stream-history/?", "pass"),  # the user's own history
        ("GET", r"/api/label_links/?", "pass"),
        ("GET", r"/api/dm/(views|project|columns)/?", "pass"),
        ("POST", r"/api/dm/views/?", "newview"),  # the data manager makes its default tab on first use
        ("GET", rf"/api/dm/views/{N}/?", "pass"),
        ("PATCH PUT DELETE", rf"/api/dm/views/{N}/?", "view"),  # tabs steer the stream: only the user's own
        ("GET", r"/api/tasks/?", "tasks"),
        ("GET", rf"/api/tasks/{N}/?", "tasks"),
        ("GET", rf"/api/tasks/{N}/annotations/?", "annotations"),
        ("POST", rf"/api/tasks/{N}/annotations/?", "submit"),
        ("POST", rf"/api/tasks/{N}/drafts/?", "submit"),
        ("GET PATCH PUT", rf"/api/annotations/{N}/?", "annotation"),
        ("POST", rf"/api/annotations/{N}/drafts/?", "anndraft"),  # a draft of the user's own annotation
        ("GET PATCH PUT DELETE", rf"/api/drafts/{N}/?", "draft"),
        ("GET", r"/data/local-files/?", "image"),
    ]
]
# owned objects: the admin API path that tells the owner, and the owner's field
OWNED = {
    "annotation": ("/api/annotations/{}/", "completed_by"),
    "draft": ("/api/drafts/{}/", "user"),
    "view": ("/api/dm/views/{}/", "user"),
}
REFUSED = "Not available to annotators: this labelling server only lets you label your tasks."


def rule_for(method: str, path: str) -> str | None:
    """The action of the first rule matching ``method path`` (whole path), or None: refused."""
    for methods, pattern, action in RULES:
        if method in methods and pattern.fullmatch(path):
            return action
    return None


def _uid(user: Any) -> Any:
    return user.get("id") if isinstance(user, dict) else user


def only_own(obj: Any, uid: int) -> Any:
    """``obj`` (task JSON: a task, a list, a page of tasks) with only user ``uid``'s answers: annotations and drafts of
    others dropped, predictions dropped, annotator lists cut to ``uid``, counts recomputed from what is left."""
    if isinstance(obj, list):
        return [only_own(x, uid) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: only_own(v, uid) for k, v in obj.items()}
    if isinstance(out.get("annotations"), list):
        out["annotations"] = [a for a in out["annotations"] if _uid(a.get("completed_by")) == uid]
        if "total_annotations" in out:
            out["total_annotations"] = sum(not a.get("was_cancelled") for a in out["annotations"])
        if "cancelled_annotations" in out:
            out["cancelled_annotations"] = sum(bool(a.get("was_cancelled")) for a in out["annotations"])
    if isinstance(out.get("drafts"), list):
        out["drafts"] = [d for d in out["drafts"] if _uid(d.get("user")) == uid]
    for key in ("predictions", "predictions_results", "predictions_model_versions"):
        if isinstance(out.get(key), list):
            out[key] = []
    for key in ("annotators", "updated_by", "comment_authors", "reviewers"):
        if isinstance(out.get(key), list):
            out[key] = [u for u in out[key] if _uid(u) == uid]
    for key in ("annotations_results", "annotations_ids", "predictions_score", "avg_lead_time"):
        out.pop(key, None)
    if "total_predictions" in out:
        out["total_predictions"] = 0
    return out


class Gate:
    """The proxy: ``app`` is the Starlette application (see the module doc)."""

    def __init__(self, upstream: str, admin_token: str, gate_secret: str = "", identity_ttl: float = 30.0):
        self.upstream = upstream.rstrip("/")
        self._admin = f"Token {admin_token}".encode()
        self._secret = gate_secret
        self._ttl = identity_ttl
        self._ids: dict[str, tuple[float, int | None]] = {}
        self._me: dict[int, dict] = {}  # user id -> what whoami says about them (for the "self" answer)
        # The client is shared by every user's requests, so it must never keep a cookie: its jar refuses them all
        # (a kept session cookie would be sent with the next user's cookie-less request). Cookies travel only in the
        # headers of each forwarded request and response. trust_env=False: no proxy between the gate and 127.0.0.1.
        jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self.client = httpx.AsyncClient(
            base_url=self.upstream, timeout=httpx.Timeout(600.0, connect=10.0), cookies=jar, trust_env=False
        )
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)], lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette):
        yield
        await self.client.aclose()

    def _is_admin(self, request: Request) -> bool:
        return hmac.compare_digest(request.headers.get("authorization", "").encode(), self._admin)

    async def handle(self, request: Request) -> Response:
        if self._is_admin(request):
            return await self.forward(request)
        path = request.url.path
        action = rule_for(request.method, path)
        if action is None:
            return _refuse(request)
        if action == "image":
            if not _IMAGE.fullmatch(request.query_params.get("d", "")) or len(request.query_params.multi_items()) != 1:
                return _refuse(request)
            return await self.forward(request)
        if action in ("home", "stream"):
            if action == "home" and await self.user_id(request) is None:
                return RedirectResponse("/user/login/?next=" + STREAM, 302)
            return await self.stream(request) if action == "stream" else RedirectResponse(STREAM, 302)
        if action == "pass":
            return await self.forward(request, login=path.rstrip("/") == "/user/login")
        if action == "absent":
            return JSONResponse({}, 404)
        uid = await self.user_id(request)
        if uid is None:
            return _refuse(request, 401, "Please log in first.")
        if action == "empty":
            return JSONResponse([])
        if action == "self":
            return JSONResponse([self._me[uid]])
        if action == "next":
            if request.query_params.get("id") != "next_task" or len(request.query_params.getlist("id")) != 1:
                return _refuse(request)
            return await self.forward(request, content=await _scrubbed(request), rewrite=lambda b: only_own(b, uid))
        if action == "newview":
            return await self.forward(request, content=await _scrubbed(request))
        if action == "submit":
            return await self.forward(request, content=await _scrubbed(request, own_answer))
        if action == "anndraft":
            oid = int(path.strip("/").split("/")[2])
            if await self.owner(OWNED["annotation"][0].format(oid), OWNED["annotation"][1]) != uid:
                return _refuse(request)
            return await self.forward(request, content=await _scrubbed(request, own_answer))
        if action in OWNED:
            oid = int(path.rstrip("/").rsplit("/", 1)[1])
            if await self.owner(OWNED[action][0].format(oid), OWNED[action][1]) != uid:
                return _refuse(request)
            scrub = scrub_dm if action == "view" else own_answer
            return await self.forward(
                request, content=await _scrubbed(request, scrub) if request.method != "GET" else None
            )
        if action == "annotations":  # a bare list of a task's annotations
            return await self.forward(
                request, rewrite=lambda body: only_own({"annotations": body}, uid)["annotations"]
            )
        query = "&".join(f"{k}={v}" for k, v in _pairs(request.url.query) if unquote_plus(k) not in DM_QUERY)
        return await self.forward(request, query=query, rewrite=lambda body: only_own(body, uid))  # tasks

    async def forward(
        self,
        request: Request,
        rewrite: Callable[[Any], Any] | None = None,
        login: bool = False,
        content: bytes | None = None,
        query: str | None = None,
    ) -> Response:
        """Forward ``request`` to Label Studio (optionally with another body ``content`` or query string ``query``);
        ``rewrite`` maps a 200 JSON answer before it is returned."""
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _DROP_UP]
        headers += [("host", request.headers.get("host", "")), ("accept-encoding", "identity")]
        if self._secret:
            headers.append((GATE_HEADER, self._secret))
        try:
            query = request.url.query if query is None else query
            target = request.url.path + (f"?{query}" if query else "")
            body = await request.body() if content is None else content
            r = await self.client.request(request.method, target, headers=headers, content=body)
        except httpx.HTTPError:
            return Response("The labelling server is not answering; try again in a minute.", 502)
        body = r.content
        if rewrite is not None and r.status_code == 200 and "json" in r.headers.get("content-type", ""):
            body = json.dumps(rewrite(json.loads(body))).encode()
        out = Response(body, status_code=r.status_code)
        del out.headers["content-length"]
        out.raw_headers = [(k, v) for k, v in r.headers.raw if k.decode().lower() not in _DROP_DOWN]
        out.raw_headers.append((b"content-length", str(len(body)).encode()))
        if "text/html" in r.headers.get("content-type", ""):
            out.raw_headers.append((b"content-security-policy", CSP.encode()))
        if login and r.status_code in (301, 302, 303) and request.method == "POST":
            # after a successful login: the stream, whatever Label Studio's default page is
            out.raw_headers = [(k, v) for k, v in out.raw_headers if k.lower() != b"location"]
            out.raw_headers.append((b"location", STREAM.encode()))
        return out

    async def user_id(self, request: Request) -> int | None:
        """The id of the user behind the request's session cookie or token (``whoami``, cached ``identity_ttl``)."""
        key = request.headers.get("cookie", "") + "\0" + request.headers.get("authorization", "")
        hit = self._ids.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("cookie", "authorization")}
        if self._secret:
            headers[GATE_HEADER] = self._secret
        r = await self.client.get("/api/current-user/whoami", headers=headers)
        me = r.json() if r.status_code == 200 else {}
        uid = me.get("id")
        if uid is not None:
            keep = ("id", "email", "username", "first_name", "last_name", "avatar", "initials")
            self._me[uid] = {k: me[k] for k in keep if k in me}
        if len(self._ids) > 10_000:
            self._ids.clear()
        self._ids[key] = (time.monotonic() + self._ttl, uid)
        return uid

    async def owner(self, path: str, field: str) -> int | None:
        r = await self.client.get(path, headers={"authorization": self._admin.decode()})
        return _uid(r.json().get(field)) if r.status_code == 200 else None

    async def stream(self, request: Request) -> Response:
        """Redirect to the labelling stream of ``?project=<id>`` or of the newest project."""
        if await self.user_id(request) is None:
            return RedirectResponse("/user/login/?next=" + STREAM, 302)
        pid = request.query_params.get("project", "")
        if not pid.isdigit():
            r = await self.client.get(
                "/api/projects/",
                params={"page_size": 1, "ordering": "-created_at"},
                headers={"authorization": self._admin.decode()},
            )
            found = r.json().get("results", []) if r.status_code == 200 else []
            if not found:
                return Response("No project to label yet: ask your coordinator to push pairs, then reload.", 404)
            pid = str(max(p["id"] for p in found))
        return RedirectResponse(f"/projects/{pid}/data?labeling=1", 302)


# Data-manager filters and orderings can select tasks by other annotators' answers ("annotation results contain
# Left", "order by agreement"): a side channel even when the answers themselves are stripped. Annotators do not need
# them, so they are removed from task listings, from the tabs annotators save and from the next-task action.
DM_QUERY = {"query", "filters", "ordering"}


def _pairs(query: str) -> list[tuple[str, str]]:
    """``k=v`` pairs of a raw query string, values left encoded (so they are forwarded byte for byte)."""
    return [tuple(p.split("=", 1)) if "=" in p else (p, "") for p in query.split("&") if p]  # type: ignore[misc]


def scrub_dm(body: Any) -> Any:
    """A data-manager body (a tab, or an action's selection) without filters and ordering, at the top level and in
    ``data`` (where a tab keeps them)."""
    if not isinstance(body, dict):
        return body
    out = {k: v for k, v in body.items() if k not in DM_QUERY}
    if isinstance(out.get("data"), dict):
        out["data"] = {k: v for k, v in out["data"].items() if k not in DM_QUERY}
    return out


# Label Studio takes an annotation's author, task and ground-truth flag from the body when given (tasks/api.py:
# ``if 'completed_by' not in validated_data: completed_by = request.user``): an annotator could file answers as
# someone else or move them. The gate removes those fields, so Label Studio sets them from the session.
IDENTITY = {
    "completed_by",
    "updated_by",
    "user",
    "ground_truth",
    "task",
    "project",
    "annotation",
    "id",
    "created_at",
    "updated_at",
    "last_created_by",
    "import_id",
    "created_username",
}


def own_answer(body: Any) -> Any:
    """An annotation or draft body without the fields that say whose and where it is (``IDENTITY``)."""
    return {k: v for k, v in body.items() if k not in IDENTITY} if isinstance(body, dict) else body


async def _scrubbed(request: Request, scrub: Callable[[Any], Any] = scrub_dm) -> bytes:
    raw = await request.body()
    try:
        return json.dumps(scrub(json.loads(raw))).encode() if raw else raw
    except ValueError:
        return raw  # not JSON: Label Studio answers 400


def _refuse(request: Request, status: int = 403, msg: str = REFUSED) -> Response:
    if "text/html" in request.headers.get("accept", "") and request.method == "GET":
        page = f"<!doctype html><title>Not available</title><p>{msg}</p><p><a href='{STREAM}'>Back to labelling</a>"
        return Response(page, status, media_type="text/html", headers={"content-security-policy": CSP})
    return JSONResponse({"detail": msg}, status)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(description="sr4k's annotator gate in front of Label Studio")
    p.add_argument("--workspace", required=True, type=Path)
    p.add_argument("--upstream", required=True, help="Label Studio's URL (http://127.0.0.1:<port>)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args(argv)
    from labelling.server import credentials, gate_secret
    from pipelines.store.workspace import Workspace

    ws = Workspace(a.workspace)
    gate = Gate(a.upstream, credentials(ws)["token"], gate_secret(ws))
    uvicorn.run(gate.app, host=a.host, port=a.port, log_level="warning", access_log=False, server_header=False)


if __name__ == "__main__":
    main()
