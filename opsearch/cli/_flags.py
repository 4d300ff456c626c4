"""Command-line flags derived from the settings' declarations: name, type, choices, help and default come from
:mod:`opsearch.config`, so a setting is written once and every flag that sets it follows."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from opsearch.config import Setting, StudyConfig, check_value, default_of, flag_of, settings_of
from opsearch.errors import ConfigError


def _kind(annotation: Any) -> type:
    """The scalar type a flag parses: int, float, str or bool (``X | None`` counts as X)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    for kind in (bool, int, float, str):
        if kind in args:
            return kind
    return str


def _default_text(f: dataclasses.Field, info: Setting) -> str:
    if info.default_help is not None:
        return info.default_help
    value = default_of(f)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return str(value)


def _comma_list(kind: type, flag: str):
    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            return [kind(p) for p in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: give {kind.__name__} values, e.g. "
                                             f"{'64 or 64,256' if kind is int else 'a,b'}") from None
    return parse


def add_setting_flags(parser: argparse.ArgumentParser, *, names: list[str] | None = None,
                      rename: dict[str, str] | None = None, with_defaults: bool = False) -> dict[str, str]:
    """Add a flag per setting (``names``: only those), grouped as the settings are, with their help and default
    derived. Without ``with_defaults`` a flag not given stays None, so that a study file's value stands.
    Returns {setting: flag}."""
    hints = typing.get_type_hints(StudyConfig)
    groups: dict[str, argparse._ArgumentGroup] = {}
    flags = {}
    for name, (f, info) in settings_of(StudyConfig).items():
        if names is not None and name not in names:
            continue
        flag = (rename or {}).get(name) or flag_of(name, info)
        flags[name] = flag
        group = groups.get(info.group) or groups.setdefault(info.group, parser.add_argument_group(info.group))
        default = default_of(f) if with_defaults else None
        help_text = f"{info.help} (default: {_default_text(f, info)})".replace("%", "%%")
        kind = _kind(hints[name])
        kwargs: dict[str, Any] = {"dest": name, "help": help_text, "default": default,
                                  "metavar": flag.lstrip("-").upper().replace("-", "_")}
        if kind is bool and not info.choices:
            del kwargs["metavar"]
            kwargs["action"] = "store_false" if info.negate else "store_true"
            kwargs["help"] = (info.help if not info.negate else f"do not {info.help}").replace("%", "%%")
            if not with_defaults:
                kwargs["default"] = None
        else:
            if info.metavar:
                kwargs["metavar"] = info.metavar
            if info.parse is not None:
                kwargs["type"] = info.parse
            elif info.many or info.one_or_many:
                element = _kind(typing.get_args(hints[name])[-1]) if info.one_or_many else str
                parse = _comma_list(int if element is int else str, flag)
                kwargs["type"] = parse if info.many else (lambda text, p=parse: _one_or_many(p(text)))
                kwargs["metavar"] = info.metavar or ("A,B" if not info.choices else ",".join(map(str, info.choices)))
            else:
                kwargs["type"] = kind
                if info.choices:
                    kwargs["choices"] = list(info.choices)
                    del kwargs["metavar"]
        group.add_argument(flag, **kwargs)
    return flags


def add_limit_flag(parser: argparse.ArgumentParser, help_text: str) -> dict[str, str]:
    """``--max-accuracy-loss`` for a command that reads a stored study: the setting's flag, parsing and metavar with
    this command's help (check it with :func:`check_positive`). Returns {setting: flag}."""
    _, info = settings_of(StudyConfig)["max_accuracy_loss"]
    flag = flag_of("max_accuracy_loss", info)
    parser.add_argument(flag, dest="max_accuracy_loss", type=info.parse, metavar=info.metavar or "LIMIT",
                        help=help_text.replace("%", "%%"))
    return {"max_accuracy_loss": flag}


def _one_or_many(values: list) -> Any:
    return values[0] if len(values) == 1 else values


def given_settings(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    """The settings the user gave as flags (those left None were not given)."""
    return {name: getattr(args, name) for name in flags if getattr(args, name, None) is not None}


def spelled(values: dict[str, Any], flags: dict[str, str]) -> dict[str, str]:
    """How the user wrote each setting on the command line: ``--threads 0``."""
    return {name: f"{flags[name]} {_as_typed(value)}" for name, value in values.items()}


def _as_typed(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def check_positive(args: argparse.Namespace, flags: dict[str, str]) -> None:
    """Run the settings' own checks on flags that no StudyConfig is made from (``opsearch bench``, the limit of
    ``report``, ``export`` and ``plot``)."""
    infos = settings_of(StudyConfig)
    for name, flag in flags.items():
        value = getattr(args, name, None)
        try:
            check_value(name, value, infos[name][1])
        except ConfigError as exc:
            raise exc.respelled(f"{flag} {_as_typed(value)}") from None
