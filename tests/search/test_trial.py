"""One trial's work (opsearch.search._trial) on the tiny classifier: early stopping for accuracy means never timed;
racing stops a surely dominated trial's rounds, and only such a trial's."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sentiment_rows

from opsearch.measure import (
    RACE_FROM,
    AccuracyScreen,
    ClassificationTask,
    ThreadSettings,
    TimingProtocol,
    Workload,
    encode,
    unpack_labels,
)
from opsearch.quantize import QuantRecipe
from opsearch.search import Rival, TrialJob, TrialMeasurer, TrialSetup

ROWS = sentiment_rows(320, seed=7)


@pytest.fixture(scope="module")
def tokenizer(tiny_onnx):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_onnx.folder)


def setup_for(tiny_onnx, tokenizer, *, labels: np.ndarray, screen: AccuracyScreen | None) -> TrialSetup:
    texts = [r["sentence"] for r in ROWS]
    task = ClassificationTask(encode(tokenizer, texts, max_length=32), labels)
    protocol = TimingProtocol(rounds=8, max_rounds=12, warmup_rounds=0, ci_target=1e-9, max_seconds=60, seed=0,
                              sessions_per_model=1, estimator="floor")
    return TrialSetup(tiny_onnx.onnx_path, ThreadSettings(1), task, Workload(texts[:8], tokenizer, max_length=32),
                      None, protocol, screen=screen)


def run(setup: TrialSetup, tmp_path, rivals=()) -> tuple:
    phases: list[str] = []
    job = TrialJob(0, QuantRecipe(mode="dynamic", operators_to_quantize=("MatMul",)), tmp_path / "out",
                   rivals=tuple(rivals))
    return TrialMeasurer(setup).run(job, phases.append), phases


def test_a_trial_surely_over_the_limit_stops_evaluating_and_is_never_timed(tiny_onnx, tokenizer, tmp_path):
    labels = 1 - np.array([r["label"] for r in ROWS])  # every answer now wrong, while fp32 was right on each row
    screen = AccuracyScreen(np.ones(len(ROWS), dtype=bool), limit=0.01, chance=None)
    outcome, phases = run(setup_for(tiny_onnx, tokenizer, labels=labels, screen=screen), tmp_path)
    assert outcome.timing is None and outcome.timed_window is None
    assert "timing" not in phases
    assert outcome.stopped_early == f"over the limit after {outcome.evaluated_rows} of {len(ROWS)} rows"
    assert 100 <= outcome.evaluated_rows < len(ROWS)
    assert (unpack_labels(outcome.predictions) != 65535).sum() == outcome.evaluated_rows


def test_without_early_stopping_the_same_trial_is_evaluated_whole_and_timed(tiny_onnx, tokenizer, tmp_path):
    labels = 1 - np.array([r["label"] for r in ROWS])
    outcome, phases = run(setup_for(tiny_onnx, tokenizer, labels=labels, screen=None), tmp_path,
                          rivals=[Rival(5, 1000.0, -1.0)])
    assert outcome.evaluated_rows == len(ROWS) and not outcome.stopped_early
    assert outcome.timing["rounds"] >= 8 and outcome.dominated_by is None


@pytest.mark.parametrize(("rival", "dominated"), [
    (Rival(3, 1000.0, -1.0), True),  # surely faster, and no less accurate: this trial cannot reach the front
    (Rival(3, 1000.0, 1.0), False),  # surely faster but less accurate: this trial may stand on the front
    (Rival(3, 0.01, -1.0), False),  # no less accurate, but slower
])
def test_racing_stops_only_a_trial_surely_dominated(tiny_onnx, tokenizer, tmp_path, rival, dominated):
    labels = np.array([r["label"] for r in ROWS])
    screen = AccuracyScreen(np.ones(len(ROWS), dtype=bool), limit=None, chance=None)
    outcome, _ = run(setup_for(tiny_onnx, tokenizer, labels=labels, screen=screen), tmp_path, rivals=[rival])
    assert outcome.evaluated_rows == len(ROWS)
    if dominated:
        assert outcome.dominated_by == 3 and outcome.timing["rounds"] == RACE_FROM
        assert outcome.stopped_early.startswith(f"dominated by trial 3 after {RACE_FROM} rounds")
    else:
        assert outcome.dominated_by is None and not outcome.stopped_early
        assert outcome.timing["rounds"] >= 8


@pytest.mark.parametrize(("objectives", "rival_mb", "dominated"), [
    (("throughput", "accuracy_loss", "size"), 1e6, False),  # faster and as accurate, but a bigger file
    (("throughput", "accuracy_loss", "size"), 0.0, True),  # faster, as accurate and no bigger: dominated
    (("throughput", "accuracy_loss"), 1e6, True),  # the size is not an objective: it does not count
    (("throughput", "accuracy_loss", "p99"), 0.0, False),  # a slower trial may have the shorter tail: no racing
    (("size", "accuracy_loss"), 0.0, False),  # speed is not an objective: being slower dominates nothing
])
def test_racing_only_against_rivals_at_least_as_good_on_every_objective(tiny_onnx, tokenizer, tmp_path, objectives,
                                                                         rival_mb, dominated):
    from dataclasses import replace

    labels = np.array([r["label"] for r in ROWS])
    screen = AccuracyScreen(np.ones(len(ROWS), dtype=bool), limit=None, chance=None)
    setup = replace(setup_for(tiny_onnx, tokenizer, labels=labels, screen=screen), objectives=objectives)
    outcome, _ = run(setup, tmp_path, rivals=[Rival(3, 1000.0, -1.0, rival_mb)])
    assert (outcome.dominated_by == 3) is dominated
    assert outcome.size_mb > 0 and outcome.timing["latency_ms"]["p99"] >= outcome.timing["latency_ms"]["p50"] > 0


def test_a_broken_trial_stops_at_chance_untimed_and_says_so(tiny_onnx, tokenizer, tmp_path):
    labels = 1 - np.array([r["label"] for r in ROWS])  # the model now answers every row wrongly: below chance
    screen = AccuracyScreen(np.ones(len(ROWS), dtype=bool), limit=None, chance=0.5)
    outcome, phases = run(setup_for(tiny_onnx, tokenizer, labels=labels, screen=screen), tmp_path)
    assert outcome.broken and outcome.timing is None and "timing" not in phases
    assert outcome.stopped_early.startswith(f"at chance level after {outcome.evaluated_rows} of {len(ROWS)} rows")
