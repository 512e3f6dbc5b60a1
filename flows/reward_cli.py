"""`sr4k` commands of the reward path; `register(app)` adds them to the main typer app (flows/cli.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
