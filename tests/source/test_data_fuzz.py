"""Fuzzed data files ("Faults of a long, shared study"): CSV, TSV and JSONL bytes in random encodings, with NULs,
byte-order marks, CR-only line ends, quotes left open, ragged rows, huge fields, duplicate or empty headers and
labels of mixed types. Every file either loads (its rows with a text and a label, what was dropped said) or is
refused with a DatasetError naming the file: never another exception.

Reproducible: derandomized, no example database.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from opsearch.config import StudyConfig
from opsearch.errors import DatasetError
from opsearch.source import load_study_data

TEXTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30) | st.sampled_from(
    ["a good film", "bad", "", " ", 'say "hi"', "a,b", "tab\there", "line\nbreak", "\x00nul", "é ü ß"])
LABELS = st.sampled_from([0, 1, "0", "1", "pos", "neg", "", "1.0", -1, None, "x" * 3, 2.5])


@st.composite
def data_files(draw) -> tuple[str, bytes]:
    """A file's suffix and bytes: rows written in one format, then mangled the ways real files are."""
    suffix = draw(st.sampled_from(["csv", "tsv", "jsonl"]))
    header = draw(st.sampled_from([["sentence", "label"], ["text", "label"], ["sentence", "sentence"],
                                   ["", "label"], ["sentence", "label", "extra"]]))
    rows = draw(st.lists(st.tuples(TEXTS, LABELS), min_size=0, max_size=40))
    if draw(st.booleans()):  # one huge field
        rows.append(("word " * draw(st.sampled_from([10, 40_000])), 1))
    if suffix == "jsonl":
        lines = [json.dumps(dict(zip(header, [t, y, "e"], strict=False))) for t, y in rows]
        text = "\n".join(lines)
    else:
        sep = "\t" if suffix == "tsv" else ","

        def cell(value) -> str:
            value = "" if value is None else str(value)
            if suffix == "csv" and draw(st.booleans()):
                return '"' + value.replace('"', '""') + '"'
            return value

        lines = [sep.join(header)] + [sep.join([cell(t), cell(y)] + [""] * (len(header) - 2)) for t, y in rows]
        text = "\n".join(lines)
    mangle = draw(st.sampled_from(["none", "crlf", "cr", "open-quote", "ragged", "nul", "truncate", "random"]))
    if mangle == "crlf":
        text = text.replace("\n", "\r\n")
    elif mangle == "cr":
        text = text.replace("\n", "\r")
    elif mangle == "open-quote":
        text = text.replace("\n", '\n"', 1)
    elif mangle == "ragged":
        text += "\n" + ("a,b,c,d" if suffix != "tsv" else "a\tb\tc\td")
    elif mangle == "nul":
        text = text[: len(text) // 2] + "\x00" + text[len(text) // 2:]
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    if mangle == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif mangle == "random":
        data = draw(st.binary(max_size=200))
    event(f"{suffix} {mangle} {encoding}")
    return suffix, data


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data_files())
def test_any_data_file_loads_or_is_refused_naming_the_file(tmp_path_factory, file) -> None:
    suffix, data = file
    path = tmp_path_factory.mktemp("fuzz") / f"d.{suffix}"
    path.write_bytes(data)
    config = StudyConfig(model="x", dataset=str(path), fit_size=2)
    try:
        loaded = load_study_data(config, id2label=None, task="classification")
    except DatasetError as exc:
        event("refused")
        assert str(path) in str(exc) or path.name in str(exc), str(exc)
        return
    event("loaded")
    assert len(loaded.eval) > 0 and len(loaded.eval.texts) == len(loaded.eval.labels)
    assert str(path) in loaded.description
