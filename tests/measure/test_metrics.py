"""opsearch.measure.classification_metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from opsearch.measure import classification_metrics


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
