"""A stored study's completed trials as rows, its Pareto front, and the fastest trial within an accuracy limit.

Every answer to "which trial is best" (the report, ``export --best``, the progress line) comes from
:func:`trial_rows` and :func:`best_within`, so they cannot disagree.

A trial is *feasible* unless it breaks a constraint: an accuracy loss over the caller's ``max_accuracy_loss``,
or the constraint the study stored with it (Optuna's ``Trial.set_constraint``: a value above 0 is a
violation). As in Optuna, the Pareto front is taken over feasible trials only.

Which speedup counts: after a *front session* (``opsearch remeasure``, or the end of ``run``) the front is
decided by the numbers it took, all side by side, for the trials it saw; a trial's own measurement from
another moment must not outrank them. Trials that completed after the session compete with their own
numbers until the next one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import optuna

from opsearch.errors import ConfigError
from opsearch.quantize import QuantRecipe
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


@dataclass(frozen=True)
class SameGraphGroup:
    trials: list[int]
    differing: list[str]  # parameters that differ inside the group, yet gave one graph


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
    # Sessions stored before "considered" saw every trial that was complete.
    considered = set(session["considered"]) if "considered" in session else None
    reference = record.baseline.get("timing", {}).get("throughput")
    done = study.get_trials(deepcopy=False, states=(COMPLETE,))
    rows = []
    for t in done:
        timed_again = remeasured.get(str(t.number))
        after_session = considered is not None and t.number not in considered
        row = _row(t, timed_again, reference, max_accuracy_loss)
        rows.append(replace(row, candidate=not remeasured or timed_again is not None or after_session))
    eligible = [i for i, r in enumerate(rows) if r.feasible and r.candidate]
    front = {eligible[j] for j in non_dominated([(rows[i].samples_per_s, rows[i].accuracy_loss_pt)
                                                  for i in eligible])}
    return [replace(r, pareto=i in front) for i, r in enumerate(rows)]


def front_rows(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """Pareto rows, fastest first; a trial that repeats an earlier one's graph is listed once."""
    return sorted((r for r in rows if r.pareto and r.same_graph_as is None), key=lambda r: -r.samples_per_s)


def best_within(rows: Sequence[TrialRow], max_accuracy_loss: float | None) -> TrialRow | None:
    """The fastest feasible candidate whose accuracy loss is at most ``max_accuracy_loss`` (None: any loss).

    With the same limit the rows were built with, it is the front's fastest point."""
    limit = math.inf if max_accuracy_loss is None else 100 * max_accuracy_loss
    eligible = [r for r in rows if r.feasible and r.candidate and r.same_graph_as is None
                and r.accuracy_loss_pt <= limit]
    return max(eligible, key=lambda r: (r.samples_per_s, -r.accuracy_loss_pt, -r.trial), default=None)


def constraint_values(trial: optuna.trial.FrozenTrial) -> list[float]:
    """The constraint values stored with a trial (Optuna's own, in either of its formats), as floats; a value
    above 0 is a violation. Empty when the study set none."""
    return [float(v) for v in trial.constraints.values()]


def _infeasible_reason(trial: optuna.trial.FrozenTrial, max_accuracy_loss: float | None) -> str:
    reasons = []
    loss = float(trial.values[1])
    if max_accuracy_loss is not None and loss > max_accuracy_loss:
        reasons.append(f"accuracy loss {100 * loss:.2f} pt > {100 * max_accuracy_loss:.2f} pt")
    violated = [v for v in constraint_values(trial) if not v <= 0]  # NaN counts as a violation
    if violated:
        reasons.append("constraint " + ", ".join(f"{v:g}" for v in violated) + " > 0")
    return "; ".join(reasons)


def _row(trial: optuna.trial.FrozenTrial, remeasured: dict | None, reference: float | None,
         max_accuracy_loss: float | None = None) -> TrialRow:
    record = TrialRecord.of(trial)
    recipe = record.recipe or {}
    timing = remeasured or record.timing
    throughput = reference * timing["speedup"] if remeasured and reference else float(trial.values[0])
    ci = timing.get("speedup_ci", [math.nan, math.nan])
    flags = QuantRecipe.from_dict(recipe).flags() if recipe else []
    reason = _infeasible_reason(trial, max_accuracy_loss)
    return TrialRow(
        trial=trial.number,
        mode=recipe.get("mode", "?"),
        operators=" ".join(f"{op}x{n}" for op, n in record.quantized_nodes.items()) or "(none)",
        flags=" ".join(flags),
        accuracy=float(record.accuracy if record.accuracy is not None else math.nan),
        accuracy_loss_pt=100 * float(trial.values[1]),
        samples_per_s=throughput,
        speedup=float(timing.get("speedup", math.nan)),
        speedup_ci_low=float(ci[0]),
        speedup_ci_high=float(ci[1]),
        speedup_cv=float(timing.get("speedup_cv", math.nan)),
        ci_halfwidth=float(timing.get("ci_halfwidth", math.nan)),
        rounds=int(timing.get("rounds", 0)),
        noisy=bool(timing.get("noisy", False)),
        same_graph_as=record.same_graph_as,
        pareto=False,
        preset=record.preset,
        remeasured=remeasured is not None,
        feasible=not reason,
        infeasible_reason=reason,
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
