"""Classification metrics as an ``evaluate`` module that needs no hub.

``evaluate.load("accuracy")`` fetches its script from the hub; this module is the same kind of object
(an ``evaluate.Metric``) computed locally with scikit-learn, so it runs on machines without the hub.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
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


def classification_metrics(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    metric = ClassificationMetrics(keep_in_memory=True)
    return metric.compute(predictions=predictions.tolist(), references=references.tolist())
