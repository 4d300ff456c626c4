"""What "accuracy" means for a model, and the metrics that measure it.

A task evaluates one ONNX session on the whole evaluation split and returns its metrics: a classifier's own
head, or an encoder's embeddings through a frozen probe. It fails the trial (never wins it) when the outputs
are not finite. The metrics are an ``evaluate`` module computed locally with scikit-learn
(``evaluate.load("accuracy")`` fetches its script from the hub), so they run on machines without the hub.
"""

from __future__ import annotations

import base64
import functools
import zlib
from dataclasses import dataclass, field

import numpy as np

from opsearch.errors import TrialFailed
from opsearch.measure._embedding import LinearProbe, embed, mean_cosine
from opsearch.measure._sessions import Feed, run_all


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    predictions: np.ndarray = field(repr=False)
    outputs: np.ndarray = field(repr=False)  # logits or embeddings, one row per evaluated text

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


class ClassificationTask:
    """The model's own classification head: argmax of its logits."""

    name = "classification"

    def __init__(self, feeds: list[Feed], labels: np.ndarray) -> None:
        self.feeds, self.labels = feeds, labels

    def outputs(self, session, feeds: list[Feed]) -> np.ndarray:
        """The logits of ``feeds`` (some of ``self.feeds``), one row per text; fails the trial when not finite."""
        logits = np.concatenate(run_all(session, feeds, "logits"), axis=0)
        _check_finite(logits, "logits")
        return logits

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return outputs.argmax(axis=1)

    def evaluation(self, outputs: np.ndarray) -> Evaluation:
        """The metrics of every evaluation row's outputs, in order."""
        predictions = self.predict(outputs)
        return Evaluation(classification_metrics(predictions, self.labels), predictions, outputs)

    def evaluate(self, session) -> Evaluation:
        return self.evaluation(self.outputs(session, self.feeds))


class EmbeddingTask:
    """Pooled sentence embeddings through a probe frozen on fp32 embeddings; also their cosine to fp32."""

    name = "embedding"

    def __init__(self, feeds: list[Feed], labels: np.ndarray, *, probe: LinearProbe, pooling: str,
                 normalize: bool, reference: np.ndarray | None = None) -> None:
        self.feeds, self.labels, self.probe = feeds, labels, probe
        self.pooling, self.normalize = pooling, normalize
        self.reference = reference  # fp32 embeddings of the evaluation split, for the cosine

    def outputs(self, session, feeds: list[Feed]) -> np.ndarray:
        """The pooled embeddings of ``feeds`` (some of ``self.feeds``); fails the trial when not finite."""
        vectors = embed(session, feeds, pooling=self.pooling, normalize=self.normalize)
        _check_finite(vectors, "embeddings")
        return vectors

    def embeddings(self, session) -> np.ndarray:
        return self.outputs(session, self.feeds)

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return self.probe.predict(outputs)

    def evaluation(self, outputs: np.ndarray) -> Evaluation:
        if self.reference is None:
            self.reference = outputs  # the first model evaluated is the fp32 one
        predictions = self.predict(outputs)
        metrics = classification_metrics(predictions, self.labels)
        metrics["cosine_to_fp32"] = mean_cosine(outputs, self.reference)
        return Evaluation(metrics, predictions, outputs)

    def evaluate(self, session) -> Evaluation:
        return self.evaluation(self.embeddings(session))


# In a trial's packed predictions, the rows its evaluation never reached (it stopped early: see ``measure.screen``).
NOT_EVALUATED = int(np.iinfo(np.uint16).max)


def pack_labels(values: np.ndarray) -> str:
    """Class ids (predictions, labels) as a short string for a study's storage: one byte per row (two past 255
    classes, or rows marked NOT_EVALUATED), zlib-compressed, base64. The 872 predictions of SST-2's validation
    split take about 250 characters."""
    values = np.asarray(values)
    if values.size and (values.min() < 0 or values.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"class ids must lie in 0..65535, not {values.min()}..{values.max()}")
    dtype = "u1" if not values.size or values.max() <= np.iinfo(np.uint8).max else "<u2"
    return dtype + ":" + base64.b64encode(zlib.compress(values.astype(dtype).tobytes(), 9)).decode("ascii")


def unpack_labels(text: str) -> np.ndarray:
    dtype, _, packed = text.partition(":")
    return np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=dtype).astype(np.int64)


def _check_finite(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        bad = int((~np.isfinite(values)).sum())
        raise TrialFailed(f"the model produced {bad} non-finite {what} (NaN or inf)")


@functools.cache
def _metric_class():
    """The ``evaluate.Metric`` subclass, made on first use: evaluate, datasets and scikit-learn take seconds to
    import, and a report or ``--help`` needs none of them."""
    import datasets
    import evaluate
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    class ClassificationMetrics(evaluate.Metric):
        """Accuracy, and F1, precision and recall (binary for two classes, macro-averaged for more)."""

        def _info(self) -> evaluate.MetricInfo:
            return evaluate.MetricInfo(
                description="accuracy, f1, precision and recall of predicted class ids",
                citation="",
                inputs_description="predictions and references: lists of class ids",
                features=datasets.Features({"predictions": datasets.Value("int64"),
                                            "references": datasets.Value("int64")}),
                module_type="metric",
            )

        def _compute(self, predictions, references):
            predictions, references = np.asarray(predictions), np.asarray(references)
            labels = np.unique(np.concatenate([predictions, references]))
            average = "binary" if set(labels.tolist()) <= {0, 1} else "macro"
            precision, recall, f1, _ = precision_recall_fscore_support(
                references, predictions, average=average, zero_division=0)
            return {"accuracy": float(accuracy_score(references, predictions)), "f1": float(f1),
                    "precision": float(precision), "recall": float(recall)}

    return ClassificationMetrics


def classification_metrics(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    metric = _metric_class()(keep_in_memory=True)
    return metric.compute(predictions=predictions.tolist(), references=references.tolist())
