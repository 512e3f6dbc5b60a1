"""What every ``sr4k`` command shares: the output and error consoles, the one-line error, the workspace option and
loading a settings file with option overrides. Command modules import these; none defines its own.

- :data:`console` (stdout: tables, summaries) and :data:`err` (stderr: errors, warnings, notices; never wrapped, so
  an error stays on one line however narrow the terminal).
- :func:`fail`: ``error: <what went wrong>; <fix>`` on one line, exit status 2 (a usage error) unless told. The
  message is printed literally: rich markup in it (``sr4k[vllm]``, a file named ``[red].png``) is escaped, and line
  breaks are folded, so no caller can forget either. :func:`error` prints the same line without exiting (the
  entry point's last resort) and :func:`warn` a ``warning:`` line.
- :data:`WorkspaceOpt` with :data:`DEFAULT_WORKSPACE`: ``--workspace/-w``, one default, one help text (no
  environment variable sets the workspace).
- :func:`load_config`: YAML file + dotted overrides -> a pydantic model, with the behaviour of
  :mod:`pipelines.store.settings` (unknown keys refused by name, values coerced by pydantic, one line naming the
  file or option, the key and the fix), ending the command through :func:`fail` when the settings are unusable.
- :func:`follow_live_streams`: Prefect's console log lines go where :data:`err` goes, also after an embedded command
  (the CLI calls it as each command ends).
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")

console = Console()
err = Console(stderr=True, soft_wrap=True)

DEFAULT_WORKSPACE = Path("./sr4k-data")
WORKSPACE_HELP = "Workspace folder (tables, images, shards, benchmarks, releases)"
WorkspaceOpt = Annotated[Path, typer.Option("--workspace", "-w", help=WORKSPACE_HELP)]


def one_line(text: str) -> str:
    """``text`` with its line breaks (and the indentation after them) folded into single spaces."""
    return re.sub(r"\s*\n\s*", " ", str(text).strip())


def error(msg: str, *, fix: str | None = None) -> None:
    """Print ``error: <msg>[; <fix>]`` as one literal line on stderr."""
    line = one_line(msg) + (f"; {one_line(fix)}" if fix else "")
    err.print(f"[bold red]error:[/] {escape(line)}", highlight=False)


def fail(msg: str, *, fix: str | None = None, code: int = 2) -> NoReturn:
    """Print ``error: <msg>[; <fix>]`` as one literal line on stderr and end the command with ``code``."""
    error(msg, fix=fix)
    raise typer.Exit(code)


def warn(msg: str) -> None:
    """Print ``warning: <msg>`` as one literal line on stderr (the command goes on)."""
    err.print(f"[bold yellow]warning:[/] {escape(one_line(msg))}", highlight=False)


def load_config(model: type[M], path: Path | str | None, overrides: dict[str, Any] | None, *, what: str) -> M:
    """``--config`` YAML file (optional) + option overrides (dotted keys; ``None`` = option not given) -> ``model``.
    Unusable settings end the command with one line (see :mod:`pipelines.store.settings`)."""
    from pipelines.store.settings import SettingsError, load_settings

    try:
        return load_settings(model, path, overrides, what=what)
    except SettingsError as e:
        fail(str(e))


def follow_live_streams() -> None:
    """Make Prefect's console log handlers write to ``sys.stderr`` / ``sys.stdout`` as they are when a line is logged
    (as :data:`err` does), instead of the stream that was current when Prefect configured logging.

    Prefect configures logging once per process, when it is first imported, and its ``PrefectConsoleHandler`` (on the
    root logger) keeps the stream that was ``sys.stderr`` then. The first flow command imports Prefect; when the CLI
    runs embedded with its streams swapped for the command (``typer.testing.CliRunner``,
    ``contextlib.redirect_stderr``), that stream is closed after the command, and every later log line of the process
    (the next command's, a flow called directly, any library's warning) ended in ``ValueError: I/O operation on closed
    file`` and a "Logging error" traceback on stderr. The CLI calls this when each command ends: a handler bound to
    the command's stream then follows the live one (rich's ``Console(stderr=True)`` with no file). Handlers bound to
    any other stream are left as they are."""
    handlers = sys.modules.get("prefect.logging.handlers")
    if handlers is None:  # Prefect not imported: no handler of its holds a stream
        return
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    found = {h for lg in loggers if isinstance(lg, logging.Logger) for h in lg.handlers}
    for handler in found:
        if not isinstance(handler, handlers.PrefectConsoleHandler):
            continue
        for name in ("stderr", "stdout"):
            if handler.console.file is getattr(sys, name):
                handler.console.file = None  # rich writes to sys.<name> as it is at each write
                handler.console.stderr = name == "stderr"
                break
