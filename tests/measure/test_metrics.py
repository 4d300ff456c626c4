"""The metrics: classification_metrics and each study metric against scikit-learn and scipy, the paired bootstrap
of a whole metric's loss, and packed predictions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, precision_score, recall_score

from opsearch.errors import ConfigError
from opsearch.measure import METRICS, classification_metrics, metric_for, metric_loss_ci, pack_labels, unpack_labels


def _random_case(n_classes: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    references = rng.integers(0, n_classes, size=n)
    wrong = rng.random(n) < 0.3
    predictions = np.where(wrong, rng.integers(0, n_classes, size=n), references)
    return predictions, references


BINARY = [
    pytest.param(np.array([0, 1, 1, 0, 1]), np.array([0, 1, 0, 0, 1]), id="small"),
    pytest.param(np.array([1, 1, 1, 1]), np.array([1, 0, 1, 0]), id="always-positive"),
    pytest.param(np.array([0, 0, 0, 0]), np.array([1, 0, 1, 0]), id="never-positive"),
    pytest.param(*_random_case(2, 200, seed=0), id="random"),
]
MULTICLASS = [
    pytest.param(np.array([0, 1, 2, 2, 1]), np.array([0, 2, 2, 1, 1]), id="small"),
    pytest.param(np.array([0, 0, 0, 0]), np.array([0, 1, 2, 0]), id="one-predicted-class"),
    pytest.param(*_random_case(3, 300, seed=1), id="random-3"),
    pytest.param(*_random_case(5, 300, seed=2), id="random-5"),
]


@pytest.mark.parametrize(("predictions", "references"), BINARY)
def test_binary_metrics_match_sklearn(predictions: np.ndarray, references: np.ndarray) -> None:
    got = classification_metrics(predictions, references)
    expected = {
        "accuracy": accuracy_score(references, predictions),
        "f1": f1_score(references, predictions, zero_division=0),
        "precision": precision_score(references, predictions, zero_division=0),
        "recall": recall_score(references, predictions, zero_division=0),
    }
    assert got == pytest.approx(expected)
    assert all(isinstance(v, float) for v in got.values())


@pytest.mark.parametrize(("predictions", "references"), MULTICLASS)
def test_multiclass_metrics_are_macro_averaged_like_sklearn(predictions: np.ndarray, references: np.ndarray) -> None:
    got = classification_metrics(predictions, references)
    expected = {
        "accuracy": accuracy_score(references, predictions),
        "f1": f1_score(references, predictions, average="macro", zero_division=0),
        "precision": precision_score(references, predictions, average="macro", zero_division=0),
        "recall": recall_score(references, predictions, average="macro", zero_division=0),
    }
    assert got == pytest.approx(expected)


def test_perfect_predictions_score_one() -> None:
    labels = np.array([0, 1, 2, 1, 0, 2])
    assert classification_metrics(labels, labels) == pytest.approx(
        {"accuracy": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}
    )


# The study's metrics (opsearch.measure.METRICS) -----------------------------------------------------------------

SKLEARN = {
    "accuracy": lambda p, r: accuracy_score(r, p),
    "f1_macro": lambda p, r: f1_score(r, p, average="macro", zero_division=0),
    "f1_micro": lambda p, r: f1_score(r, p, average="micro", zero_division=0),
    "f1_weighted": lambda p, r: f1_score(r, p, average="weighted", zero_division=0),
    "mcc": lambda p, r: matthews_corrcoef(r, p),
}
SCIPY = {"spearman": lambda p, r: stats.spearmanr(p, r).statistic,
         "pearson": lambda p, r: stats.pearsonr(p, r).statistic}


@pytest.mark.parametrize("name", sorted(SKLEARN))
@pytest.mark.parametrize("classes", [2, 3, 5])
def test_each_class_metric_and_its_batched_form_equal_sklearn(name: str, classes: int) -> None:
    """The reported value is scikit-learn's, and the bootstrap's batched form gives the same on every resample,
    classes missing from a resample included."""
    metric = METRICS[name]
    rng = np.random.default_rng(classes)
    predictions, references = _random_case(classes, 60, seed=classes)
    assert metric.score(predictions, references) == pytest.approx(SKLEARN[name](predictions, references))
    rows = rng.integers(0, 60, size=(40, 12))  # small resamples: some lack a class on one side or both
    expected = [SKLEARN[name](predictions[r], references[r]) for r in rows]
    np.testing.assert_allclose(metric.batched(predictions[rows], references[rows]), expected, atol=1e-12)


@pytest.mark.parametrize("name", sorted(SCIPY))
def test_each_value_metric_and_its_batched_form_equal_scipy(name: str) -> None:
    metric = METRICS[name]
    rng = np.random.default_rng(7)
    references = rng.integers(0, 6, 80).astype(float)  # a 0-5 rating: many ties, as STS-B's
    predictions = references + rng.normal(0, 1.5, 80)
    assert metric.score(predictions, references) == pytest.approx(SCIPY[name](predictions, references))
    rows = rng.integers(0, 80, size=(30, 80))
    expected = [SCIPY[name](predictions[r], references[r]) for r in rows]
    np.testing.assert_allclose(metric.batched(predictions[rows], references[rows]), expected, atol=1e-12)


def test_only_accuracy_decomposes_and_its_per_row_mean_is_the_metric() -> None:
    predictions, references = _random_case(3, 200, seed=3)
    assert [m.name for m in METRICS.values() if m.decomposes] == ["accuracy"]
    accuracy = METRICS["accuracy"]
    assert accuracy.per_row(predictions, references).mean() == accuracy.score(predictions, references)
    assert accuracy.why_no_early_stop() == ""
    assert "not a mean of per-row scores" in METRICS["f1_macro"].why_no_early_stop()
    with pytest.raises(ValueError, match="not a mean of per-row scores"):
        METRICS["mcc"].per_row(predictions, references)


def test_a_metric_that_does_not_fit_the_task_is_refused_naming_the_setting() -> None:
    assert metric_for("auto", "classification").name == "accuracy"
    assert metric_for("auto", "regression").name == "spearman"
    assert metric_for("f1_macro", "embedding").name == "f1_macro"
    with pytest.raises(ConfigError) as info:
        metric_for("spearman", "classification")
    assert info.value.setting == "metric" and "accuracy" in str(info.value) and "f1_macro" in str(info.value)
    with pytest.raises(ConfigError, match="spearman"):
        metric_for("mcc", "regression")


def _population_case(name: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fp32's and a trial's predictions and the labels of ``n`` rows: an imbalanced 3-class problem (or a rating),
    the trial changing a few percent of fp32's answers."""
    if name in SCIPY:
        labels = rng.normal(size=n)
        fp32 = labels + rng.normal(0, 0.6, n)
        return fp32, fp32 + rng.normal(0, 0.25, n) * (rng.random(n) < 0.3), labels
    labels = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    fp32 = np.where(rng.random(n) < 0.8, labels, rng.integers(0, 3, n))
    return fp32, np.where(rng.random(n) < 0.06, rng.integers(0, 3, n), fp32), labels


@pytest.mark.parametrize("name", ["f1_macro", "mcc", "spearman"])
def test_the_whole_metric_bootstrap_covers_the_true_loss_in_simulation(name: str) -> None:
    """Samples of 400 rows from a population whose loss is known: the paired 95% interval holds it at least 90% of the
    time (nominal 95%)."""
    metric, rng = METRICS[name], np.random.default_rng(11)
    fp32, trial, labels = _population_case(name, rng, 200_000)
    truth = metric.score(fp32, labels) - metric.score(trial, labels)
    assert abs(truth) > 0.002  # a real loss, not a trivial zero
    sims, covered = 100, 0
    for i in range(sims):
        rows = rng.integers(0, len(labels), 400)
        low, high = metric_loss_ci(metric, fp32[rows], trial[rows], labels[rows], resamples=500, seed=i)
        covered += low <= truth <= high
    assert covered / sims >= 0.90


def test_a_whole_metric_loss_with_no_changed_prediction_is_exactly_zero() -> None:
    predictions, references = _random_case(3, 100, seed=5)
    assert metric_loss_ci(METRICS["f1_macro"], predictions, predictions.copy(), references) == (0.0, 0.0)


def test_numbers_pack_as_float32_and_rows_never_evaluated_come_back_as_nan() -> None:
    values = np.array([0.25, -1.5, np.nan, 3.0])
    back = unpack_labels(pack_labels(values))
    assert back.dtype == np.float64 and np.isnan(back[2])
    np.testing.assert_array_equal(back[[0, 1, 3]], values[[0, 1, 3]])
    ids = unpack_labels(pack_labels(np.array([0, 2, 1])))
    assert ids.dtype == np.int64 and ids.tolist() == [0, 2, 1]


@pytest.mark.parametrize("name", ["accuracy", "f1_micro", "f1_macro", "f1_weighted"])
def test_each_label_set_metric_and_its_batched_form_equal_sklearn(name: str) -> None:
    """Multi-hot rows: scikit-learn's multilabel metrics (accuracy is the share of rows whose every label is right),
    the batched form equal on resamples, labels missing from a resample included."""
    metric = metric_for(name, "multi-label")
    rng = np.random.default_rng(3)
    references = (rng.random((60, 4)) < [0.5, 0.3, 0.1, 0.02]).astype(np.int64)
    predictions = np.where(rng.random((60, 4)) < 0.15, 1 - references, references)
    expected_of = {"accuracy": lambda p, r: accuracy_score(r, p),
                   **{n: (lambda p, r, a=n[3:]: f1_score(r, p, average=a, zero_division=0))
                      for n in ("f1_micro", "f1_macro", "f1_weighted")}}[name]
    assert metric.score(predictions, references) == pytest.approx(expected_of(predictions, references))
    rows = rng.integers(0, 60, size=(30, 10))
    np.testing.assert_allclose(metric.batched(predictions[rows], references[rows]),
                               [expected_of(predictions[r], references[r]) for r in rows], atol=1e-12)
    assert metric.decomposes == (name == "accuracy")


def test_label_sets_pack_a_byte_per_label_and_rows_never_evaluated_come_back_marked() -> None:
    from opsearch.measure import evaluated

    rows = np.array([[1, 0, 1], [0, 0, 0], [255, 255, 255]])
    back = unpack_labels(pack_labels(rows))
    np.testing.assert_array_equal(back, rows)
    assert evaluated(back).tolist() == [True, True, False]
    assert metric_for("auto", "multi-label").name == "f1_micro"
    with pytest.raises(ConfigError, match="does not fit a multi-label"):
        metric_for("mcc", "multi-label")


# A tagger's metrics: seqeval's reading of IOB tags ------------------------------------------------------------

TAG_NAMES = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def _tag_case(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 2 to 9 tags (padded), some predictions wrong at random: I- after O, types mixed, B- inside."""
    from opsearch.source import TAG_PAD

    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 10, size=rows)
    truth = np.full((rows, lengths.max()), TAG_PAD)
    guess = truth.copy()
    for i, n in enumerate(lengths):
        truth[i, :n] = rng.integers(0, len(TAG_NAMES), size=n)
        guess[i, :n] = np.where(rng.random(n) < 0.25, rng.integers(0, len(TAG_NAMES), size=n), truth[i, :n])
    return guess, truth


def _names(rows: np.ndarray) -> list[list[str]]:
    from opsearch.source import TAG_PAD

    return [[TAG_NAMES[t] for t in row if t != TAG_PAD] for row in rows]


def test_entity_f1_and_word_accuracy_and_their_batched_forms_equal_seqeval() -> None:
    from seqeval.metrics import accuracy_score as seqeval_accuracy
    from seqeval.metrics import f1_score as seqeval_f1

    guess, truth = _tag_case(120, seed=3)
    entity, words = metric_for("entity_f1", "token-classification", TAG_NAMES), metric_for(
        "accuracy", "token-classification", TAG_NAMES)
    assert entity.score(guess, truth) == pytest.approx(seqeval_f1(_names(truth), _names(guess)))
    assert words.score(guess, truth) == pytest.approx(seqeval_accuracy(_names(truth), _names(guess)))
    rows = np.random.default_rng(0).integers(0, len(truth), size=(4, len(truth)))
    expected = [seqeval_f1(_names(truth[r]), _names(guess[r])) for r in rows]
    assert entity.batched(guess[rows], truth[rows]) == pytest.approx(expected)
    assert not entity.decomposes and "not a mean of per-row scores" in entity.why_no_early_stop()
    with pytest.raises(ConfigError, match="metric='entity_f1' does not fit a classification model"):
        metric_for("entity_f1", "classification")


def test_a_tagger_loss_interval_resamples_counts_made_once_and_equals_resampling_the_tags() -> None:
    import dataclasses

    from opsearch.source import TAG_PAD

    reference, truth = _tag_case(150, seed=4)
    rng = np.random.default_rng(1)
    changed = (rng.random(truth.shape) < 0.2) & (truth != TAG_PAD)
    candidate = np.where(changed, rng.integers(0, len(TAG_NAMES), size=truth.shape), reference)
    entity = metric_for("entity_f1", "token-classification", TAG_NAMES)
    fast = metric_loss_ci(entity, reference, candidate, truth, resamples=300, seed=2)
    slow = metric_loss_ci(dataclasses.replace(entity, _counts=None), reference, candidate, truth, resamples=300,
                          seed=2)
    assert fast == pytest.approx(slow)
    assert fast[0] < entity.score(reference, truth) - entity.score(candidate, truth) < fast[1]


def test_a_tagger_metric_goes_to_a_trial_process_with_its_tag_names() -> None:
    import pickle

    entity = metric_for("entity_f1", "token-classification", TAG_NAMES)
    copy = pickle.loads(pickle.dumps(entity))
    guess, truth = _tag_case(30, seed=6)
    assert copy.tags == TAG_NAMES and copy.score(guess, truth) == entity.score(guess, truth)


@pytest.mark.parametrize(("prediction", "answers", "exact", "f1"), [
    ("Denver Broncos", ("Denver Broncos", "The Denver Broncos"), 1.0, 1.0),
    ("the Denver Broncos!", ("Denver Broncos",), 1.0, 1.0),  # articles, punctuation and case are not counted
    ("Broncos", ("Denver Broncos",), 0.0, 2 * (1 * 0.5) / 1.5),
    ("Carolina Panthers", ("Denver Broncos",), 0.0, 0.0),
    ("", ("Denver Broncos",), 0.0, 0.0),
    ("in Santa Clara, California", ("Santa Clara", "Levi's Stadium"), 0.0, 2 * (0.5 * 1) / 1.5),
])
def test_squad_scores_follow_the_official_v1_1_evaluation(prediction, answers, exact, f1) -> None:
    from opsearch.measure import squad_scores

    assert squad_scores(prediction, answers) == pytest.approx((exact, f1))
