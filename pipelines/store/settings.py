"""Settings: one YAML file + dotted-key overrides -> a validated pydantic model; every failure is one line.

How every sr4k config is loaded (``sr4k curate``, ``train-reward``, ``train-sr``; the CLI face is
``flows.console.load_config``):

1. The file (optional) is read with :func:`pipelines.store.safety.read_yaml_mapping`: regular files only, capped,
   and a missing file, a FIFO, broken YAML or a non-mapping is one line naming the file and the fix.
2. The overrides (CLI options; ``None`` = not given) are set into it by dotted key (``filters.min_short_side``), so a
   given option wins over the file and an omitted one leaves the file's value. A dotted key whose parent holds a
   value, not a mapping, is refused by name instead of failing inside the merge.
3. pydantic validates with the model's own rules: unknown keys are refused (the models say ``extra="forbid"``; the
   message names the key and the closest known one), values are coerced by pydantic (``"4"`` -> 4), and every error
   becomes one line: which settings, the key, the value, where it came from (the file or the command line), the
   rule broken and the fix (:func:`format_validation_error`).

Lives in ``pipelines/store`` beside the YAML reader so that ``training/`` configs share it without importing the CLI.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pipelines.store.safety import read_yaml_mapping

M = TypeVar("M", bound=BaseModel)


class SettingsError(ValueError):
    """Settings that cannot be used; the message is one line naming the source, the key and the fix."""


def merge_dotted(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Set ``overrides`` (dotted keys, e.g. ``filters.min_short_side``; ``None`` values skipped) into the nested
    settings mapping ``data`` (changed in place and returned)."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where, rest = ".".join(parents[: i + 1]), ".".join([*parents[i + 1 :], leaf])
                raise SettingsError(
                    f"{where} is {_short(child)}, not a mapping of settings, so {dotted} cannot be set: write "
                    f"{where} as a mapping ({where}: {{{rest}: ...}}) or drop that option"
                )
            node = child
        node[leaf] = value
    return data


def read_settings(path: str | Path | None, overrides: dict[str, Any] | None, flag: str = "--config") -> dict:
    """The YAML file at ``path`` (``{}`` without one) with ``overrides`` merged in; :class:`SettingsError` if not."""
    try:
        data = {} if path is None else read_yaml_mapping(path, flag)
    except ValueError as e:  # already one line naming the file and the fix
        raise SettingsError(str(e)) from None
    return merge_dotted(data, overrides)


def validate_settings(
    model: type[M],
    data: dict[str, Any],
    *,
    what: str,
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> M:
    """``model`` validated from ``data``; a :class:`SettingsError` of one line (:func:`format_validation_error`)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise SettingsError(format_validation_error(e, what=what, model=model, path=path, given=overrides)) from None


def load_settings(
    model: type[M],
    path: str | Path | None,
    overrides: dict[str, Any] | None = None,
    *,
    what: str,
    flag: str = "--config",
) -> M:
    """YAML file (optional) + dotted overrides (``None`` values skipped) -> ``model``, or one-line SettingsError."""
    return validate_settings(model, read_settings(path, overrides, flag), what=what, path=path, overrides=overrides)


def format_validation_error(
    e: ValidationError,
    *,
    what: str,
    model: type[BaseModel] | None = None,
    path: str | Path | None = None,
    given: dict[str, Any] | None = None,
) -> str:
    """One line for a pydantic ``ValidationError`` of settings: ``invalid <what> settings: <key> = <value> (from
    <file | command line>): <rule>; ...; fix <file> / the option``. ``given`` holds the overrides (dotted key ->
    value) so that a value is blamed on the command line, not the file; ``model`` lets an unknown key be answered
    with the closest known name. A rule across fields (a model validator, empty location) keeps its own message,
    which names the fix."""
    from_cli = {k for k, v in (given or {}).items() if v is not None}
    parts, blamed, missing = [], set(), False
    for x in e.errors():
        loc = ".".join(str(p) for p in x["loc"])
        msg = x["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if not loc:
            parts.append(msg)
            continue
        cli = any(loc == k or loc.startswith(k + ".") or k.startswith(loc + ".") for k in from_cli)
        source = "the command line" if cli else (str(path) if path is not None else "the defaults")
        if x["type"] == "missing":
            parts.append(f"{loc} is missing")
            missing = True
            continue
        blamed.add("the option" if cli else source)
        if x["type"] in ("extra_forbidden", "unexpected_keyword_argument"):  # a model's / a pydantic dataclass's
            near = _closest(model, x["loc"]) if model is not None else None
            parts.append(f"unknown key {loc} (from {source})" + (f", did you mean {near}?" if near else ""))
        else:
            parts.append(f"{loc} = {_short(x.get('input'))} (from {source}): {msg}")
    fix = [f"fix {' and '.join(sorted(blamed, key=lambda b: b == 'the option'))}"] if blamed else []
    if missing:
        fix.append("set the missing key" + (f" in {path}" if path is not None else "") + " or pass its option")
    return f"invalid {what} settings: " + "; ".join(parts + fix)


def _closest(model: type, loc: tuple) -> str | None:
    """The known key nearest to an unknown one (``loc``), walking nested models and dataclasses; None when nothing
    is close."""
    cls: Any = model
    for part in loc[:-1]:
        cls = _fields(cls).get(part)
    near = difflib.get_close_matches(str(loc[-1]), list(_fields(cls)), n=1, cutoff=0.6)
    return ".".join([*map(str, loc[:-1]), near[0]]) if near else None


def _fields(cls: Any) -> dict[str, Any]:
    """Field name -> annotation of a pydantic model or a dataclass (as pydantic validates both); {} otherwise."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return {name: f.annotation for name, f in cls.model_fields.items()}
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        try:
            hints = typing.get_type_hints(cls)
        except (NameError, TypeError):  # an annotation that does not resolve: names only, no nesting
            hints = {}
        return {f.name: hints.get(f.name) for f in dataclasses.fields(cls)}
    return {}


def _short(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."
