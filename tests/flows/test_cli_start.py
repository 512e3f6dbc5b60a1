"""The CLI's start: which Prefect API a command uses, the first line it prints, and one-line errors."""

import json
import os
import socket
import subprocess
import sys

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
    r = subprocess.run([sys.executable, "-m", "flows.cli", "curate", "-i", str(tmp_path), "--runner", "nope"],
                       env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.stderr.splitlines()[0].startswith("Prefect: starting the embedded API"), r.stderr
    assert "--runner 'nope'" in r.stderr and r.returncode == 2
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
