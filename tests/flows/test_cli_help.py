"""Every command's ``--help`` ends its description with one example, and the example parses with the command's own
options (so a renamed or removed option cannot leave a stale example behind)."""

import re
import shlex

import pytest
import typer.main
from rich.text import Text
from typer.testing import CliRunner

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


def _rendered_options(path) -> dict[str, str]:
    """``sr4k <path> --help`` as the user sees it (rich, wide enough not to wrap): option name -> its row."""
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "1000"})
    assert res.exit_code == 0, res.output
    rows = {}
    for line in res.output.splitlines():
        m = re.match(r"│\s+(?:\*\s+)?(-[-\w]+)", line)
        if m:
            rows[m.group(1)] = line
    return rows


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_help_shows_defaults(path, cmd):
    """Every option that is not required shows ``[default: ...]`` in the rendered help: its value, or (for an option
    whose absence defers to a config file or the environment) what applies then, via ``show_default="..."``. A
    hand-written "[default: x]" inside a help text does not count: rich reads it as markup and prints nothing."""
    assert _options_without_default(path, cmd) == []


def _options_without_default(path, cmd) -> list[str]:
    rows = _rendered_options(path)
    options = [p for p in cmd.params if p.param_type_name == "option" and not p.required and p.name != "help"]
    assert all(p.opts[0] in rows for p in options), (sorted(rows), [p.opts[0] for p in options])
    return [p.opts[0] for p in options if "[default: " not in rows[p.opts[0]]]


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_help_texts_print_literally(path, cmd):
    """Typer renders help texts as rich markup: a "[mean, std]" or "[default: x]" in one would vanish from --help."""
    for text in [cmd.help or "", *(getattr(p, "help", None) or "" for p in cmd.params)]:
        assert Text.from_markup(text).plain == text.replace("\\[", "["), f"sr4k {' '.join(path)}: markup in {text!r}"


# option -> (settings model, dotted key): the options whose absence defers to the settings' default (or --config)
CONFIG_DEFAULTS = {
    ("curate",): (
        "pipelines.curate.build:CurateConfig",
        {
            "--hr-size": "hr_size",
            "--scale": "scale",
            "--min-short-side": "filters.min_short_side",
            "--crops-per-image": "crops_per_image",
            "--dataset": "dataset",
            "--seed": "seed",
        },
    ),
    ("train-reward",): (
        "training.reward.config:RewardConfig",
        {
            "--output-dir": "output_dir",
            "--use-vllm": "use_vllm",
            "--vllm-mode": "vllm_mode",
            "--lora": "lora",
            "--max-steps": "max_steps",
            "--num-generations": "num_generations",
            "--batch-size": "per_device_train_batch_size",
            "--lr": "learning_rate",
            "--beta": "beta",
            "--max-completion-length": "max_completion_length",
            "--device": "device",
            "--resume": "resume",
        },
    ),
    ("train-sr",): (
        "training.sr.config:TrainConfig",
        {
            "--stage": "stage",
            "--out": "out",
            "--steps": "steps",
            "--crop": "data.crop",
            "--rfr": "model.rfr.mode",
            "--lambda-ap": "loss.ap",
            "--dtype": "model.dtype",
        },
    ),
}


def _field_default(model, dotted: str):
    """The default of a dotted key: through a parent's default instance where it has one (a dataclass or model
    built by default_factory), else through the parent field's model class (a required sub-model)."""
    first, _, rest = dotted.partition(".")
    field = model.model_fields[first]
    if not rest:
        return field.get_default(call_default_factory=True)
    if field.is_required():
        return _field_default(field.annotation, rest)
    value = field.get_default(call_default_factory=True)
    for part in rest.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("path", list(CONFIG_DEFAULTS), ids=[" ".join(p) for p in CONFIG_DEFAULTS])
def test_shown_defaults_are_the_settings_defaults(path):
    """An option that stays None so a --config file can set the value shows the settings model's default: a change
    of the model's default cannot leave a stale [default: ...] behind."""
    import importlib

    target, options = CONFIG_DEFAULTS[path]
    module, name = target.split(":")
    model = getattr(importlib.import_module(module), name)
    rows = _rendered_options(path)
    for opt, key in options.items():
        value = _field_default(model, key)
        if isinstance(value, bool):
            shown = opt.removeprefix("--") if value else "no-" + opt.removeprefix("--")
        elif isinstance(value, tuple):
            shown = "x".join(map(str, value))
        else:
            shown = str(value)
        assert f"[default: ({shown})]" in rows[opt], f"sr4k {' '.join(path)} {opt}: model default {value!r}"
