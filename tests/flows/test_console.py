"""flows.console and the settings loader behind it (pipelines.store.settings): one literal error line, overrides of
nested keys, unknown keys refused by name, values coerced or refused in one line naming file, key and fix."""

from pathlib import Path

import pytest
import typer
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from flows.console import DEFAULT_WORKSPACE, WorkspaceOpt, fail, load_config
from pipelines.store.settings import SettingsError, load_settings


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_short_side: int = 2160
    sharpness: float = 0.5


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: int = 4
    name: str = "train4k"
    filters: Inner = Field(default_factory=Inner)


def _cli(body) -> typer.Typer:
    app = typer.Typer()
    app.command()(body)
    app.command("other")(lambda: None)  # two commands: the first is then invoked by name
    return app


def _error_line(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


def test_fail_prints_markup_literally_on_one_line():
    def body() -> None:
        fail("cannot read [red]photo[/red].png:\n  not an image", fix="install sr4k[vllm] or pass [bold]x[/]")

    line = _error_line(CliRunner().invoke(_cli(body), ["body"]))
    assert line == "error: cannot read [red]photo[/red].png: not an image; install sr4k[vllm] or pass [bold]x[/]"


def test_fail_exit_code_is_the_callers():
    def body() -> None:
        fail("out of memory", code=1)

    res = CliRunner().invoke(_cli(body), ["body"])
    assert res.exit_code == 1 and "error: out of memory" in res.output


def test_workspace_option_has_one_default_and_short_name(tmp_path):
    seen = []

    def body(workspace: WorkspaceOpt = DEFAULT_WORKSPACE) -> None:
        seen.append(workspace)

    app = _cli(body)
    assert CliRunner().invoke(app, ["body"]).exit_code == 0
    assert CliRunner().invoke(app, ["body", "-w", str(tmp_path)]).exit_code == 0
    assert seen == [Path("sr4k-data"), tmp_path]


def test_file_value_and_nested_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("scale: 2\nfilters:\n  min_short_side: 1000\n  sharpness: 0.9\n")
    got = load_settings(Outer, cfg, {"filters.min_short_side": 3000, "name": None}, what="test")
    # the option wins for its nested key only; the file keeps its other values; None = option not given
    assert (got.scale, got.name, got.filters.min_short_side, got.filters.sharpness) == (2, "train4k", 3000, 0.9)
    assert load_settings(Outer, None, {"filters.sharpness": "0.25"}, what="t").filters.sharpness == 0.25  # coerced


def test_unknown_key_is_refused_by_name_with_the_closest_one(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filters:\n  min_shortside: 100\n")
    with pytest.raises(SettingsError) as e:
        load_settings(Outer, cfg, {}, what="curate")
    msg = str(e.value)
    assert "\n" not in msg
    assert "unknown key filters.min_shortside" in msg and "did you mean filters.min_short_side" in msg
    assert str(cfg) in msg


def test_unknown_override_is_blamed_on_the_command_line(tmp_path):
    with pytest.raises(SettingsError, match=r"unknown key scal \(from the command line\), did you mean scale"):
        load_settings(Outer, None, {"scal": 3}, what="t")


def test_bad_type_is_one_line_naming_file_key_value_and_fix(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("scale: four\nfilters: {min_short_side: 10}\n")
    with pytest.raises(SettingsError) as e:
        load_settings(Outer, cfg, {"filters.sharpness": "sharp"}, what="curate")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("invalid curate settings: ")
    assert f"scale = 'four' (from {cfg}): Input should be a valid integer" in msg
    assert "filters.sharpness = 'sharp' (from the command line): Input should be a valid number" in msg
    assert msg.endswith(f"fix {cfg} and the option")


def test_override_below_a_plain_value_is_refused_by_name(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filters: 3\n")
    with pytest.raises(SettingsError, match=r"filters is 3, not a mapping of settings, so filters.sharpness cannot"):
        load_settings(Outer, cfg, {"filters.sharpness": 0.1}, what="t")


def test_load_config_ends_the_command_with_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("scale: [1, 2]\n")

    def body(config: Path) -> None:
        load_config(Outer, config, {"filters.min_short_side": None}, what="curate")

    line = _error_line(CliRunner().invoke(_cli(body), ["body", str(cfg)]))
    assert line.startswith("error: invalid curate settings: scale = [1, 2] (from ") and line.endswith(f"fix {cfg}")
    broken = tmp_path / "broken.yaml"
    broken.write_text("scale: [1,\n")
    line = _error_line(CliRunner().invoke(_cli(body), ["body", str(broken)]))
    assert f"--config {broken} is not valid YAML at line" in line


def test_the_commands_share_the_loader(tmp_path):
    """curate (--config file) and train-sr (--set options) answer the same way: one line, key, source, fix."""
    from flows.cli import app

    cfg = tmp_path / "curate.yaml"
    cfg.write_text("filters:\n  min_shortside: 100\n")
    res = CliRunner().invoke(app, ["curate", "-i", str(tmp_path), "-o", str(tmp_path / "ws"), "-c", str(cfg)])
    line = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert res.exit_code == 2 and len(line) == 1, res.output
    assert "unknown key filters.min_shortside" in line[0] and "did you mean filters.min_short_side" in line[0]
    assert not (tmp_path / "ws").exists()
    args = ["train-sr", "--shards", str(tmp_path), "--transformer", "t", "--vae", "v", "--set", "steps=many"]
    res = CliRunner().invoke(app, args)
    line = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert res.exit_code == 2 and len(line) == 1, res.output
    assert "steps = 'many' (from the command line): Input should be a valid integer" in line[0]


def test_an_embedded_command_leaves_prefect_logging_on_the_live_stream(tmp_path):
    """An embedding that swaps the streams for a command (typer's CliRunner, ``redirect_stderr``) closes them after it.
    The first flow command imports Prefect, whose console log handler keeps the ``sys.stderr`` of that moment: every
    later log line of the process then ended in "--- Logging error --- ... I/O operation on closed file". The CLI now
    leaves that handler following the live stream (``follow_live_streams``). A fresh interpreter: Prefect must be
    configured inside the command, as in a user's process."""
    import os
    import subprocess
    import sys

    code = f"""
import logging, sys
from typer.testing import CliRunner
from flows.cli import app
assert "prefect.main" not in sys.modules
r = CliRunner().invoke(app, ["curate", "-i", {str(tmp_path)!r}, "-o", {str(tmp_path / "out")!r}, "--runner", "nope"])
assert r.exit_code == 2 and "--runner 'nope'" in r.output and "prefect.main" in sys.modules, r.output
logging.getLogger("a.library").warning("after the command")
with CliRunner().isolation() as (out, err, mixed):
    logging.getLogger("a.library").warning("inside the next command")
    sys.stderr.flush()
    print("NEXT:", mixed.getvalue().decode(), file=sys.__stdout__)
"""
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # no flow runs: no API is started or asked
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "Logging error" not in res.stderr and "closed file" not in res.stderr, res.stderr
    assert "after the command" in res.stderr  # the process's own stderr once the command is over
    assert "inside the next command" in res.stdout.split("NEXT:", 1)[1]  # the next command's stream while it runs


def test_cli_errors_give_the_fix_after_the_problem(tmp_path):
    """Commands pass the fix as ``fail(..., fix=...)``: one line, ``error: <what went wrong>; <fix>``."""
    from flows.cli import app

    train = ["train-sr", "--transformer", "t", "--vae", "v"]
    cases = {
        (
            "bench",
            "build",
            "real",
            "--from",
            "x",
            "--name",
            "b",
        ): "cannot build 'real'; use `sr4k bench build synthetic`, or `sr4k bench import",
        (*train, "--set", "steps"): "--set 'steps'; use dotted.key=value, e.g. --set loss.ap=0.5",
        (*train, "--set", "data.crop=[1,"): "--set 'data.crop=[1,': the value is not valid YAML; fix it (e.g.",
        tuple(train): "no training data; pass --shards <curated shard folder>",
        (*train, "--shards", str(tmp_path), "--processes", "0"): "--processes 0; use 1 (this process) or the number",
    }
    no_api = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}  # each fails before any flow: no API is started or asked
    for args, want in cases.items():
        res = CliRunner().invoke(app, list(args), env=no_api)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        assert res.exit_code == 2 and errors == lines[-1:] and want in errors[0], res.output
