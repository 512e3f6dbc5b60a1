"""Ctrl-C ends every ``sr4k`` command with exit code 130 and one line, whatever caught the KeyboardInterrupt.

DuckDB turns an interrupt into ``RuntimeError: Query interrupted`` (``sr4k sql`` then reported an SQL error, exit 1),
and loses one that arrives as a query starts (the query ran on); code that catches the interrupt and carries on hid
it altogether. All driven here with a real SIGINT to a real process started with SIGINT's default action.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env() -> dict:
    return os.environ | {"PYTHONPATH": ROOT, "COLUMNS": "200"}


def default_sigint() -> None:
    """``preexec_fn``: the child starts with SIGINT's default action, as a command typed in a terminal does. A
    suite started in the background (``cmd &`` in a non-interactive shell, ``nohup``) has SIGINT ignored, the child
    would inherit that, and an ignored Ctrl-C is rightly ignored by sr4k too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupt_swallowed_inside_a_command_still_ends_it_with_130():
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        import flows.cli as cli

        @cli.app.command("swallow")
        def swallow():
            try:  # a library that catches the KeyboardInterrupt and carries on
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(30)
            except BaseException:
                pass
            print("carried on")

        sys.argv = ["sr4k", "swallow"]
        cli.main()
        """
    )
    cmd = [sys.executable, "-c", script]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120, preexec_fn=default_sigint)
    assert "carried on" in p.stdout
    assert p.returncode == 130, (p.returncode, p.stderr)
    assert "error: interrupted (Ctrl-C); rerun the same command" in p.stderr


def test_ctrl_c_during_a_duckdb_query_is_an_interrupt_not_an_sql_error(tmp_path):
    (tmp_path / "tables").mkdir()  # an (empty) workspace
    query = "select count(*) from range(1000000000000) a"
    cmd = [sys.executable, "-m", "flows.cli", "sql", "-w", str(tmp_path), query]
    p = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    try:
        time.sleep(2)  # inside the query (it would take hours) or just before it
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        try:
            _, errs = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # DuckDB lost the first Ctrl-C (it came as the query started): press again
            p.send_signal(signal.SIGINT)
            _, errs = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, (p.returncode, errs)
    assert "error: interrupted" in errs and "Query interrupted" not in errs


def test_a_second_ctrl_c_stops_a_command_that_ignores_the_first():
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        import flows.cli as cli

        @cli.app.command("stuck")
        def stuck():
            while True:  # code that swallows every KeyboardInterrupt (as a lost DuckDB interrupt does)
                try:
                    print("started", flush=True)  # inside the try: a Ctrl-C from now on is swallowed
                    time.sleep(60)
                except KeyboardInterrupt:
                    pass

        sys.argv = ["sr4k", "stuck"]
        cli.main()
        """
    )
    cmd = [sys.executable, "-c", script]
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    try:
        assert p.stdout.readline() == b"started\n"
        p.send_signal(signal.SIGINT)
        time.sleep(1)
        assert p.poll() is None  # the first Ctrl-C was swallowed
        p.send_signal(signal.SIGINT)
        _, errs = p.communicate(timeout=60)
    finally:
        p.kill()  # no stuck child left behind when the assertion fails
    assert p.returncode == 130 and b"interrupted twice (Ctrl-C)" in errs, (p.returncode, errs)
