"""The study's drift term: how much a speedup moves between moments of one study, beyond each measurement's own
interval.

A trial's speedup interval covers the rounds and sessions of the few seconds it was timed in; the machine drifts
over minutes (another tenant, the clock, the caches), and a speedup measured at another moment lands elsewhere.
So a study re-times one *reference pair*, the first timed trial against fp32, at intervals (``DRIFT_EVERY_SECONDS``
apart, in whichever worker comes next) and once more in the front session. Each re-timing is a *check*: its log
speedup and standard error. The spread between checks beyond their own errors (``measure.between_sd``, a
random-effects estimate) is the drift term, and every trial's and the front session's interval is widened by it
(``measure.widen``): a variance component measured in the study, not a fudge factor.

A study made before opsearch measured drift has no checks: its intervals stay as stored, and reports say they
cover each trial's own seconds only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import optuna

from opsearch.store._records import StudyRecord, TrialRecord

# How long after a check the next is due (a worker makes it after the trial it is measuring then).
DRIFT_EVERY_SECONDS = 180.0
# z of a 95% interval: a check's standard error from its interval's width on the log scale.
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class DriftCheck:
    """One timing of the reference pair: when, its speedup and 95% interval."""

    at: float  # wall-clock seconds
    speedup: float
    interval: tuple[float, float]

    @property
    def log_se(self) -> float:
        low, high = self.interval
        return max((math.log(high) - math.log(low)) / (2 * _Z95), 1e-6)

    def to_dict(self) -> dict:
        return {"at": self.at, "speedup": self.speedup, "speedup_ci": list(self.interval)}

    @classmethod
    def from_dict(cls, data: dict) -> DriftCheck:
        return cls(float(data["at"]), float(data["speedup"]), tuple(float(v) for v in data["speedup_ci"]))


@dataclass(frozen=True)
class Drift:
    """The study's drift term and what it was measured from."""

    reference: int | None  # the reference trial (None: the study made no checks)
    checks: tuple[DriftCheck, ...] = ()

    @property
    def sd(self) -> float:
        """The drift term: the spread of the checks' log speedups beyond their errors (0 with fewer than two)."""
        from opsearch.measure import between_sd

        return between_sd(np.log([c.speedup for c in self.checks]), np.array([c.log_se for c in self.checks]))

    @property
    def minutes(self) -> float:
        times = [c.at for c in self.checks]
        return (max(times) - min(times)) / 60 if times else 0.0

    def widen(self, interval: tuple[float, float], point: float) -> tuple[float, float]:
        """``interval`` (of ``point``) with the drift term added."""
        from opsearch.measure import widen

        if not all(math.isfinite(v) and v > 0 for v in (*interval, point)):
            return interval
        return widen(interval, point, self.sd)

    def describe(self) -> str:
        """One line for reports: what every interval covers."""
        if self.reference is None:
            return ("drift: not measured (a study made before opsearch measured it): each interval covers its own "
                    "trial's rounds and sessions only, not the machine's drift over minutes")
        if len(self.checks) < 2:
            return (f"drift: {len(self.checks)} timing of the reference pair (trial {self.reference} against fp32) "
                    "so far, too few to measure it: each interval covers its own trial's rounds and sessions only")
        speeds = ", ".join(f"{c.speedup:.2f}x" for c in sorted(self.checks, key=lambda c: c.at))
        return (f"drift: the reference pair (trial {self.reference} against fp32), timed {len(self.checks)} times "
                f"over {self.minutes:.0f} min ({speeds}), moved by {self.sd:.1%} (sd) beyond its own intervals; "
                "every speedup interval is widened by it")


def study_drift(study: optuna.Study) -> Drift:
    """The drift term of ``study`` (see the module's docstring), from the reference trial's own timing, the checks
    its workers made after their trials, and the front session's."""
    record = StudyRecord.of(study)
    reference = record.drift_reference
    if not reference:
        return Drift(None)
    checks = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        stored = TrialRecord.of(trial)
        if trial.number == reference["trial"] and stored.timing and stored.timed_window:
            checks.append(DriftCheck(stored.timed_window[1], stored.timing["speedup"],
                                     tuple(stored.timing["speedup_ci"])))
        if stored.drift_check and stored.drift_check.get("graph_hash") == reference["graph_hash"]:
            checks.append(DriftCheck.from_dict(stored.drift_check))
    session_check = record.front_remeasured.get("drift_check")
    if session_check and session_check.get("graph_hash") == reference["graph_hash"]:
        checks.append(DriftCheck.from_dict(session_check))
    return Drift(int(reference["trial"]), tuple(checks))
