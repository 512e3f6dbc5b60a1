"""The Label Studio server of a workspace: settings, credentials, start / stop / health, and an API client.

Label Studio (1.23.2) lives in its own virtualenv (``.venv-ls``, made by ``bash .ci/bootstrap``) because its pins
(python-json-logger==2.0.4, ...) force an old Prefect beside the app; sr4k runs it as a subprocess and talks to it
over HTTP only (label-studio-sdk in the app's venv). The binary is ``$SR4K_LABEL_STUDIO_BIN`` or else
``<repo>/.venv-ls/bin/label-studio``.

Layout under the workspace::

    labelstudio/                   mode 0700, every file in it 0600 (``secure_permissions``; Label Studio runs with
                                   umask 077)
    labelstudio/credentials.json   admin e-mail, password, API token, Django SECRET_KEY, annotator passwords, the
                                   gate's secret (generated once, never printed or logged: the CLI shows only the
                                   e-mail, and an annotator's password with --show-password)
    labelstudio/server.json        pids / process groups / ports of the running server and gate (removed on stop)
    labelstudio/server.log, gate.log   their stdout and stderr
    labelstudio/label_studio.sqlite3, media/ ...   Label Studio's own data (its BASE_DATA_DIR)
    served/images -> ../images     Label Studio's local-files document root holds only this link (``served_root``)

The server binds 127.0.0.1 only, and so does the annotators' gate in front of it (``labelling.gate``, on
``gate_port``): annotators get the gate's URL (``login_url``), sr4k and the admin use Label Studio's port. The admin
user and its token are preset through Label Studio's environment (``LABEL_STUDIO_USERNAME/PASSWORD/USER_TOKEN``);
``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`` is required or the preset token gets 401. Secrets reach Label Studio
only through its environment (``/proc/<pid>/environ`` is readable by the same user only), never its command line.
Images are served by Label Studio's local-files storage (``/data/local-files/?d=images/<...>``), so the browser needs
no second server and no CORS. Nothing leaves 127.0.0.1: ``NO_OUTBOUND`` switches Label Studio's Sentry, version
check, analytics and feature-flag client off, and ``outbound_proxy`` catches what has no switch.

Settings (environment, prefix ``SR4K_LABEL_``; see ``LabelSettings``): ``PORT`` (8080), ``GATE_PORT`` (port + 1),
``HOST`` (127.0.0.1), ``OUTBOUND_PROXY`` (a closed 127.0.0.1 port),
``ADMIN_EMAIL`` / ``ADMIN_PASSWORD`` / ``TOKEN`` (the preset admin; generated when unset, see ``credentials``),
``DB`` = ``sqlite`` (default; ``labelstudio/label_studio.sqlite3``) or ``postgresql`` with ``PG_HOST``, ``PG_PORT``,
``PG_NAME``, ``PG_USER``, ``PG_PASSWORD`` (passed to Label Studio as ``DJANGO_DB=postgresql`` and ``POSTGRE_*``),
``START_TIMEOUT`` (s, default 240: a first start runs the migrations, ~35 s here, unless seeded from the
migrated template of ``sqlite_template``), ``RETRIES`` (API tries before an
"unreachable" error, default 4) and ``RETRY_WAIT`` (first back-off, doubling, default 0.5 s).

Retries: ``api()`` retries connection errors, timeouts and 5xx / 429 answers with a doubling back-off, a bounded
number of times, then raises ``LabelStudioUnavailable`` naming the URL and ``sr4k label serve``. A 4xx other than
429 is the caller's bug or bad input and is raised at once (retrying would fail the same way). Non-idempotent calls
(task import) pass ``retry=False``: the caller reconciles with the server instead of risking a double import. That
policy is why push and pull speak REST through ``Api`` rather than through label-studio-sdk's client (whose built-in
retries cover status codes, not refused connections, and know nothing of idempotency); ``Api.sdk()`` gives the SDK
client on the same URL and token for everything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import requests
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.store.workspace import Workspace, write_bytes_atomic

REPO = Path(__file__).resolve().parents[1]
ADMIN_EMAIL = "admin@sr4k.local"
# Label Studio reads each setting X from LABEL_STUDIO_X, then HEARTEX_X, then X (core.utils.params.get_env): none of
# the caller's may leak in, so all three prefixes are dropped from the inherited environment.
_LS_ENV_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_", "POSTGRE_", "DJANGO_", "SENTRY_", "FRONTEND_SENTRY_")
# Nothing leaves 127.0.0.1. Label Studio 1.23.2 (core/settings/label_studio.py) defaults SENTRY_DSN and
# FRONTEND_SENTRY_DSN to its own ingest.sentry.io projects whatever COLLECT_ANALYTICS says; core/utils/sentry.py
# initialises sentry_sdk only when SENTRY_DSN is truthy and the page template starts the browser's Sentry only
# when FRONTEND_SENTRY_DSN is, so both are set empty (under the LABEL_STUDIO_ name, which get_env reads first).
# LATEST_VERSION_CHECK asks PyPI for a newer version, COLLECT_ANALYTICS posts usage events, FEATURE_FLAGS_OFFLINE
# keeps the LaunchDarkly client from calling home.
NO_OUTBOUND = {
    "LABEL_STUDIO_SENTRY_DSN": "",
    "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "LATEST_VERSION_CHECK": "false",
    "COLLECT_ANALYTICS": "false",
    "FEATURE_FLAGS_OFFLINE": "true",
}


class LabelStudioError(RuntimeError):
    """A Label Studio problem the user can fix; the message names the fix."""


class LabelStudioUnavailable(LabelStudioError):
    """The server did not answer after the bounded retries."""


class LabelSettings(BaseSettings):
    """Label Studio settings from the environment (``SR4K_LABEL_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="SR4K_LABEL_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind; keep 127.0.0.1 unless behind a proxy")
    port: int = Field(8080, description="HTTP port of Label Studio (sr4k and the admin; never hand it out)")
    gate_port: int | None = Field(None, description="Port of the annotators' gate (labelling.gate) [default: port+1]")
    db: Literal["sqlite", "postgresql"] = Field("sqlite", description="sqlite (in the workspace) or postgresql")
    pg_host: str = Field("localhost", description="PostgreSQL host (db=postgresql)")
    pg_port: int = Field(5432, description="PostgreSQL port")
    pg_name: str = Field("labelstudio", description="PostgreSQL database")
    pg_user: str = Field("postgres", description="PostgreSQL user")
    pg_password: str = Field("", description="PostgreSQL password")
    start_timeout: float = Field(240.0, description="Seconds to wait for /health after start (migrations ~35 s)")
    retries: int = Field(4, ge=1, description="API tries before LabelStudioUnavailable")
    retry_wait: float = Field(0.5, gt=0, description="First retry back-off in seconds (doubles)")
    request_timeout: float = Field(120.0, description="Seconds per API request")
    lock: bool = Field(True, description="Label Studio refuses logged-in users (but the admin) who bypass the gate")
    outbound_proxy: str = Field(
        "http://127.0.0.1:9",
        description="Proxy of Label Studio's own outbound HTTP; the default, a closed 127.0.0.1 port, keeps it local",
    )
    admin_email: str = Field(ADMIN_EMAIL, description="Admin login, used when the workspace's server is created")
    admin_password: SecretStr | None = Field(None, description="Admin password [default: generated]")
    token: SecretStr | None = Field(None, description="Admin API token, > 5 characters [default: generated]")


def label_studio_bin() -> Path:
    """``$SR4K_LABEL_STUDIO_BIN`` or ``<repo>/.venv-ls/bin/label-studio``; a clear error naming the fix."""
    env = os.environ.get("SR4K_LABEL_STUDIO_BIN")
    path = Path(env) if env else REPO / ".venv-ls" / "bin" / "label-studio"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise LabelStudioError(
            f"Label Studio not found at {path}: run `bash .ci/bootstrap` (creates .venv-ls with label-studio==1.23.2) "
            "or set SR4K_LABEL_STUDIO_BIN to a label-studio executable"
        )
    return path


# ------------------------------------------------------------------------------------------------ credentials


def data_dir(ws: Workspace) -> Path:
    """Label Studio's data directory (its SQLite, media, our credentials): mode 0700, never served."""
    return ws.labelstudio


def served_root(ws: Workspace) -> Path:
    """Label Studio's local-files document root: ``<workspace>/served``, whose only entry is the link
    ``images -> ../images`` (made by ``ensure_served``).

    Why a folder of its own: everything under the document root can be reached by a local-files storage, and in the
    community edition any user can create one; the workspace itself holds ``labelstudio/`` (credentials, the SQLite
    with the API token). ``images/`` cannot be the document root either: Label Studio refuses a storage *on* the
    document root ("cannot be the same as LOCAL_FILES_DOCUMENT_ROOT"), and all images sit directly in
    ``images/<sha[:2]>/``. A link keeps task URLs as the workspace-relative paths the tables record
    (``/data/local-files/?d=images/ab/<sha>.png``) and a moved workspace still works (the link is relative)."""
    return ws.served


def served_images(ws: Workspace) -> Path:
    """The path of the images' local-files storage: ``<workspace>/served/images`` (a link to ``../images``)."""
    return served_root(ws) / "images"


def ensure_served(ws: Workspace) -> None:
    """Make ``served/images -> ../images`` (``served_root``); an error naming the fix if ``served/`` holds anything
    else (e.g. a copy made by a tool that follows links), because everything there is readable by any user."""
    root, link = served_root(ws), served_images(ws)
    ws.images.mkdir(parents=True, exist_ok=True)
    root.mkdir(exist_ok=True)
    if link.is_symlink() and os.readlink(link) == "../images":
        pass
    elif not link.exists() and not link.is_symlink():
        link.symlink_to("../images", target_is_directory=True)
    else:
        raise LabelStudioError(
            f"{link} should be a link to ../images (Label Studio serves that folder): remove it "
            f"and rerun `sr4k label serve`"
        )
    extra = sorted(p.name for p in root.iterdir() if p.name != "images")
    if extra:
        raise LabelStudioError(
            f"{root} is Label Studio's served folder and must hold only the link 'images': move "
            f"{', '.join(extra[:5])} out of it"
        )


def gate_url(settings: LabelSettings | None = None) -> str:
    """The annotators' URL: the gate (``labelling.gate``) in front of Label Studio."""
    s = settings or LabelSettings()
    return f"http://{s.host}:{s.gate_port or s.port + 1}"


def login_url(settings: LabelSettings | None = None) -> str:
    """The URL to hand an annotator: the gate's login page, which lands on the labelling stream."""
    return f"{gate_url(settings)}/user/login/?next=/sr4k/stream"


def secure_permissions(ws: Workspace) -> None:
    """Make the Label Studio data directory 0700 and every file directly in it (SQLite and its journals, logs,
    credentials) 0600 — also for a workspace made before this rule (umask 022 left them world-readable)."""
    d = data_dir(ws)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    for p in d.iterdir():
        if p.is_file() and not p.is_symlink():
            p.chmod(0o600)
        elif p.is_dir() and not p.is_symlink():
            p.chmod(0o700)


def credentials(ws: Workspace, settings: LabelSettings | None = None) -> dict[str, Any]:
    """The workspace's admin credentials, made once and kept in a 0600 file.

    Made from the settings ``SR4K_LABEL_ADMIN_EMAIL`` / ``SR4K_LABEL_ADMIN_PASSWORD`` / ``SR4K_LABEL_TOKEN`` when they
    are set (a team that wants to know its admin login), else generated with ``secrets``. They take effect when the
    workspace's Label Studio is first created (Label Studio creates its admin once); afterwards the file is the
    truth. Annotator logins are added under ``annotators`` by ``add_annotator``. Never print this dict."""
    path = data_dir(ws) / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    s = settings or LabelSettings()
    creds = {
        "admin_email": s.admin_email,
        "admin_password": s.admin_password.get_secret_value() if s.admin_password else secrets.token_urlsafe(18),
        # 40 hex digits: the shape of Label Studio's legacy tokens
        "token": s.token.get_secret_value() if s.token else secrets.token_hex(20),
        "secret_key": secrets.token_urlsafe(48),
        "annotators": {},
    }
    save_credentials(ws, creds)
    return creds


def gate_secret(ws: Workspace) -> str:
    """A random value the gate adds to every request it forwards (``labelling.gate.GATE_HEADER``), kept with the
    credentials; made on first use."""
    creds = credentials(ws)
    if not creds.get("gate_secret"):
        creds["gate_secret"] = secrets.token_urlsafe(32)
        save_credentials(ws, creds)
    return creds["gate_secret"]


def save_credentials(ws: Workspace, creds: dict[str, Any]) -> None:
    path = data_dir(ws) / "credentials.json"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = os.umask(0o077)  # the temp file is created 0600 too, so the secret is never world-readable
    try:
        write_bytes_atomic(path, (json.dumps(creds, indent=2, sort_keys=True) + "\n").encode())
    finally:
        os.umask(old)
    path.chmod(0o600)


# ------------------------------------------------------------------------------------------------ the process


@dataclass(slots=True)
class ServerInfo:
    url: str
    pid: int | None
    started: bool  # False when an already running server was reused
    seconds: float
    gate: str = ""  # the annotators' URL (labelling.gate)


def base_url(settings: LabelSettings | None = None) -> str:
    s = settings or LabelSettings()
    return f"http://{s.host}:{s.port}"


def server_env(ws: Workspace, settings: LabelSettings) -> dict[str, str]:
    """The environment Label Studio is started with (also used by ``label-studio reset_password``)."""
    creds = credentials(ws, settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LS_ENV_PREFIXES)}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir(ws)),
        LABEL_STUDIO_USERNAME=creds["admin_email"],
        LABEL_STUDIO_PASSWORD=creds["admin_password"],
        LABEL_STUDIO_USER_TOKEN=creds["token"],
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(served_root(ws)),
        SECRET_KEY=creds["secret_key"],
        DJANGO_DB=settings.db,
        **NO_OUTBOUND,
        **_proxies(settings),
    )
    if settings.db == "postgresql":
        env.update(
            POSTGRE_HOST=settings.pg_host,
            POSTGRE_PORT=str(settings.pg_port),
            POSTGRE_NAME=settings.pg_name,
            POSTGRE_USER=settings.pg_user,
            POSTGRE_PASSWORD=settings.pg_password,
        )
    return env


def _proxies(settings: LabelSettings) -> dict[str, str]:
    """Proxy variables for Label Studio (``outbound_proxy``): besides the settings in ``NO_OUTBOUND`` it fetches
    tips from raw.githubusercontent.com for its login page (``core/views.py`` ``heidi_tips``), with no switch; every
    proxy-aware client (requests, urllib3, sentry_sdk) then goes to the proxy, which by default is a closed port on
    127.0.0.1, so the attempt fails on this machine. 127.0.0.1, localhost and the PostgreSQL host are reached directly.
    """
    p = settings.outbound_proxy
    direct = ",".join(dict.fromkeys(["127.0.0.1", "localhost", settings.pg_host]))
    return {
        "HTTP_PROXY": p,
        "HTTPS_PROXY": p,
        "http_proxy": p,
        "https_proxy": p,
        "ALL_PROXY": p,
        "all_proxy": p,
        "NO_PROXY": direct,
        "no_proxy": direct,
    }


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def _port_busy(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _state_path(ws: Workspace) -> Path:
    return data_dir(ws) / "server.json"


def _token_ok(url: str, token: str) -> bool:
    try:
        r = requests.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=5)
    except requests.RequestException:
        return False
    return r.status_code == 200


def start(ws: Workspace | str, settings: LabelSettings | None = None) -> ServerInfo:
    """Start the workspace's Label Studio in the background (own process group), wait for ``/health``, then start
    the annotators' gate (``labelling.gate``) in front of it on ``gate_port``.

    Idempotent: a healthy server on the port that accepts this workspace's token is reused (and its gate started if
    it is not running). A port held by anything else is an error (naming the port setting), never silently shared.
    Label Studio runs with umask 077, so what it writes (SQLite, media, exports) is private to the user."""
    ws = Workspace(ws) if not isinstance(ws, Workspace) else ws
    s = settings or LabelSettings()
    url = base_url(s)
    creds = credentials(ws, s)
    secure_permissions(ws)
    ensure_served(ws)
    t0 = time.monotonic()
    if healthy(url):
        if _token_ok(url, creds["token"]):
            _ensure_gate(ws, s)
            return ServerInfo(url, _read_state(ws).get("pid"), False, time.monotonic() - t0, gate_url(s))
        raise LabelStudioError(
            f"port {s.port} already serves another Label Studio (not this workspace's): stop it or "
            "choose another port (--port / SR4K_LABEL_PORT)"
        )
    if _port_busy(s.host, s.port):
        raise LabelStudioError(
            f"port {s.port} on {s.host} is in use by another program: choose another port (--port / SR4K_LABEL_PORT)"
        )
    binary = label_studio_bin()
    if s.db == "sqlite" and not (data_dir(ws) / "label_studio.sqlite3").exists():
        seed_sqlite(data_dir(ws) / "label_studio.sqlite3", binary)
    ensure_served(ws)
    log = _private_log(data_dir(ws) / "server.log")
    cmd = [
        str(binary),
        "start",
        "--no-browser",
        "--internal-host",
        s.host,
        "--port",
        str(s.port),
        "--data-dir",
        str(data_dir(ws)),
    ]
    env = server_env(ws, s)
    if s.lock:  # Label Studio's settings plus the gate lock (labelling/lslock/sr4k_gate_lock.py)
        env.update(
            DJANGO_SETTINGS_MODULE="sr4k_gate_lock",
            PYTHONPATH=str(REPO / "labelling" / "lslock"),
            SR4K_GATE_SECRET=gate_secret(ws),
            SR4K_ADMIN_EMAIL=creds["admin_email"],
        )
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        umask=0o077,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=data_dir(ws),
    )
    log.close()
    gate = {k: v for k, v in _read_state(ws).items() if k.startswith("gate_")}  # a gate may outlive a crash
    _write_state(ws, gate | {"pid": proc.pid, "pgid": proc.pid, "port": s.port, "url": url, "started_at": time.time()})
    deadline = t0 + s.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _clear_state(ws)
            raise LabelStudioError(
                f"Label Studio exited with code {proc.returncode} during start; see {data_dir(ws) / 'server.log'}"
            )
        if healthy(url) and _token_ok(url, creds["token"]):
            secure_permissions(ws)
            from labelling.push import point_storages  # push imports this module

            try:
                point_storages(ws, s)  # a moved or copied workspace: storages still name the old absolute path
                _ensure_gate(ws, s)
            except BaseException:  # no half-started server left behind: stop what this call started
                _kill_group(proc.pid)
                _clear_state(ws)
                raise
            return ServerInfo(url, proc.pid, True, time.monotonic() - t0, gate_url(s))
        time.sleep(0.5)
    _kill_group(proc.pid)
    _clear_state(ws)
    raise LabelStudioError(
        f"Label Studio did not become healthy within {s.start_timeout:.0f} s (raise "
        f"SR4K_LABEL_START_TIMEOUT); see {data_dir(ws) / 'server.log'}"
    )


def _private_log(path: Path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.chmod(path, 0o600)
    return os.fdopen(fd, "ab")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ensure_gate(ws: Workspace, s: LabelSettings, timeout: float = 60.0) -> None:
    """Start the gate (``python -m labelling.gate``, own process group, log ``labelstudio/gate.log``) unless this
    workspace's gate already runs; wait until it answers ``/health`` (forwarded to Label Studio)."""
    state = _read_state(ws)
    gurl = gate_url(s)
    port = s.gate_port or s.port + 1
    if _alive(state.get("gate_pid")) and state.get("gate_port") == port and healthy(gurl):
        return
    if _port_busy(s.host, port):
        raise LabelStudioError(
            f"port {port} on {s.host} (the annotators' gate) is in use by another program: choose "
            "another one (SR4K_LABEL_GATE_PORT)"
        )
    import sys

    log = _private_log(data_dir(ws) / "gate.log")
    cmd = [
        sys.executable,
        "-m",
        "labelling.gate",
        "--workspace",
        str(ws.root),
        "--upstream",
        base_url(s),
        "--host",
        s.host,
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        umask=0o077,
        start_new_session=True,
        cwd=REPO,
    )
    log.close()
    _write_state(ws, state | {"gate_pid": proc.pid, "gate_port": port})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabelStudioError(
                f"the annotators' gate exited with code {proc.returncode}; see {data_dir(ws) / 'gate.log'}"
            )
        if healthy(gurl):
            return
        time.sleep(0.2)
    _kill_group(proc.pid)
    raise LabelStudioError(
        f"the annotators' gate did not answer within {timeout:.0f} s; see {data_dir(ws) / 'gate.log'}"
    )


def _site_packages(binary: Path) -> Path | None:
    found = sorted(binary.resolve().parent.parent.glob("lib/python3*/site-packages/label_studio/manage.py"))
    return found[0].parent.parent if found else None


def sqlite_template(binary: Path | None = None) -> Path | None:
    """A migrated, user-free Label Studio SQLite database for this Label Studio version, built once per machine.

    A fresh data directory spends most of its first start (~35 s idle, 100+ s on a busy 2-core box) in Django
    migrations; copying an already migrated empty database makes it ~6 s (Label Studio's own start still runs
    ``migrate``, which then has nothing to do, and creates the admin). The template is what ``manage.py migrate``
    writes into an empty directory — no user, no organization, no secret — cached under
    ``$SR4K_CACHE_DIR`` (default ``~/.cache/sr4k``) as ``labelstudio-<version>/label_studio.sqlite3``, keyed by the
    installed version so an upgrade builds a new one. None when the install layout is unknown (then the first start
    migrates as usual)."""
    binary = binary or label_studio_bin()
    site = _site_packages(binary)
    dist = sorted(site.glob("label_studio-*.dist-info")) if site else []
    if not dist:
        return None
    version = dist[0].name.removeprefix("label_studio-").removesuffix(".dist-info")
    cache = Path(os.environ.get("SR4K_CACHE_DIR") or Path.home() / ".cache" / "sr4k")
    template = cache / f"labelstudio-{version}" / "label_studio.sqlite3"
    if template.exists():
        return template
    build = template.parent / f".build-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LS_ENV_PREFIXES)}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(build),
        DJANGO_DB="sqlite",
        SECRET_KEY=secrets.token_urlsafe(48),
        **NO_OUTBOUND,
        **_proxies(LabelSettings()),
    )
    python = binary.resolve().parent / "python"
    try:
        cmd = [str(python), str(site / "label_studio" / "manage.py"), "migrate", "--no-color", "-v", "0"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=build)
        if out.returncode != 0 or not (build / "label_studio.sqlite3").exists():
            return None  # the normal first start will migrate (and show the error in server.log if it persists)
        os.replace(build / "label_studio.sqlite3", template)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return template


def seed_sqlite(db: Path, binary: Path | None = None) -> bool:
    """Copy the migrated template (``sqlite_template``) to ``db`` if it is missing; True when seeded."""
    template = sqlite_template(binary)
    if template is None or db.exists():
        return False
    tmp = db.with_name(f".{db.name}.tmp-{os.getpid()}")
    shutil.copyfile(template, tmp)
    os.replace(tmp, db)
    return True


def stop(ws: Workspace | str, timeout: float = 20.0) -> bool:
    """Stop the server started by ``start`` for this workspace (SIGTERM to its process group, then SIGKILL).
    Returns False when none was recorded as running."""
    ws = Workspace(ws) if not isinstance(ws, Workspace) else ws
    state = _read_state(ws)
    if not state:
        return False
    if state.get("gate_pid"):
        _kill_group(state["gate_pid"], timeout)
    _kill_group(state["pgid"], timeout)
    _clear_state(ws)
    return True


def kill(ws: Workspace | str) -> None:
    """SIGKILL the server's process group at once (a crash, for fault tests); the state file stays, as after a
    real crash."""
    ws = Workspace(ws) if not isinstance(ws, Workspace) else ws
    state = _read_state(ws)
    if state:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state["pgid"], signal.SIGKILL)
        _reap(state["pid"])
        if state.get("gate_pid"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state["gate_pid"], signal.SIGKILL)
            _reap(state["gate_pid"])


def _kill_group(pgid: int, timeout: float = 20.0) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pgid)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    _reap(pgid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _read_state(ws: Workspace) -> dict:
    p = _state_path(ws)
    return json.loads(p.read_text()) if p.exists() else {}


def _write_state(ws: Workspace, state: dict) -> None:
    old = os.umask(0o077)  # like everything in the data directory: private
    try:
        write_bytes_atomic(_state_path(ws), json.dumps(state).encode())
    finally:
        os.umask(old)


def _clear_state(ws: Workspace) -> None:
    _state_path(ws).unlink(missing_ok=True)


def running_pid(ws: Workspace) -> int | None:
    return _read_state(ws).get("pid")


# ------------------------------------------------------------------------------------------------ the API


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


# ------------------------------------------------------------------------------------------------ users


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


_SET_PASSWORD = (
    "import os, sys\n"
    "from django.contrib.auth import get_user_model\n"
    "u = get_user_model().objects.filter(email=os.environ['SR4K_USER_EMAIL']).first()\n"
    "sys.exit('no such user') if u is None else None\n"
    "u.set_password(os.environ['SR4K_USER_PASSWORD'])\n"
    "u.save(update_fields=['password'])\n"
)


def set_password(ws: Workspace, email: str, password: str, settings: LabelSettings | None = None) -> None:
    """Set a Label Studio user's password through ``manage.py shell`` (see ``add_annotator``: never in argv)."""
    s = settings or LabelSettings()
    binary = label_studio_bin()
    site = _site_packages(binary)
    if site is None:
        raise LabelStudioError(
            f"cannot find label_studio/manage.py beside {binary}: reinstall with `bash .ci/bootstrap`"
        )
    env = server_env(ws, s) | {"SR4K_USER_EMAIL": email, "SR4K_USER_PASSWORD": password}
    cmd = [
        str(binary.resolve().parent / "python"),
        str(site / "label_studio" / "manage.py"),
        "shell",
        "-c",
        _SET_PASSWORD,
    ]
    out = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=data_dir(ws),
        umask=0o077,
        stdin=subprocess.DEVNULL,
    )
    if out.returncode != 0:
        tail = (out.stdout + out.stderr)[-800:].replace(password, "***")
        raise LabelStudioError(f"setting the password of {email} failed: {tail}")


def list_users(api: Api) -> list[dict]:
    data = api.get("/api/users/")
    return data["results"] if isinstance(data, dict) and "results" in data else data
