"""The report's model: the study's results as data (the fp32 baseline, every completed trial as a row, the Pareto
front, its knee, the fastest trial within an accuracy limit, trials whose different settings produced one graph,
and what the trials cost). Every renderer (:mod:`opsearch.report._render`) and plot draws from it."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

import optuna
import pandas as pd

from opsearch.config import METRIC_TITLES
from opsearch.report._anytime import AnswerStep, answer_over_time, study_minutes
from opsearch.report._predicted import PredictionCheck, prediction_check
from opsearch.store import (
    DEFAULT_OBJECTIVES,
    SameGraphGroup,
    StudyRecord,
    TrialRecord,
    TrialRow,
    best_within,
    faster_uncertain,
    front_rows,
    knee,
    same_graph_groups,
    study_drift,
    trial_rows,
)


@dataclass(frozen=True)
class TrialCost:
    """What one measured trial cost, and what early stopping cut short."""

    trial: int
    state: str
    evaluate_s: float
    timing_s: float  # 0 for a trial never timed
    rounds: int
    evaluated_rows: int | None
    stopped_early: str = ""
    untimed: bool = False  # stopped early for accuracy (or failed at chance), so never timed


@dataclass(frozen=True)
class StudyCost:
    """The study's trials' cost, and about how much early stopping saved (an estimate: what a stopped trial would
    have cost is taken from the trials that ran whole)."""

    trials: list[TrialCost]
    eval_rows: int  # rows a whole evaluation answers
    early_stop: bool
    why_off: str = ""  # why early stopping was off, when it was

    @property
    def evaluate_s(self) -> float:
        return sum(t.evaluate_s for t in self.trials)

    @property
    def timing_s(self) -> float:
        return sum(t.timing_s for t in self.trials)

    @property
    def stopped_evaluations(self) -> list[TrialCost]:
        return [t for t in self.trials if t.untimed]

    @property
    def raced(self) -> list[TrialCost]:
        return [t for t in self.trials if t.stopped_early and not t.untimed]

    @property
    def saved_s(self) -> float:
        """Estimated seconds early stopping saved: a stopped evaluation's remaining rows at its own pace, plus a
        typical whole trial's timing unless it failed anyway; a raced timing's missing rounds, to a typical whole
        trial's rounds, at its own pace per round. NaN when no trial ran whole to compare with."""
        whole = [t for t in self.trials if not t.stopped_early and t.timing_s > 0]
        if not self.stopped_evaluations and not self.raced:
            return 0.0
        if not whole:
            return math.nan
        typical_timing = statistics.median(t.timing_s for t in whole)
        typical_rounds = statistics.median(t.rounds for t in whole)
        saved = 0.0
        for t in self.stopped_evaluations:
            if t.evaluated_rows:
                saved += t.evaluate_s * (self.eval_rows / t.evaluated_rows - 1)
            saved += typical_timing if t.state == "complete" else 0.0  # a broken trial is never timed anyway
        for t in self.raced:
            saved += max(0.0, typical_rounds - t.rounds) * t.timing_s / max(1, t.rounds)
        return saved


def study_cost(study: optuna.Study) -> StudyCost:
    """Every measured trial's cost (complete ones, and failed ones that early stopping found broken)."""
    record = StudyRecord.of(study)
    config = record.opsearch_config or {}
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)):
        r = TrialRecord.of(t)
        if r.evaluate_seconds is None or r.same_graph_as is not None:
            continue  # never evaluated here (failed before, or shares an earlier trial's measurements)
        broken = t.state == optuna.trial.TrialState.FAIL and r.fail_reason.startswith("stopped early")
        if t.state == optuna.trial.TrialState.FAIL and not broken:
            continue
        out.append(TrialCost(t.number, t.state.name.lower(), float(r.evaluate_seconds), float(r.timing_seconds or 0.0),
                             int(r.timing.get("rounds", 0)), r.evaluated_rows,
                             r.stopped_early or (r.fail_reason if broken else ""), untimed=not r.timing))
    evaluator = config.get("evaluator")
    early_stop = bool(config.get("early_stop", False)) and not evaluator
    why_off = "" if early_stop else ("your evaluator scores whole evaluations" if evaluator else "--no-early-stop")
    return StudyCost(out, int(record.data.get("eval_rows", 0)), early_stop, why_off)


@dataclass(frozen=True)
class StudyReport:
    study_name: str
    baseline: dict
    rows: list[TrialRow]  # every completed trial, Pareto trials flagged
    same_graph: list[SameGraphGroup]
    counts: dict[str, int]  # trials per state
    remeasured_at: str = ""
    max_accuracy_loss: float | None = None  # the caller's limit (a fraction: 0.01 is one point); None: no limit
    machine: dict = field(default_factory=dict)  # fingerprint of the machine that measured the study
    versions: dict = field(default_factory=dict)  # library versions it ran with
    settings: dict = field(default_factory=dict)  # config, threads, workload, data and task, as stored
    cost: StudyCost | None = None  # what the trials cost, and what early stopping saved
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES  # what the study optimizes, its values' order
    answer: list[AnswerStep] = field(default_factory=list)  # how the answer within the limit improved (no limit: [])
    minutes: float = 0.0  # the study's busy minutes of trials
    predictions: PredictionCheck | None = None  # the cost model's predictions against the timed trials
    metric: str = "accuracy"  # what the study judges by: rows' accuracy and losses are in it
    drift: str = ""  # the study's drift term, as store.Drift describes it
    margin: float = 0.0  # the front session's margin: a speed difference under it is no difference

    @property
    def metric_title(self) -> str:
        return METRIC_TITLES.get(self.metric, self.metric)

    @property
    def front(self) -> list[TrialRow]:
        """Pareto trials, fastest first; a trial that repeats an earlier one's graph is listed once."""
        return front_rows(self.rows)

    @property
    def knee(self) -> TrialRow | None:
        """The front's knee (see :func:`opsearch.store.knee`), or None when the front has none."""
        front = self.front
        i = knee([(r.samples_per_s, r.accuracy_loss_pt) for r in front])
        return None if i is None else front[i]

    @property
    def best_feasible(self) -> TrialRow | None:
        """The fastest feasible trial when a ``max_accuracy_loss`` was given; None without a limit or a candidate.

        It is the front's fastest point, since the front holds feasible trials only (after a front session, those
        it re-timed)."""
        return None if self.max_accuracy_loss is None else best_within(self.rows, self.max_accuracy_loss)

    def best_by(self) -> dict[str, TrialRow]:
        """For each objective the study optimizes besides throughput and accuracy loss (size, a latency), its best
        trial within the limit (any loss without one), by name."""
        out = {}
        for name in self.objectives:
            if name not in ("throughput", "accuracy_loss"):
                best = best_within(self.rows, self.max_accuracy_loss, objective=name)
                if best is not None:
                    out[name] = best
        return out

    @property
    def faster_uncertain(self) -> list[TrialRow]:
        """Trials faster than the best within the limit whose loss interval straddles it: they might qualify."""
        return faster_uncertain(self.rows, self.max_accuracy_loss, self.best_feasible)

    @property
    def accuracy_batch_size(self) -> int:
        return StudyRecord(baseline=self.baseline).accuracy_batch_size

    @property
    def estimator(self) -> str:
        """How the study's speedups were estimated (see :mod:`opsearch.measure._timing`): as its settings say; a study
        opsearch did not make stores none, and is read with the setting's default."""
        return (self.settings.get("opsearch_config") or {}).get("speedup_estimator", "floor")

    def to_frame(self, *, front_only: bool = True) -> pd.DataFrame:
        rows = self.front if front_only else self.rows
        return pd.DataFrame([asdict(r) for r in rows], columns=list(TrialRow.__dataclass_fields__))


def build_report(study: optuna.Study, *, max_accuracy_loss: float | None = None) -> StudyReport:
    """The report of a stored study (see :func:`opsearch.store.trial_rows` for the rows and the front).

    ``max_accuracy_loss`` (a fraction: 0.01 is one point) marks trials that lose more as infeasible and names the
    fastest trial within it; None sets no limit. Trials that break a stored constraint are infeasible either way.
    """
    rows = trial_rows(study, max_accuracy_loss=max_accuracy_loss)
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    record = StudyRecord.of(study)
    settings = {"opsearch_config": record.opsearch_config, "task": record.task, "threads": record.threads,
                "workload": record.workload, "data": record.data, "search_space": record.search_space}
    return StudyReport(study.study_name, dict(record.baseline), rows, same_graph_groups(study), counts,
                       record.front_remeasured.get("at", ""), max_accuracy_loss=max_accuracy_loss,
                       machine=dict(record.machine), versions=dict(record.versions),
                       settings={k: v for k, v in settings.items() if v}, cost=study_cost(study),
                       objectives=record.objectives,
                       # Without a limit there is no one answer to follow, only the front.
                       answer=answer_over_time(study, rows) if max_accuracy_loss is not None else [],
                       minutes=study_minutes(study), predictions=prediction_check(study), metric=record.metric,
                       drift=study_drift(study).describe(),
                       margin=float((record.front_remeasured.get("tie_test") or {}).get("margin") or 0.0))


def tie_label(group: int | None) -> str:
    """A tie group's name in tables and the plot: A for the fastest group, B for the next, ..."""
    return "" if group is None else chr(ord("A") + group % 26)
