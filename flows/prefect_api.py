"""Which Prefect API an ``sr4k`` command talks to, and how quiet Prefect is while it does.

Prefect 3 needs an API for every flow run. Without one it starts an *ephemeral* server in a subprocess (a uvicorn app
over SQLite in ``$PREFECT_HOME``): 20–60 s on this 2-core machine before the first task runs, paid by every command.
``sr4k server`` starts a long-running local server (with Prefect's UI) once and records where it listens in
``$PREFECT_HOME/sr4k-server.json`` (0600); every later command in any shell finds it there, checks in well under a
second that it is alive, and points ``PREFECT_API_URL`` at it. Otherwise the command says on its first line that it is
starting the embedded API, so the wait is never silent.

Without a server, a flow command starts that same ephemeral API itself, at its very first moment
(:func:`start_embedded_api`), instead of letting Prefect start it at the first flow call: the server's ~6 s (CPU, DB
at head; ~14 s on a new DB, which also migrates) of imports and start then overlap the command's own ~8 s of imports
and checks on the second core, and the command's process never imports ``prefect.server`` (~5.6 s CPU) at all. It is
Prefect's own command (``SubprocessASGIServer._run_uvicorn_command``: uvicorn, ``create_app`` factory,
``PREFECT__SERVER_EPHEMERAL=1``, migrations on start), except that the command binds the listening socket itself and
hands it over (uvicorn ``--fd``): the port is never free for another process to take, and the kernel queues the
first flow call's connection until uvicorn, after its start (migrations included), accepts it, so the command waits
for the API exactly when, and only as long as, the flow needs it. The server stops when the command ends, however it
ends: atexit (normal end, errors, Ctrl-C), SIGTERM/SIGHUP turned into an exit, and the kernel's parent-death signal
if the command is killed outright.

Measured and not kept: skipping Prefect's migration step when the DB is already at head
(``PREFECT_API_DATABASE_MIGRATE_ON_START=false``) saved nothing measurable (6.8 vs 6.6-7.5 s CPU to healthy): alembic
at head is cheap; the cost is the imports.

Order matters: Prefect reads its settings when it is first imported, so :func:`use_running_server` and
:func:`start_embedded_api` must run before any ``flows.*`` module that imports Prefect (the CLI calls them from its
top-level callback).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

STATE_FILE = "sr4k-server.json"


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def state_path() -> Path:
    return prefect_home() / STATE_FILE


def _listening(url: str, timeout: float = 0.5) -> bool:
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=timeout):
            return True
    except OSError:
        return False


def running_server() -> dict | None:
    """The server recorded by ``sr4k server`` if its process is alive and its port answers, else ``None``."""
    try:
        state = json.loads(state_path().read_text())
        url, pid = str(state["api_url"]), int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from pipelines.store.workspace import (
        pid_alive,  # here, not at import: pyarrow costs ~0.3 s and most runs have no server
    )

    if not pid_alive(pid) or not _listening(url):
        return None
    return state


def use_running_server() -> str:
    """Point this process at a running ``sr4k server`` if there is one; return a one-line description of the API.

    An explicit ``PREFECT_API_URL`` (a user's own server or Prefect Cloud) always wins.
    """
    if os.environ.get("PREFECT_API_URL"):
        return f"Prefect API {os.environ['PREFECT_API_URL']} (PREFECT_API_URL)"
    state = running_server()
    if state is None:
        return "Prefect: no server running; the embedded API will start (`sr4k server` in another shell skips this)"
    os.environ["PREFECT_API_URL"] = state["api_url"]
    return f"Prefect: local server {state['ui_url']}"


_EMBEDDED: subprocess.Popen | None = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: SIGTERM the server if the command dies without running its exit handlers (SIGKILL, a crash)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through Prefect's handlers and runs atexit, which stops the server


def start_embedded_api() -> str:
    """Start Prefect's ephemeral API now, in the background, and point ``PREFECT_API_URL`` at it.

    Returns the command's first line. Call it only when :func:`use_running_server` found no API, before Prefect is
    imported (afterwards the URL would not be read). The server is stopped by :func:`stop_embedded_api` at exit.
    """
    global _EMBEDDED
    spec = importlib.util.find_spec("prefect")  # the package's folder, without importing it (~2 s)
    app_dir = str(Path(spec.origin).parent.parent) if spec and spec.origin else "."
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        app_dir,
        "--factory",
        "prefect.server.api.server:create_app",
        "--fd",
        str(sock.fileno()),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    log = embedded_api_log()
    log.parent.mkdir(parents=True, exist_ok=True)
    # The server writes to its own log, not to the command's terminal: stopped while it starts (a command that
    # refuses in one line, a Ctrl-C) it printed ~25 lines of cancelled-startup traceback after the command's error.
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        _EMBEDDED = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            pass_fds=(sock.fileno(),),
            preexec_fn=_die_with_parent,
        )
    finally:
        sock.close()  # the server holds the socket now; if it dies, connections are refused at once, not queued
        os.close(out)
    atexit.register(stop_embedded_api)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    os.environ["PREFECT_API_URL"] = f"{url}/api"
    return (
        f"Prefect: embedded API {url} (pid {_EMBEDDED.pid}, starting alongside this command; "
        "`sr4k server` in another shell keeps one up)"
    )


def embedded_api_log() -> Path:
    """Where the embedded API's own output goes: ``$PREFECT_HOME/sr4k-embedded-api.log`` (appended, mode 0600)."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser() / "sr4k-embedded-api.log"


def embedded_api_exit() -> int | None:
    """The exit code of this command's embedded API if it has stopped on its own, else ``None``."""
    return None if _EMBEDDED is None else _EMBEDDED.poll()


def stop_embedded_api() -> None:
    """Stop the embedded API this command started (SIGTERM, then SIGKILL after 5 s, as Prefect's own does)."""
    global _EMBEDDED
    proc, _EMBEDDED = _EMBEDDED, None
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


def quiet_environment() -> None:
    """Defaults every command sets before Prefect is imported: no telemetry, no first-run notice, warnings only."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's SDK telemetry and its first-run notice
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


class _OneLineErrors(logging.Filter):
    """Prefect logs a failed run's whole traceback (hundreds of lines); keep its first line unless ``--debug``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            record.exc_info = None
            record.exc_text = None
            record.msg = str(record.getMessage()).splitlines()[0]
            record.args = ()
        return True


def quiet_tracebacks() -> None:
    # Filters on a logger survive Prefect's later dictConfig (it replaces handlers, never logger filters).
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_OneLineErrors())


def serve(host: str, port: int, echo=print) -> int:
    """Run ``prefect server start`` in the foreground until Ctrl-C; record it for other commands meanwhile."""
    if not 0 < port < 65536:
        raise ValueError(f"--port {port}: choose a TCP port between 1 and 65535")
    running = running_server()
    if running is not None:
        raise ValueError(
            f"a Prefect server for sr4k already runs (pid {running['pid']}, {running['ui_url']}); "
            "use it, or stop it first"
        )
    ui_url = f"http://{host}:{port}"
    if _listening(ui_url):
        raise ValueError(f"{host}:{port} is already in use; pick another with --port")
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)

    def _stop(signum, frame):  # SIGTERM (kill, a supervisor) stops the Prefect server too, as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = {"pid": proc.pid, "api_url": f"{ui_url}/api", "ui_url": ui_url, "started": time.time()}
    tmp = state_path().with_name(f".{STATE_FILE}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, state_path())
    echo(f"Prefect server with UI: {ui_url} (pid {proc.pid}); sr4k commands in any shell now use it. Ctrl-C stops it.")
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(state_path().read_text())["pid"] == proc.pid:
                state_path().unlink()
