"""What a model's score means for each task, and the metrics that report it.

A task evaluates one ONNX session on the whole evaluation split and returns its metrics: a classifier's own
head (one text or a pair), a regressor's one output, a multi-label tagger's sigmoids, a token tagger's tag per
word, an extractive question answerer's span, or an encoder's embeddings through a frozen probe. The study's
metric (``measure._metrics``) is among them, as ``Evaluation.score``. A task fails the trial (never wins it) when
the outputs are not finite. A classifier's usual metrics are an ``evaluate`` module computed locally with
scikit-learn (``evaluate.load("accuracy")`` fetches its script from the hub), so they run on machines without it.
"""

from __future__ import annotations

import base64
import functools
import zlib
from dataclasses import dataclass, field

import numpy as np

from opsearch.errors import TrialFailed
from opsearch.measure._embedding import LinearProbe, embed, mean_cosine
from opsearch.measure._metrics import LABEL_SET_METRICS, METRICS, Metric, squad_scores, tag_metrics
from opsearch.measure._sessions import Feed, input_names, rows_in, run_all
from opsearch.source import TAG_PAD


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    predictions: np.ndarray = field(repr=False)
    outputs: np.ndarray = field(repr=False)  # logits or embeddings, one row per evaluated text
    metric: str = "accuracy"  # the study's metric, one of ``metrics``

    @property
    def score(self) -> float:
        """The study's metric."""
        return self.metrics[self.metric]


def _with_metric(metrics: dict[str, float], metric: Metric, predictions: np.ndarray,
                 references: np.ndarray) -> dict[str, float]:
    if metric.name not in metrics:
        metrics[metric.name] = metric.score(predictions, references)
    return metrics


class _HeadTask:
    """A model's own head, read from its logits (a subclass says how they become predictions and metrics)."""

    def __init__(self, feeds: list[Feed], labels: np.ndarray, *, metric: Metric) -> None:
        self.feeds, self.labels, self.metric = feeds, labels, metric

    def outputs(self, session, feeds: list[Feed]) -> np.ndarray:
        """The logits of ``feeds`` (some of ``self.feeds``), one row per text; fails the trial when not finite."""
        logits = np.concatenate(run_all(session, feeds, "logits"), axis=0)
        _check_finite(logits, "logits")
        return logits

    def evaluate(self, session) -> Evaluation:
        return self.evaluation(self.outputs(session, self.feeds))


class ClassificationTask(_HeadTask):
    """The model's own classification head: argmax of its logits."""

    name = "classification"

    def __init__(self, feeds: list[Feed], labels: np.ndarray, *, metric: Metric = METRICS["accuracy"]) -> None:
        super().__init__(feeds, labels, metric=metric)

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return outputs.argmax(axis=1)

    def evaluation(self, outputs: np.ndarray) -> Evaluation:
        """The metrics of every evaluation row's outputs, in order."""
        predictions = self.predict(outputs)
        metrics = _with_metric(classification_metrics(predictions, self.labels), self.metric, predictions,
                               self.labels)
        return Evaluation(metrics, predictions, outputs, self.metric.name)


class RegressionTask(_HeadTask):
    """A head with one output, read as a number (``problem_type="regression"``: a similarity, a rating)."""

    name = "regression"

    def __init__(self, feeds: list[Feed], labels: np.ndarray, *, metric: Metric = METRICS["spearman"]) -> None:
        super().__init__(feeds, np.asarray(labels, dtype=np.float64), metric=metric)

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        if outputs.ndim != 2 or outputs.shape[1] != 1:
            raise TrialFailed(f"a regression model answers one number per text; this one gives {outputs.shape[1:]} "
                              "(is it a classifier? use --task classification)")
        return outputs[:, 0].astype(np.float64)

    def evaluation(self, outputs: np.ndarray) -> Evaluation:
        predictions = self.predict(outputs)
        metrics = {name: METRICS[name].score(predictions, self.labels) for name in ("spearman", "pearson")}
        metrics["mse"] = float(np.mean((predictions - self.labels) ** 2))
        return Evaluation(_with_metric(metrics, self.metric, predictions, self.labels), predictions, outputs,
                          self.metric.name)


class MultiLabelTask(_HeadTask):
    """A head with one logit per label, each read through a sigmoid (``problem_type="multi_label_classification"``):
    a row's answer is the set of labels whose logit is above 0 (probability above one half), as a multi-hot row."""

    name = "multi-label"

    def __init__(self, feeds: list[Feed], labels: np.ndarray, *, metric: Metric = LABEL_SET_METRICS["f1_micro"]
                 ) -> None:
        super().__init__(feeds, np.asarray(labels, dtype=np.int64), metric=metric)

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        if outputs.shape[1] != self.labels.shape[1]:
            raise TrialFailed(f"the model has {outputs.shape[1]} outputs for {self.labels.shape[1]} labels")
        return (outputs > 0).astype(np.int64)

    def evaluation(self, outputs: np.ndarray) -> Evaluation:
        predictions = self.predict(outputs)
        metrics = {name: LABEL_SET_METRICS[name].score(predictions, self.labels)
                   for name in ("accuracy", "f1_micro", "f1_macro")}
        return Evaluation(_with_metric(metrics, self.metric, predictions, self.labels), predictions, outputs,
                          self.metric.name)


class TokenClassificationTask(_HeadTask):
    """A tagger: a tag per word, read at the word's first token (as transformers aligns word labels), the argmax
    of its logits. A word cut off by max_length is tagged outside any entity ("O")."""

    name = "token-classification"

    def __init__(self, feeds: list[Feed], labels: np.ndarray, *, metric: Metric) -> None:
        super().__init__(feeds, np.asarray(labels, dtype=np.int64), metric=metric)
        self.outside = metric.tags.index("O") if "O" in metric.tags else 0

    def outputs(self, session, feeds: list[Feed]) -> np.ndarray:
        """Each row's word tags (rows, the longest row's words), padded with TAG_PAD."""
        rows = []
        for feed, logits in zip(feeds, run_all(session, feeds, "logits"), strict=True):
            _check_finite(logits, "logits")
            if logits.shape[-1] > len(self.metric.tags):
                raise TrialFailed(f"the model has {logits.shape[-1]} tags for the data's {len(self.metric.tags)}")
            index = feed["word_index"]
            tags = np.take_along_axis(logits.argmax(axis=-1), np.maximum(index, 0), axis=1)
            tags = np.where(index == -1, self.outside, np.where(index == -2, TAG_PAD, tags))
            padded = np.full((len(tags), self.labels.shape[1]), TAG_PAD, dtype=np.int64)
            padded[:, :tags.shape[1]] = tags
            rows.append(padded)
        return np.concatenate(rows)

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def evaluation(self, outputs: np.ndarray) -> Evaluation:
        sums = self.metric.counts(outputs, self.labels).sum(axis=0)  # read once, for every tag metric
        metrics = {name: float(metric.of_counts(sums)) for name, metric in tag_metrics(self.metric.tags).items()}
        return Evaluation(_with_metric(metrics, self.metric, outputs, self.labels), outputs, outputs,
                          self.metric.name)


# The longest answer a question-answering model may give, in tokens (SQuAD's evaluation scripts' limit).
MAX_ANSWER_TOKENS = 30


class QuestionAnsweringTask(_HeadTask):
    """An extractive question answerer: each question's answer is the span of its context, over all its windows,
    that transformers' question-answering pipeline gives (``align_to_words=False``, ``max_answer_len`` 30). Its
    per-row prediction is that answer's score in the study's metric (SQuAD's exact match or F1, the best over the
    row's right answers), so losses pair question by question."""

    name = "question-answering"

    def __init__(self, feeds: list[Feed], texts: list, answers: tuple, *, metric: Metric) -> None:
        super().__init__(feeds, np.zeros(len(texts)), metric=metric)
        self.texts, self.answers = texts, answers
        first = 0
        for feed in feeds:  # each window's question, as a row of the study
            feed["question_row"] = first + feed["overflow_to_sample_mapping"]
            first += rows_in(feed)

    def outputs(self, session, feeds: list[Feed]) -> np.ndarray:
        """Each question's answer: (question row, first character, end character) in its context."""
        names = input_names(session)
        spans = []
        for feed in feeds:
            start, end = session.run(["start_logits", "end_logits"], {k: v for k, v in feed.items() if k in names})
            _check_finite(start, "start logits")
            _check_finite(end, "end logits")
            spans.extend(self._answers(start, end, feed))
        return np.array(spans, dtype=np.int64).reshape(-1, 3)

    def _answers(self, start: np.ndarray, end: np.ndarray, feed: Feed) -> list[tuple[int, int, int]]:
        """The best span of each window (the pipeline's scoring); the same answer's scores summed over windows."""
        found: dict[int, dict[str, list]] = {}
        for w, row in enumerate(feed["question_row"].tolist()):
            allowed = feed["answer_mask"][w] == 1
            p_start = _softmax(np.where(allowed, start[w], -10000.0))
            p_end = _softmax(np.where(allowed, end[w], -10000.0))
            p_start[0] = p_end[0] = 0.0
            candidates = np.tril(np.triu(np.outer(p_start, p_end)), MAX_ANSWER_TOKENS - 1)
            i, j = np.unravel_index(np.argmax(candidates), candidates.shape)
            if not (allowed[i] and allowed[j]):
                continue
            a, b = int(feed["offset_mapping"][w, i, 0]), int(feed["offset_mapping"][w, j, 1])
            text = self.texts[row].context[a:b].lower()
            answers = found.setdefault(row, {})
            if text in answers:
                answers[text][0] += float(candidates[i, j])
            else:
                answers[text] = [float(candidates[i, j]), a, b]
        rows = sorted(set(feed["question_row"].tolist()))
        best = {row: max(found[row].values(), key=lambda x: x[0]) for row in found}
        return [(row, *best[row][1:]) if row in best else (row, 0, 0) for row in rows]

    def _scores(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        """Each answer's exact match and F1 against its question's right answers."""
        scores = np.array([squad_scores(self.texts[row].context[a:b], self.answers[row]) for row, a, b in outputs])
        scores = scores.reshape(-1, 2)
        return {"exact_match": scores[:, 0], "squad_f1": scores[:, 1]}

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return self._scores(outputs)[self.metric.name]

    def evaluation(self, outputs: np.ndarray) -> Evaluation:
        scores = self._scores(outputs)
        metrics = {name: float(values.mean()) for name, values in scores.items()}
        return Evaluation(metrics, scores[self.metric.name], outputs, self.metric.name)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


class EmbeddingTask:
    """Pooled sentence embeddings through a probe frozen on fp32 embeddings; also their cosine to fp32."""

    name = "embedding"

    def __init__(self, feeds: list[Feed], labels: np.ndarray, *, probe: LinearProbe, pooling: str,
                 normalize: bool, reference: np.ndarray | None = None, metric: Metric = METRICS["accuracy"]) -> None:
        self.feeds, self.labels, self.probe, self.metric = feeds, labels, probe, metric
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
        metrics = _with_metric(classification_metrics(predictions, self.labels), self.metric, predictions,
                               self.labels)
        metrics["cosine_to_fp32"] = mean_cosine(outputs, self.reference)
        return Evaluation(metrics, predictions, outputs, self.metric.name)

    def evaluate(self, session) -> Evaluation:
        return self.evaluation(self.embeddings(session))


# In a trial's packed predictions, the rows its evaluation never reached (it stopped early: see ``measure.screen``);
# NaN among numbers (a regressor's predictions); a row of SET_NOT_EVALUATED among label sets (multi-hot rows).
NOT_EVALUATED = int(np.iinfo(np.uint16).max)
SET_NOT_EVALUATED = int(np.iinfo(np.uint8).max)


def evaluated(values: np.ndarray) -> np.ndarray:
    """Which rows of unpacked predictions were evaluated."""
    values = np.asarray(values)
    if values.ndim == 2:
        return values[:, 0] != SET_NOT_EVALUATED
    return ~np.isnan(values) if values.dtype.kind == "f" else values != NOT_EVALUATED


def not_evaluated(like: np.ndarray) -> np.ndarray:
    """Predictions of as many rows as the labels ``like``, none evaluated yet."""
    like = np.asarray(like)
    if like.ndim == 2:
        return np.full(like.shape, SET_NOT_EVALUATED, dtype=np.int64)
    return np.full(len(like), np.nan) if like.dtype.kind == "f" else np.full(len(like), NOT_EVALUATED, dtype=np.int64)


def pack_labels(values: np.ndarray) -> str:
    """Per-row predictions or labels as a short string for a study's storage: class ids one byte per row (two past
    255 classes, or rows marked NOT_EVALUATED), numbers as float32 (NaN: not evaluated); zlib-compressed, base64.
    The 872 predictions of SST-2's validation split take about 250 characters."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return "<f4:" + base64.b64encode(zlib.compress(values.astype("<f4").tobytes(), 9)).decode("ascii")
    if values.ndim == 2:  # label sets: a byte per row and label ("u1x3": three labels per row)
        return f"u1x{values.shape[1]}:" + base64.b64encode(zlib.compress(values.astype("u1").tobytes(), 9)).decode(
            "ascii")
    if values.size and (values.min() < 0 or values.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"class ids must lie in 0..65535, not {values.min()}..{values.max()}")
    dtype = "u1" if not values.size or values.max() <= np.iinfo(np.uint8).max else "<u2"
    return dtype + ":" + base64.b64encode(zlib.compress(values.astype(dtype).tobytes(), 9)).decode("ascii")


def unpack_labels(text: str) -> np.ndarray:
    dtype, _, packed = text.partition(":")
    if "x" in dtype:  # label sets
        dtype, width = dtype.split("x")
        rows = np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=dtype)
        return rows.reshape(-1, int(width)).astype(np.int64)
    values = np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=dtype)
    return values.astype(np.float64) if values.dtype.kind == "f" else values.astype(np.int64)


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
