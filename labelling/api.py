"""Talking to a running Label Studio: a small REST client with bounded retries, and its users.

Retries: ``Api.request`` retries connection errors, timeouts and 5xx / 429 answers with a doubling back-off, a bounded
number of times, then raises ``LabelStudioUnavailable`` naming the URL and ``sr4k label serve``. A 4xx other than
429 is the caller's bug or bad input and is raised at once (retrying would fail the same way). Non-idempotent calls
(task import) pass ``retry=False``: the caller reconciles with the server instead of risking a double import. That
policy is why push and pull speak REST through ``Api`` rather than through label-studio-sdk's client (whose built-in
retries cover status codes, not refused connections, and know nothing of idempotency); ``Api.sdk()`` gives the SDK
client on the same URL and token for everything else.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import requests

from labelling.accounts import credentials, data_dir, save_credentials, set_password
from labelling.settings import LabelSettings, LabelStudioError, LabelStudioUnavailable, base_url, login_url
from pipelines.store.workspace import Workspace


class Api:
    """A small authenticated HTTP client of one Label Studio with bounded retries (module doc). ``sdk`` gives
    label-studio-sdk's client with the same URL and token."""

    def __init__(self, url: str, token: str, settings: LabelSettings | None = None):
        self.url = url.rstrip("/")
        self.settings = settings or LabelSettings()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self._token = token

    @classmethod
    def for_workspace(cls, ws: Workspace | str, settings: LabelSettings | None = None) -> Api:
        ws = Workspace(ws) if not isinstance(ws, Workspace) else ws
        s = settings or LabelSettings()
        if not (data_dir(ws) / "credentials.json").exists():
            raise LabelStudioError(f"no Label Studio set up for {ws.root}: run `sr4k label serve -w {ws.root}`")
        return cls(base_url(s), credentials(ws)["token"], s)

    def sdk(self):
        from label_studio_sdk import LabelStudio

        return LabelStudio(base_url=self.url, api_key=self._token, timeout=self.settings.request_timeout)

    def request(self, method: str, path: str, *, retry: bool = True, **kw) -> Any:
        """JSON of ``method path``; retries as in the module doc; 4xx -> LabelStudioError with the server's body."""
        tries = self.settings.retries if retry else 1
        wait = self.settings.retry_wait
        kw.setdefault("timeout", self.settings.request_timeout)
        last, down = "", True
        for attempt in range(tries):
            try:
                r = self.session.request(method, f"{self.url}{path}", **kw)
            except (requests.ConnectionError, requests.Timeout) as e:
                last, down = f"{type(e).__name__}: {e}", True
            else:
                down = False
                if r.status_code < 400:
                    return r.json() if r.content else None
                if r.status_code != 429 and r.status_code < 500:
                    raise LabelStudioError(f"Label Studio {method} {path} -> {r.status_code}: {r.text[:500]}")
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            if attempt + 1 < tries:
                time.sleep(wait)
                wait *= 2
        what = "did not answer" if down else "kept failing on"
        raise LabelStudioUnavailable(
            f"Label Studio at {self.url} {what} {method} {path} after {tries} tr{'y' if tries == 1 else 'ies'} "
            f"({last}); start it with `sr4k label serve` (port: --port / SR4K_LABEL_PORT), see its server.log"
        )

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, json_body: Any = None, **kw) -> Any:
        return self.request("POST", path, json=json_body, **kw)

    def patch(self, path: str, json_body: Any = None, **kw) -> Any:
        return self.request("PATCH", path, json=json_body, **kw)


def add_annotator(
    ws: Workspace | str, email: str, password: str | None = None, settings: LabelSettings | None = None
) -> dict[str, Any]:
    """Create (or update) an annotator login. Returns ``{"id", "email", "password", "created", "url"}`` (``url``: the
    gate's login page to hand over).

    Label Studio's community edition ignores the password of ``POST /api/users``, and its ``reset_password`` command
    takes the password as an argument (visible to every user in ``ps``). So the password is set by a Django shell
    against the same data directory / database whose code (``-c``) only reads it from its environment, which only
    the same user can read (``/proc/<pid>/environ`` is 0400). The password (generated when not given) is stored in the
    0600 credentials file so ``add-annotator`` can show it again."""
    ws = Workspace(ws) if not isinstance(ws, Workspace) else ws
    s = settings or LabelSettings()
    if "@" not in email or email.strip() != email or any(c.isspace() for c in email):
        raise LabelStudioError(f"{email!r} is not an e-mail address (annotators log in with their e-mail)")
    api = Api.for_workspace(ws, s)
    users = {u["email"]: u for u in list_users(api)}
    created = email not in users
    user = users.get(email) or api.post("/api/users/", {"email": email, "username": email})
    creds = credentials(ws)
    password = password or creds["annotators"].get(email) or secrets.token_urlsafe(12)
    set_password(ws, email, password, s)
    creds["annotators"][email] = password
    save_credentials(ws, creds)
    return {"id": user["id"], "email": email, "password": password, "created": created, "url": login_url(s)}


def list_users(api: Api) -> list[dict]:
    data = api.get("/api/users/")
    return data["results"] if isinstance(data, dict) and "results" in data else data
