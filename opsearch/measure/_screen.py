"""Sequential accuracy: a trial's evaluation rows in chunks, stopped once the trial is surely over the limit or broken.

The evaluation's batches (the timed workload's, so each row's answer is the one a full evaluation gives) are
taken in one order per study, shuffled by its seed, and looked at after each eighth of the rows. At each look
but the last the trial stops when, on the rows evaluated so far:

- it is *over the limit*: the paired per-row loss against fp32 (fp32's row score minus the trial's: right minus
  right under accuracy) lies above ``max_accuracy_loss`` by a one-sided t-test at level alpha / 7; or
- it is *broken*: its accuracy lies at or below chance (the majority class's accuracy plus a margin), by a
  one-sided Wilson bound at the same level.

Seven looks at alpha / 7 each bound the chance that a trial whose loss is exactly at the limit stops early by
alpha = 2.5% (Bonferroni; the looks are not independent, so the true rate is lower). The whole evaluation calls
a trial over when its 95% interval's lower end is above the limit, at most 2.5% of the time for such a trial;
so, early or at the end, a trial exactly at the limit is called over at most 5% of the time, as without early
stopping it was at most 2.5%. A look needs ``MIN_ROWS`` rows; an evaluation set under about 115 rows is always
evaluated whole. The last look is the full evaluation, decided as every trial is (its 95% interval).

The limit is checked only for a metric that is the mean of per-row scores (accuracy): the t-test bounds the error of
such a mean. A whole-set metric (F1, MCC, a correlation) is never stopped for the limit; the broken check (where
the task has classes) reads accuracy, whatever the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from opsearch.measure._accuracy import ClassificationTask, EmbeddingTask, Evaluation, evaluated, not_evaluated
from opsearch.measure._metrics import METRICS, Metric
from opsearch.measure._sessions import rows_in
from opsearch.measure._statistics import surely_above, surely_at_most

LOOKS = 8
ALPHA = 0.025
MIN_ROWS = 100


@dataclass(frozen=True)
class AccuracyScreen:
    """What a trial's evaluation is checked against at each look: fp32's answers, scored by the study's metric."""

    reference: np.ndarray = field(repr=False)  # fp32's prediction of each evaluation row, in order
    limit: float | None  # max_accuracy_loss as a fraction; None: only a broken trial stops
    chance: float | None  # an accuracy at or below this is broken (majority class + margin); None: not checked
    seed: int = 0
    looks: int = LOOKS
    alpha: float = ALPHA
    min_rows: int = MIN_ROWS
    metric: Metric = METRICS["accuracy"]  # a metric that decomposes into per-row scores, when limit is set

    def loss(self, predictions: np.ndarray, labels: np.ndarray) -> float:
        """fp32's score minus a trial's, on the rows the trial answered."""
        seen = evaluated(predictions)
        return (self.metric.score(self.reference[seen], labels[seen])
                - self.metric.score(predictions[seen], labels[seen]))

    @property
    def level(self) -> float:
        """Each look's one-sided level: alpha shared by the looks before the last (Bonferroni)."""
        return self.alpha / max(1, self.looks - 1)


@dataclass(frozen=True)
class Screening:
    """A trial's evaluation, whole (``evaluation``) or stopped early (``reason``)."""

    predictions: np.ndarray = field(repr=False)  # per row, in order; not evaluated where it never got
    rows: int  # rows evaluated
    total: int
    evaluation: Evaluation | None = None  # the whole evaluation, as task.evaluate gives it; None: stopped early
    reason: str = ""  # why it stopped early ("over the limit after 300 of 872 rows")
    broken: bool = False  # stopped at chance level: the trial fails

    @property
    def stopped(self) -> bool:
        return self.evaluation is None


def feed_order(sizes: list[int], seed: int) -> np.ndarray:
    """The order the study takes its evaluation batches in: one shuffle per study, seeded."""
    return np.random.default_rng([seed, len(sizes), sum(sizes)]).permutation(len(sizes))


def evaluate_screened(task: ClassificationTask | EmbeddingTask, session, screen: AccuracyScreen | None,
                      *, on_chunk=lambda rows, total: None) -> Screening:
    """Evaluate ``task`` on ``session`` chunk by chunk (see the module's docstring); ``screen`` None: whole, in one
    go. A whole evaluation gives exactly what ``task.evaluate`` gives."""
    sizes = [rows_in(feed) for feed in task.feeds]
    total = sum(sizes)
    if screen is None:
        evaluation = task.evaluate(session)
        return Screening(evaluation.predictions, total, total, evaluation)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    order = feed_order(sizes, screen.seed)
    outputs: list[np.ndarray | None] = [None] * len(sizes)
    labels = np.asarray(task.labels)
    predictions = not_evaluated(labels)
    done, look = 0, 1
    for position, j in enumerate(order):
        outputs[j] = task.outputs(session, [task.feeds[j]])
        rows = slice(starts[j], starts[j] + sizes[j])
        predictions[rows] = task.predict(outputs[j])
        done += sizes[j]
        if position == len(order) - 1 or done < look * total / screen.looks:
            continue
        look = int(done * screen.looks // total) + 1
        on_chunk(done, total)
        reason, broken = _verdict(predictions, labels, screen, done, total)
        if reason:
            return Screening(predictions, done, total, reason=reason, broken=broken)
    evaluation = task.evaluation(np.concatenate(outputs, axis=0))
    return Screening(evaluation.predictions, total, total, evaluation)


def _verdict(predictions: np.ndarray, labels: np.ndarray, screen: AccuracyScreen, done: int,
             total: int) -> tuple[str, bool]:
    if done < screen.min_rows:
        return "", False
    seen = evaluated(predictions)
    where = f"after {done} of {total} rows"
    per_row = screen.metric.per_row if screen.limit is not None else None
    over = per_row is not None and surely_above(
        per_row(screen.reference[seen], labels[seen]) - per_row(predictions[seen], labels[seen]), screen.limit,
        alpha=screen.level)
    at_chance = point_at_chance = False
    if screen.chance is not None:
        right = predictions[seen] == labels[seen]
        at_chance = surely_at_most(int(right.sum()), len(right), screen.chance, alpha=screen.level)
        # Over the limit at an accuracy at chance is broken too: a whole evaluation decides that on the point.
        point_at_chance = right.mean() <= screen.chance
    if at_chance or (over and point_at_chance):
        return f"at chance level {where} (accuracy {right.mean():.4f})", True
    return (f"over the limit {where}", False) if over else ("", False)
