"""Command-line flags derived from the settings' declarations: name, type, choices, help and default come from
:mod:`opsearch.config`, so a setting is written once and every flag that sets it follows; and the flags several
commands share (the stored study, the output, the accuracy limit), with what they resolve to."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any

from opsearch.config import Setting, StudyConfig, check_value, default_of, flag_of, settings_of
from opsearch.errors import ConfigError, StudyError


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


def add_storage_flags(parser: argparse.ArgumentParser) -> None:
    """``--storage`` and ``--study-name``: the stored study a command reads or continues."""
    parser.add_argument("--storage", required=True,
                        help="Optuna storage URL, e.g. sqlite:///opsearch-runs/default.db")
    parser.add_argument("--study-name", required=True, help="the study's name in that storage")


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` or ``--json-log``: what a command that runs trials prints while it runs (see :func:`progress`)."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--quiet", action="store_true", help="print only the final report")
    g.add_argument("--json-log", action="store_true",
                   help="print one JSON object per line (messages, trial_started, trial_finished, finished)")


def progress(args: argparse.Namespace):
    """Where a command's progress goes, as :func:`add_output_flags` chose: JSON lines on stdout, nothing, a bar on
    a terminal, or lines on stderr."""
    from opsearch.search import Bar, JsonLog, Lines, Quiet

    if getattr(args, "json_log", False):
        return JsonLog(sys.stdout)
    if getattr(args, "quiet", False):
        return Quiet()
    if sys.stderr.isatty():
        return Bar(sys.stderr)
    return Lines(lambda line: print(line, file=sys.stderr, flush=True))


def study_limit(study, given: float | str | None) -> float | None:
    """The accuracy limit a read-only command applies, as a fraction: the one given (``--max-accuracy-loss``,
    checked as the setting is), else the study's own (None: no limit)."""
    from opsearch.config import accuracy_limit
    from opsearch.store import StudyRecord

    record = StudyRecord.of(study)
    if given is not None:
        check_positive(argparse.Namespace(max_accuracy_loss=given), {"max_accuracy_loss": "--max-accuracy-loss"})
        if isinstance(given, str) and not record.baseline:
            raise StudyError(f"--max-accuracy-loss {given}: a share of the fp32 accuracy needs the study's fp32 "
                             "baseline, which it has not measured yet; give a fraction (0.01 for one point).")
        return accuracy_limit(given, record.baseline_accuracy if record.baseline else 0.0)
    if not record.complete:
        return None
    return record.config(study.study_name).accuracy_limit(record.baseline_accuracy)
