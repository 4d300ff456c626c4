"""Fuzzed settings ("Nothing lost, nothing hidden"): study-file values and `opsearch run` flags drawn from the
settings' own declarations. Every invalid combination is refused with a ConfigError naming the key or flag as it
was written, never a traceback; every valid one is accepted with its values kept.

The strategies and the oracle that says what is valid are derived from each setting's declaration: the scalar
types of its annotation, its choices, whether it is a list, and its check. A new setting is fuzzed as soon as it
is declared; a new *kind* of check needs a rule in CHECK_RULES (collecting this file fails until it has one). A
new check across settings belongs in ORDERED, or the fuzzing reports valid-looking values refused.

Reproducible: derandomized, no example database. 1000 examples per path, some 5 s each.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import math
import random
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from opsearch.cli._main import _parser, config_from_args
from opsearch.config import StudyConfig, _values, default_of, flag_of, settings_of
from opsearch.config._setting import check_value, value_types
from opsearch.errors import ConfigError

SETTINGS = settings_of(StudyConfig)
HINTS = typing.get_type_hints(StudyConfig)
REQUIRED = ("model", "dataset")
# The one check across settings (StudyConfig.__post_init__): the first may not exceed the second.
ORDERED = (("rounds", "max_rounds"),)
INT64 = (-(2**63), 2**63 - 1)  # what TOML holds
FUZZ = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# What a setting accepts, derived from its declaration -----------------------------------------------------------


def kinds(name: str) -> frozenset[type]:
    """The scalar types a setting's value (each element, for a list) may have, read from its annotation."""
    hint = HINTS[name]
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    out: set[type] = set()
    for member in members:
        origin = typing.get_origin(member)
        if origin is list:
            out.update(typing.get_args(member))
        elif origin is dict:
            out.add(dict)
        elif member is not type(None):
            out.add(member)
    return frozenset(out)


def of_kind(value: Any, allowed: frozenset[type]) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return int in allowed or float in allowed
    if isinstance(value, float):
        return float in allowed
    return isinstance(value, str | dict) and type(value) in allowed


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Rule:
    ok: Callable[[Any], bool]  # what the check accepts (of a value already of the setting's type)
    valid: st.SearchStrategy  # values it accepts
    near: st.SearchStrategy  # values just outside (out of range, malformed)


def _whole(minimum: int) -> Rule:
    return Rule(lambda v: number(v) and isinstance(v, int) and v >= minimum,
                st.integers(minimum, minimum + 40) | st.integers(minimum, INT64[1]),
                st.integers(INT64[0], minimum - 1) | st.sampled_from([minimum - 1, minimum + 0.5, float(minimum)]))


def _positive(unit: str) -> Rule:
    return Rule(lambda v: number(v) and v > 0,
                st.floats(0, exclude_min=True, allow_nan=False) | st.integers(1, INT64[1]),
                st.floats(max_value=0) | st.sampled_from([0, -1, -0.0, math.nan, -math.inf]))


def _fraction(example: str, zero: bool) -> Rule:
    if zero:
        return Rule(lambda v: number(v) and 0 <= v < 1, st.floats(0, 1, exclude_max=True),
                    st.floats(1) | st.floats(max_value=0, exclude_max=True) | st.sampled_from([-1, 1, 1.0, math.nan]))
    return Rule(lambda v: number(v) and 0 < v < 1, st.floats(0, 1, exclude_min=True, exclude_max=True),
                st.floats(1) | st.floats(max_value=0) | st.sampled_from([0, 1, 1.0, math.nan, math.inf]))


RELATIVE = r"\s*\d+(\.\d+)?\s*%\s*rel\s*"
TEXT = st.text(max_size=8).filter(lambda s: not s.startswith((".", "sqlite:")))  # kept as written, not resolved
# The checks a setting may name: factories (a new whole(3) is covered) and the study config's own functions.
FACTORY_RULES = {"whole": _whole, "positive": _positive, "fraction": _fraction}
CHECK_RULES = {
    _values.required_value: Rule(lambda v: v != "", TEXT.filter(bool), st.just("")),
    _values.check_study_name: Rule(
        lambda v: re.fullmatch(r"[\w.\-]+", v) is not None, st.from_regex(r"[\w.\-]{1,8}", fullmatch=True),
        st.sampled_from(["", "my study", "a/b", "x!", "ok\n"])),
    _values.check_label_map: Rule(
        lambda v: all(number(i) and isinstance(i, int) for i in v.values()),
        st.dictionaries(st.text(max_size=5), st.integers(*INT64), max_size=3),
        st.dictionaries(st.text(max_size=3), st.sampled_from(["zero", 1.5, True, [1]]), min_size=1, max_size=2)),
    _values.check_encoding: Rule(
        lambda v: isinstance(v, str) and _known_encoding(v),
        st.sampled_from(["utf-8", "latin-1", "cp1252", "mac_roman"]),
        st.sampled_from(["utf-9", "", "base64", "rot13", "no-such"])),
    _values.check_evaluator: Rule(
        lambda v: isinstance(v, str) and bool(v.rpartition(":")[0]) and v.rpartition(":")[2].isidentifier(),
        st.from_regex(r"[a-z_]{1,6}(\.[a-z_]{1,4})?:[a-z_][a-z0-9_]{0,5}", fullmatch=True),
        st.sampled_from(["", "mod", "mod:", ":fn", "mod:1fn", "a:b-c"])),
    _values.check_limit: Rule(
        lambda v: re.fullmatch(RELATIVE, v) is not None if isinstance(v, str) else 0 <= v < 1,
        st.floats(0, 1, exclude_max=True) | st.just(0) | st.from_regex(RELATIVE, fullmatch=True),
        st.sampled_from([1, 2, -0.01, 1.0, math.nan, math.inf, "1%", "rel", "1 % re", "0.01", "%rel"])),
    _values.check_duration: Rule(
        lambda v: (number(v) and v > 0) if not isinstance(v, str) else (
            re.fullmatch(DURATION, v.strip()) is not None and any(c in "123456789" for c in v)),
        st.floats(0, exclude_min=True, allow_nan=False) | st.integers(1, INT64[1])
        | st.from_regex(r"[1-9]\d?h[1-5]\dm|[1-9]\d?m|[1-9]\d{0,3}s|[1-9]\.5m", fullmatch=True),
        st.sampled_from([0, -1, math.nan, "", "10 minutes", "m", "0s", "1d", "h1", "-5m"])),
}
DURATION = r"(\d+(\.\d+)?h)?(\d+(\.\d+)?m)?(\d+(\.\d+)?s)?"


def _known_encoding(value: str) -> bool:
    import codecs

    try:
        return getattr(codecs.lookup(value), "_is_text_encoding", True)
    except LookupError:
        return False


def rule_of(name: str) -> Rule:
    _, info = SETTINGS[name]
    check, allowed = info.check, kinds(name)
    if check is not None:
        factory = check.__qualname__.split(".")[0]
        if factory in FACTORY_RULES:
            return FACTORY_RULES[factory](*inspect.getclosurevars(check).nonlocals.values())
        return CHECK_RULES[check]
    if info.choices:
        words = [w for c in info.choices for w in (str(c).upper(), f"{c}x", str(c).lower())]
        return Rule(lambda v: any(type(v) is type(c) and v == c for c in info.choices), st.sampled_from(info.choices),
                    st.sampled_from(words))
    if allowed == {bool}:
        return Rule(lambda v: True, st.booleans(), st.sampled_from(["true", "on", 1, 0]))
    if allowed == {str}:
        return Rule(lambda v: True, TEXT, st.integers(-3, 3) | st.booleans() | st.floats(allow_nan=False))
    raise AssertionError(f"{name}: no rule for a setting of {sorted(map(str, allowed))} without a check")


RULES = {name: rule_of(name) for name in SETTINGS}


def element_ok(name: str, value: Any) -> bool:
    return of_kind(value, kinds(name)) and RULES[name].ok(value)


def value_ok(name: str, value: Any) -> bool:
    """Whether a setting accepts this value on its own (a study file's or a flag's, once parsed)."""
    _, info = SETTINGS[name]
    if isinstance(value, list):
        return ((info.many or info.one_or_many) and (bool(value) or info.may_be_empty)
                and (not info.many or info.may_be_empty or len(value) >= info.min_items)
                and len({repr(v) for v in value}) == len(value) and all(element_ok(name, v) for v in value))
    return element_ok(name, value) and (not info.many or info.min_items <= 1)


def kept(name: str, value: Any) -> Any:
    """The value a config holds for what was given: a list setting given one value holds a list of one."""
    return [value] if SETTINGS[name][1].many and not isinstance(value, list) else value


def clashes(values: dict[str, Any]) -> set[str]:
    """Settings valid alone but not together (with the defaults of those not given)."""
    out = set()
    for low, high in ORDERED:
        a, b = (values.get(n, default_of(SETTINGS[n][0])) for n in (low, high))
        if value_ok(low, a) and value_ok(high, b) and a > b:
            out |= {low, high}
    return out


# Strategies --------------------------------------------------------------------------------------------------------

JUNK = st.one_of(st.integers(-3, 3), st.integers(*INT64), st.floats(), st.booleans(), st.text(max_size=6),
                 st.sampled_from(["", "3", "0.5", "true", "none", "1%rel", "a=1", ","]),
                 st.dictionaries(st.text(max_size=3), st.integers(-3, 3), max_size=2),
                 st.lists(st.integers(-3, 3), max_size=2))


def valid_values(name: str) -> st.SearchStrategy:
    _, info = SETTINGS[name]
    element = RULES[name].valid.filter(lambda v: element_ok(name, v))
    if not (info.many or info.one_or_many):
        return element
    fewest = 0 if info.may_be_empty else info.min_items if info.many else 1
    lists = st.lists(element, min_size=fewest, max_size=max(4, fewest), unique_by=repr)
    return st.one_of(element, lists) if fewest <= 1 else lists


def invalid_values(name: str) -> st.SearchStrategy:
    _, info = SETTINGS[name]
    bad = st.one_of(RULES[name].near, JUNK).filter(lambda v: not element_ok(name, v))
    good = RULES[name].valid
    shapes = [bad, good.map(lambda v: {"a": v}), good.map(lambda v: [[v]])]  # a table; a list in a list
    if info.many or info.one_or_many:
        shapes += [st.just([]), good.map(lambda v: [v, v]), st.tuples(good, bad).map(list)]  # empty, twice
        if info.many and info.min_items > 1:
            shapes += [good, good.map(lambda v: [v])]  # too few
    else:
        shapes += [good.map(lambda v: [v])]  # a list where one value belongs
    return st.one_of(shapes).filter(lambda v: not value_ok(name, v))


VALID = {name: valid_values(name) for name in SETTINGS}
INVALID = {name: invalid_values(name) for name in SETTINGS}


@dataclass
class Drawn:
    """What one example wrote: each entry is (key or flag as written, setting, value or text)."""
    entries: list[tuple[str, str, Any]]
    wrong: set[str]  # keys or flags, as written, that the config must refuse (one of them named)


def present_and_faulty(draw) -> tuple[list[str], set[str], random.Random]:
    """The settings an example writes (model and dataset always), and which of them get a wrong value: none in
    about half the examples, one alone in a third (so that no refusal hides a wrong value accepted), else 2 or 3.
    Chosen with a Random seeded by the example: Hypothesis's own draws would favour the first settings."""
    rnd = draw(st.randoms(use_true_random=True))
    present = [name for name in SETTINGS if name in REQUIRED or rnd.random() < 0.3]
    n = min(rnd.choice([0, 0, 0, 1, 1, 2, 3]), len(present))
    return present, set(rnd.sample(present, n)), rnd


@st.composite
def study_files(draw) -> Drawn:
    present, faulty, rnd = present_and_faulty(draw)
    entries, wrong, values = [], set(), {}
    for name in present:
        dashed = name.replace("_", "-")
        key = rnd.choice([name, dashed])
        if name in faulty and dashed != name and rnd.random() < 0.3:  # written twice, both valid
            entries.append((dashed if key == name else name, name, draw(VALID[name])))
            wrong |= {name, dashed}
            faulty.discard(name)
        value = draw(INVALID[name] if name in faulty else VALID[name])
        entries.append((key, name, value))
        values[name] = value
        if name in faulty:
            wrong.add(key)
    if rnd.random() < 0.05:  # a misspelled setting
        typo = rnd.choice([n + "s" for n in SETTINGS if n + "s" not in SETTINGS])
        entries.append((typo, typo, draw(JUNK)))
        wrong.add(typo)
    wrong |= {key for key, name, _ in entries if name in clashes(values)}
    return Drawn(entries, wrong)


def as_flag_text(value: Any) -> st.SearchStrategy:
    """A value as one might type it after its flag."""
    if isinstance(value, bool):
        return st.sampled_from(["on", "off", "true", "false", "yes", "0", str(value)])
    if isinstance(value, list):
        return st.just(",".join(map(str, value)))
    if isinstance(value, dict):
        return st.just(",".join(f"{k}={v}" for k, v in value.items()))
    return st.just(repr(value) if isinstance(value, float) else str(value))


FLAG_JUNK = st.sampled_from(["", ",", " ", "x", "0", "-1", "1.5", "nan", "inf", "-inf", "1%rel", "a=1", "on"])
EXIT, REFUSED = "argparse refuses", "the flag's parser refuses"
SWITCH, SWITCH_WITH_VALUE = None, "=yes"  # a switch's text: the flag alone, or with a value it refuses


def parsed(name: str, text: str) -> Any:
    """What `opsearch run` makes of a flag's text: the value, EXIT (argparse's type or choices refuse it) or
    REFUSED (the setting's own parser raises ConfigError)."""
    _, info = SETTINGS[name]
    allowed = kinds(name)
    if allowed == {bool} and not info.choices:  # a switch
        return EXIT if text == SWITCH_WITH_VALUE else not info.negate
    try:
        if info.parse is not None:
            return info.parse(text)
        if info.many or info.one_or_many:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            values = [int(p) for p in parts] if int in allowed else parts
            return values[0] if info.one_or_many and len(values) == 1 else values
        kind = next(k for k in (int, float, str) if k in allowed)
        value = kind(text)
    except ConfigError:
        return REFUSED
    except (ValueError, TypeError, argparse.ArgumentTypeError):
        return EXIT
    return EXIT if info.choices and value not in info.choices else value


@st.composite
def flag_lines(draw) -> Drawn:
    present, faulty, _ = present_and_faulty(draw)
    entries = []
    for name in present:
        info = SETTINGS[name][1]
        flag = flag_of(name, info)
        if kinds(name) == {bool} and not info.choices:  # a switch: the flag alone, or with a value it refuses
            entries.append((flag, name, SWITCH_WITH_VALUE if name in faulty else SWITCH))
            continue
        if name in faulty:
            text = draw(st.one_of(FLAG_JUNK, st.text(max_size=6), INVALID[name].flatmap(as_flag_text)))
        else:
            text = draw(VALID[name].flatmap(as_flag_text).filter(
                lambda t, n=name: parsed(n, t) not in (EXIT, REFUSED) and value_ok(n, parsed(n, t))))
        # Python 3.11's argparse drops a value of "--" (`--flag=--` gives an empty value): not opsearch's to mend.
        entries.append((flag, name, text if text != "--" else "-"))
    return Drawn(entries, set())


# The study-file path ------------------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return '"' + "".join(c if c not in '"\\' and c.isprintable() and c != "\x7f" else
                             '\\"' if c == '"' else "\\\\" if c == "\\" else f"\\U{ord(c):08x}" for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def named(message: str, names: set[str]) -> bool:
    return any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", message) for n in names)


@pytest.fixture(scope="module")
def study_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "fuzzed-study.toml"


@FUZZ
@given(drawn=study_files())
def test_study_file_values_are_kept_or_refused_by_name(study_path: Path, drawn: Drawn) -> None:
    text = "".join(f"{key} = {toml_value(value)}\n" for key, _, value in drawn.entries)
    study_path.write_text(text, encoding="utf-8")
    assert repr(tomllib.loads(text)) == repr({key: value for key, _, value in drawn.entries}), text  # the writer

    try:
        cfg = StudyConfig.from_toml(study_path)
    except ConfigError as exc:
        message = str(exc)
        event("study file refused")
        assert drawn.wrong, f"a valid study was refused: {message}\n{text}"
        assert study_path.name in message, message
        assert named(message.split("known settings")[0], drawn.wrong), f"names none of {drawn.wrong}: {message}"
        return
    event("study file accepted")
    assert not drawn.wrong, f"accepted, though {sorted(drawn.wrong)} are wrong:\n{text}"
    for _, name, value in drawn.entries:
        assert repr(getattr(cfg, name)) == repr(kept(name, value)), f"{name} = {value!r} came out as " \
                                                                    f"{getattr(cfg, name)!r}"


# The flags path -----------------------------------------------------------------------------------------------------

RUN = _parser()


def argv_of(drawn: Drawn) -> list[str]:
    argv = ["run"]
    for flag, name, text in drawn.entries:
        if text in (SWITCH, SWITCH_WITH_VALUE) and kinds(name) == {bool}:
            argv.append(flag + (text or ""))
        elif text.startswith("-"):  # as `--flag -x` would read -x as a flag
            argv.append(f"{flag}={text}")
        else:
            argv += [flag, text]
    return argv


@FUZZ
@given(drawn=flag_lines())
def test_flags_are_kept_or_refused_by_name(drawn: Drawn) -> None:
    argv = argv_of(drawn)
    outcome = {name: parsed(name, text) for _, name, text in drawn.entries}
    flag = {name: f for f, name, _ in drawn.entries}
    refused_early = {flag[n] for n, v in outcome.items() if v in (EXIT, REFUSED)}

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = RUN.parse_args(argv)
    except SystemExit as exc:
        event("flags: argparse refused")
        assert exc.code == 2 and refused_early, f"{argv}: argparse refused: {stderr.getvalue()}"
        assert named(stderr.getvalue(), refused_early), f"{argv}: names none of {refused_early}: {stderr.getvalue()}"
        return
    except ConfigError as exc:
        event("flags: a flag's parser refused")
        assert refused_early and named(str(exc), refused_early), f"{argv}: {exc}"
        return
    assert not refused_early, f"{argv}: parsed, though {refused_early} should not be"

    wrong = {flag[n] for n, v in outcome.items() if not value_ok(n, v)}
    wrong |= {flag[n] for n in clashes(outcome) if n in flag}  # as typed: a clash with a default names the flag given
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        event("flags: the config refused")
        assert wrong, f"{argv}: valid flags were refused: {exc}"
        assert named(str(exc), wrong), f"{argv}: names none of {wrong}: {exc}"
        return
    event("flags: accepted")
    assert not wrong, f"{argv}: accepted, though {sorted(wrong)} are wrong"
    for name, value in outcome.items():
        assert repr(getattr(cfg, name)) == repr(kept(name, value)), f"{argv}: {name} came out as " \
                                                                    f"{getattr(cfg, name)!r}"


# Derived from the declarations, beside the fuzzing -----------------------------------------------------------------


def test_every_default_passes_its_own_check() -> None:
    cfg = StudyConfig(model="some-org/some-model", dataset="data.csv")
    for name, (f, info) in SETTINGS.items():
        if name in REQUIRED:
            continue
        default = default_of(f)
        assert check_value(name, default, info, value_types(HINTS[name])) == default
        assert default is None or value_ok(name, default), f"the fuzzing's rule refuses {name}'s default {default!r}"
        assert getattr(cfg, name) == default
    assert not clashes({})


def test_run_help_lists_every_setting_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["run", "--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    missing = [flag_of(n, info) for n, (_, info) in SETTINGS.items() if not named(shown, {flag_of(n, info)})]
    assert not missing, f"`opsearch run --help` does not list {missing}"
