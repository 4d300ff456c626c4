"""Rows whose label is more than one value per text: a tagger's words and their tags, a question with its context
and answers. Read from the forms datasets hold them in (lists; CoNLL's ``tokens``/``ner_tags``, SQuAD's
``question``/``context``/``answers``) and from flat files (words and tags as space-separated text, an answer as
text or as JSON); every mismatch is refused naming the row, the column and the fix."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

from opsearch.errors import DatasetError

TAG_TASKS = ("token-classification",)
QUESTION_TASKS = ("question-answering",)
# The columns found by name when none is given: CoNLL's and SQuAD's, as the hub's datasets hold them.
WORD_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("ner_tags", "tags", "labels", "label")
QUESTION_COLUMNS = ("question",)
CONTEXT_COLUMNS = ("context",)
ANSWER_COLUMNS = ("answers", "answer", "answer_text")
ANSWER_START_COLUMN = "answer_start"

@dataclass(frozen=True)
class Question:
    """An extractive question-answering row: the question, and the context its answer lies in."""

    question: str
    context: str


# A row of word tag ids is padded to the longest row with this (tag ids lie below it).
TAG_PAD = 254


def word_list(value, *, row: int, column: str) -> list[str] | None:
    """A row's words: a list, or text split at whitespace; None when it holds none."""
    if isinstance(value, list | tuple):
        words = [str(w) for w in value]
    elif isinstance(value, str):
        words = value.split()
    else:
        return None
    if any(not w.strip() for w in words):
        raise DatasetError(f"row {row} of column {column!r} holds an empty word: give the words without empty ones.")
    return words or None


def tag_list(value, *, words: int, row: int, column: str, word_column: str) -> list[str]:
    """A row's tags, one per word (as strings: names or ids), from a list or space-separated text."""
    tags = [str(t) for t in value] if isinstance(value, list | tuple) else str(value).split()
    if len(tags) != words:
        raise DatasetError(f"row {row} has {words} words in {word_column!r} but {len(tags)} tags in {column!r}: give "
                           "one tag per word (a list, or the tags separated by spaces).")
    return tags


def tag_rows(raw: list[list[str]], ids: dict[str, int]) -> np.ndarray:
    """Rows of tag names (or ids as text) to one (rows, longest row) array of tag ids, padded with TAG_PAD."""
    width = max(len(tags) for tags in raw)
    rows = np.full((len(raw), width), TAG_PAD, dtype=np.int64)
    for i, tags in enumerate(raw):
        rows[i, :len(tags)] = [ids[t] for t in tags]
    if rows[rows != TAG_PAD].max(initial=0) >= TAG_PAD:
        raise DatasetError(f"a tagger with {rows.max() + 1} tags is more than opsearch stores ({TAG_PAD}).")
    return rows


def answer_texts(value, *, context: str, start=None, row: int, column: str) -> tuple[str, ...]:
    """A row's right answers: SQuAD's ``{"text": [...], "answer_start": [...]}`` (or that as JSON text), a list, or
    one answer's text; each must lie in the context (at ``answer_start`` where one is given). Empty: none."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DatasetError(f"row {row} of column {column!r} starts like JSON but is none: give SQuAD's "
                               "{\"text\": [...], \"answer_start\": [...]}, or the answer's text.") from None
    starts = [start] if start is not None and not isinstance(start, list | tuple) else list(start or [])
    if isinstance(value, dict):
        texts, starts = value.get("text", []), value.get("answer_start", starts)
        texts = [texts] if isinstance(texts, str) else list(texts)
        starts = [starts] if isinstance(starts, int) else list(starts)
    elif isinstance(value, list | tuple):
        texts = list(value)
    else:
        texts = [value] if isinstance(value, str) and value.strip() else []
    for i, text in enumerate(texts):
        text = str(text)
        at = starts[i] if i < len(starts) and starts[i] is not None else None
        found = context.find(text) if at is None else (int(at) if context[int(at):int(at) + len(text)] == text
                                                       else -1)
        if found < 0:
            where = "" if at is None else f" at character {int(at)}"
            raise DatasetError(f"row {row}: the answer {text[:40]!r} in {column!r} is not in its context{where}: an "
                               "extractive model can only answer with a span of the context. Fix the answer or its "
                               f"{ANSWER_START_COLUMN}.")
    return tuple(str(t) for t in texts)


def structured_rows(dataset, task: str, text_col: str, pair_col: str | None, label_col: str,
                    dropped: Counter, *, empty: str, missing: str) -> tuple[list, list]:
    """A tagger's (words, tags) rows or a question's (Question, answers) rows; rows without text or label are
    counted in ``dropped`` under ``empty`` or ``missing``."""
    texts, labels = dataset[text_col], dataset[label_col]
    tag_names = getattr(getattr(dataset.features.get(label_col), "feature", None), "names", None)
    kept_texts, kept_labels = [], []
    if task in TAG_TASKS:
        for row, (value, tags) in enumerate(zip(texts, labels, strict=True), start=1):
            words = word_list(value, row=row, column=text_col)
            if words is None:
                dropped[empty] += 1
            elif tags is None or (isinstance(tags, str) and not tags.strip()):
                dropped[missing] += 1
            else:
                if tag_names:  # Sequence(ClassLabel): ids that follow the dataset's names
                    tags = [tag_names[t] for t in tags]
                kept_texts.append(words)
                kept_labels.append(tag_list(tags, words=len(words), row=row, column=label_col,
                                            word_column=text_col))
        return kept_texts, kept_labels
    contexts = dataset[pair_col]
    columns = dataset.column_names
    starts = dataset[ANSWER_START_COLUMN] if ANSWER_START_COLUMN in columns else [None] * len(texts)
    for row, (question, context, value, start) in enumerate(zip(texts, contexts, labels, starts, strict=True),
                                                           start=1):
        if not isinstance(question, str) or not question.strip() or not isinstance(context, str) or not context.strip():
            dropped[empty] += 1
            continue
        answers = answer_texts(value, context=context, start=start, row=row, column=label_col)
        if not answers:
            dropped[missing] += 1
            continue
        kept_texts.append(Question(question, context))
        kept_labels.append(answers)
    return kept_texts, kept_labels
