"""What a study optimizes: each objective's direction, unit and where its value lives in a trial's row.

A study stores the names it optimizes (``objectives`` in its settings) and Optuna stores one value per name, in that
order. Every reader asks for an objective by name, here, never by position: the front, the plot's axes and the
importances all do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import optuna

from opsearch.config import OBJECTIVES
from opsearch.store._records import StudyRecord


@dataclass(frozen=True)
class Objective:
    name: str  # as the setting names it
    direction: str  # Optuna's: "maximize" or "minimize"
    column: str  # the TrialRow field holding its value
    title: str  # how a report or a plot axis names it
    timed: bool  # measured by timing: a trial stopped before timing has none

    @property
    def untimed_value(self) -> float:
        """What a trial never timed stores for Optuna (it needs a value): the worst there is. It never stands on a
        front (such trials are infeasible)."""
        return 0.0 if self.direction == "maximize" else math.inf


_ALL = (
    Objective("throughput", "maximize", "samples_per_s", "throughput (samples/s)", timed=True),
    Objective("accuracy_loss", "minimize", "accuracy_loss_pt", "accuracy loss vs fp32 (points)", timed=False),
    Objective("size", "minimize", "size_mb", "model file (MB)", timed=False),
    Objective("p50", "minimize", "latency_p50_ms", "median call latency (ms)", timed=True),
    Objective("p95", "minimize", "latency_p95_ms", "p95 call latency (ms)", timed=True),
    Objective("p99", "minimize", "latency_p99_ms", "p99 call latency (ms)", timed=True),
)
BY_NAME = {o.name: o for o in _ALL}
assert tuple(BY_NAME) == OBJECTIVES, "opsearch.config's OBJECTIVES and the objectives here must name the same"


def objectives_of(names: Sequence[str]) -> tuple[Objective, ...]:
    return tuple(BY_NAME[name] for name in names)


def study_objectives(study: optuna.Study) -> tuple[Objective, ...]:
    """The objectives a stored study optimizes, in its values' order."""
    return objectives_of(StudyRecord.of(study).objectives)
