"""Your own evaluation: a function that receives the candidate model, runnable, and returns its per-row evidence.

An evaluator is named ``module:function`` (or ``path/to/file.py:function``) so that ``resume`` and ``worker`` load
the same one again; the study stores the name. It is called with a :class:`Candidate` and returns either

- per-row scores, higher is better (a 1-D array, or :class:`Scores`): the metric is their mean, and losses are
  paired row by row, as accuracy's are; or
- per-row predictions with their references and a metric over them (:class:`Predictions`): losses are a paired
  bootstrap of the whole metric over rows, as F1's are.

Rows are the evaluator's own: it may evaluate the study's rows (``candidate.rows``, ``candidate.feeds``) or
anything else, as long as every call returns the same rows in the same order. A trial whose evaluator raises or
returns the wrong shape fails with the evaluator's own message, and the study goes on.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opsearch.errors import ConfigError, TrialFailed
from opsearch.measure._accuracy import Evaluation
from opsearch.measure._metrics import Metric
from opsearch.measure._sessions import Feed, input_names

# The module name an evaluator loaded from its file gets.
_FILE_MODULE = "opsearch_evaluator_"


@dataclass(frozen=True)
class Candidate:
    """What an evaluator receives: the model to evaluate (fp32 or a quantized candidate) as an ONNX Runtime session
    with the study's threads, and the study's evaluation rows, raw and tokenized as the study feeds them."""

    session: Any  # onnxruntime.InferenceSession
    texts: list = field(repr=False)  # the study's evaluation texts (or (text, text_pair) pairs), in order
    labels: np.ndarray = field(repr=False)  # their labels
    feeds: list[Feed] = field(repr=False)  # the texts tokenized, batched as the study times them

    def run(self, output: str | None = None, feeds: list[Feed] | None = None) -> list:
        """The session's ``output`` (every output: None) for each feed (the study's: None), in order."""
        names = input_names(self.session)
        outputs = None if output is None else [output]
        results = [self.session.run(outputs, {k: v for k, v in feed.items() if k in names})
                   for feed in (self.feeds if feeds is None else feeds)]
        return [r[0] for r in results] if output is not None else results


@dataclass(frozen=True)
class Scores:
    """Per-row scores, higher is better; the metric is their mean (``name`` names it in reports)."""

    values: np.ndarray
    name: str = "score"


@dataclass(frozen=True)
class Predictions:
    """Per-row predictions (numbers or class ids), their references, and the metric over them, higher is better."""

    values: np.ndarray
    references: np.ndarray
    metric: Callable[[np.ndarray, np.ndarray], float]
    name: str = "metric"


def evaluator_name(function: Callable) -> str:
    """The name a study stores for ``function``: ``module:function``, or ``file.py:function`` for a script's own."""
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or "<" in qualname or "." in qualname:
        raise ConfigError(f"evaluator {function!r} is not a module-level function: resume and workers load it again "
                          "by name, so define it at the top level of a module or script.", setting="evaluator")
    if module == "__main__" or module.startswith(_FILE_MODULE):  # a script's, or one loaded from its file
        script = getattr(sys.modules[module], "__file__", None)
        if not script:
            raise ConfigError("an evaluator defined in an interactive session cannot be loaded again by resume or a "
                              "worker: define it in a module or a script file.", setting="evaluator")
        return f"{Path(script).resolve()}:{qualname}"
    return f"{module}:{qualname}"


def load_evaluator(spec: str, *, what: str = "--evaluator") -> Callable:
    """The function ``module:function`` or ``path/to/file.py:function`` names (the current folder is searched for
    modules, as ``python -m`` does); a clear error naming ``what`` when it cannot be loaded."""
    module_name, _, function_name = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"no file {str(path)!r}")
            loaded = importlib.util.spec_from_file_location(f"{_FILE_MODULE}{path.stem}", path)
            module = importlib.util.module_from_spec(loaded)
            sys.modules[loaded.name] = module
            loaded.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except Exception as exc:  # an import runs the module's code: anything can go wrong
        raise ConfigError(f"{what} {spec}: its module could not be loaded ({type(exc).__name__}: {exc}). Check the "
                          "name, and that the module is importable here (on PYTHONPATH, or in this folder).",
                          setting="evaluator") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"{what} {spec}: module {module_name!r} has no function {function_name!r}.",
                          setting="evaluator")
    return function


class EvaluatorTask:
    """A study's evaluation by the user's evaluator (``spec``), over the study's rows; its metric is known once
    it has evaluated a model (the first: fp32)."""

    name = "evaluator"

    def __init__(self, spec: str, *, texts: list, labels: np.ndarray, feeds: list[Feed]) -> None:
        self.spec, self.texts, self.feeds, self.rows_labels = spec, texts, feeds, labels
        self.function = load_evaluator(spec)
        self.labels: np.ndarray | None = None  # the references of the evaluator's rows, once known
        self.metric: Metric | None = None

    def __getstate__(self) -> dict:
        """Sent to a trial's process by name: the child loads the evaluator again (and makes its metric anew)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("function", "metric")} | {"metric": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.function = load_evaluator(self.spec)

    def evaluate(self, session) -> Evaluation:
        try:
            result = self.function(Candidate(session, self.texts, self.rows_labels, self.feeds))
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            raise TrialFailed(f"evaluator {self.spec} raised {type(exc).__name__}: {exc} (at "
                              f"{Path(where.filename).name}:{where.lineno})") from exc
        values, references, metric = self._read(result)
        if self.labels is not None and len(values) != len(self.labels):
            raise TrialFailed(f"evaluator {self.spec} returned {len(values)} rows; it returned {len(self.labels)} "
                              "for fp32: every call must answer the same rows, in the same order")
        if self.metric is None:
            self.labels, self.metric = references, metric
        score = metric.score(values, references)
        if not np.isfinite(score):
            raise TrialFailed(f"evaluator {self.spec} scored the model {score} (not a finite number)")
        return Evaluation({metric.name: score}, values, values[:, None], metric.name)

    def _read(self, result) -> tuple[np.ndarray, np.ndarray, Metric]:
        """The per-row values, their references and the metric of an evaluator's answer; wrong shapes refused."""
        if isinstance(result, np.ndarray | list | tuple) and not isinstance(result, Predictions):
            result = Scores(np.asarray(result))
        if isinstance(result, Scores):
            values = _one_value_per_row(result.values, self.spec, "scores")
            return values, np.zeros(len(values)), _mean_metric(result.name)
        if isinstance(result, Predictions):
            values = _one_value_per_row(result.values, self.spec, "predictions")
            references = _one_value_per_row(result.references, self.spec, "references")
            if len(references) != len(values):
                raise TrialFailed(f"evaluator {self.spec} returned {len(values)} predictions but {len(references)} "
                                  "references: one reference per prediction")
            return values, references, _whole_metric(result.name, result.metric)
        raise TrialFailed(f"evaluator {self.spec} returned a {type(result).__name__}: return per-row scores (a 1-D "
                          "array, or opsearch.Scores) or opsearch.Predictions(values, references, metric)")


def _one_value_per_row(values, spec: str, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "biuf" or not len(array):
        raise TrialFailed(f"evaluator {spec} returned {what} of shape {array.shape} and type {array.dtype}: give one "
                          "number per row (a 1-D array of numbers)")
    if array.dtype.kind in "iu" and array.min() >= 0 and array.max() < 65535:
        return array.astype(np.int64)  # class ids, stored one byte per row
    return array.astype(np.float64)


def _mean_metric(name: str) -> Metric:
    """Per-row scores: the metric is their mean, row by row (it decomposes: early stopping's test would apply)."""
    return Metric(name, (), lambda p, r: float(np.mean(p)), lambda p, r: p.mean(axis=1), lambda p, r: p)


def _whole_metric(name: str, function: Callable[[np.ndarray, np.ndarray], float]) -> Metric:
    """The user's metric over predictions: resampled one resample at a time (it is the user's function)."""
    def batched(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
        return np.array([function(p, r) for p, r in zip(predictions, references, strict=True)], dtype=float)

    return Metric(name, (), lambda p, r: float(function(p, r)), batched)
