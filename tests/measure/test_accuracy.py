from __future__ import annotations

import numpy as np
import pytest

from opsearch.errors import TrialFailed
from opsearch.measure import METRICS, ClassificationTask, EmbeddingTask, LinearProbe, RegressionTask


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
    assert evaluation.score == evaluation.metrics["accuracy"] == pytest.approx(2 / 3)


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
    assert fp32.score == 1.0 and fp32.metrics["cosine_to_fp32"] == pytest.approx(1.0)
    rotated = [np.array([[[1.0, 0.5]] * 3]), np.array([[[0.0, 1.0]] * 3])]
    q = task.evaluate(FakeSession(rotated))
    assert q.metrics["cosine_to_fp32"] == pytest.approx((1 / np.sqrt(1.25) + 1) / 2)


def _sentences(n: int) -> list[str]:
    from conftest import FILLER, NEGATIVE, POSITIVE

    rng = np.random.default_rng(0)
    words = [*POSITIVE, *NEGATIVE, *FILLER]
    return [" ".join(rng.choice(words, size=rng.integers(3, 14))) for _ in range(n)]


def test_batched_evaluation_changes_a_dynamically_quantized_models_answers(tiny_onnx, tmp_path) -> None:
    """Dynamic quantization scales activations per tensor, so per batch: the logits in batches of 8 differ from
    those at batch 1 far more than fp32's do (padding only). Accuracy must be evaluated as the workload runs."""
    from transformers import AutoTokenizer

    from opsearch.measure import ThreadSettings, encode, make_session
    from opsearch.quantize import QuantRecipe, quantize

    tokenizer = AutoTokenizer.from_pretrained(tiny_onnx.folder)
    texts = _sentences(48)
    labels = np.zeros(len(texts), dtype=np.int64)
    q = quantize(QuantRecipe("dynamic", ("MatMul",)), fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "q")
    threads = ThreadSettings.resolve(1, 1, False)

    def logits(path, batch: int) -> np.ndarray:
        task = ClassificationTask(encode(tokenizer, texts, max_length=64, batch_size=batch), labels)
        return task.evaluate(make_session(path, threads)).outputs

    fp32_gap = np.abs(logits(tiny_onnx.onnx_path, 8) - logits(tiny_onnx.onnx_path, 1)).max()
    int8_gap = np.abs(logits(q.path, 8) - logits(q.path, 1)).max()
    assert logits(q.path, 8).shape == (len(texts), 2)  # every row answered once, in order
    assert int8_gap > 10 * max(fp32_gap, 1e-6)


def test_batched_feeds_keep_the_order_and_pad_each_batch_to_its_longest(tiny_onnx) -> None:
    from transformers import AutoTokenizer

    from opsearch.measure import encode

    tokenizer = AutoTokenizer.from_pretrained(tiny_onnx.folder)
    texts = ["good", "the film was very good and lovely", "bad", "sad film", "dull"]
    feeds = encode(tokenizer, texts, max_length=64, batch_size=2)
    assert [f["input_ids"].shape[0] for f in feeds] == [2, 2, 1]
    single = encode(tokenizer, texts, max_length=64)
    assert feeds[0]["input_ids"].shape[1] == single[1]["input_ids"].shape[1]  # padded to the longer text
    assert np.array_equal(feeds[2]["input_ids"], single[4]["input_ids"])  # a batch of one is unpadded


def test_a_regressor_answers_its_one_output_and_reports_its_metric() -> None:
    outputs = [np.array([[0.5]]), np.array([[2.0]]), np.array([[1.0]]), np.array([[3.5]])]
    task = RegressionTask(_feeds(4), np.array([0.0, 1.5, 2.0, 3.0]), metric=METRICS["pearson"])
    evaluation = task.evaluate(FakeSession(outputs))
    assert evaluation.predictions.tolist() == [0.5, 2.0, 1.0, 3.5]
    assert evaluation.metrics["spearman"] == pytest.approx(0.8)  # one swapped pair of ranks
    assert evaluation.score == evaluation.metrics["pearson"]
    assert evaluation.metrics["mse"] == pytest.approx(np.mean([0.25, 0.25, 1.0, 0.25]))


def test_a_regressor_with_two_outputs_fails_the_trial_naming_the_task_flag() -> None:
    task = RegressionTask(_feeds(1), np.array([1.0]))
    with pytest.raises(TrialFailed, match="one number per text.*--task classification"):
        task.evaluate(FakeSession([np.array([[0.1, 0.9]])]))


def test_the_studys_metric_is_among_a_classifiers_metrics() -> None:
    task = ClassificationTask(_feeds(4), np.array([0, 1, 1, 0]), metric=METRICS["mcc"])
    evaluation = task.evaluate(FakeSession([np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]),
                                            np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]])]))
    assert evaluation.metric == "mcc" and evaluation.score == pytest.approx(METRICS["mcc"].score(
        np.array([0, 1, 0, 0]), np.array([0, 1, 1, 0])))
