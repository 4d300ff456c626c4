"""A study's time budget (``--timeout``): the whole run, from opening the study to the end of its front session.

A trial starts only while one more trial (as long as this run's typical trial) and the front session after it
still fit in what is left; the front session then gets what is left. A trial is never cut off by the budget: the
study ends between trials, cleanly, and ``resume`` goes on from there. Estimates come from what the study
measured: its trials' own durations, each front candidate's quantization time and speedup, and fp32's throughput.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import optuna

from opsearch.measure import TimingProtocol
from opsearch.store import StudyRecord, TrialRecord


@dataclass
class Budget:
    """``seconds`` from ``started`` (``time.monotonic``); None: no budget."""

    seconds: float | None
    started: float = field(default_factory=time.monotonic)

    @property
    def left(self) -> float:
        if self.seconds is None:
            return math.inf
        return self.seconds - (time.monotonic() - self.started)

    def room_for_trial(self, trial_seconds: Sequence[float], front_seconds: float) -> bool:
        """One more trial as long as the typical one (the median of ``trial_seconds``), then the front session,
        fit in what is left. Before any trial has run, the first one always starts."""
        if self.seconds is None or not trial_seconds:
            return True
        return self.left > statistics.median(trial_seconds) + front_seconds

    def why_stopped(self, trial_seconds: Sequence[float], front_seconds: float) -> str:
        return (f"the time budget ({_duration(self.seconds)}) has {_duration(max(0.0, self.left))} left: too little "
                f"for another trial (about {_duration(statistics.median(trial_seconds))}) and the front session "
                f"after it (about {_duration(front_seconds)}); stopping between trials (resume goes on from here)")


def trial_seconds(trials: Sequence[optuna.trial.FrozenTrial]) -> list[float]:
    """How long each finished trial took, start to end (any state: a failed trial cost its time too)."""
    return [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
            if t.datetime_start is not None and t.datetime_complete is not None]


def front_session_seconds(study: optuna.Study, candidates: Sequence[optuna.trial.FrozenTrial],
                          protocol: TimingProtocol, samples_per_round: int) -> float:
    """What a front session over ``candidates`` costs at least: quantizing each again, then the protocol's
    warm-up and minimum rounds, each timing fp32 and every candidate once over ``samples_per_round`` texts."""
    if not candidates:
        return 0.0
    throughput = StudyRecord.of(study).reference_throughput
    fp32_round = samples_per_round / throughput
    rounds = protocol.warmup_rounds + protocol.rounds
    per_round = fp32_round * (1 + sum(1 / max(TrialRecord.of(t).speedup or 1.0, 1e-3) for t in candidates))
    quantizing = sum(TrialRecord.of(t).quantize_seconds or 0.0 for t in candidates)
    return quantizing + rounds * per_round


def _duration(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds):
        return "no limit"
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"
