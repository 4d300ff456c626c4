"""What a measured trial adds to its record, and the objective values Optuna is told.

A trial's outcome is one of three: its graph repeats a measured trial's (its measurements are that twin's), its
evaluation stopped early (its partial accuracy, never timed; a broken model fails), or it was evaluated whole
and timed (a model at chance fails). The accuracy arithmetic against fp32 is ``measure.Fp32Answers``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from opsearch.errors import TrialFailed
from opsearch.measure import Fp32Answers
from opsearch.search._trial import TrialOutcome
from opsearch.store import OBJECTIVES, TrialRecord, set_trial_attrs

# What a trial measured: a trial whose graph repeats it takes these from it, unmeasured.
MEASURED_FIELDS = ("metrics", "accuracy", "accuracy_loss", "accuracy_loss_ci", "accuracy_batch_size", "timing",
                   "speedup", "evaluated_rows", "stopped_early")


@dataclass(frozen=True)
class OutcomeRecorder:
    """Writes outcomes into trials against one study's fp32 baseline, for the machine this process times on."""

    fp32: Fp32Answers
    reference_throughput: float  # fp32's samples/s, which every speedup scales
    accuracy_batch_size: int
    machine: dict
    machine_id: str
    seed: int

    def record(self, trial: optuna.Trial, outcome: TrialOutcome, twin: optuna.trial.FrozenTrial | None) -> dict:
        """Store what ``outcome`` measured (``twin``: the measured trial with the same graph, when it repeats one)
        and return every objective's value, by name; a broken model raises :class:`TrialFailed`."""
        set_trial_attrs(trial, graph_hash=outcome.graph_hash, quantized_nodes=outcome.node_counts,
                        group_precisions=outcome.group_precisions, quantize_seconds=outcome.quantize_seconds,
                        size_mb=outcome.size_mb)
        if outcome.repeats_known_graph:
            measured = TrialRecord.of(twin)
            set_trial_attrs(trial, same_graph_as=twin.number,
                            **{name: getattr(measured, name) for name in MEASURED_FIELDS})
        elif outcome.timing is None:
            self._stopped_early(trial, outcome)
        else:
            self._measured(trial, outcome)
        return objective_values(TrialRecord.of(trial), self.reference_throughput, outcome.size_mb)

    def _evaluated(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        set_trial_attrs(trial, evaluate_seconds=outcome.evaluate_seconds, evaluated_rows=outcome.evaluated_rows,
                        accuracy_batch_size=self.accuracy_batch_size, predictions=outcome.predictions,
                        accuracy_loss_ci=self.fp32.loss_ci(outcome.predictions, seed=self.seed))

    def _stopped_early(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        """Surely over the limit, or broken: its partial accuracy, untimed."""
        self._evaluated(trial, outcome)
        accuracy, loss = self.fp32.partial(outcome.predictions)
        set_trial_attrs(trial, metrics={self.fp32.metric.name: accuracy}, accuracy=accuracy, accuracy_loss=loss,
                        stopped_early=outcome.stopped_early)
        if outcome.broken:
            _fail(trial, f"stopped early: {outcome.stopped_early}: the quantized model is broken")

    def _measured(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        self._evaluated(trial, outcome)
        accuracy = float(outcome.metrics[self.fp32.metric.name])  # the study's metric
        set_trial_attrs(trial, metrics=outcome.metrics, accuracy=accuracy, accuracy_loss=self.fp32.loss(accuracy))
        if self.fp32.at_chance(outcome.metrics):
            _fail(trial, self.fp32.at_chance_reason(outcome.metrics))
        window = outcome.timed_window
        if outcome.drift_check is not None:
            set_trial_attrs(trial, drift_check=outcome.drift_check)
        set_trial_attrs(trial, timing=outcome.timing, timed_window=list(window),
                        timing_seconds=round(window[1] - window[0], 2), machine_id=self.machine_id,
                        machine=self.machine, speedup=float(outcome.timing["speedup"]),
                        stopped_early=outcome.stopped_early, dominated_by=outcome.dominated_by)


def _fail(trial: optuna.Trial, reason: str) -> None:
    set_trial_attrs(trial, fail_reason=reason)
    raise TrialFailed(reason)


def objective_values(record: TrialRecord, reference_throughput: float, size_mb: float) -> dict[str, float]:
    """Every objective's value for a measured trial's record; a trial never timed gets each timed objective's worst
    (Optuna needs a value; such a trial is infeasible and never stands on a front)."""
    values = {"accuracy_loss": float(record.accuracy_loss), "size": float(size_mb)}
    latency = record.timing.get("latency_ms") or {}
    for objective in OBJECTIVES.values():
        if not objective.timed:
            continue
        if not record.timing:
            values[objective.name] = objective.untimed_value
        elif objective.name == "throughput":
            values[objective.name] = reference_throughput * float(record.speedup)
        else:  # a timing without latencies (latency_ms None: not measured): the worst, as untimed
            values[objective.name] = float(latency.get(objective.name, objective.untimed_value))
    return values
