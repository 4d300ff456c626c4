from __future__ import annotations

import numpy as np
import pytest

from opsearch.errors import TrialFailed
from opsearch.measure import ClassificationTask, EmbeddingTask, LinearProbe


class FakeSession:
    """Returns preset outputs, one per run, the way an ONNX Runtime session would."""

    def __init__(self, outputs: list[np.ndarray], inputs=("input_ids", "attention_mask")) -> None:
        self.outputs, self.inputs = list(outputs), inputs

    def get_inputs(self):
        return [type("Input", (), {"name": n}) for n in self.inputs]

    def run(self, names, feed):
        assert set(feed) <= set(self.inputs)
        return [self.outputs.pop(0)]


def _feeds(n: int) -> list[dict[str, np.ndarray]]:
    return [{"input_ids": np.ones((1, 3), np.int64), "attention_mask": np.ones((1, 3), np.int64),
             "token_type_ids": np.zeros((1, 3), np.int64)} for _ in range(n)]


def test_classification_uses_the_argmax_of_logits() -> None:
    logits = [np.array([[2.0, 1.0]]), np.array([[0.0, 3.0]]), np.array([[0.5, 0.4]])]
    task = ClassificationTask(_feeds(3), np.array([0, 1, 1]))
    evaluation = task.evaluate(FakeSession(logits))
    assert evaluation.predictions.tolist() == [0, 1, 0]
    assert evaluation.accuracy == pytest.approx(2 / 3)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_outputs_fail_the_trial(bad: float) -> None:
    task = ClassificationTask(_feeds(2), np.array([0, 1]))
    with pytest.raises(TrialFailed, match="non-finite"):
        task.evaluate(FakeSession([np.array([[1.0, 0.0]]), np.array([[bad, 0.0]])]))


def test_embedding_task_scores_through_the_probe_and_reports_cosine() -> None:
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    probe = LinearProbe.fit(x, np.array([0, 1, 0, 1]))
    hidden = [np.array([[[1.0, 0.0]] * 3]), np.array([[[0.0, 1.0]] * 3])]
    task = EmbeddingTask(_feeds(2), np.array([0, 1]), probe=probe, pooling="mean", normalize=False)
    fp32 = task.evaluate(FakeSession(hidden))
    assert fp32.accuracy == 1.0 and fp32.metrics["cosine_to_fp32"] == pytest.approx(1.0)
    rotated = [np.array([[[1.0, 0.5]] * 3]), np.array([[[0.0, 1.0]] * 3])]
    q = task.evaluate(FakeSession(rotated))
    assert q.metrics["cosine_to_fp32"] == pytest.approx((1 / np.sqrt(1.25) + 1) / 2)
