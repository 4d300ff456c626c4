"""A stored study's completed trials as rows, its Pareto front, and the fastest trial within an accuracy limit.

Every answer to "which trial is best" (the report, ``export --best``, the progress line) comes from
:func:`trial_rows` and :func:`best_within`, so they cannot disagree.

Against a limit ``max_accuracy_loss`` a trial is decided on the evidence, its loss's paired 95% interval: *within*
(the interval's upper end is at most the limit), *over* (its lower end is above it) or *uncertain* (it straddles
the limit: more evaluation rows would decide it). A trial is *feasible* unless it is over, or breaks the
constraint the study stored with it (Optuna's ``Trial.set_constraint``: a value above 0 is a violation); as in
Optuna, the Pareto front is taken over feasible trials only. The best-within answer is the fastest trial *within*;
an uncertain trial that is faster is named beside it, never silently taken. A trial without a loss interval (its
study's baseline kept no fp32 answers to pair with) has only its point: the interval is the point itself.

After a front session, trials whose speeds it could not tell apart form a *tie group*; the best-within answer
is then the group's member with the lowest accuracy loss (then the fewest quantized nodes, then the lowest
trial number), not whichever the noise put first.

Which speedup counts: after a *front session* (``opsearch remeasure``, or the end of ``run``) the front is
decided by the numbers it took, all side by side, for the trials it saw; a trial's own measurement from
another moment must not outrank them. Trials that completed after the session compete with their own
numbers until the next one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import optuna

from opsearch.errors import ConfigError
from opsearch.quantize import QuantRecipe
from opsearch.store._drift import Drift, study_drift
from opsearch.store._objectives import BY_NAME, objectives_of
from opsearch.store._pareto import non_dominated
from opsearch.store._records import StudyRecord, TrialRecord

COMPLETE = optuna.trial.TrialState.COMPLETE


@dataclass(frozen=True)
class TrialRow:
    trial: int
    mode: str
    operators: str  # fp32 operator types quantized, with node counts
    flags: str
    accuracy: float
    accuracy_loss_pt: float
    samples_per_s: float
    speedup: float
    speedup_ci_low: float
    speedup_ci_high: float
    speedup_cv: float
    ci_halfwidth: float
    rounds: int
    noisy: bool
    same_graph_as: int | None
    pareto: bool
    preset: str = ""
    remeasured: bool = False  # speedup from the end-of-study session that timed the front side by side
    feasible: bool = True
    infeasible_reason: str = ""  # why not, when not feasible
    candidate: bool = True  # may stand on the front: its speedup is comparable with the front session's
    loss_ci_low_pt: float = math.nan  # the accuracy loss's paired 95% interval, in points
    loss_ci_high_pt: float = math.nan
    constraint: str = ""  # against the limit: "within", "over", "uncertain"; "" without a limit
    tie_group: int | None = None  # the front session's tie group it shares with others (0 = the fastest), if any
    quantized_nodes: int = 0  # nodes computed in int8
    group_precisions: dict = field(default_factory=dict)  # group key -> precision in the quantized graph
    smoothed: tuple[str, ...] = ()  # the roles whose projections' inputs were smoothed (quantize._smooth)
    accuracy_batch_size: int = 1  # the batch its accuracy was evaluated in
    stopped_early: str = ""  # why early stopping cut its evaluation (then untimed) or its timing short
    evaluated_rows: int | None = None  # the evaluation rows it answered (None: not recorded)
    evaluate_seconds: float = math.nan
    timing_seconds: float = math.nan
    size_mb: float = math.nan  # the model file on disk (NaN: not measured)
    latency_p50_ms: float = math.nan  # per-call latency percentiles from its timing (NaN: not timed or not measured)
    latency_p95_ms: float = math.nan
    latency_p99_ms: float = math.nan

    @property
    def timed(self) -> bool:
        """False for a trial stopped early for accuracy: it has no speedup."""
        return math.isfinite(self.speedup)


@dataclass(frozen=True)
class SameGraphGroup:
    trials: list[int]
    differing: list[str]  # parameters that differ inside the group, yet gave one graph


CONSTRAINT_STATES = ("within", "over", "uncertain")


def constraint_state(low: float, high: float, limit: float | None) -> str:
    """Where a loss interval [low, high] lies against ``limit`` (same units): "within", "over" or "uncertain";
    "" when there is no limit."""
    if limit is None:
        return ""
    if high <= limit:
        return "within"
    return "over" if low > limit else "uncertain"


def check_limit(max_accuracy_loss: float | None) -> None:
    if max_accuracy_loss is not None and not (max_accuracy_loss >= 0 and math.isfinite(max_accuracy_loss)):
        raise ConfigError(f"max_accuracy_loss={max_accuracy_loss} must be a fraction of at least 0 "
                          "(e.g. 0.01 for one point).")


def trial_rows(study: optuna.Study, *, max_accuracy_loss: float | None = None) -> list[TrialRow]:
    """A row for every completed trial, Pareto trials flagged (see the module's docstring for which speedup
    counts). ``max_accuracy_loss`` (a fraction: 0.01 is one point) marks trials that lose more as infeasible;
    None sets no limit. Trials that break a stored constraint are infeasible either way."""
    check_limit(max_accuracy_loss)
    record = StudyRecord.of(study)
    session = record.front_remeasured
    remeasured = session.get("trials", {})
    # The trials the session saw (None: it did not list them, so every one counts as seen).
    considered = None if not session or session["considered"] is None else set(session["considered"])
    reference = record.baseline.get("timing", {}).get("throughput")
    # Tie groups of one member say nothing: only real ties are marked.
    groups = {number: i for i, group in enumerate(session.get("ties", [])) if len(group) > 1 for number in group}
    done = study.get_trials(deepcopy=False, states=(COMPLETE,))
    drift = study_drift(study)
    rows = []
    for t in done:
        timed_again = remeasured.get(str(t.number))
        after_session = considered is not None and t.number not in considered
        row = _row(t, timed_again, reference, max_accuracy_loss, drift)
        rows.append(replace(row, candidate=not remeasured or timed_again is not None or after_session,
                            tie_group=groups.get(t.number) if timed_again is not None else None))
    objectives = objectives_of(record.objectives)
    eligible = [i for i, r in enumerate(rows) if r.feasible and r.candidate]
    front = {eligible[j] for j in non_dominated([[getattr(rows[i], o.column) for o in objectives] for i in eligible],
                                                [o.direction for o in objectives])}
    return [replace(r, pareto=i in front) for i, r in enumerate(rows)]


def rows_timed_on(study: optuna.Study, machine_id: str, *,
                  max_accuracy_loss: float | None = None) -> list[TrialRow]:
    """``trial_rows`` of the trials timed on this machine (by its ``measure.machine_id``) with a finite interval: what
    racing, the cost model's bar and its suggestions compare with (a speedup from another machine is paired with
    another fp32)."""
    records = {t.number: TrialRecord.of(t) for t in study.get_trials(deepcopy=False, states=(COMPLETE,))}
    here = {n for n, r in records.items() if r.machine_id == machine_id and r.timing}
    return [r for r in trial_rows(study, max_accuracy_loss=max_accuracy_loss)
            if r.trial in here and r.timed and math.isfinite(r.speedup_ci_low)]


def front_rows(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """Pareto rows, fastest first; a trial that repeats an earlier one's graph is listed once."""
    return sorted((r for r in rows if r.pareto and r.same_graph_as is None), key=lambda r: -r.samples_per_s)


def _eligible(rows: Sequence[TrialRow], max_accuracy_loss: float | None, state: str) -> list[TrialRow]:
    limit = None if max_accuracy_loss is None else 100 * max_accuracy_loss
    return [r for r in rows if r.feasible and r.candidate and r.same_graph_as is None
            and constraint_state(r.loss_ci_low_pt, r.loss_ci_high_pt, limit) in ("", state)]


def best_within(rows: Sequence[TrialRow], max_accuracy_loss: float | None, *,
                objective: str = "throughput") -> TrialRow | None:
    """The fastest feasible candidate *within* ``max_accuracy_loss`` (its whole loss interval at most the limit;
    None: any loss). When the front session tied it with others within, the tie group's member with the lowest
    accuracy loss, then the fewest quantized nodes, then the lowest trial number (see the module's docstring).

    ``objective`` (a name of ``store.objectives``): the best by another objective instead, e.g. the smallest file
    within the limit (ties: the faster, then the lower trial number)."""
    eligible = _eligible(rows, max_accuracy_loss, "within")
    if objective != "throughput":
        column = BY_NAME[objective].column
        sign = -1.0 if BY_NAME[objective].direction == "maximize" else 1.0
        ranked = [r for r in eligible if math.isfinite(getattr(r, column))]
        return min(ranked, key=lambda r: (sign * getattr(r, column), -r.samples_per_s, r.trial), default=None)
    fastest = max(eligible, key=lambda r: (r.samples_per_s, -r.accuracy_loss_pt, -r.trial), default=None)
    if fastest is None or fastest.tie_group is None:
        return fastest
    tied = [r for r in eligible if r.tie_group == fastest.tie_group]
    return min(tied, key=lambda r: (r.accuracy_loss_pt, r.quantized_nodes, r.trial))


def faster_uncertain(rows: Sequence[TrialRow], max_accuracy_loss: float | None,
                     best: TrialRow | None) -> list[TrialRow]:
    """Candidates faster than ``best`` whose loss interval straddles the limit: they might qualify, fastest
    first. (Tied with ``best``, they are not faster.)"""
    if max_accuracy_loss is None:
        return []
    floor = -math.inf if best is None else best.samples_per_s
    faster = [r for r in _eligible(rows, max_accuracy_loss, "uncertain") if r.samples_per_s > floor
              and (best is None or best.tie_group is None or r.tie_group != best.tie_group)]
    return sorted(faster, key=lambda r: -r.samples_per_s)


def constraint_values(trial: optuna.trial.FrozenTrial) -> list[float]:
    """The constraint values stored with a trial (Optuna's own, in either of its formats), as floats; a value
    above 0 is a violation. Empty when the study set none."""
    return [float(v) for v in trial.constraints.values()]


def loss_interval_pt(trial: optuna.trial.FrozenTrial) -> tuple[float, float]:
    """The trial's accuracy-loss interval in points (the point itself for a trial stored without one)."""
    interval = TrialRecord.of(trial).accuracy_loss_ci
    loss = 100 * trial_loss(trial)
    return (loss, loss) if interval is None else (100 * float(interval[0]), 100 * float(interval[1]))


def trial_loss(trial: optuna.trial.FrozenTrial) -> float:
    """Its accuracy loss (a fraction), from its record."""
    return float(TrialRecord.of(trial).accuracy_loss)


def _infeasible_reason(trial: optuna.trial.FrozenTrial, max_accuracy_loss: float | None) -> str:
    reasons = []
    low, high = loss_interval_pt(trial)
    if max_accuracy_loss is not None and constraint_state(low, high, 100 * max_accuracy_loss) == "over":
        reasons.append(f"accuracy loss {low:.2f}-{high:.2f} pt (95% interval) > {100 * max_accuracy_loss:.2f} pt")
    record = TrialRecord.of(trial)
    if record.stopped_early and not record.timing:
        reasons.append(f"stopped early: {record.stopped_early}")
    violated = [v for v in constraint_values(trial) if not v <= 0]  # NaN counts as a violation
    if violated:
        reasons.append("constraint " + ", ".join(f"{v:g}" for v in violated) + " > 0")
    return "; ".join(reasons)


def _row(trial: optuna.trial.FrozenTrial, remeasured: dict | None, reference: float | None,
         max_accuracy_loss: float | None = None, drift: Drift | None = None) -> TrialRow:
    record = TrialRecord.of(trial)
    recipe = record.recipe or {}
    timing = remeasured or record.timing
    own = reference * record.speedup if reference and record.speedup is not None else float(trial.values[0])
    throughput = reference * timing["speedup"] if remeasured and reference else own
    if not timing:  # stopped early for accuracy: never timed (its stored throughput only fills Optuna's slot)
        throughput = math.nan
    latency = timing.get("latency_ms") or {}
    speedup = float(timing.get("speedup", math.nan))
    ci = timing.get("speedup_ci", [math.nan, math.nan])
    if drift is not None and timing:  # the study's drift term, added to the interval measured (store._drift)
        ci = drift.widen((float(ci[0]), float(ci[1])), speedup)
    flags = QuantRecipe.from_dict(recipe).flags() if recipe else []
    reason = _infeasible_reason(trial, max_accuracy_loss)
    low, high = loss_interval_pt(trial)
    return TrialRow(
        trial=trial.number,
        mode=recipe.get("mode", "?"),
        operators=" ".join(f"{op}x{n}" for op, n in record.quantized_nodes.items()) or "(none)",
        flags=" ".join(flags),
        accuracy=float(record.accuracy if record.accuracy is not None else math.nan),
        accuracy_loss_pt=100 * trial_loss(trial),
        samples_per_s=throughput,
        speedup=speedup,
        speedup_ci_low=float(ci[0]),
        speedup_ci_high=float(ci[1]),
        speedup_cv=float(timing.get("speedup_cv", math.nan)),
        ci_halfwidth=(float(ci[1]) - float(ci[0])) / 2 / speedup if timing else math.nan,
        rounds=int(timing.get("rounds", 0)),
        noisy=bool(timing.get("noisy", False)),
        same_graph_as=record.same_graph_as,
        pareto=False,
        preset=record.preset,
        remeasured=remeasured is not None,
        feasible=not reason,
        infeasible_reason=reason,
        loss_ci_low_pt=low,
        loss_ci_high_pt=high,
        constraint=constraint_state(low, high, None if max_accuracy_loss is None else 100 * max_accuracy_loss),
        quantized_nodes=sum(record.quantized_nodes.values()),
        group_precisions=dict(record.group_precisions),
        smoothed=tuple(role for role, _ in recipe.get("smoothing", ())),
        accuracy_batch_size=record.accuracy_batch_size,
        stopped_early=record.stopped_early,
        evaluated_rows=record.evaluated_rows,
        evaluate_seconds=math.nan if record.evaluate_seconds is None else float(record.evaluate_seconds),
        timing_seconds=math.nan if record.timing_seconds is None else float(record.timing_seconds),
        size_mb=math.nan if record.size_mb is None else float(record.size_mb),
        latency_p50_ms=float(latency.get("p50", math.nan)),
        latency_p95_ms=float(latency.get("p95", math.nan)),
        latency_p99_ms=float(latency.get("p99", math.nan)),
    )


def same_graph_groups(study: optuna.Study) -> list[SameGraphGroup]:
    """Completed trials whose different parameters produced one graph: settings that changed nothing."""
    by_hash: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(COMPLETE,)):
        digest = TrialRecord.of(t).graph_hash
        if digest:
            by_hash.setdefault(digest, []).append(t)
    groups = []
    for members in by_hash.values():
        if len(members) < 2:
            continue
        keys = sorted({k for t in members for k in t.params})
        differing = [k for k in keys if len({repr(t.params.get(k)) for t in members}) > 1]
        groups.append(SameGraphGroup([t.number for t in members], differing))
    return sorted(groups, key=lambda g: g.trials[0])
