"""The CLI's start: which Prefect API a command uses, the first line it prints, and one-line errors."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import typer

from flows import cli, prefect_api


def _state(home, pid, port):
    (home / prefect_api.STATE_FILE).write_text(
        json.dumps({"pid": pid, "api_url": f"http://127.0.0.1:{port}/api", "ui_url": f"http://127.0.0.1:{port}"})
    )


def _probe(home) -> str:
    """PREFECT_API_URL as a fresh interpreter sees it after the CLI's choice (no inherited URL)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(home)}
    code = (
        "import os; from flows import prefect_api; prefect_api.use_running_server(); "
        "print(os.environ.get('PREFECT_API_URL', ''))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def _embedded_pid(first_line: str) -> int:
    m = re.search(r"embedded API http://127\.0\.0\.1:\d+ \(pid (\d+)", first_line)
    assert m, first_line
    return int(m.group(1))


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan would be re-parented and keep running)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _assert_stopped(pid: int, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), f"embedded Prefect API pid {pid} outlived its command"


def _env(home) -> dict:
    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(home)}


def default_sigint() -> None:
    """``preexec_fn``: SIGINT's default action in the child (a suite run with ``&`` or ``nohup`` has it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_curate(tmp_path) -> tuple[subprocess.Popen, int]:
    """A real ``sr4k curate`` of one image, stopped by the caller; returns it and its embedded API's pid."""
    from PIL import Image
    from skimage import data

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(data.astronaut()).save(src / "a.png")  # a real 512x512 photo, kept by every filter
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "curate",
        "-i",
        str(src),
        "-o",
        str(tmp_path / "ws"),
        "--quiet",
        "--hr-size",
        "256",
        "--min-short-side",
        "256",
    ]
    p = subprocess.Popen(
        cmd,
        env=_env(tmp_path / "home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # as typed in a terminal, also when the suite itself runs in the background
    )
    pid = _embedded_pid(p.stderr.readline())
    assert _alive(pid), "the embedded API should run while the command does"
    return p, pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_the_early_embedded_api_never_outlives_its_command(tmp_path, sig):
    # SIGTERM and Ctrl-C unwind through the exit handlers; SIGKILL runs none: the kernel's parent-death signal acts.
    p, pid = _start_curate(tmp_path)
    time.sleep(1.0)  # inside the command's imports, before its flow
    p.send_signal(sig)
    p.communicate(timeout=120)
    assert p.returncode != 0
    _assert_stopped(pid)


def test_a_one_image_curation_uses_the_early_api_and_stops_it(tmp_path):
    import sqlite3

    import duckdb

    p, pid = _start_curate(tmp_path)
    # The server's own output goes to a private log in PREFECT_HOME, never to the command's terminal (stopped while
    # starting, it printed a cancelled-startup traceback after a refused command's one-line error).
    log = tmp_path / "home" / "sr4k-embedded-api.log"
    assert {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (1, 2)} == {str(log)}
    assert log.stat().st_mode & 0o777 == 0o600
    _, errs = p.communicate(timeout=900)
    assert p.returncode == 0, errs
    _assert_stopped(pid)
    # Prefect recorded the run through that API: its SQLite database in PREFECT_HOME holds the completed flow run.
    with sqlite3.connect(tmp_path / "home" / "prefect.db") as db:
        runs = db.execute("select f.name, r.state_type from flow_run r join flow f on r.flow_id = f.id").fetchall()
    assert runs == [("curate", "COMPLETED")], runs
    assert duckdb.sql(f"select count(*) from '{tmp_path}/ws/tables/samples/*.parquet'").fetchall() == [(1,)]


def test_a_running_server_is_used_and_a_dead_one_is_not(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        _state(tmp_path, os.getpid(), port)  # alive pid, listening port
        assert _probe(tmp_path) == f"http://127.0.0.1:{port}/api"
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        _state(tmp_path, dead.pid, port)  # the recorded server process is gone
        assert _probe(tmp_path) == ""
    _state(tmp_path, os.getpid(), port)  # process alive but nothing listens any more
    assert _probe(tmp_path) == ""
    (tmp_path / prefect_api.STATE_FILE).write_text("{not json")
    assert _probe(tmp_path) == ""


def test_an_explicit_api_url_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://example.invalid/api")
    assert "PREFECT_API_URL" in prefect_api.use_running_server()


def test_flow_commands_announce_the_api_on_their_first_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path)}
    # A bad --runner fails right after the announcement, before any flow (or the embedded API) starts.
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "curate", "-i", str(tmp_path), "--runner", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.stderr.splitlines()[0].startswith("Prefect: embedded API http://127.0.0.1:"), r.stderr
    assert "--runner 'nope'" in r.stderr and r.returncode == 2
    # The embedded API it started early is gone although the command failed: no orphan server.
    _assert_stopped(_embedded_pid(r.stderr.splitlines()[0]))
    r = subprocess.run([sys.executable, "-m", "flows.cli", "sql", "--help"], env=env, capture_output=True, text=True)
    assert "Prefect" not in r.stderr and r.returncode == 0


def test_an_unexpected_failure_is_one_line_unless_debug(monkeypatch, capsys):
    @cli.app.command("explode-for-test", hidden=True)
    def _explode() -> None:
        raise RuntimeError("the input x.png broke\n  File ...\n  more traceback")

    try:
        monkeypatch.setattr(sys, "argv", ["sr4k", "explode-for-test"])
        with pytest.raises(SystemExit) as e:
            cli.main()
        assert e.value.code == 1
        out = capsys.readouterr().err
        assert "RuntimeError: the input x.png broke" in out and "more traceback" not in out and "--debug" in out
        monkeypatch.setattr(sys, "argv", ["sr4k", "--debug", "explode-for-test"])
        with pytest.raises(RuntimeError):
            cli.main()
    finally:
        cli.app.registered_commands[:] = [c for c in cli.app.registered_commands if c.name != "explode-for-test"]
    assert isinstance(cli.app, typer.Typer)
