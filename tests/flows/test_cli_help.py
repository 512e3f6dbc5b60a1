"""Every command's ``--help`` ends its description with one example, and the example parses with the command's own
options (so a renamed or removed option cannot leave a stale example behind)."""

import shlex

import pytest
import typer.main

from flows.cli import app

ROOT = typer.main.get_command(app)


def _leaves(cmd=ROOT, path=()):
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield path, cmd


LEAVES = list(_leaves())


def test_every_command_is_covered():
    assert len(LEAVES) >= 25


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_help_shows_one_example_that_parses(path, cmd):
    examples = [
        ln.strip()[len("Example: ") :] for ln in (cmd.help or "").splitlines() if ln.strip().startswith("Example: ")
    ]
    assert len(examples) == 1, f"sr4k {' '.join(path)} --help: want one 'Example: sr4k ...' line"
    argv = shlex.split(examples[0])
    assert argv[: 1 + len(path)] == ["sr4k", *path], examples[0]
    try:
        cmd.make_context(" ".join(path), argv[1 + len(path) :])
    except Exception as e:  # typer's click UsageError: unknown option, missing required option, bad value, extra arg
        pytest.fail(f"example of sr4k {' '.join(path)} does not parse: {getattr(e, 'format_message', e.__str__)()}")


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_help_shows_defaults(path, cmd):
    """Options with a concrete default show it (typer's [default: ...]); None-defaults say where the value comes
    from in their help text, or are optional inputs with no default."""
    for p in cmd.params:
        if p.required or p.default is None or getattr(p, "is_flag", False):
            continue
        assert p.show_default is not False, f"sr4k {' '.join(path)} {p.opts[0]} hides its default"
