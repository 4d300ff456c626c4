"""The values of settings that have a form of their own: how the command line's text is parsed, and how a value is
checked (label maps, accuracy limits, durations, study names, text encodings). Each check names the setting and the
fix (``refuse``)."""

from __future__ import annotations

import codecs
import re
from typing import Any

from opsearch.config._setting import refuse
from opsearch.errors import ConfigError

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*rel\s*$")


def parse_label_map(text: str) -> dict[str, int]:
    mapping = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise ConfigError(f"--label-map {text!r}: write NAME=ID pairs, e.g. negative=0,positive=1.")
        mapping[name.strip()] = int(value)
    return mapping


def parse_number(text: str) -> float | str:
    """A number where the text is one (``0.01``, ``600``); anything else (``1%rel``, ``10m``) is kept as text for
    the setting's check."""
    try:
        return float(text)
    except ValueError:
        return text


def parse_strengths(text: str) -> list[float | str]:
    """``--smoothing``: a comma list of strengths (``0.5,0.75``), or ``off`` for none; a word that is no number is
    kept as text for the setting's check to name."""
    if text.strip().lower() in ("off", "none", ""):
        return []
    return [parse_number(part.strip()) for part in text.split(",")]


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def duration_seconds(value: float | str | None) -> float | None:
    """A checked ``timeout`` (seconds, or text such as 10m, 90s, 1h30m) in seconds."""
    if value is None or isinstance(value, int | float):
        return value
    hours, minutes, seconds = (float(part or 0) for part in _DURATION.match(value.strip()).groups())
    return 3600 * hours + 60 * minutes + seconds


def check_duration(name: str, value: Any) -> None:
    if value is None:
        return
    text = value.strip() if isinstance(value, str) else ""
    ok = (isinstance(value, int | float) and not isinstance(value, bool) and value > 0) or (
        bool(text) and _DURATION.match(text) is not None and duration_seconds(text) > 0)
    if not ok:
        refuse(name, value, "must be a positive duration: seconds (600), or 10m, 90s, 1h30m.")


def accuracy_limit(value: float | str | None, baseline_accuracy: float) -> float | None:
    """A checked ``max_accuracy_loss`` (0.01, or "1%rel" of ``baseline_accuracy``) as a fraction of accuracy."""
    if value is None:
        return None
    if isinstance(value, str):
        return float(_RELATIVE.match(value)[1]) / 100 * baseline_accuracy
    return float(value)


def check_label_map(name: str, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
        refuse(name, value, "must map label names to class ids, e.g. {negative = 0, positive = 1}.")


def check_study_name(name: str, value: Any) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[\w.\-]+", value):
        refuse(name, value, "may hold only letters, digits, '.', '-' and '_'.")


def check_limit(name: str, value: Any) -> None:
    if isinstance(value, str):
        if _RELATIVE.match(value) is None:
            refuse(name, value, "is not a limit: write a fraction (0.01 for 1 point) or a share of the fp32 accuracy "
                   "such as \"1%rel\".")
    elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        refuse(name, value, "must be a fraction between 0 and 1 (0.01 for 1 point) or a share of the fp32 "
               "accuracy such as \"1%rel\".")


def check_evaluator(name: str, value: Any) -> None:
    """``module:function`` or ``path/to/file.py:function``."""
    module, _, function = str(value).rpartition(":")
    if not isinstance(value, str) or not module or not function.isidentifier():
        refuse(name, value, "is not MODULE:FUNCTION: name the module (or a .py file) and the function, e.g. "
               "my_eval:evaluate.")


def check_encoding(name: str, value: Any) -> None:
    try:
        known = isinstance(value, str) and getattr(codecs.lookup(value), "_is_text_encoding", True)
    except LookupError:
        known = False
    if not known:
        refuse(name, value, "is not a text encoding Python knows: give one such as utf-8, latin-1, cp1252 or "
               "mac_roman.")


def required_value(name: str, value: Any) -> None:
    if not value:
        refuse(name, value, "is empty: give a checkpoint folder, an ONNX model or a hub id." if name == "model"
               else "is empty: give a CSV/TSV/JSON/Parquet file or a hub dataset id.")
