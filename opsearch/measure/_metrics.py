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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from opsearch.config import DEFAULT_METRICS, METRIC_TITLES
from opsearch.errors import ConfigError

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

    def __reduce__(self):
        """Sent to a trial's child process by name (its functions are closures, which do not pickle)."""
        return _named, (self.name, self.tasks == LABEL_SET_TASKS)

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


def _named(name: str, label_sets: bool = False) -> Metric:
    return (LABEL_SET_METRICS if label_sets else METRICS)[name]


# The same names over label sets: accuracy is the share of rows whose every label is right.
LABEL_SET_METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", LABEL_SET_TASKS, lambda p, r: float(_exact(p, r).mean()),
           lambda p, r: _exact(p, r).mean(axis=-1), _exact),
    Metric("f1_micro", LABEL_SET_TASKS, _f1_score("micro"), _set_f1_batched("micro")),
    Metric("f1_macro", LABEL_SET_TASKS, _f1_score("macro"), _set_f1_batched("macro")),
    Metric("f1_weighted", LABEL_SET_TASKS, _f1_score("weighted"), _set_f1_batched("weighted")),
)}


def metric_named(name: str, task: str) -> Metric:
    """The built-in metric ``name`` in the form a ``task``'s predictions take (label sets: multi-hot rows)."""
    registry = LABEL_SET_METRICS if task in LABEL_SET_TASKS else METRICS
    return registry.get(name, METRICS[name])


def metric_for(name: str, task: str) -> Metric:
    """The metric ``name`` ("auto": the task's usual one), refused (naming --metric) when it does not fit the task."""
    if name == "auto":
        name = DEFAULT_METRICS[task]
    registry = LABEL_SET_METRICS if task in LABEL_SET_TASKS else METRICS
    metric = metric_named(name, task)
    if task not in metric.tasks:
        fits = [m.name for m in registry.values() if task in m.tasks]
        problem = f"does not fit a {task} model's predictions: use one of {fits}."
        raise ConfigError(f"metric={name!r} {problem}", setting="metric", value=name, problem=problem)
    return metric
