"""opsearch.source.load_study_data on small local CSV, TSV and JSON files."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_tokenizer, sentiment_rows, write_table

from opsearch.config import StudyConfig
from opsearch.errors import DatasetError
from opsearch.source import StudyData, load_study_data

ID2LABEL = {0: "NEGATIVE", 1: "POSITIVE"}


@pytest.fixture(autouse=True, scope="module")
def _datasets_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the `datasets` cache of these throwaway files out of the user's home."""
    import datasets

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-datasets-cache"))
        yield


def unique_rows(
    n: int, *, seed: int = 0, text: str = "sentence", label: str = "label", names: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """Sentiment rows with unique texts (so rows can be told apart by text), under the given column names."""
    rows = []
    for i, row in enumerate(sentiment_rows(n, seed=seed)):
        value = names[row["label"]] if names else row["label"]
        rows.append({text: f"{row['sentence']} r{i}", label: value})
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    suffix = path.suffix
    if suffix == ".csv":
        return write_table(path, rows)
    if suffix == ".tsv":  # GLUE style: tab-separated, never quoted
        columns = list(rows[0])
        lines = ["\t".join(columns)] + ["\t".join(str(r[c]) for c in columns) for r in rows]
        path.write_text("\n".join(lines) + "\n")
        return path
    if suffix == ".json":
        path.write_text(json.dumps(rows))
        return path
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    raise ValueError(suffix)


def load(
    path: Path, *, id2label: dict[int, str] | None = ID2LABEL, task: str = "classification", tokenizer=None,
    **settings: Any
) -> StudyData:
    cfg = StudyConfig(model="x", dataset=str(path), **{"fit_size": 10, **settings})
    return load_study_data(cfg, id2label=id2label, task=task, tokenizer=tokenizer)


def pairs(data: StudyData) -> list[tuple[str, int]]:
    return list(zip(data.eval.texts, data.eval.labels.tolist(), strict=True)) + list(
        zip(data.fit.texts, data.fit.labels.tolist(), strict=True)
    )


def source_pairs(rows: list[dict[str, Any]], text: str, label: str, to_id=int) -> list[tuple[str, int]]:
    return [(r[text], to_id(r[label])) for r in rows]


# Columns -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "label"),
    [
        ("d.csv", "sentence", "label"),
        ("d.csv", "text", "labels"),
        ("d.tsv", "sentence", "label"),
        ("d.json", "text", "label"),
        ("d.jsonl", "review", "label"),
    ],
)
def test_columns_are_found_by_their_usual_names(tmp_path: Path, name: str, text: str, label: str) -> None:
    rows = unique_rows(30, text=text, label=label)
    data = load(write_rows(tmp_path / name, rows))
    assert sorted(pairs(data)) == sorted(source_pairs(rows, text, label))
    assert text in data.description and label in data.description


def test_explicit_columns_win_over_usual_names(tmp_path: Path) -> None:
    rows = unique_rows(30, text="tweet", label="sentiment")
    for i, row in enumerate(rows):  # decoys under the usual names, with other values
        row["text"] = f"decoy {i}"
        row["label"] = 1 - row["sentiment"]
    data = load(write_rows(tmp_path / "d.csv", rows), text_column="tweet", label_column="sentiment")
    assert sorted(pairs(data)) == sorted(source_pairs(rows, "tweet", "sentiment"))


def test_a_text_pair_column_gives_each_row_its_pair_and_an_empty_pair_drops_the_row(tmp_path: Path) -> None:
    rows = unique_rows(30, text="query")
    for i, row in enumerate(rows):
        row["passage"] = f"passage {i}" if i != 4 else ""
    data = load(write_rows(tmp_path / "d.csv", rows), text_column="query", text_pair_column="passage")
    expected = [((r["query"], r["passage"]), r["label"]) for r in rows if r["passage"]]
    assert sorted(pairs(data)) == sorted(expected)
    assert "columns 'query', 'passage', 'label'" in data.description and "1 empty text" in data.description


@pytest.mark.parametrize(("first", "second"), [("sentence1", "sentence2"), ("premise", "hypothesis")])
def test_the_usual_pair_columns_are_read_as_pairs_unless_the_model_is_an_encoder(tmp_path: Path, first: str,
                                                                                 second: str) -> None:
    rows = [{first: r["sentence"], second: f"pair {i}", "label": r["label"]}
            for i, r in enumerate(unique_rows(30))]
    path = write_rows(tmp_path / "d.csv", rows)
    assert all(isinstance(t, tuple) for t in load(path, text_column=first).eval.texts)
    assert all(isinstance(t, str) for t in load(path, text_column=first, task="embedding").eval.texts)


@pytest.mark.parametrize(("written", "suffix"), [
    (lambda tags: ",".join(tags) or "[]", ".csv"),
    (lambda tags: tags, ".jsonl"),
    (lambda tags: json.dumps(tags), ".csv"),
])
def test_multi_label_rows_become_multi_hot_rows_in_the_models_label_order(tmp_path: Path, written,
                                                                          suffix: str) -> None:
    topics = ["film", "negative", "positive"]
    rows = [{"sentence": f"text {i}", "labels": written([t for j, t in enumerate(topics) if (i >> j) & 1])}
            for i in range(40)]
    id2label = {0: "POSITIVE", 1: "negative", 2: "Film"}  # another order, other cases
    data = load(write_rows(tmp_path / f"d{suffix}", rows), task="multi-label", id2label=id2label)
    assert data.label_names == ["POSITIVE", "negative", "Film"]
    got = dict(zip(data.eval.texts, data.eval.labels.tolist(), strict=True))
    for i in range(40):
        if f"text {i}" in got:
            assert got[f"text {i}"] == [(i >> 2) & 1, (i >> 1) & 1, i & 1]


def test_number_labels_are_kept_as_numbers_for_a_regressor(tmp_path: Path) -> None:
    rows = [{"sentence": f"text {i}", "label": i / 10} for i in range(40)]
    data = load(write_rows(tmp_path / "d.csv", rows), task="regression", id2label=None)
    assert data.eval.labels.dtype.kind == "f" and data.fit.labels.dtype.kind == "f"
    assert sorted(pairs(data)) == sorted((r["sentence"], r["label"]) for r in rows)


@pytest.mark.parametrize(("setting", "value"), [("text_column", "body"), ("label_column", "polarity")])
def test_a_named_column_that_is_missing_lists_the_columns_found(tmp_path: Path, setting: str, value: str) -> None:
    path = write_rows(tmp_path / "d.csv", unique_rows(30, text="tweet", label="label"))
    with pytest.raises(DatasetError) as info:
        load(path, **{"text_column": "tweet", setting: value})
    message = str(info.value)
    assert repr(value) in message
    assert "'tweet'" in message and "'label'" in message


def test_no_usual_text_column_lists_the_columns_found(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "d.csv", unique_rows(30, text="tweet", label="label"))
    with pytest.raises(DatasetError, match=r"\['tweet', 'label'\]"):
        load(path)


# Labels --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "id2label"),
    [
        (("neg", "pos"), ID2LABEL),
        (("NEGATIVE", "POSITIVE", "NEUTRAL"), ID2LABEL),
        ((0, 1, 2), ID2LABEL),
    ],
)
def test_labels_the_model_does_not_know_are_listed_with_its_classes(
    tmp_path: Path, names: tuple, id2label: dict[int, str]
) -> None:
    rows = [{"sentence": f"text {i}", "label": names[i % len(names)]} for i in range(30)]
    with pytest.raises(DatasetError) as info:
        load(write_rows(tmp_path / "d.csv", rows), id2label=id2label)
    message = str(info.value)
    for name in names:
        assert f"'{name}'" in message
    for class_name in id2label.values():
        assert class_name in message


@pytest.mark.parametrize("names", [("NEGATIVE", "POSITIVE"), ("negative", "positive"), ("Negative", "Positive")])
def test_label_names_map_to_the_model_classes_case_insensitively(tmp_path: Path, names: tuple[str, str]) -> None:
    rows = unique_rows(30, names=names)
    data = load(write_rows(tmp_path / "d.csv", rows))
    expected = source_pairs(rows, "sentence", "label", to_id=lambda v: 1 if v.lower() == "positive" else 0)
    assert sorted(pairs(data)) == sorted(expected)
    assert data.label_names == ["NEGATIVE", "POSITIVE"]


def test_label_ids_follow_a_reversed_id2label(tmp_path: Path) -> None:
    rows = unique_rows(30, names=("negative", "positive"))
    data = load(write_rows(tmp_path / "d.csv", rows), id2label={0: "positive", 1: "negative"})
    expected = source_pairs(rows, "sentence", "label", to_id=lambda v: 0 if v == "positive" else 1)
    assert sorted(pairs(data)) == sorted(expected)


@pytest.mark.parametrize(("task", "id2label"), [("classification", ID2LABEL), ("embedding", None)])
def test_an_explicit_label_map_is_used(tmp_path: Path, task: str, id2label: dict[int, str] | None) -> None:
    rows = unique_rows(30, names=("bad", "good"))
    label_map = {"good": 0, "bad": 1}  # the opposite of any alphabetical or model-derived order
    data = load(write_rows(tmp_path / "d.csv", rows), label_map=label_map, task=task, id2label=id2label)
    assert sorted(pairs(data)) == sorted(source_pairs(rows, "sentence", "label", to_id=label_map.__getitem__))


def test_a_label_map_missing_a_label_names_it(tmp_path: Path) -> None:
    rows = [{"sentence": f"t {i}", "label": ("bad", "good", "meh")[i % 3]} for i in range(30)]
    with pytest.raises(DatasetError, match=r"\['meh'\]"):
        load(write_rows(tmp_path / "d.csv", rows), label_map={"bad": 0, "good": 1})


def test_embedding_task_numbers_string_labels_in_sorted_order(tmp_path: Path) -> None:
    rows = unique_rows(30, names=("sad", "happy"))
    data = load(write_rows(tmp_path / "d.csv", rows), task="embedding", id2label=None)
    assert data.label_names == ["happy", "sad"]
    assert sorted(pairs(data)) == sorted(source_pairs(rows, "sentence", "label", to_id=["happy", "sad"].index))


@pytest.mark.parametrize(("task", "id2label"), [("classification", ID2LABEL), ("embedding", None)])
def test_excluded_labels_drop_their_rows(tmp_path: Path, task: str, id2label: dict[int, str] | None) -> None:
    names = ("negative", "positive", "neutral")
    rows = [{"sentence": f"t {i}", "label": names[i % 3]} for i in range(45)]
    data = load(write_rows(tmp_path / "d.csv", rows), exclude_labels=["neutral"], task=task, id2label=id2label)
    kept = {r["sentence"] for r in rows if r["label"] != "neutral"}
    texts = data.eval.texts + data.fit.texts
    assert sorted(texts) == sorted(kept)
    assert set(data.eval.labels.tolist()) == {0, 1}
    assert "; 15 rows dropped (15 label in exclude_labels);" in data.description


def test_one_class_is_rejected(tmp_path: Path) -> None:
    rows = [{"sentence": f"t {i}", "label": 1 if i < 40 else 0} for i in range(45)]
    path = write_rows(tmp_path / "d.csv", rows)
    with pytest.raises(DatasetError, match="one class"):
        load(path, exclude_labels=["0"])


def test_rows_without_text_are_skipped(tmp_path: Path) -> None:
    rows = unique_rows(30)
    rows[3]["sentence"] = "   "
    rows[7]["sentence"] = ""
    data = load(write_rows(tmp_path / "d.csv", rows))
    assert len(data.eval) + len(data.fit) == 28
    assert "; 2 rows dropped (2 empty text);" in data.description


# Nothing lost, nothing hidden: what is dropped or truncated is said -------------------------------------------


def test_dropped_rows_are_counted_per_reason(tmp_path: Path) -> None:
    rows = unique_rows(30)
    rows[2]["sentence"] = ""
    rows[5]["label"] = ""  # an empty cell: the column is read as floats, 1.0 and NaN
    rows[9]["label"] = ""
    rows[11]["sentence"], rows[11]["label"] = " ", ""  # counted once, under its first reason
    data = load(write_rows(tmp_path / "d.csv", rows))
    kept = [r for i, r in enumerate(rows) if i not in (2, 5, 9, 11)]
    assert sorted(pairs(data)) == sorted(source_pairs(kept, "sentence", "label"))  # the rest mapped to 0 and 1
    assert data.description == (f"{tmp_path / 'd.csv'} [d.csv]: 16 evaluation rows (columns 'sentence', 'label'); "
                                "4 rows dropped (2 empty text, 2 missing label); 10 rows held out by a shuffle "
                                "seeded 0 for calibration/probes (fit_size)")


def test_null_nan_and_empty_labels_of_a_json_file_are_missing_labels(tmp_path: Path) -> None:
    rows = unique_rows(30, names=("negative", "positive"))
    rows[0]["label"], rows[1]["label"], rows[2]["label"] = None, float("nan"), ""
    rows[3]["label"] = "  "
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # NaN as JSON's NaN
    data = load(path)
    assert len(data.eval) + len(data.fit) == 26
    assert "; 4 rows dropped (4 missing label);" in data.description


def test_every_reason_is_listed_in_order_with_its_count(tmp_path: Path) -> None:
    names = ("negative", "positive", "neutral")
    rows = [{"sentence": f"t {i}", "label": names[i % 3]} for i in range(45)]  # 15 neutral
    rows[0]["sentence"] = ""  # a negative row
    rows[1]["label"] = ""  # a positive row
    data = load(write_rows(tmp_path / "d.csv", rows), exclude_labels=["neutral"])
    assert len(data.eval) + len(data.fit) == 28
    assert "; 17 rows dropped (1 empty text, 1 missing label, 15 label in exclude_labels);" in data.description


def test_fit_rows_with_a_label_the_evaluation_rows_do_not_have_are_counted(tmp_path: Path) -> None:
    eval_path = write_rows(tmp_path / "eval.csv", unique_rows(20, names=("negative", "positive")))
    fit_rows = unique_rows(16, seed=2, names=("negative", "positive"))
    fit_rows[0]["label"] = fit_rows[1]["label"] = "meh"
    fit_rows[2]["sentence"] = ""
    fit_path = write_rows(tmp_path / "fit.csv", fit_rows)
    data = load(eval_path, fit_dataset=str(fit_path))
    assert len(data.eval) == 20 and len(data.fit) == 13
    assert data.description.endswith(f"; fit rows from {fit_path} [fit.csv]; "
                                     "3 fit rows dropped (1 empty text, 2 unknown label 'meh')")


def test_held_out_rows_with_a_label_no_evaluation_row_has_are_counted(tmp_path: Path) -> None:
    rows = unique_rows(40)
    held = load(write_rows(tmp_path / "d.csv", rows)).fit.texts  # which rows seed 0 holds out of 40
    for row in rows:
        if row["sentence"] in held[:2]:
            row["label"] = 7  # the model has no class 7, and no evaluation row carries it
    data = load(write_rows(tmp_path / "d.csv", rows))
    assert len(data.fit) == 8 and not set(held[:2]) & set(data.fit.texts + data.eval.texts)
    assert data.description.endswith("for calibration/probes (fit_size); 2 held-out rows dropped (2 unknown label '7')")


def test_nothing_is_said_when_nothing_is_dropped_or_truncated(tmp_path: Path) -> None:
    data = load(write_rows(tmp_path / "d.csv", unique_rows(30)), tokenizer=make_tokenizer(tmp_path / "tok"))
    assert data.description == (f"{tmp_path / 'd.csv'} [d.csv]: 20 evaluation rows (columns 'sentence', 'label'); "
                                "10 rows held out by a shuffle seeded 0 for calibration/probes (fit_size)")


def test_evaluation_texts_longer_than_max_length_are_counted_and_kept_whole(tmp_path: Path) -> None:
    tokenizer = make_tokenizer(tmp_path / "tok")  # every word below is one token; [CLS] and [SEP] add two
    rows = unique_rows(20)
    rows[0]["sentence"] = " ".join(["good"] * 5000)  # 5,000 words
    rows[1]["sentence"] = " ".join(["bad"] * 31)  # 33 tokens: one too many
    rows[2]["sentence"] = " ".join(["fine"] * 40)
    rows[3]["sentence"] = " ".join(["dull"] * 30)  # 32 tokens: fits exactly
    fit_path = write_rows(tmp_path / "fit.csv", unique_rows(16, seed=2))
    data = load(write_rows(tmp_path / "d.csv", rows), tokenizer=tokenizer, max_length=32, fit_dataset=str(fit_path))
    assert "; 3 texts longer than 32 tokens are truncated;" in data.description
    assert " ".join(["good"] * 5000) in data.eval.texts  # the text is cut when it is fed, not when it is read
    for max_length, said in [(42, "1 text longer than 42 tokens is truncated"), (5002, None)]:
        description = load(tmp_path / "d.csv", tokenizer=tokenizer, max_length=max_length,
                           fit_dataset=str(fit_path)).description
        assert (f"; {said};" in description) if said else "truncated" not in description
    assert "truncated" not in load(tmp_path / "d.csv", max_length=32, fit_dataset=str(fit_path)).description


# Files ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.csv", "", "empty"),
        ("header.csv", "sentence,label\n", "header.csv"),
        ("missing.csv", None, "does not exist"),
        ("data.txt", "sentence,label\na,1\n", "not a CSV"),
    ],
)
def test_unusable_files_are_rejected(tmp_path: Path, name: str, content: str | None, match: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=match):
        load(path)


def test_tsv_text_with_double_quotes_is_read_intact(tmp_path: Path) -> None:
    rows = unique_rows(30)
    rows[0]["sentence"] = 'a "great" film'
    rows[1]["sentence"] = '"quoted from start to end"'
    rows[2]["sentence"] = 'an opening " with no closing one'
    data = load(write_rows(tmp_path / "d.tsv", rows))
    assert sorted(pairs(data)) == sorted(source_pairs(rows, "sentence", "label"))


# Splits --------------------------------------------------------------------------------------------------


@pytest.fixture
def forty(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    rows = unique_rows(40)
    return write_rows(tmp_path / "d.csv", rows), rows


@pytest.mark.parametrize("fit_size", [1, 10, 30])
def test_fit_rows_are_held_out_from_evaluation(forty: tuple[Path, list], fit_size: int) -> None:
    path, rows = forty
    data = load(path, fit_size=fit_size)
    assert len(data.fit) == fit_size
    assert len(data.eval) == len(rows) - fit_size
    assert not set(data.fit.texts) & set(data.eval.texts)
    assert sorted(pairs(data)) == sorted(source_pairs(rows, "sentence", "label"))


def test_the_split_is_deterministic_for_a_seed(forty: tuple[Path, list]) -> None:
    path, _ = forty
    first, again, other = load(path, seed=1), load(path, seed=1), load(path, seed=2)
    assert first.fit.texts == again.fit.texts and first.eval.texts == again.eval.texts
    assert first.fit.labels.tolist() == again.fit.labels.tolist()
    assert set(first.fit.texts) != set(other.fit.texts)


def test_too_few_rows_for_fit_size(forty: tuple[Path, list]) -> None:
    path, _ = forty
    with pytest.raises(DatasetError, match="fit_size=39"):
        load(path, fit_size=39)


@pytest.mark.parametrize(("max_samples", "expected"), [(6, 6), (12, 12), (30, 30), (1000, 30)])
def test_max_samples_caps_the_evaluation_rows(forty: tuple[Path, list], max_samples: int, expected: int) -> None:
    path, _ = forty
    full = load(path)
    data = load(path, max_samples=max_samples)
    assert len(data.eval) == expected
    assert data.fit.texts == full.fit.texts  # the cap takes nothing from the fit rows ...
    assert set(data.eval.texts) <= set(full.eval.texts)  # ... nor adds fit rows to evaluation


def test_a_fit_dataset_supplies_the_fit_rows(tmp_path: Path) -> None:
    eval_rows = unique_rows(20, seed=1)
    fit_rows = [{"sentence": f"fit {r['sentence']}", "label": r["label"]} for r in unique_rows(16, seed=2)]
    eval_path = write_rows(tmp_path / "eval.csv", eval_rows)
    fit_path = write_rows(tmp_path / "fit.tsv", fit_rows)

    data = load(eval_path, fit_dataset=str(fit_path), fit_size=100)

    assert sorted(zip(data.eval.texts, data.eval.labels.tolist(), strict=True)) == sorted(
        source_pairs(eval_rows, "sentence", "label")
    )  # every evaluation row is evaluated
    assert sorted(zip(data.fit.texts, data.fit.labels.tolist(), strict=True)) == sorted(
        source_pairs(fit_rows, "sentence", "label")
    )
    assert str(fit_path) in data.description


def test_fit_split_on_a_local_file_never_reuses_evaluation_rows(forty: tuple[Path, list]) -> None:
    path, _ = forty
    try:
        data = load(path, fit_split="train")
    except DatasetError as exc:
        assert "fit_dataset" in str(exc)  # refusing a split name for a file without splits, naming the fix
        return
    assert not set(data.fit.texts) & set(data.eval.texts)


def test_row_counts_add_up_per_class(forty: tuple[Path, list]) -> None:
    path, rows = forty
    data = load(path)
    counts = Counter(data.eval.labels.tolist()) + Counter(data.fit.labels.tolist())
    assert counts == Counter(r["label"] for r in rows)
    assert data.eval.labels.dtype.kind == "i"


# Files that are not what they claim: refused, naming the line --------------------------------------------------


def write_latin1(path: Path, rows: list[dict[str, Any]], *, at: int, text: str = "un café noir") -> Path:
    """``rows`` in latin-1, the row at index ``at`` holding ``text`` (with a byte, é = 0xe9, UTF-8 cannot read)."""
    rows = [dict(r) for r in rows]
    column = next(iter(rows[0]))
    rows[at][column] = text
    if path.suffix == ".jsonl":  # as an editor saves it: the accent as its byte, not as \u00e9
        path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1"))
        return path
    write_rows(path, rows)
    path.write_bytes(path.read_text().encode("latin-1"))
    return path


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl"])
def test_bytes_that_are_not_utf8_are_refused_naming_line_offset_and_fix(tmp_path: Path, name: str) -> None:
    path = write_latin1(tmp_path / name, unique_rows(30), at=4)
    data = path.read_bytes()
    offset = data.index(b"\xe9")
    line = 6 if name != "d.jsonl" else 5  # the header is line 1 of a CSV or TSV; a JSON-lines file has none
    with pytest.raises(DatasetError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"dataset file {str(path)!r} is not valid utf-8: line {line}, byte offset {offset} ")
    assert "un caf'), holds byte 0xe9. " in message  # what precedes the byte on its line
    assert '--encoding latin-1, or encoding = "latin-1" in a study file' in message
    assert "re-save the file as UTF-8" in message


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl"])
def test_the_encoding_setting_reads_a_latin1_file_intact(tmp_path: Path, name: str) -> None:
    rows = unique_rows(30)
    path = write_latin1(tmp_path / name, rows, at=4, text="un café noir, très bon")
    data = load(path, encoding="latin-1")
    expected = [dict(r) for r in rows]
    expected[4]["sentence"] = "un café noir, très bon"
    assert sorted(pairs(data)) == sorted(source_pairs(expected, "sentence", "label"))


def test_the_encoding_applies_to_the_fit_file_too(tmp_path: Path) -> None:
    eval_path = write_rows(tmp_path / "eval.csv", unique_rows(20, seed=1))
    fit_path = write_latin1(tmp_path / "fit.csv", unique_rows(16, seed=2), at=0)
    with pytest.raises(DatasetError, match=f"dataset file {str(fit_path)!r} is not valid utf-8: line 2, "):
        load(eval_path, fit_dataset=str(fit_path))
    assert "un café noir" in load(eval_path, fit_dataset=str(fit_path), encoding="latin-1").fit.texts


def test_a_valid_utf8_file_with_accents_is_read_as_utf8(tmp_path: Path) -> None:
    rows = unique_rows(30)
    rows[4]["sentence"] = "un café noir ☕"
    data = load(write_rows(tmp_path / "d.csv", rows))
    assert "un café noir ☕" in data.eval.texts + data.fit.texts


@pytest.mark.parametrize(("name", "bad_line", "fields", "fix"), [
    ("d.csv", "awful and, dull,0", 3, "double quotes"),  # an unquoted comma
    ("d.csv", "awful and dull", 1, "double quotes"),  # a field missing (pandas would fill it with NaN)
    ("d.tsv", "awful and\tdull\t0", 3, "may not hold a tab"),  # a tab inside a text
    ("d.tsv", "awful and dull 0", 1, "may not hold a tab"),
])
def test_a_row_with_more_or_fewer_fields_than_the_header_is_refused(tmp_path: Path, name: str, bad_line: str,
                                                                     fields: int, fix: str) -> None:
    path = write_rows(tmp_path / name, unique_rows(30))
    lines = path.read_text().splitlines()
    lines[6] = bad_line  # line 7 of the file
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as info:
        load(path)
    message = str(info.value)
    plural = "s" if fields != 1 else ""
    assert message.startswith(f"dataset file {str(path)!r}: line 7 has {fields} field{plural}, the header has 2. ")
    assert "Fix the row so it has one value per column" in message and fix in message


@pytest.mark.parametrize("suffix", ["tsv", "csv"])
def test_a_text_longer_than_the_csv_modules_field_limit_is_read_whole(tmp_path: Path, suffix: str) -> None:
    rows = unique_rows(30)
    rows[3]["sentence"] = " ".join(["word"] * 200_000)  # 999,999 characters: over the csv module's 131,072
    path = write_rows(tmp_path / f"d.{suffix}", rows)
    assert sorted(pairs(load(path))) == sorted(source_pairs(rows, "sentence", "label"))


def test_ragged_rows_are_counted_and_the_first_is_named(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "d.tsv", unique_rows(30))
    lines = path.read_text().splitlines()
    for i in (9, 12, 20):
        lines[i] += "\textra"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 10 has 3 fields, the header has 2 \(3 rows in all do not match\)"):
        load(path)


def test_line_numbers_count_the_lines_of_quoted_texts_and_blank_lines_are_no_rows(tmp_path: Path) -> None:
    rows = unique_rows(30)
    rows[1]["sentence"] = "a text\nover three\nlines"  # quoted by the CSV writer: one row on lines 3 to 5
    path = write_rows(tmp_path / "d.csv", rows)
    assert sorted(pairs(load(path))) == sorted(source_pairs(rows, "sentence", "label"))  # no ragged row
    lines = path.read_text().splitlines()
    lines.insert(8, "")  # a blank line, which pandas skips: no row, and no ragged one
    lines[10] = "one, two, three"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r": line 11 has 3 fields, the header has 2\. "):
        load(path)


def test_a_quote_left_open_is_named_as_the_likely_cause(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "d.csv", unique_rows(30))
    lines = path.read_text().splitlines()
    lines[4] = '"an opening quote never closed,1'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 5 has 1 field, the header has 2 \(the row runs on to line 31: "
                                           r"is a quote left open\?\)"):
        load(path)
