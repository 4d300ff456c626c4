"""Sequential accuracy: whole evaluations unchanged, early stops when surely over the limit or broken, and the
error rate at the limit held to alpha on injected predictions."""

from __future__ import annotations

import numpy as np
import pytest

from opsearch.measure import (
    ALPHA,
    LOOKS,
    NOT_EVALUATED,
    AccuracyScreen,
    ClassificationTask,
    Evaluation,
    evaluate_screened,
    feed_order,
)


class Injected:
    """A session answering each row with a prediction chosen beforehand (its logits), one feed per row."""

    def __init__(self, predictions: np.ndarray) -> None:
        self.predictions = predictions
        self.runs = 0

    def get_inputs(self):
        class Input:
            name = "row"
        return [Input()]

    def run(self, outputs, feed):
        self.runs += 1
        rows = feed["row"].ravel()
        logits = np.zeros((len(rows), 2), dtype=np.float32)
        logits[np.arange(len(rows)), self.predictions[rows]] = 1.0
        return [logits]


def task_for(labels: np.ndarray, batch: int = 1) -> ClassificationTask:
    feeds = [{"row": np.arange(i, min(i + batch, len(labels)))[None, :].T} for i in range(0, len(labels), batch)]
    return ClassificationTask(feeds, labels)


def trial_at(loss: float, *, n: int, rng: np.random.Generator, discordant: float = 0.04):
    """fp32's predictions, labels and a trial's predictions whose expected loss against fp32 is exactly ``loss``: each
    row is "only fp32 right" at rate p_b, "only the trial right" at p_c = p_b - loss, else both right or both wrong."""
    discordant = max(discordant, loss)
    p_b = (discordant + loss) / 2
    p_c = p_b - loss
    u = rng.random(n)
    both_right = (u >= p_b + p_c) & (rng.random(n) < 0.9)
    fp32 = (u < p_b) | both_right
    trial_right = ((u >= p_b) & (u < p_b + p_c)) | both_right
    labels = rng.integers(0, 2, n)
    return np.where(fp32, labels, 1 - labels), labels, np.where(trial_right, labels, 1 - labels)


class Unscored(ClassificationTask):
    """The metrics of a whole evaluation left out: the error-rate test runs hundreds and looks at stops only."""

    def evaluation(self, outputs):
        return Evaluation({}, self.predict(outputs), outputs)


def test_a_whole_evaluation_is_what_task_evaluate_gives():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    predictions = np.where(rng.random(300) < 0.85, labels, 1 - labels)
    task = task_for(labels, batch=4)
    screen = AccuracyScreen(labels, limit=0.5, chance=0.1, seed=3)
    screened = evaluate_screened(task, Injected(predictions), screen)
    whole = task.evaluate(Injected(predictions))
    assert not screened.stopped and screened.rows == 300
    assert screened.evaluation.metrics == whole.metrics
    np.testing.assert_array_equal(screened.predictions, whole.predictions)
    np.testing.assert_array_equal(screened.evaluation.outputs, whole.outputs)


def test_a_trial_far_over_the_limit_stops_after_the_first_look_and_records_what_it_saw():
    rng = np.random.default_rng(1)
    fp32, labels, predictions = trial_at(0.15, n=872, rng=rng)
    session = Injected(predictions)
    screened = evaluate_screened(task_for(labels), session, AccuracyScreen(fp32, limit=0.01, chance=None))
    assert screened.stopped and not screened.broken
    assert screened.rows == session.runs < 872 / 2
    assert screened.reason == f"over the limit after {screened.rows} of 872 rows"
    seen = screened.predictions != NOT_EVALUATED
    assert seen.sum() == screened.rows
    np.testing.assert_array_equal(screened.predictions[seen], predictions[seen])
    # The rows come in the study's shuffled order, not the file's.
    order = feed_order([1] * 872, 0)
    assert set(np.flatnonzero(seen)) == set(order[:screened.rows].tolist())


def test_no_limit_no_stop_however_much_is_lost():
    rng = np.random.default_rng(2)
    fp32, labels, predictions = trial_at(0.2, n=600, rng=rng)
    screened = evaluate_screened(task_for(labels), Injected(predictions),
                                 AccuracyScreen(fp32, limit=None, chance=0.3))
    assert not screened.stopped


def test_a_broken_trial_stops_at_chance():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 800)
    screened = evaluate_screened(task_for(labels), Injected(np.zeros(800, dtype=int)),
                                 AccuracyScreen(labels, limit=None, chance=0.62))
    assert screened.stopped and screened.broken
    assert screened.reason.startswith("at chance level after ")


def test_too_few_rows_are_evaluated_whole():
    rng = np.random.default_rng(4)
    fp32, labels, predictions = trial_at(0.5, n=90, rng=rng)
    screened = evaluate_screened(task_for(labels), Injected(predictions),
                                 AccuracyScreen(fp32, limit=0.0, chance=None))
    assert not screened.stopped and screened.rows == 90


@pytest.mark.parametrize("discordant", [0.02, 0.08])
def test_a_trial_exactly_at_the_limit_stops_early_at_most_at_the_stated_rate(discordant):
    """Over 400 injected trials whose loss is exactly the limit, early stops stay within alpha (5%); a trial three
    points over it is stopped most of the time: the control is not bought by never stopping."""
    rng = np.random.default_rng(5)
    limit, n, sims = 0.01, 872, 400

    def stop_rate(loss: float) -> float:
        stops = 0
        for _ in range(sims):
            fp32, labels, predictions = trial_at(loss, n=n, rng=rng, discordant=discordant)
            task = Unscored(task_for(labels, batch=8).feeds, labels)
            stops += evaluate_screened(task, Injected(predictions),
                                       AccuracyScreen(fp32, limit=limit, chance=None,
                                                      seed=int(rng.integers(1 << 30)))).stopped
        return stops / sims

    assert stop_rate(limit) <= ALPHA
    assert stop_rate(limit + 0.05) > 0.5
    assert LOOKS == 8
