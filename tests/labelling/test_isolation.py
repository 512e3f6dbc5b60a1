"""Annotators who can only label: the gate (``labelling.gate``), the secrets, and no request leaving 127.0.0.1.

The browser test is the acceptance test of issue 17's isolation part: alice is added with the CLI
(``--show-password``), logs in through the login URL it printed in a real Chromium, lands on her labelling stream,
submits an answer — and then, from the same browser session (``fetch`` inside the page: her cookies, her CSRF token),
tries what the community edition lets every user do. Each attempt must be refused, nothing must have changed on the
server (checked with the admin token), every request the browser made went to 127.0.0.1, and the shared Label Studio
tried no outbound connection (``lsfixtures.outbound_requests``).
"""

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
import requests
from lsfixtures import MODELS, OutboundRecorder, free_port, make_lr_set, make_pairs, outbound_requests
from typer.testing import CliRunner

from labelling import gate, push, server
from labelling import settings as settings_mod
from pipelines.store.workspace import Workspace

CHROMIUM = "/usr/bin/chromium"

# ------------------------------------------------------------------------------------------------ unit: the rules


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", "/projects/3/data", "pass"),
        ("GET", "/api/tasks/17", "tasks"),  # forwarded, then only the user's own answers
        ("GET", "/api/tasks/17/annotations", "annotations"),  # the same for a bare list
        ("PATCH", "/api/annotations/5/", "annotation"),  # only the user's own (checked against the server)
        ("POST", "/api/tasks/17/annotations/", "submit"),  # without author / task / ground truth in the body
        ("GET", "/data/local-files/", "image"),  # only an image path
        ("POST", "/api/dm/actions", "next"),  # only ?id=next_task
        ("GET", "/api/users/", "self"),  # answered by the gate: a list of one, the user
        ("GET", "/heidi-tips/", "absent"),  # answered by the gate: Label Studio would fetch it from GitHub
        ("POST", "/api/storages/localfiles/", None),
        ("GET", "/api/storages/localfiles", None),
        ("POST", "/api/storages/localfiles/validate", None),
        ("GET", "/api/projects/3/export", None),
        ("POST", "/api/projects/3/exports/", None),
        ("PATCH", "/api/projects/3/", None),
        ("DELETE", "/api/projects/3", None),
        ("GET", "/api/projects/", None),
        ("GET", "/api/organizations/1/memberships", None),
        ("GET", "/api/current-user/token", None),
        ("DELETE", "/api/annotations/5/", None),
        ("GET", "/data/upload/1/x.json", None),
        ("GET", "/admin/", None),
        ("GET", "/api/tasks/17/../../users", None),
    ],
)
def test_allow_list(method, path, action):
    assert gate.rule_for(method, path) == action


def test_only_own_keeps_the_users_answers_and_no_predictions():
    task = {
        "id": 1,
        "data": {"left": "x"},
        "annotations": [{"id": 10, "completed_by": 7, "result": [1]}, {"id": 11, "completed_by": {"id": 8}}],
        "drafts": [{"id": 3, "user": 8}, {"id": 4, "user": 7}],
        "predictions": [{"model_version": "m_good"}],
        "annotators": [7, 8],
        "total_annotations": 2,
        "annotations_results": "secret",
    }
    out = gate.only_own({"tasks": [task]}, 7)["tasks"][0]
    assert [a["id"] for a in out["annotations"]] == [10] and [d["id"] for d in out["drafts"]] == [4]
    assert out["predictions"] == [] and out["annotators"] == [7] and out["total_annotations"] == 1
    assert "annotations_results" not in out and out["data"] == {"left": "x"}
    assert [a["id"] for a in gate.only_own(task, 8)["annotations"]] == [11]


def test_data_manager_filters_and_orderings_are_removed():
    tab = {
        "project": 3,
        "data": {
            "title": "t",
            "filters": {"items": [{"filter": "filter:tasks:annotations_results"}]},
            "ordering": ["tasks:total_annotations"],
            "hiddenColumns": {},
        },
    }
    assert gate.scrub_dm(tab) == {"project": 3, "data": {"title": "t", "hiddenColumns": {}}}
    action = {"filters": {"items": [1]}, "ordering": ["x"], "selectedItems": {"all": True}}
    assert gate.scrub_dm(action) == {"selectedItems": {"all": True}}
    assert gate._pairs("a=1&%71uery=%7B%7D&b") == [("a", "1"), ("%71uery", "%7B%7D"), ("b", "")]


def test_answers_lose_the_fields_that_say_whose_they_are():
    body = {"result": [1], "lead_time": 2.0, "completed_by": 1, "ground_truth": True, "task": 9, "draft_id": 4}
    assert gate.own_answer(body) == {"result": [1], "lead_time": 2.0, "draft_id": 4}


def test_images_only_by_plain_relative_paths():
    ok = ["images/ab/" + "c" * 64 + ".png", "images/crops/x_1.jpg"]
    bad = [
        "../labelstudio/credentials.json",
        "/etc/passwd",
        "images/ab/../../x.png",
        "labelstudio/x.sqlite3",
        "images/a%2e%2e/x.png",
        "images/x.png/../credentials.json",
        "ab/c.png",
        "images/../labelstudio/x.png",
    ]
    assert all(gate._IMAGE.fullmatch(p) for p in ok) and not any(gate._IMAGE.fullmatch(p) for p in bad)


# ------------------------------------------------------------------------------------------------ secrets


def test_secrets_are_private_outside_the_document_root_and_never_in_argv(ls, monkeypatch):
    ws, settings = ls
    d = server.data_dir(ws)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in ("credentials.json", "label_studio.sqlite3", "server.log", "gate.log"):
        if (d / name).exists():
            assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    root = server.served_root(ws)  # the document root: only a link to the images
    assert [p.name for p in root.iterdir()] == ["images"] and os.readlink(root / "images") == "../images"
    assert root not in (d / "credentials.json").resolve().parents and root not in d.resolve().parents
    pid = server.running_pid(ws)
    environ = dict(x.split("=", 1) for x in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in x)
    assert environ["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] == str(root)
    assert environ["LABEL_STUDIO_SENTRY_DSN"] == "" and environ["LABEL_STUDIO_FRONTEND_SENTRY_DSN"] == ""

    argv: list[list[str]] = []
    real_run = subprocess.run

    def spy(cmd, *a, **kw):
        argv.append([str(c) for c in cmd])
        return real_run(cmd, *a, **kw)

    monkeypatch.setattr(server.subprocess, "run", spy)
    u = server.add_annotator(ws, "carol@lab.org", settings=settings)
    assert argv and u["url"].startswith(server.gate_url(settings))
    creds = server.credentials(ws)
    assert stat.S_IMODE((d / "credentials.json").stat().st_mode) == 0o600  # rewritten with a password: still 0600
    state = json.loads((d / "server.json").read_text())
    for p in (state["pid"], state["gate_pid"]):
        argv.append(Path(f"/proc/{p}/cmdline").read_text().split("\0"))
    secrets = [u["password"], creds["token"], creds["admin_password"], creds["secret_key"], creds["gate_secret"]]
    for cmd in argv:
        assert not any(s in " ".join(cmd) for s in secrets), cmd
    logs = "".join((d / n).read_text(errors="replace") for n in ("server.log", "gate.log"))
    assert not any(s in logs for s in secrets)


def test_label_studio_settings_turn_sentry_off(ls):
    """What the server_env does inside Label Studio: its settings module, read by the Label Studio venv's Python,
    has no Sentry DSN for the server or the browser, and sentry_sdk has no active client."""
    ws, settings = ls
    binary = server.label_studio_bin()
    site = settings_mod.site_packages(binary)
    code = (
        "import json, sentry_sdk; from django.conf import settings as s; "
        "print(json.dumps([s.SENTRY_DSN, s.FRONTEND_SENTRY_DSN, sentry_sdk.get_client().is_active(), "
        "s.LOCAL_FILES_DOCUMENT_ROOT]))"
    )
    out = subprocess.run(
        [str(binary.resolve().parent / "python"), str(site / "label_studio" / "manage.py"), "shell", "-c", code],
        env=server.server_env(ws, settings),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=server.data_dir(ws),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    dsn, frontend_dsn, active, root = json.loads(out.stdout.strip().splitlines()[-1])
    assert (dsn, frontend_dsn, active) == ("", "", False)
    assert root == str(server.served_root(ws))


# ------------------------------------------------------------------------------------------------ the browser


def _annotation_ids(obj) -> set[int]:
    """Ids of every annotation anywhere in a JSON answer (a task, a page of tasks, a list of annotations)."""
    if isinstance(obj, list):
        return set().union(*(_annotation_ids(x) for x in obj)) if obj else set()
    if not isinstance(obj, dict):
        return set()
    ids = {a["id"] for a in obj.get("annotations") or [] if isinstance(a, dict) and "id" in a}
    if "completed_by" in obj and "id" in obj:
        ids.add(obj["id"])
    return ids.union(*(_annotation_ids(v) for v in obj.values()))


_FETCH = """async ([m, p, b]) => {
    const csrf = (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
    const r = await fetch(p, {method: m, credentials: "same-origin", redirect: "manual",
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
        body: b === null ? undefined : JSON.stringify(b)});
    return {status: r.status, text: await r.text()};
}"""


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"), reason="Debian chromium missing")
def test_annotator_can_label_and_nothing_else(ls, tmp_path):
    from playwright.sync_api import sync_playwright

    from flows.cli import app

    ws, settings = ls
    make_lr_set(ws, "iso", 2, seed=11)
    make_pairs(ws, "iso", 3, "iso", seed=2)
    r = push.push_pairs(ws, "iso", overlap=3, gold_rate=0, project="iso", settings=settings)
    pid = r["project_id"]
    tids = sorted(m["task_id"] for m in push.mapping(ws, pid).values())
    admin = server.Api.for_workspace(ws, settings)
    other = admin.post(f"/api/tasks/{tids[0]}/annotations", {"result": [], "lead_time": 1.0})  # someone else's answer

    out = CliRunner().invoke(app, ["label", "add-annotator", "alice@lab.org", "--show-password", "-w", str(ws.root)])
    assert out.exit_code == 0, out.output
    lines = dict(x.split(": ", 1) for x in out.output.splitlines() if x.startswith(("url: ", "password: ")))
    assert urlparse(lines["url"]).port == settings.gate_port  # annotators get the gate, never Label Studio's port
    gate_origin = server.gate_url(settings)

    seen: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("request", lambda req: seen.append(req.url))
            page.goto(lines["url"])
            page.fill("input[name=email]", "alice@lab.org")
            page.fill("input[name=password]", lines["password"])
            with page.expect_response(lambda x: "/api/dm/actions?id=next_task" in x.url, timeout=90_000) as nxt:
                page.click("button[type=submit]")
            assert nxt.value.status == 200  # landed on her labelling stream, which fetched her next task
            alice_id = next(x["id"] for x in server.list_users(admin) if x["email"] == "alice@lab.org")
            assert f"/projects/{pid}/data" in page.url and "labeling=1" in page.url
            page.wait_for_selector("img", timeout=60_000)
            page.wait_for_timeout(1500)  # let the bundle finish its own calls (they are recorded in `seen`)

            def call(method: str, path: str, body=None) -> tuple[int, str]:
                res = page.evaluate(_FETCH, [method, path, body])
                return res["status"], res["text"]

            # she can label: her own answer is stored, and she can read and edit it
            status, text = call(
                "POST", f"/api/tasks/{tids[1]}/annotations?project={pid}", {"result": [], "lead_time": 2.0}
            )
            assert status == 201, text
            mine = json.loads(text)["id"]
            assert call("PATCH", f"/api/annotations/{mine}/", {"lead_time": 3.0})[0] == 200

            # ... and nothing else
            refused = {
                "storage creation": (
                    "POST",
                    "/api/storages/localfiles/",
                    {"project": pid, "path": str(server.data_dir(ws)), "title": "x"},
                ),
                "storage listing": ("GET", f"/api/storages/localfiles/?project={pid}", None),
                "credentials file": ("GET", "/data/local-files/?d=../labelstudio/credentials.json", None),
                "credentials, encoded": ("GET", "/data/local-files/?d=%2e%2e%2Flabelstudio%2Fcredentials.json", None),
                "sqlite": ("GET", "/data/local-files/?d=../labelstudio/label_studio.sqlite3", None),
                "export": ("GET", f"/api/projects/{pid}/export?exportType=JSON", None),
                "export snapshot": ("POST", f"/api/projects/{pid}/exports/", {}),
                "other's annotation": ("GET", f"/api/annotations/{other['id']}/", None),
                "edit other's annotation": ("PATCH", f"/api/annotations/{other['id']}/", {"result": []}),
                "project PATCH": ("PATCH", f"/api/projects/{pid}/", {"title": "pwned", "maximum_annotations": 99}),
                "project list": ("GET", "/api/projects/", None),
                "memberships": ("GET", "/api/organizations/1/memberships", None),
                "her API token": ("GET", "/api/current-user/token", None),
                "task actions": ("POST", f"/api/dm/actions?id=delete_tasks&project={pid}", {}),
                "two actions": ("POST", f"/api/dm/actions?id=next_task&id=delete_tasks&project={pid}", {}),
            }
            got = {what: call(*req)[0] for what, req in refused.items()}
            assert all(s in (401, 403) for s in got.values()), got

            # other annotators' answers are not in what she can read (Compare All has nothing to compare)
            reads = [
                f"/api/tasks/{tids[0]}",
                f"/api/tasks/{tids[0]}/annotations",
                f"/api/projects/{pid}/next",
                f"/api/tasks?project={pid}&fields=all&page_size=50",
            ]
            for path in reads:
                status, text = call("GET", path)
                assert status == 200, (path, text)
                assert other["id"] not in _annotation_ids(json.loads(text)), path
                assert not any(m in text for m in MODELS), path  # no model identity
            # filters and orderings cannot select tasks by others' answers: they are dropped from listings and tabs
            q = json.dumps(
                {
                    "filters": {
                        "conjunction": "and",
                        "items": [
                            {
                                "filter": "filter:tasks:total_annotations",
                                "operator": "greater",
                                "type": "Number",
                                "value": 0,
                            }
                        ],
                    }
                }
            )
            listing = json.loads(call("GET", f"/api/tasks?project={pid}&page_size=50&query={quote(q)}")[1])
            assert listing["total"] == len(tids), listing["total"]  # not the 2 tasks that have annotations
            assert admin.get(f"/api/tasks?project={pid}&page_size=50&query={quote(q)}")["total"] == 2  # (it filters)
            status, text = call("POST", f"/api/dm/views?project={pid}", {"project": pid, "data": json.loads(q)})
            assert status == 201, text
            assert not admin.get(f"/api/dm/views/{json.loads(text)['id']}")["data"].get("filters", {}).get("items")
            # she files answers as herself only: an author or task in the body is dropped (Label Studio takes them)
            forge = {"result": [], "completed_by": other["completed_by"], "ground_truth": True}
            status, text = call("POST", f"/api/tasks/{tids[2]}/annotations?project={pid}", forge)
            assert status == 201, text
            forged = admin.get(f"/api/annotations/{json.loads(text)['id']}/")
            assert forged["completed_by"] == alice_id and not forged["ground_truth"], forged
            assert call("PATCH", f"/api/annotations/{mine}/", {"completed_by": other["completed_by"]})[0] == 200
            assert admin.get(f"/api/annotations/{mine}/")["completed_by"] == alice_id
            # the user list holds only herself (the data manager asks for it; an error would pop up)
            status, text = call("GET", f"/api/users?project={pid}")
            assert status == 200 and [u["email"] for u in json.loads(text)] == ["alice@lab.org"], text
            task = json.loads(call("GET", f"/api/tasks/{tids[1]}")[1])
            assert [a["id"] for a in task["annotations"]] == [mine]
            assert not any(m in page.content() for m in MODELS)
        finally:
            browser.close()

    # nothing changed on the server (the admin's view through Label Studio's own port)
    proj = admin.get(f"/api/projects/{pid}")
    assert proj["title"] != "pwned" and proj["maximum_annotations"] == 3
    assert not any(
        s["path"] == str(server.data_dir(ws)) for s in admin.get(f"/api/storages/localfiles/?project={pid}")
    )
    assert len(server.list_users(admin)) >= 2  # at least the admin was there to hide
    full = admin.get(f"/api/tasks/{tids[0]}")
    assert other["id"] in [a["id"] for a in full["annotations"]]  # the answer existed: hiding it was the gate's doing
    # Label Studio itself does take an author from the body: the gate's dropping it is what kept alice honest
    assert admin.post(f"/api/tasks/{tids[2]}/annotations", {"result": [], "completed_by": alice_id})[
        "completed_by"
    ] in (alice_id, {"id": alice_id})
    # the admin token passes the gate unfiltered
    via_gate = server.Api(gate_origin, server.credentials(ws)["token"], settings).get(f"/api/tasks/{tids[0]}")
    assert other["id"] in [a["id"] for a in via_gate["annotations"]]

    # the gate keeps no one's session: a request without cookies is anonymous
    assert requests.get(f"{gate_origin}/api/current-user/whoami", timeout=30).status_code in (401, 403)
    hosts = {urlparse(u).hostname for u in seen if urlparse(u).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {"127.0.0.1"}, sorted(u for u in seen if urlparse(u).hostname != "127.0.0.1")[:10]
    assert len(seen) > 10  # the page really loaded through the gate
    assert outbound_requests() == []
    assert os.stat(server.data_dir(ws) / "credentials.json").st_mode & 0o077 == 0


def _login(base: str, email: str, password: str) -> requests.Session:
    """A logged-in session through Label Studio's login form at ``base`` (Label Studio's port or the gate's)."""
    s = requests.Session()
    s.get(f"{base}/user/login/", timeout=60)
    r = s.post(
        f"{base}/user/login/",
        data={"email": email, "password": password, "csrfmiddlewaretoken": s.cookies.get("csrftoken")},
        allow_redirects=False,
        timeout=60,
    )
    assert r.status_code == 302 and "/user/login" not in r.headers["location"], (r.status_code, r.text[:300])
    return s


@pytest.mark.slow
def test_label_studio_refuses_annotator_sessions_that_bypass_the_gate(tmp_path):
    """Browsers send 127.0.0.1's cookies to every port: with the lock (the default), an annotator's session is
    refused on Label Studio's own port unless it came through the gate; the admin's browser and the API token still
    work there. Label Studio runs behind the outbound recorder: nothing is sent out."""
    rec = OutboundRecorder()
    ws = Workspace(tmp_path / "ws")
    settings = server.LabelSettings(port=free_port(), gate_port=free_port(), outbound_proxy=rec.url)
    assert settings.lock
    info = server.start(ws, settings)
    try:
        u = server.add_annotator(ws, "dave@lab.org", settings=settings)
        creds = server.credentials(ws)
        direct = _login(info.url, "dave@lab.org", u["password"])  # the login page itself is open ...
        for path in ("/api/current-user/whoami", "/api/projects/", "/api/users/", "/user/account/"):
            assert direct.get(f"{info.url}{path}", timeout=60).status_code == 403, path  # ... what follows is not
        via_gate = _login(info.gate, "dave@lab.org", u["password"])
        me = via_gate.get(f"{info.gate}/api/current-user/whoami", timeout=60)
        assert me.status_code == 200 and me.json()["email"] == "dave@lab.org"
        # the gate's session carried to Label Studio's port (what a browser does) is refused there too
        assert requests.get(f"{info.url}/api/projects/", cookies=via_gate.cookies, timeout=60).status_code == 403
        admin = _login(info.url, creds["admin_email"], creds["admin_password"])
        assert admin.get(f"{info.url}/api/projects/", timeout=60).status_code == 200
        assert server.Api(info.url, creds["token"], settings).get("/api/projects/") is not None
        assert rec.lines == []
    finally:
        server.stop(ws)
        rec.shutdown()


@pytest.mark.slow
def test_a_busy_gate_port_is_named_and_leaves_no_server_behind(tmp_path):
    import socket

    ws = Workspace(tmp_path / "ws")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = server.LabelSettings(port=free_port(), gate_port=busy.getsockname()[1])
        with pytest.raises(server.LabelStudioError, match="SR4K_LABEL_GATE_PORT"):
            server.start(ws, settings)
    assert not server.healthy(server.base_url(settings)) and server.running_pid(ws) is None
