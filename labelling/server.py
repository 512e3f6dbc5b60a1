"""The Label Studio server of a workspace: start / stop / kill, health, the annotators' gate process, and the
migrated database template a first start is seeded from.

The Label Studio side of sr4k is split by responsibility; this module is the entry point and re-exports the names
callers use (``from labelling.server import Api, LabelSettings, LabelStudioError, ...``):

- ``labelling.settings``: ``LabelSettings`` (environment ``SR4K_LABEL_*``), the errors, the binary, the URLs and the
  switches that keep Label Studio from calling out;
- ``labelling.accounts``: the private data directory, the credentials, the served folder, Label Studio's environment
  and annotator passwords;
- ``labelling.api``: the REST client with bounded retries (``Api``) and the users;
- here: the processes (``labelstudio/server.json`` records their pids, process groups and ports; removed on stop).

The server binds 127.0.0.1 only, and so does the annotators' gate in front of it (``labelling.gate``, on
``gate_port``): annotators get the gate's URL (``login_url``), sr4k and the admin use Label Studio's port.
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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from labelling.accounts import (
    credentials,
    data_dir,
    ensure_served,
    gate_secret,
    save_credentials,
    secure_permissions,
    served_images,
    served_root,
    server_env,
    set_password,
)
from labelling.api import Api, add_annotator, list_users
from labelling.project import point_storages
from labelling.settings import (
    ADMIN_EMAIL,
    LS_ENV_PREFIXES,
    NO_OUTBOUND,
    REPO,
    LabelSettings,
    LabelStudioError,
    LabelStudioUnavailable,
    base_url,
    gate_url,
    label_studio_bin,
    login_url,
    proxy_env,
    site_packages,
)
from pipelines.store.workspace import Workspace, write_bytes_atomic

# the public names of the Label Studio side; most are defined in labelling.settings / accounts / api and
# re-exported here, where callers import them
__all__ = [
    "ADMIN_EMAIL",
    "NO_OUTBOUND",
    "REPO",
    "Api",
    "LabelSettings",
    "LabelStudioError",
    "LabelStudioUnavailable",
    "ServerInfo",
    "add_annotator",
    "base_url",
    "credentials",
    "data_dir",
    "ensure_served",
    "gate_secret",
    "gate_url",
    "healthy",
    "kill",
    "label_studio_bin",
    "list_users",
    "login_url",
    "running_pid",
    "save_credentials",
    "secure_permissions",
    "seed_sqlite",
    "served_images",
    "served_root",
    "server_env",
    "set_password",
    "sqlite_template",
    "start",
    "stop",
]


@dataclass(slots=True)
class ServerInfo:
    url: str
    pid: int | None
    started: bool  # False when an already running server was reused
    seconds: float
    gate: str = ""  # the annotators' URL (labelling.gate)


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
    proc = _spawn(ws, s, creds)
    deadline = t0 + s.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _clear_state(ws)
            raise LabelStudioError(
                f"Label Studio exited with code {proc.returncode} during start; see {data_dir(ws) / 'server.log'}"
            )
        if healthy(url) and _token_ok(url, creds["token"]):
            secure_permissions(ws)
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


def _spawn(ws: Workspace, s: LabelSettings, creds: dict) -> subprocess.Popen:
    """Launch ``label-studio start`` for ``start`` (seeding a new SQLite from ``sqlite_template``) in its own process
    group, its output in ``labelstudio/server.log``, its secrets in its environment only; record it in the state
    file."""
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
    _write_state(
        ws, gate | {"pid": proc.pid, "pgid": proc.pid, "port": s.port, "url": base_url(s), "started_at": time.time()}
    )
    return proc


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
    site = site_packages(binary)
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
    env = {k: v for k, v in os.environ.items() if not k.startswith(LS_ENV_PREFIXES)}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(build),
        DJANGO_DB="sqlite",
        SECRET_KEY=secrets.token_urlsafe(48),
        **NO_OUTBOUND,
        **proxy_env(LabelSettings()),
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
