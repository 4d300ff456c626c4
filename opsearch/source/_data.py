"""Labelled text for a study: the evaluation split, and the fit split (calibration and probe samples).

DATA is a local CSV, TSV, JSON(L) or Parquet file, a file inside an installed package
(``package:DIST/path``), or a hub dataset id (``glue/sst2`` or ``ID:CONFIG``). Everything is loaded
with ``datasets``; the columns are named or found, and the labels are mapped to the model's classes.

Nothing is lost or changed without a word: a local file is checked before ``datasets`` reads it (bytes that are
not valid in its encoding, a CSV/TSV row with more or fewer fields than the header: refused, naming the line),
and the description says which rows were dropped and why, and how many texts are truncated.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from opsearch.config import StudyConfig
from opsearch.errors import DatasetError
from opsearch.source._model import is_local_spec
from opsearch.source._reading import read_dataset
from opsearch.source._spans import (
    ANSWER_COLUMNS,
    CONTEXT_COLUMNS,
    QUESTION_COLUMNS,
    QUESTION_TASKS,
    TAG_COLUMNS,
    TAG_TASKS,
    WORD_COLUMNS,
    Question,
    structured_rows,
    tag_rows,
)

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("sentence", "text", "sentence1", "content", "review")
LABEL_COLUMNS = ("label", "labels")

# Why a row is dropped, in the order the description lists them. A row is counted under the first that applies.
EMPTY_TEXT, MISSING_LABEL, NO_ANSWER, UNLABELLED, EXCLUDED, UNKNOWN = (
    "empty text", "missing label", "no answer (unanswerable questions are not scored)", "label -1 (unlabelled)",
    "label in exclude_labels", "unknown label")
_REASONS = (EMPTY_TEXT, MISSING_LABEL, NO_ANSWER, UNLABELLED, EXCLUDED, UNKNOWN)


# One row's text: a text, a pair (the second the tokenizer's text_pair), a tagger's words, or a question.
Text = str | tuple[str, str] | list[str] | Question


def question_stride(max_length: int) -> int:
    """How many tokens a context's windows overlap: transformers' question-answering pipeline's default."""
    return min(max_length // 2, 128)


def tokenize(tokenizer, texts: list[Text] | tuple[str, str], **options):
    """``tokenizer`` on a list of rows of one kind, or on one pair, as transformers' pipelines feed them: a pair's
    second text as ``text_pair``; a tagger's words as words (``is_split_into_words``); a question before its
    context, the context cut into windows of ``max_length`` tokens that overlap by :func:`question_stride` (each
    window a row of the result, ``overflow_to_sample_mapping`` naming its question)."""
    if isinstance(texts, tuple):
        texts = [texts]
    first = texts[0] if texts else ""
    if isinstance(first, tuple):
        return tokenizer([t[0] for t in texts], text_pair=[t[1] for t in texts], **options)
    if isinstance(first, list):
        return tokenizer(texts, is_split_into_words=True, **options)
    if isinstance(first, Question):
        options = {**options, "truncation": "only_second"}
        return tokenizer([q.question for q in texts], [q.context for q in texts],
                         stride=question_stride(options["max_length"]), return_overflowing_tokens=True,
                         return_offsets_mapping=True, **options)
    return tokenizer(texts, **options)


@dataclass(frozen=True)
class LabelledTexts:
    texts: list[Text]  # per row: a text, a (text, text_pair) pair, a tagger's words, or a Question
    # class ids (int64); a regressor's numbers (float64); multi-hot rows (multi-label); word tag ids padded with
    # TAG_PAD (token-classification); zeros for question-answering, whose references are ``answers``
    labels: np.ndarray
    answers: tuple[tuple[str, ...], ...] = ()  # question-answering: each row's right answers

    def __post_init__(self) -> None:
        if self.answers and len(self.answers) != len(self.labels):
            raise ValueError("one set of answers per row")

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, n: int) -> LabelledTexts:
        return LabelledTexts(self.texts[:n], self.labels[:n], self.answers[:n])


@dataclass(frozen=True)
class StudyData:
    """The evaluation rows and, disjoint from them, the rows calibration and probes may use."""

    eval: LabelledTexts
    fit: LabelledTexts
    label_names: list[str]
    description: str


def load_study_data(config: StudyConfig, *, id2label: dict[int, str] | None, task: str,
                    tokenizer=None) -> StudyData:
    """Load, split, map labels (see :func:`_load`); every refusal names the file it is about."""
    specs = [spec for spec in (config.dataset, config.fit_dataset) if spec]
    try:
        return _load(config, id2label=id2label, task=task, tokenizer=tokenizer)
    except DatasetError as exc:
        if any(spec in str(exc) for spec in specs):
            raise
        raise DatasetError(f"dataset {config.dataset!r}: {exc}") from None


def _load(config: StudyConfig, *, id2label: dict[int, str] | None, task: str, tokenizer=None) -> StudyData:
    """Load, split, map labels. The split is seeded by ``config.seed``, so it is the same on every resume.

    With a ``tokenizer``, the description also counts the evaluation texts longer than ``config.max_length``
    tokens (they are truncated)."""
    eval_source, eval_split = read_dataset(config.dataset, config.split, role="evaluation", encoding=config.encoding)
    text_col, pair_col, label_col = _columns(eval_source, config, task, config.dataset)
    rng = np.random.default_rng(config.seed)

    eval_texts, eval_raw, eval_dropped = _rows(eval_source, text_col, pair_col, label_col, config.exclude_labels,
                                               task=task)
    if config.fit_dataset or config.fit_split:
        fit = _fit_source_rows(config, rng, task)
    else:
        fit, eval_texts, eval_raw = _held_out_rows(config, task, rng, eval_texts, eval_raw)

    if config.max_samples is not None and len(eval_texts) > config.max_samples:
        keep = np.sort(rng.permutation(len(eval_texts))[: config.max_samples])
        eval_texts, eval_raw = [eval_texts[i] for i in keep], [eval_raw[i] for i in keep]

    if task in TAG_TASKS + QUESTION_TASKS:
        return _structured_data(config, task, eval_texts, eval_raw, fit, id2label=id2label, tokenizer=tokenizer,
                                head=f"{config.dataset} [{eval_split}]", columns=(text_col, pair_col, label_col),
                                dropped=eval_dropped)
    if task == "regression":
        mapping, label_names = _numbers(eval_raw + fit.raw, config.dataset), []
        eval_data = LabelledTexts(eval_texts, np.array([mapping[str(v)] for v in eval_raw], dtype=np.float64))
    elif task == "multi-label":
        mapping, label_names = _label_sets(eval_raw + fit.raw, config, id2label=id2label, dataset=config.dataset)
        eval_data = LabelledTexts(eval_texts, np.array([mapping[str(v)] for v in eval_raw], dtype=np.int64))
    else:
        mapping, label_names = _label_mapping(eval_raw, config, id2label=id2label, task=task,
                                              dataset=config.dataset)
        eval_data = LabelledTexts(eval_texts, np.array([mapping[str(v)] for v in eval_raw], dtype=np.int64))
        _check_classes(eval_data, config.dataset)
    fit_data, unknown, fit_dropped = _mapped_fit_rows(fit, mapping)
    description = _description(config, eval_data, fit, fit_dropped, head=f"{config.dataset} [{eval_split}]",
                               columns=(text_col, pair_col, label_col), dropped=eval_dropped, unknown=unknown,
                               tokenizer=tokenizer)
    return StudyData(eval=eval_data, fit=fit_data, label_names=label_names, description=description)


def _description(config: StudyConfig, eval_data: LabelledTexts, fit: _FitRows, fit_dropped: Counter, *, head: str,
                 columns: tuple, dropped: Counter, unknown: list[str], tokenizer) -> str:
    """What the study reads: the rows, the columns, what was dropped or truncated, where the fit rows come from."""
    named = ", ".join(repr(c) for c in columns if c)
    parts = [f"{head}: {len(eval_data)} evaluation rows (columns {named})", _dropped_text(dropped, "rows", unknown)]
    if tokenizer is not None:
        parts.append(_truncated_text(tokenizer, eval_data.texts, config.max_length))
    parts += [fit.how, _dropped_text(fit_dropped, fit.noun, unknown)]
    return "; ".join(p for p in parts if p)


def _structured_data(config: StudyConfig, task: str, texts: list, raw: list, fit: _FitRows, *,
                     id2label: dict[int, str] | None, tokenizer, head: str, columns: tuple,
                     dropped: Counter) -> StudyData:
    """A tagger's or a question-answering study's rows: tags as ids of the model's labels (padded rows), answers
    kept as text. Their fit rows serve calibration only, so they keep their texts alone."""
    if task in TAG_TASKS:
        names = sorted({tag for tags in raw + fit.raw for tag in tags})
        ids = _label_ids(names, config, id2label=id2label, dataset=config.dataset)
        inverse = {i: n for n, i in ids.items()}
        width = max([len(id2label or {}), *(i + 1 for i in ids.values())])
        label_names = [(id2label or {}).get(i) or inverse.get(i, str(i)) for i in range(width)]
        eval_data = LabelledTexts(texts, tag_rows(raw, ids))
    else:
        label_names = []
        eval_data = LabelledTexts(texts, np.zeros(len(texts)), answers=tuple(raw))
    fit_texts = [fit.texts[i] for i in fit.order]
    fit_data = LabelledTexts(fit_texts, np.zeros(len(fit_texts)))
    description = _description(config, eval_data, fit, fit.dropped, head=head, columns=columns, dropped=dropped,
                               unknown=[], tokenizer=tokenizer)
    return StudyData(eval=eval_data, fit=fit_data, label_names=label_names, description=description)


@dataclass(frozen=True)
class _FitRows:
    """The fit rows before their labels are mapped, and what the description says of them."""

    texts: list[str]
    raw: list  # label values as the dataset holds them
    order: np.ndarray  # the order calibration and probes take the rows in
    dropped: Counter  # rows of the fit source dropped, by reason
    how: str  # where the rows come from
    noun: str  # what the description calls them


def _fit_source_rows(config: StudyConfig, rng: np.random.Generator, task: str) -> _FitRows:
    """The fit rows from ``fit_dataset`` or ``fit_split``, in a seeded shuffle."""
    if config.fit_split and not config.fit_dataset and is_local_spec(config.dataset):
        raise DatasetError(f"fit_split={config.fit_split!r} names a split of a hub dataset, but {config.dataset!r} is "
                           "a local file with no splits: give the fit rows' file as fit_dataset, or drop fit_split "
                           "to hold out fit_size rows of the file.")
    fit_source, fit_split = read_dataset(config.fit_dataset or config.dataset, config.fit_split or "train", role="fit",
                                  encoding=config.encoding)
    spec = config.fit_dataset or config.dataset
    texts, raw, dropped = _rows(fit_source, *_columns(fit_source, config, task, spec), config.exclude_labels,
                                task=task)
    return _FitRows(texts, raw, rng.permutation(len(texts)), dropped,
                    f"fit rows from {config.fit_dataset or config.dataset} [{fit_split}]", "fit rows")


def _held_out_rows(config: StudyConfig, task: str, rng: np.random.Generator, texts: list[str],
                   raw: list) -> tuple[_FitRows, list[str], list]:
    """Hold out fit rows from the evaluation rows by a seeded shuffle; the fit rows, and the evaluation rows left."""
    fit_size, why = _fit_size(config, task, len(texts))
    order = rng.permutation(len(texts))
    fit_idx, eval_idx = order[:fit_size], order[fit_size:]
    how = (f"{fit_size} rows held out by a shuffle seeded {config.seed} for {why}" if fit_size
           else f"no rows held out ({why})")
    # No drops of their own: the rows they were held out of count them.
    fit = _FitRows([texts[i] for i in fit_idx], [raw[i] for i in fit_idx], np.arange(len(fit_idx)), Counter(), how,
                   "held-out rows")
    return fit, [texts[i] for i in eval_idx], [raw[i] for i in eval_idx]


def _mapped_fit_rows(fit: _FitRows, mapping: dict[str, int]) -> tuple[LabelledTexts, list[str], Counter]:
    """The fit rows whose label ``mapping`` knows, in their order; the labels it does not know; the rows dropped."""
    known = [i for i in fit.order if str(fit.raw[i]) in mapping]
    unknown = sorted({str(fit.raw[i]) for i in fit.order if str(fit.raw[i]) not in mapping})
    # The mapping is built from the evaluation rows' labels: a label only the fit rows hold has no class id.
    dropped = fit.dropped.copy()
    dropped[UNKNOWN] += len(fit.order) - len(known)
    values = [mapping[str(fit.raw[i])] for i in known]
    data = LabelledTexts([fit.texts[i] for i in known],
                         np.array(values, dtype=np.float64 if any(isinstance(v, float) for v in values)
                                  else np.int64))
    return data, unknown, dropped


def _numbers(raw: list, dataset: str) -> dict[str, float]:
    """A regressor's labels: each value (as a string) to its number; refused, naming a value, when one is none."""
    mapping = {}
    for value in raw:
        try:
            mapping[str(value)] = float(value)
        except (TypeError, ValueError):
            raise DatasetError(f"label {value!r} of {dataset!r} is not a number, and a regression study's labels are "
                               "numbers: pick the number column with --label-column, or use --task classification "
                               "for class labels.") from None
    return mapping


def _label_list(value, dataset: str) -> list[str]:
    """A multi-label row's labels: a list (JSON, Parquet), a JSON list in text, or a comma (or ; or |) list."""
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, list):
            raise DatasetError(f"label {text[:40]!r} of {dataset!r} starts like a JSON list but is none: write "
                               "[\"a\", \"b\"], or a comma list a,b.")
        return [str(v) for v in parsed]
    return [part.strip() for part in re.split(r"[,;|]", text) if part.strip()]


def _label_sets(raw: list, config: StudyConfig, *, id2label: dict[int, str] | None,
                dataset: str) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """A multi-label study's labels: each value (as a string) to its multi-hot row, and the labels' names."""
    sets = {str(v): _label_list(v, dataset) for v in raw}
    ids = _label_ids(sorted({name for labels in sets.values() for name in labels}), config, id2label=id2label,
                     dataset=dataset)
    width = max([len(id2label or {}), *(i + 1 for i in ids.values())])
    mapping = {key: tuple(int(i in {ids[n] for n in labels}) for i in range(width)) for key, labels in sets.items()}
    inverse = {i: n for n, i in ids.items()}
    return mapping, [(id2label or {}).get(i) or inverse.get(i, str(i)) for i in range(width)]


def _check_classes(data: LabelledTexts, dataset: str) -> None:
    """Refuse evaluation rows that hold fewer than two classes."""
    classes = Counter(data.labels.tolist())
    if len(classes) < 2:
        raise DatasetError(f"the evaluation rows of {dataset!r} hold one class only ({dict(classes)}): "
                           "accuracy would mean nothing. Use a split with every class.")


def _dropped_text(dropped: Counter, rows: str, unknown: list[str]) -> str:
    """``2 rows dropped (1 empty text, 1 missing label)``; "" when none was."""
    total = sum(dropped.values())
    if not total:
        return ""

    def reason(name: str) -> str:
        if name != UNKNOWN:
            return name
        shown = ", ".join(repr(v) for v in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        return f"{name} {shown}" if shown else name

    why = ", ".join(f"{dropped[r]} {reason(r)}" for r in _REASONS if dropped[r])
    return f"{total} {rows[:-1] if total == 1 else rows} dropped ({why})"


def _truncated_text(tokenizer, texts: list[str], max_length: int) -> str:
    """``3 texts longer than 256 tokens are truncated``; "" when none is. Tokens are counted as the model is fed
    (special tokens included), never past max_length + 1, so a long text costs no more than a short one."""
    if not texts:
        return ""
    if isinstance(texts[0], Question):
        windows = Counter(tokenize(tokenizer, texts, truncation=True, max_length=max_length)
                          ["overflow_to_sample_mapping"])
        long = [n for n in windows.values() if n > 1]
        return (f"{len(long)} contexts longer than {max_length} tokens are read in {sum(long)} windows overlapping by "
                f"{question_stride(max_length)} tokens" if long else "")
    ids = tokenize(tokenizer, texts, truncation=True, max_length=max_length + 1)["input_ids"]
    n = sum(1 for i in ids if len(i) > max_length)
    if not n:
        return ""
    return (f"{n} texts longer than {max_length} tokens are truncated" if n > 1
            else f"1 text longer than {max_length} tokens is truncated")


# Without a fit source, at most this share of the rows is held out for calibration and the probe.
MAX_HELD_OUT_SHARE = 0.25


def _fit_size(config: StudyConfig, task: str, rows: int) -> tuple[int, str]:
    """How many of the evaluation file's rows to hold out, and what for: ``fit_size`` when set, else what the study
    needs (static calibration's rows, the embedding probe's), at most a quarter of the rows."""
    if config.fit_size is not None:
        if rows <= config.fit_size + 1:
            raise DatasetError(
                f"dataset {config.dataset!r} has {rows} usable rows, too few to hold out fit_size={config.fit_size} "
                "for calibration/probe and still evaluate: lower fit_size or give fit_dataset.")
        return config.fit_size, "calibration/probes (fit_size)"
    uses = []
    if config.needs_calibration:
        uses.append(("static calibration" if config.calibrates else "smoothing", config.calibration_rows))
    if task == "embedding":
        uses.append(("the probe", config.probe_samples))
    if not uses:
        return 0, "a dynamic-only study needs none"
    needed = max(n for _, n in uses)
    cap = int(rows * MAX_HELD_OUT_SHARE)
    held = min(needed, cap)
    if held < 2:
        raise DatasetError(f"dataset {config.dataset!r} has {rows} usable rows, too few to hold out rows for "
                           f"{' and '.join(u for u, _ in uses)} and still evaluate: give fit_dataset.")
    why = " and ".join(u for u, _ in uses)
    cut = "" if held == needed else f"; {needed} wanted, capped at a quarter of the rows"
    return held, f"{why}{cut}"


def load_texts(spec: str, *, split: str | None = None, text_column: str | None = None,
               encoding: str = "utf-8") -> list[str]:
    """The text column of a dataset, in order (for timing workloads that need no labels)."""
    dataset, _ = read_dataset(spec, split, role="timing", encoding=encoding)
    columns = list(dataset.column_names)
    column = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if column not in columns:
        raise DatasetError(f"no text column {text_column or list(TEXT_COLUMNS)} in {spec!r}; its columns are "
                           f"{columns}. Pass --text-column with one of them.")
    return [t for t in dataset[column] if isinstance(t, str) and t.strip()]


# A pair's second column, read without --text-pair-column when the text column is the first of these (GLUE's).
USUAL_PAIRS = {"sentence1": "sentence2", "premise": "hypothesis", "question1": "question2"}


def _columns(dataset, config: StudyConfig, task: str, spec: str) -> tuple[str, str | None, str]:
    """The text, text-pair (None: single texts) and label columns of the dataset ``spec`` names."""
    columns = list(dataset.column_names)

    def pick(given: str | None, usual: tuple[str, ...], what: str, flag: str) -> str:
        if given is not None:
            if given not in columns:
                raise DatasetError(f"{what} column {given!r} is not in the dataset {spec!r}; its columns are "
                                   f"{columns}. Pass {flag} with one of them.")
            return given
        for name in usual:
            if name in columns:
                return name
        raise DatasetError(f"no {what} column found in {spec!r} (looked for {list(usual)}); its columns are "
                           f"{columns}. Pass {flag} with one of them.")

    if task in TAG_TASKS:
        return (pick(config.text_column, WORD_COLUMNS + TEXT_COLUMNS, "words", "--text-column"), None,
                pick(config.label_column, TAG_COLUMNS, "tags", "--label-column"))
    if task in QUESTION_TASKS:
        return (pick(config.text_column, QUESTION_COLUMNS, "question", "--text-column"),
                pick(config.text_pair_column, CONTEXT_COLUMNS, "context", "--text-pair-column"),
                pick(config.label_column, ANSWER_COLUMNS, "answer", "--label-column"))
    text = pick(config.text_column, TEXT_COLUMNS, "text", "--text-column")
    if config.text_pair_column is not None:
        pair = pick(config.text_pair_column, (), "text pair", "--text-pair-column")
    else:
        usual = USUAL_PAIRS.get(text)
        pair = usual if usual in columns and task != "embedding" else None
    return text, pair, pick(config.label_column, LABEL_COLUMNS, "label", "--label-column")


def _rows(dataset, text_col: str, pair_col: str | None, label_col: str, exclude: list[str], *,
          task: str) -> tuple[list[Text], list, Counter]:
    """The rows with a text (and its pair) and a label, and how many were dropped for each reason."""
    if task in TAG_TASKS + QUESTION_TASKS:
        dropped = Counter()
        kept_texts, kept_labels = structured_rows(dataset, task, text_col, pair_col, label_col, dropped,
                                                  empty=EMPTY_TEXT,
                                                  missing=NO_ANSWER if task in QUESTION_TASKS else MISSING_LABEL)
        if not kept_texts:
            raise DatasetError(f"no row has both a text in {text_col!r} and a label in {label_col!r}.")
        return kept_texts, kept_labels, dropped
    texts, labels = dataset[text_col], dataset[label_col]
    pairs = dataset[pair_col] if pair_col else [None] * len(texts)
    names = getattr(dataset.features.get(label_col), "names", None)
    if names:  # ClassLabel: keep the ids, which follow the dataset's names
        labels = [names[v] if 0 <= v < len(names) else v for v in labels]
    excluded = set(exclude)
    kept_texts, kept_labels, dropped = [], [], Counter()
    for t, pair, y in zip(texts, pairs, labels, strict=True):
        if isinstance(y, float) and y.is_integer():
            y = int(y)  # a numeric column with an empty cell is read as floats: 1.0 is class 1
        if not isinstance(t, str) or not t.strip() or (pair_col and (not isinstance(pair, str) or not pair.strip())):
            dropped[EMPTY_TEXT] += 1
        elif y is None or (isinstance(y, float) and math.isnan(y)) or (isinstance(y, str) and not y.strip()):
            dropped[MISSING_LABEL] += 1
        elif y == -1:
            dropped[UNLABELLED] += 1
        elif str(y) in excluded:
            dropped[EXCLUDED] += 1
        else:
            kept_texts.append((t, pair) if pair_col else t)
            kept_labels.append(y)
    if not kept_texts:
        raise DatasetError(f"no row has both a text in {text_col!r} and a label in {label_col!r} "
                           "(unlabelled test splits carry label -1: use the validation split).")
    return kept_texts, kept_labels, dropped


def _label_mapping(raw: list, config: StudyConfig, *, id2label: dict[int, str] | None, task: str,
                   dataset: str) -> tuple[dict[str, int], list[str]]:
    """Map each label value (as a string) to a class id, and name the classes."""
    values = sorted({str(v) for v in raw})
    fractions = [v for v in values if _is_number(v) and not _is_int(v)]
    if fractions and config.label_map is None:
        raise DatasetError(f"labels of {dataset!r} include numbers with fractions ({', '.join(fractions[:3])}), which "
                           "are no class ids: for a model that predicts a number, pass --task regression; else pick "
                           "the class column with --label-column.")
    mapping = _label_ids(values, config, id2label=id2label if task == "classification" else None, dataset=dataset)
    n_classes = max(mapping.values()) + 1
    if task == "classification" and id2label:
        names = [id2label.get(i, str(i)) for i in range(max(n_classes, len(id2label)))]
    else:
        inverse = {i: v for v, i in mapping.items()}
        names = [inverse.get(i, str(i)) for i in range(n_classes)]
    return mapping, names


def _label_ids(names: list[str], config: StudyConfig, *, id2label: dict[int, str] | None,
               dataset: str) -> dict[str, int]:
    """Each label name to its id: by ``label_map``, else by the model's ``id2label`` (names case-insensitively, or
    ids), else as written when all are whole numbers, else numbered in sorted order."""
    if config.label_map is not None:
        missing = [n for n in names if n not in config.label_map]
        if missing:
            raise DatasetError(f"labels {missing} of {dataset!r} are not in label_map {config.label_map}: "
                               "add them, or list them in exclude_labels.")
        return dict(config.label_map)
    if id2label:
        by_name = {name.lower(): i for i, name in id2label.items()}
        if all(n.lower() in by_name for n in names):
            return {n: by_name[n.lower()] for n in names}
        if all(_is_int(n) and int(n) in id2label for n in names):
            return {n: int(n) for n in names}
        example = ",".join(f"{name}={i}" for i, name in sorted(id2label.items())[:2])
        raise DatasetError(f"labels {names} of {dataset!r} do not match the model's classes {id2label}: give "
                           f"--label-map, e.g. --label-map {example}.")
    if all(_is_int(n) for n in names):
        return {n: int(n) for n in names}
    return {n: i for i, n in enumerate(names)}


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True
