"""The metrics a study can judge a model by, each named once, and the paired interval of a metric's loss.

A metric either *decomposes* into per-row scores whose mean it is (accuracy: 1 for a right answer, 0 for a wrong
one), or is a whole-set statistic (F1, MCC, Spearman's and Pearson's correlations). Every judgement rests on
per-row evidence either way: a decomposable metric's loss is the mean of per-row differences (paired with fp32 row
by row, as early stopping's sequential test needs), and a whole metric's loss interval is a paired bootstrap over
rows, each resample taking the same rows of fp32 and the trial.

The values reported are scikit-learn's and scipy's (``evaluate``'s modules for these fetch their scripts from the
hub, which a machine without it cannot reach); the bootstrap computes each metric over many resamples at once from
confusion counts or ranks, which the tests hold equal to scikit-learn's and scipy's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from opsearch.config import DEFAULT_METRICS, METRIC_TITLES
from opsearch.errors import ConfigError
from opsearch.source import QUESTION_TASKS, TAG_PAD, TAG_TASKS  # a tag per word; an answer per question

# The tasks a metric fits, by the kind of prediction it reads.
CLASS_TASKS = ("classification", "embedding")  # one class id per row
VALUE_TASKS = ("regression",)  # one number per row
LABEL_SET_TASKS = ("multi-label",)  # a set of labels per row, as a multi-hot row


@dataclass(frozen=True)
class Metric:
    """A metric: its name (``--metric``), how reports call it, the tasks it fits, and how it is computed."""

    name: str
    tasks: tuple[str, ...]
    _score: Callable[[np.ndarray, np.ndarray], float]  # predictions, references -> the metric (sklearn, scipy)
    _batched: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (resamples, rows) each -> (resamples,)
    _per_row: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # per-row scores; their mean: the metric
    # A metric of counts summed over rows (entity F1: entities found, predicted, true): each row's counts, and the
    # metric of their sums (..., counts) -> (...). The bootstrap then resamples the counts, computed once.
    _counts: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    _of_counts: Callable[[np.ndarray], np.ndarray] | None = None
    tags: tuple[str, ...] = ()  # a tagger's tag names, by id

    def __reduce__(self):
        """Sent to a trial's child process by name (its functions are closures, which do not pickle)."""
        return metric_named, (self.name, self.tasks[0] if self.tasks else "", self.tags)

    @property
    def title(self) -> str:
        return METRIC_TITLES.get(self.name, self.name)  # an evaluator's metric is named by it

    @property
    def decomposes(self) -> bool:
        """Whether the metric is the mean of per-row scores (then early stopping's sequential test applies)."""
        return self._per_row is not None

    def score(self, predictions: np.ndarray, references: np.ndarray) -> float:
        return float(self._score(np.asarray(predictions), np.asarray(references)))

    def per_row(self, predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
        """Each row's score (floats); only for a metric that decomposes."""
        if self._per_row is None:
            raise ValueError(f"{self.name} is not a mean of per-row scores")
        return np.asarray(self._per_row(np.asarray(predictions), np.asarray(references)), dtype=float)

    def counts(self, predictions: np.ndarray, references: np.ndarray) -> np.ndarray | None:
        """Each row's counts (rows, counts), for a metric of counts summed over rows; else None."""
        return None if self._counts is None else self._counts(np.asarray(predictions), np.asarray(references))

    def of_counts(self, sums: np.ndarray) -> np.ndarray:
        """The metric of counts summed over rows (..., counts) -> (...)."""
        return self._of_counts(sums)

    def batched(self, predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
        """The metric of each row of (resamples, rows) arrays, at once (what the bootstrap computes)."""
        return self._batched(np.atleast_2d(predictions), np.atleast_2d(references))

    def why_no_early_stop(self) -> str:
        """Why sequential early stopping is off for this metric ("" when it applies)."""
        if self.decomposes:
            return ""
        return (f"{self.title} is not a mean of per-row scores, so the sequential test on the rows evaluated so far "
                "does not bound its error; trials are evaluated whole (a broken model still stops early)")


# Class-id metrics ---------------------------------------------------------------------------------------------

def _confusion(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """(resamples, classes, classes) counts: [b, true, predicted]."""
    p, r = predictions.astype(np.int64), references.astype(np.int64)
    k = int(max(p.max(initial=0), r.max(initial=0))) + 1
    offsets = np.arange(p.shape[0])[:, None] * k * k
    counts = np.bincount((offsets + r * k + p).ravel(), minlength=p.shape[0] * k * k)
    return counts.reshape(p.shape[0], k, k).astype(float)


def _f1_batched(average: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def f1(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
        c = _confusion(predictions, references)
        tp = np.diagonal(c, axis1=1, axis2=2)
        true, predicted = c.sum(axis=2), c.sum(axis=1)
        if average == "micro":
            return tp.sum(axis=1) / c.sum(axis=(1, 2))
        denominator = true + predicted
        per_class = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
        if average == "weighted":
            return (per_class * true).sum(axis=1) / true.sum(axis=1)
        present = denominator > 0  # sklearn averages over the labels either side holds
        return (per_class * present).sum(axis=1) / present.sum(axis=1)

    return f1


def _mcc_batched(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Matthews' correlation for any number of classes (Gorodkin's R_K), as scikit-learn computes it."""
    c = _confusion(predictions, references)
    true, predicted = c.sum(axis=2), c.sum(axis=1)
    correct, n = np.trace(c, axis1=1, axis2=2), c.sum(axis=(1, 2))
    covariance = correct * n - (true * predicted).sum(axis=1)
    denominator = np.sqrt((n**2 - (predicted**2).sum(axis=1)) * (n**2 - (true**2).sum(axis=1)))
    return np.divide(covariance, denominator, out=np.zeros_like(covariance), where=denominator > 0)


def _f1_score(average: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def f1(predictions: np.ndarray, references: np.ndarray) -> float:
        from sklearn.metrics import f1_score

        return f1_score(references, predictions, average=average, zero_division=0)

    return f1


def _mcc_score(predictions: np.ndarray, references: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return matthews_corrcoef(references, predictions)


def _right(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    return (predictions == references).astype(float)


# Label-set metrics (multi-hot rows: predictions and references (..., rows, labels)) --------------------------

def _label_counts(predictions: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per resample and label: true positives, false positives, false negatives."""
    p, r = predictions.astype(bool), references.astype(bool)
    return ((p & r).sum(axis=-2).astype(float), (p & ~r).sum(axis=-2).astype(float),
            (~p & r).sum(axis=-2).astype(float))


def _set_f1_batched(average: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def f1(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
        tp, fp, fn = _label_counts(predictions, references)
        if average == "micro":
            tp, fp, fn = tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1)
        denominator = 2 * tp + fp + fn
        per_label = np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)
        if average == "micro":
            return per_label
        if average == "weighted":
            support = tp + fn
            total = support.sum(axis=-1)
            return np.divide((per_label * support).sum(axis=-1), total, out=np.zeros_like(total), where=total > 0)
        return per_label.mean(axis=-1)

    return f1


def _exact(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """1 for a row whose every label is right (scikit-learn's subset accuracy)."""
    return (predictions == references).all(axis=-1).astype(float)


# Value metrics ------------------------------------------------------------------------------------------------

def _pearson_batched(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    covariance = (x * y).sum(axis=1)
    return np.divide(covariance, denominator, out=np.zeros_like(covariance), where=denominator > 0)


def _spearman_batched(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return _pearson_batched(rankdata(x, axis=1), rankdata(y, axis=1))


def _correlation(kind: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def correlation(predictions: np.ndarray, references: np.ndarray) -> float:
        from scipy import stats

        if np.ptp(predictions) == 0 or np.ptp(references) == 0:
            return 0.0  # scipy answers nan for a constant side: no correlation to see
        test = stats.spearmanr if kind == "spearman" else stats.pearsonr
        return float(test(predictions, references).statistic)

    return correlation


# Tag metrics (rows of tag ids padded with TAG_PAD; predictions and references alike) ---------------------------

def _tag_counts(tags: tuple[str, ...]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Per row: entities both sides hold (same type, same words), entities predicted, true entities (seqeval's
    conlleval-style reading of IOB tags), words tagged right, words."""
    def counts(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
        from seqeval.metrics.sequence_labeling import get_entities

        rows = np.zeros((len(references), 5))
        for i, (guess, truth) in enumerate(zip(predictions, references, strict=True)):
            n = int((truth != TAG_PAD).sum())
            predicted = set(get_entities([tags[t] for t in guess[:n]]))
            true = set(get_entities([tags[t] for t in truth[:n]]))
            rows[i] = len(predicted & true), len(predicted), len(true), (guess[:n] == truth[:n]).sum(), n
        return rows

    return counts


def _entity_f1(sums: np.ndarray) -> np.ndarray:
    found, predicted, true = sums[..., 0], sums[..., 1], sums[..., 2]
    denominator = predicted + true
    return np.divide(2 * found, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def _word_accuracy(sums: np.ndarray) -> np.ndarray:
    return sums[..., 3] / sums[..., 4]


def _of_counted(counts: Callable, of_counts: Callable) -> tuple[Callable, Callable]:
    """A metric of summed counts as a score and a batched function (rows of every resample counted)."""
    def score(predictions: np.ndarray, references: np.ndarray) -> float:
        return float(of_counts(counts(predictions, references).sum(axis=0)))

    def batched(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
        b, n = predictions.shape[:2]
        rows = counts(predictions.reshape(b * n, -1), references.reshape(b * n, -1))
        return of_counts(rows.reshape(b, n, -1).sum(axis=1))

    return score, batched


def tag_metrics(tags: tuple[str, ...]) -> dict[str, Metric]:
    """A tagger's metrics over its tag names: entity F1 (seqeval's micro F1 over entities) and word accuracy."""
    counts = _tag_counts(tags)
    made = {}
    for name, of_counts in (("entity_f1", _entity_f1), ("accuracy", _word_accuracy)):
        score, batched = _of_counted(counts, of_counts)
        made[name] = Metric(name, TAG_TASKS, score, batched, _counts=counts, _of_counts=of_counts, tags=tags)
    return made


# Question-answering metrics: a question's prediction is already its score against its right answers ----------

def _normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces (the official v1.1 script)."""
    import re
    import string

    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def squad_scores(prediction: str, answers: tuple[str, ...]) -> tuple[float, float]:
    """A predicted answer's exact match and F1 against its right answers (the best over them), as SQuAD v1.1's
    evaluation computes them."""
    from collections import Counter

    guess = _normalize_answer(prediction)
    exact = max(float(guess == _normalize_answer(a)) for a in answers)
    f1 = 0.0
    for answer in answers:
        predicted, true = guess.split(), _normalize_answer(answer).split()
        common = sum((Counter(predicted) & Counter(true)).values())
        if common:
            precision, recall = common / len(predicted), common / len(true)
            f1 = max(f1, 2 * precision * recall / (precision + recall))
    return exact, f1


def _mean(predictions: np.ndarray, references: np.ndarray) -> float:
    return float(np.mean(predictions))


QUESTION_METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric(name, QUESTION_TASKS, _mean, lambda p, r: p.mean(axis=-1), lambda p, r: p.astype(float))
    for name in ("exact_match", "squad_f1"))}


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", CLASS_TASKS, lambda p, r: float(_right(p, r).mean()),
           lambda p, r: _right(p, r).mean(axis=1), _right),
    Metric("f1_macro", CLASS_TASKS, _f1_score("macro"), _f1_batched("macro")),
    Metric("f1_micro", CLASS_TASKS, _f1_score("micro"), _f1_batched("micro")),
    Metric("f1_weighted", CLASS_TASKS, _f1_score("weighted"), _f1_batched("weighted")),
    Metric("mcc", CLASS_TASKS, _mcc_score, _mcc_batched),
    Metric("spearman", VALUE_TASKS, _correlation("spearman"), _spearman_batched),
    Metric("pearson", VALUE_TASKS, _correlation("pearson"), _pearson_batched),
)}


# The same names over label sets: accuracy is the share of rows whose every label is right.
LABEL_SET_METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", LABEL_SET_TASKS, lambda p, r: float(_exact(p, r).mean()),
           lambda p, r: _exact(p, r).mean(axis=-1), _exact),
    Metric("f1_micro", LABEL_SET_TASKS, _f1_score("micro"), _set_f1_batched("micro")),
    Metric("f1_macro", LABEL_SET_TASKS, _f1_score("macro"), _set_f1_batched("macro")),
    Metric("f1_weighted", LABEL_SET_TASKS, _f1_score("weighted"), _set_f1_batched("weighted")),
)}


@functools.cache
def _tag_metrics_of(tags: tuple[str, ...]) -> dict[str, Metric]:
    return tag_metrics(tags)


def _registry(task: str, tags: tuple[str, ...] = ()) -> dict[str, Metric]:
    if task in LABEL_SET_TASKS:
        return LABEL_SET_METRICS
    if task in TAG_TASKS:
        return _tag_metrics_of(tuple(tags))
    if task in QUESTION_TASKS:
        return QUESTION_METRICS
    return METRICS


def metric_named(name: str, task: str, tags: tuple[str, ...] = ()) -> Metric:
    """The built-in metric ``name`` in the form a ``task``'s predictions take (label sets: multi-hot rows; a
    tagger's: rows of ids of ``tags``)."""
    for registry in (_registry(task, tags), METRICS, LABEL_SET_METRICS, QUESTION_METRICS, _tag_metrics_of(tags)):
        if name in registry:  # the task's own form first; another task's, for metric_for to refuse by name
            return registry[name]
    raise KeyError(name)


def metric_for(name: str, task: str, tags: tuple[str, ...] = ()) -> Metric:
    """The metric ``name`` ("auto": the task's usual one), refused (naming --metric) when it does not fit the task."""
    if name == "auto":
        name = DEFAULT_METRICS[task]
    metric = metric_named(name, task, tags)
    if task not in metric.tasks:
        fits = [m.name for m in _registry(task, tags).values() if task in m.tasks]
        problem = f"does not fit a {task} model's predictions: use one of {fits}."
        raise ConfigError(f"metric={name!r} {problem}", setting="metric", value=name, problem=problem)
    return metric
