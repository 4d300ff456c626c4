"""What "accuracy" means for a model: a classifier's own head, or an encoder's embeddings through a probe.

A task evaluates one ONNX session on the whole evaluation split and returns its metrics; it fails the
trial (never wins it) when the outputs are not finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from opsearch.embedding import LinearProbe, embed, mean_cosine
from opsearch.errors import TrialFailed
from opsearch.metrics import classification_metrics
from opsearch.runtime import Feed, run_all


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    predictions: np.ndarray = field(repr=False)

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


class ClassificationTask:
    """The model's own classification head: argmax of its logits."""

    name = "classification"

    def __init__(self, feeds: list[Feed], labels: np.ndarray) -> None:
        self.feeds, self.labels = feeds, labels

    def evaluate(self, session) -> Evaluation:
        logits = np.concatenate(run_all(session, self.feeds, "logits"), axis=0)
        _check_finite(logits, "logits")
        predictions = logits.argmax(axis=1)
        return Evaluation(classification_metrics(predictions, self.labels), predictions)


class EmbeddingTask:
    """Pooled sentence embeddings through a probe frozen on fp32 embeddings; also their cosine to fp32."""

    name = "embedding"

    def __init__(self, feeds: list[Feed], labels: np.ndarray, *, probe: LinearProbe, pooling: str,
                 normalize: bool, reference: np.ndarray | None = None) -> None:
        self.feeds, self.labels, self.probe = feeds, labels, probe
        self.pooling, self.normalize = pooling, normalize
        self.reference = reference  # fp32 embeddings of the evaluation split, for the cosine

    def embeddings(self, session) -> np.ndarray:
        vectors = embed(session, self.feeds, pooling=self.pooling, normalize=self.normalize)
        _check_finite(vectors, "embeddings")
        return vectors

    def evaluate(self, session) -> Evaluation:
        vectors = self.embeddings(session)
        if self.reference is None:
            self.reference = vectors  # the first model evaluated is the fp32 one
        predictions = self.probe.predict(vectors)
        metrics = classification_metrics(predictions, self.labels)
        metrics["cosine_to_fp32"] = mean_cosine(vectors, self.reference)
        return Evaluation(metrics, predictions)


def _check_finite(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        bad = int((~np.isfinite(values)).sum())
        raise TrialFailed(f"the model produced {bad} non-finite {what} (NaN or inf)")
