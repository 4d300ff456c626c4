"""How well the cost model predicted: every timed trial's speedup against the prediction made before it ran, and the
configurations it pruned untimed (``search._predict``). A trial that ran before the model was built (a starting
point) has no prediction of its own and is left out: the check is of predictions that could still be wrong."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import optuna

from opsearch.store import TrialRecord

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


@dataclass(frozen=True)
class Checked:
    trial: int
    predicted: float
    low: float
    high: float
    measured: float

    @property
    def ratio(self) -> float:
        """Measured over predicted: above 1, the model was pessimistic."""
        return self.measured / self.predicted

    @property
    def inside(self) -> bool:
        return self.low <= self.measured <= self.high


@dataclass(frozen=True)
class PredictionCheck:
    checked: list[Checked]
    pruned: list[int]  # trials pruned untimed by prediction
    bounded: list[Checked] = field(default_factory=list)  # static trials, predicted an upper bound only (``low`` 0)

    @property
    def median_ratio(self) -> float:
        return statistics.median(c.ratio for c in self.checked)

    @property
    def worst(self) -> Checked:
        """The prediction furthest off, either way (in log terms: 0.8 and 1.25 are as far off)."""
        return max(self.checked, key=lambda c: max(c.ratio, 1 / c.ratio))


def prediction_check(study: optuna.Study) -> PredictionCheck | None:
    """None for a study that never predicted (``predict`` off, or a study made before it)."""
    checked, pruned, bounded = [], [], []
    for trial in study.get_trials(deepcopy=False, states=(COMPLETE, PRUNED)):
        record = TrialRecord.of(trial)
        if record.predicted_below is not None:
            pruned.append(trial.number)
        elif trial.state == COMPLETE and record.predicted and record.speedup and record.timing:
            p = record.predicted
            check = Checked(trial.number, p["speedup"], p["low"], p["high"], record.speedup)
            (bounded if p.get("bound_only") else checked).append(check)
    return PredictionCheck(checked, pruned, bounded) if checked or pruned or bounded else None


def prediction_lines(check: PredictionCheck | None) -> list[str]:
    """The check in a sentence or two, for the report's cost lines."""
    if check is None:
        return []
    line = "predicted speed (a cost model measured on this machine, checked on every trial timed after it): "
    if check.checked:
        worst = check.worst
        inside = sum(c.inside for c in check.checked)
        n = len(check.checked)
        line += (f"{n} trial{'' if n == 1 else 's'} timed, measured/predicted median {check.median_ratio:.2f}, "
                 f"furthest off {worst.ratio:.2f} (trial {worst.trial}), {inside} of {n} inside their predicted "
                 "interval")
    else:
        line += "no trial timed after it was built"
    if check.bounded:
        n, under = len(check.bounded), sum(c.measured <= c.high for c in check.bounded)
        line += (f"; {n} static trial{'' if n == 1 else 's'} (predicted an upper bound only): {under} of {n} "
                 "under it")
    n = len(check.pruned)
    line += f"; {n} configuration{'' if n == 1 else 's'} pruned untimed, predicted unable to reach the front"
    return [line]
