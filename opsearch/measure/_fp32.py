"""fp32's answers on the evaluation rows, and every judgement made against them: a trial's accuracy and its loss
paired with fp32 on the rows it answered (with the loss's interval), and the "at chance" rules, for the fp32 model
(is it good enough to measure losses against?) and for a quantized one (is it broken?).

The baseline stores fp32's answer and the label of every evaluation row, packed (:func:`pack_labels`); a trial
stores its own answers the same way, ``NOT_EVALUATED`` where early stopping left a row unanswered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from opsearch.errors import StudyError
from opsearch.measure._accuracy import NOT_EVALUATED, unpack_labels
from opsearch.measure._screen import AccuracyScreen
from opsearch.measure._statistics import accuracy_loss_ci

# A quantized model whose accuracy is within this of always answering the majority class is broken.
CHANCE_MARGIN = 0.005
# An fp32 model must beat the majority class by this much for accuracy losses to mean anything.
BASELINE_MARGIN = 0.02


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


@dataclass(frozen=True)
class Fp32Answers:
    """fp32's accuracy and, per evaluation row, the label and whether fp32 answered it right (``correct`` is None
    when the baseline kept no per-row answers: then no interval, partial accuracy or early stopping)."""

    accuracy: float
    labels: np.ndarray | None = field(default=None, repr=False)
    correct: np.ndarray | None = field(default=None, repr=False)
    majority: float | None = None  # always answering the majority class (None: not known)

    @classmethod
    def of_baseline(cls, baseline: dict, *, majority: float | None) -> Fp32Answers:
        """From a study's stored baseline (``StudyRecord.baseline``) and its majority-class accuracy."""
        accuracy = float(baseline["metrics"]["accuracy"])
        if baseline["predictions"] is None:  # not kept
            return cls(accuracy, majority=majority)
        labels = unpack_labels(baseline["labels"])
        return cls(accuracy, labels, unpack_labels(baseline["predictions"]) == labels, majority)

    @property
    def chance(self) -> float | None:
        """An accuracy at or below this is broken (None: not checked)."""
        return None if self.majority is None else self.majority + CHANCE_MARGIN

    def at_chance(self, accuracy: float) -> bool:
        return self.chance is not None and accuracy <= self.chance

    def at_chance_reason(self, accuracy: float) -> str:
        return (f"accuracy {accuracy:.4f} is at chance level (always answering the majority class scores "
                f"{self.majority:.4f}): the quantized model is broken, not merely less accurate")

    def loss(self, accuracy: float) -> float:
        """fp32's accuracy minus ``accuracy``: the loss of a trial that answered every row."""
        return self.accuracy - accuracy

    def partial(self, predictions: str) -> tuple[float, float]:
        """Accuracy on the rows a trial answered, and its loss paired with fp32's answers on the same rows."""
        seen, right = self._answered(predictions)
        return float(right.mean()), float(np.mean(self.correct[seen].astype(float) - right))

    def loss_ci(self, predictions: str, *, seed: int) -> list[float] | None:
        """The loss's paired 95% interval on the rows answered (None: no per-row answers on either side)."""
        if not predictions or self.correct is None:
            return None
        seen, right = self._answered(predictions)
        return list(accuracy_loss_ci(self.correct[seen], right, seed=seed))

    def screen(self, limit: float | None, *, seed: int) -> AccuracyScreen | None:
        """What early stopping checks an evaluation against (None: no per-row answers to check with)."""
        if self.correct is None:
            return None
        return AccuracyScreen(self.correct, limit, self.chance, seed=seed)

    def _answered(self, predictions: str) -> tuple[np.ndarray, np.ndarray]:
        ids = unpack_labels(predictions)
        seen = ids != NOT_EVALUATED
        return seen, ids[seen] == self.labels[seen]
