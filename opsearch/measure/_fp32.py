"""fp32's answers on the evaluation rows, and every judgement made against them: a trial's score in the study's
metric and its loss paired with fp32 on the rows it answered (with the loss's interval), and the "at chance" rules,
for the fp32 model (is it good enough to measure losses against?) and for a quantized one (is it broken?).

The baseline stores fp32's answer and the label of every evaluation row, packed (:func:`pack_labels`); a trial
stores its own answers the same way, not evaluated where early stopping left a row unanswered. (In stored records,
``accuracy`` and ``accuracy_loss`` are the study's metric and its loss, whichever metric that is.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from opsearch.config import METRIC_TITLES
from opsearch.errors import StudyError
from opsearch.measure._accuracy import Evaluation, evaluated, unpack_labels
from opsearch.measure._metrics import (
    CLASS_TASKS,
    LABEL_SET_METRICS,
    LABEL_SET_TASKS,
    METRICS,
    QUESTION_TASKS,
    TAG_TASKS,
    Metric,
)
from opsearch.measure._screen import AccuracyScreen
from opsearch.measure._statistics import accuracy_loss_ci, metric_loss_ci

# A quantized model whose accuracy is within this of always answering the majority class is broken.
CHANCE_MARGIN = 0.005
# An fp32 model must beat the majority class by this much for accuracy losses to mean anything.
BASELINE_MARGIN = 0.02
# A regressor's fp32 predictions must correlate with the labels at least this much for losses to mean anything.
MIN_CORRELATION = 0.1
# A tagger's entity F1, an answerer's SQuAD F1, at fp32: at least this.
MIN_SPAN_SCORE = 0.1


def majority_accuracy(labels: np.ndarray) -> float:
    """The accuracy of always answering the most frequent label."""
    return float(np.bincount(np.asarray(labels)).max() / len(labels))


def check_fp32_accuracy(accuracy: float, labels: np.ndarray) -> float:
    """Refuse an fp32 model no better than the majority class (losses against it would mean nothing); return the
    majority class's accuracy."""
    majority = majority_accuracy(labels)
    if accuracy <= majority + BASELINE_MARGIN:
        raise StudyError(
            f"the fp32 model scores {accuracy:.4f} on {len(labels)} evaluation rows, no better than always "
            f"answering the majority class ({majority:.4f}): accuracy losses against it would mean nothing. "
            "Check that the dataset's labels match the model's classes (--label-map, --label-column), and that "
            "the model is trained for this task.")
    return majority


def check_fp32(evaluation: Evaluation, labels: np.ndarray, task: str) -> float | None:
    """Refuse an fp32 model too poor to measure losses against (see :func:`check_fp32_accuracy`; a regressor: its
    predictions barely correlate with the labels). The majority class's accuracy (None for a regressor)."""
    if task in CLASS_TASKS:
        return check_fp32_accuracy(evaluation.metrics["accuracy"], labels)
    if task in LABEL_SET_TASKS:
        # Answering each label's more frequent value on every row: what a model that learned nothing scores.
        constant = np.tile((labels.mean(axis=0) > 0.5).astype(np.int64), (len(labels), 1))
        floor = LABEL_SET_METRICS["f1_micro"].score(constant, labels)
        f1 = LABEL_SET_METRICS["f1_micro"].score(evaluation.predictions, labels)
        if f1 <= floor + BASELINE_MARGIN:
            raise StudyError(
                f"the fp32 model scores {f1:.4f} micro F1 on {len(labels)} evaluation rows, no better than answering "
                f"each label's more frequent value ({floor:.4f}): losses against it would mean nothing. Check that "
                "the dataset's labels match the model's (--label-column, --label-map), and that the model is "
                "trained for this task.")
        return None
    if task in TAG_TASKS + QUESTION_TASKS:
        # A tagger that finds no entity, an answerer that finds no answer: what a model that learned nothing scores.
        name, check = (("entity_f1", "the dataset's tags match the model's (--label-column, --label-map)")
                       if task in TAG_TASKS else
                       ("squad_f1", "the columns are the question, its context and its answers (--text-column, "
                        "--text-pair-column, --label-column)"))
        score = evaluation.metrics[name]
        if score < MIN_SPAN_SCORE:
            raise StudyError(
                f"the fp32 model scores {score:.4f} {METRIC_TITLES[name]} on {len(labels)} evaluation rows, under "
                f"{MIN_SPAN_SCORE}: losses against it would mean nothing. Check that {check}, and that the model is "
                "trained for this task.")
        return None
    correlation = METRICS["spearman"].score(evaluation.predictions, labels)
    if correlation < MIN_CORRELATION:
        raise StudyError(
            f"the fp32 model's predictions correlate {correlation:.3f} (Spearman) with the labels of {len(labels)} "
            f"evaluation rows, under {MIN_CORRELATION}: losses against it would mean nothing. Check --label-column "
            "and that the model is trained for this task.")
    return None


@dataclass(frozen=True)
class Fp32Answers:
    """fp32's score in the study's metric and, per evaluation row, the label and fp32's prediction (None when the
    baseline kept no per-row answers: then no interval, partial score or early stopping)."""

    accuracy: float  # fp32's score in ``metric``
    labels: np.ndarray | None = field(default=None, repr=False)
    predictions: np.ndarray | None = field(default=None, repr=False)
    majority: float | None = None  # always answering the majority class (None: not known, or not a class task)
    metric: Metric = METRICS["accuracy"]

    @classmethod
    def of_baseline(cls, baseline: dict, *, majority: float | None, metric: Metric = METRICS["accuracy"]
                    ) -> Fp32Answers:
        """From a study's stored baseline (``StudyRecord.baseline``), its majority-class accuracy and metric."""
        accuracy = float(baseline["metrics"][metric.name])
        if baseline["predictions"] is None:  # not kept
            return cls(accuracy, majority=majority, metric=metric)
        return cls(accuracy, unpack_labels(baseline["labels"]), unpack_labels(baseline["predictions"]), majority,
                   metric)

    @property
    def scores(self) -> np.ndarray | None:
        """fp32's per-row scores (a metric that decomposes, with per-row answers kept; else None)."""
        if self.predictions is None or not self.metric.decomposes:
            return None
        return self.metric.per_row(self.predictions, self.labels)

    @property
    def chance(self) -> float | None:
        """An accuracy at or below this is broken (None: not checked)."""
        return None if self.majority is None else self.majority + CHANCE_MARGIN

    def at_chance(self, metrics: dict[str, float]) -> bool:
        """Whether a trial's metrics put it at chance level (its accuracy; a task without classes never is)."""
        return self.chance is not None and "accuracy" in metrics and metrics["accuracy"] <= self.chance

    def at_chance_reason(self, metrics: dict[str, float]) -> str:
        return (f"accuracy {metrics['accuracy']:.4f} is at chance level (always answering the majority class "
                f"scores {self.majority:.4f}): the quantized model is broken, not merely less accurate")

    def loss(self, score: float) -> float:
        """fp32's score minus ``score``: the loss of a trial that answered every row."""
        return self.accuracy - score

    def partial(self, predictions: str) -> tuple[float, float]:
        """The score on the rows a trial answered, and its loss against fp32's answers on the same rows."""
        seen, answers = self._answered(predictions)
        truth = self.labels[seen]
        score = self.metric.score(answers, truth)
        return score, self.metric.score(self.predictions[seen], truth) - score

    def loss_of(self, predictions: np.ndarray) -> float:
        """The loss of a trial's unpacked predictions, on the rows it answered."""
        seen = evaluated(predictions)
        truth = self.labels[seen]
        return self.metric.score(self.predictions[seen], truth) - self.metric.score(predictions[seen], truth)

    def loss_ci(self, predictions: str, *, seed: int) -> list[float] | None:
        """The loss's paired 95% interval on the rows answered (None: no per-row answers on either side): of the
        per-row score differences where the metric decomposes, else a paired bootstrap of the whole metric."""
        if not predictions or self.predictions is None:
            return None
        seen, answers = self._answered(predictions)
        if self.metric.decomposes:
            return list(accuracy_loss_ci(self.scores[seen], self.metric.per_row(answers, self.labels[seen]),
                                         seed=seed))
        return list(metric_loss_ci(self.metric, self.predictions[seen], answers, self.labels[seen], seed=seed))

    def screen(self, limit: float | None, *, seed: int) -> AccuracyScreen | None:
        """What early stopping checks an evaluation against (None: no per-row answers to check with). A metric that
        does not decompose is never checked against the limit (only for a broken model, where classes are)."""
        if self.predictions is None:
            return None
        if not self.metric.decomposes:
            limit = None
        return AccuracyScreen(self.predictions, limit, self.chance, seed=seed, metric=self.metric)

    def _answered(self, predictions: str) -> tuple[np.ndarray, np.ndarray]:
        answers = unpack_labels(predictions)
        seen = evaluated(answers)
        return seen, answers[seen]
