"""A setting, defined once: its default, help, choices, check, command-line flag and role, as dataclass field
metadata. The config's validation, the CLI's flags and their help text, which settings define a study's
identity, and the value a study made before a setting existed takes for it are all derived from it."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opsearch.errors import ConfigError

# Roles. "identity": part of what a study measures; a stored study cannot change it, and running into an
# existing study with another value is refused. "runtime": how trials run on this machine; `resume` and
# `worker` may change it. "run": how this run goes (trials, sampler, timing rounds, storage).
IDENTITY, RUNTIME, RUN = "identity", "runtime", "run"
# Groups, as --help shows them.
DATA, SEARCH, TIMING, ISOLATION_GROUP = "model and data", "search", "timing", "crash isolation"

_NONE = object()
REQUIRED = object()  # a setting without a default (the model, the dataset)


@dataclass(frozen=True)
class Setting:
    help: str
    group: str
    role: str = RUN
    choices: tuple = ()  # allowed values (of each element, for a list)
    many: bool = False  # a list: a comma list on the command line; a single value is taken as a list of one
    one_or_many: bool = False  # one value, or a list the study searches
    may_be_empty: bool = False  # a list that may hold nothing
    min_items: int = 1  # a list's fewest values (a single value given counts as one)
    check: Callable[[str, Any], None] | None = None  # raises ConfigError via refuse()
    flag: str = ""  # the command-line flag; "" derives --name-with-dashes
    negate: bool = False  # a true-by-default bool whose flag turns it off (--no-remeasure)
    parse: Callable[[str], Any] | None = None  # the flag's text to a value, where the type does not say
    metavar: str | None = None
    default_help: str | None = None  # what the default means, where the value alone does not say (None: derived)
    legacy: Any = _NONE  # the value a study stored before this setting existed searched with


def setting(default: Any, help: str, *, group: str, **meta: Any) -> Any:
    """A dataclass field carrying its :class:`Setting`."""
    info = Setting(help, group, **meta)
    if default is REQUIRED:
        return dataclasses.field(metadata={"setting": info})
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"setting": info})
    return dataclasses.field(default=default, metadata={"setting": info})


def settings_of(cls) -> dict[str, tuple[dataclasses.Field, Setting]]:
    return {f.name: (f, f.metadata["setting"]) for f in dataclasses.fields(cls) if "setting" in f.metadata}


def default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def flag_of(name: str, info: Setting) -> str:
    return info.flag or "--" + name.replace("_", "-")


def legacy_values(cls) -> dict[str, Any]:
    """Settings added after studies were first stored, with the value that reproduces what those searched (read by
    opsearch.store's migration only: everything else sees a stored config with every setting in it)."""
    return {name: info.legacy for name, (_, info) in settings_of(cls).items() if info.legacy is not _NONE}


def names_with_role(cls, role: str) -> tuple[str, ...]:
    return tuple(name for name, (_, info) in settings_of(cls).items() if info.role == role)


# Checks ---------------------------------------------------------------------------------------------------------


def refuse(name: str, value: Any, problem: str) -> None:
    raise ConfigError(f"{name}={value!r} {problem}", setting=name, value=value, problem=problem)


def whole(minimum: int) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            refuse(name, value, f"must be a whole number of at least {minimum}.")
    return check


def positive(unit: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            refuse(name, value, f"must be a positive number of {unit}.")
    return check


def fraction(example: str, *, zero: bool = False) -> Callable[[str, Any], None]:
    """A share between 0 and 1 (``zero``: 0 allowed too)."""
    def check(name: str, value: Any) -> None:
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or not (0 <= value if zero else 0 < value) or not value < 1):
            refuse(name, value, f"must lie {'from 0 up to' if zero else 'between 0 and'} 1 (e.g. {example}).")
    return check


_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text (a string)",
               dict: "a table of names to values"}


def value_types(annotation: Any) -> tuple[type, ...]:
    """The types a setting's value (each element, for a list) may have, read from its annotation:
    ``int | list[int]`` gives (int,), ``dict[str, int] | None`` gives (dict,)."""
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    out: list[type] = []
    for member in members:
        origin = typing.get_origin(member)
        kinds = typing.get_args(member) if origin is list else (origin,) if origin is not None else (member,)
        out += [k for k in kinds if k is not type(None) and k not in out]
    return tuple(out)


def _of_type(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, not to a setting
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, tuple(k for k in kinds if k is not bool))


def check_value(name: str, value: Any, info: Setting, kinds: tuple[type, ...] = ()) -> Any:
    """The value checked against its setting, lists normalized (a lone value becomes a list of one). ``kinds``:
    the types each value may have (see :func:`value_types`), checked after the setting's own checks."""
    if value is None:
        return None
    listed = (info.many or info.one_or_many) and isinstance(value, list | tuple)
    if info.many and isinstance(value, str | bool | int | float):
        value = [value]
    values: Sequence = value if (info.many or info.one_or_many) and isinstance(value, list | tuple) else [value]
    if (info.many or info.one_or_many) and isinstance(value, list | tuple):
        if not values and not info.may_be_empty:
            refuse(name, list(value), f"is empty: use one or more of {list(info.choices)}." if info.choices
                   else "is empty: give at least one value.")
        if len({repr(v) for v in values}) != len(values):
            refuse(name, list(value), "names a value twice: list each once.")
    if info.many and not info.may_be_empty and len(values) < info.min_items:
        refuse(name, list(values), f"names only {len(values)}: give at least {info.min_items} of {list(info.choices)}.")
    for v in values:
        if info.choices and (v not in info.choices or isinstance(v, bool) != any(
                isinstance(c, bool) and c == v for c in info.choices)):
            refuse(name, v, f"is not one of {list(info.choices)}.")
        if info.check is not None:
            info.check(name, v)
        if kinds and not _of_type(v, kinds):
            what = " or ".join(_KIND_WORDS.get(k, k.__name__) for k in kinds)
            refuse(name, v, f"must be {what}." if not listed else f"holds {v!r}, which is not {what}.")
    return list(value) if isinstance(value, tuple) else value
