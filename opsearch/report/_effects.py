"""What each setting did across the study: operator and flag effects, parameter importances, and which operators
each Pareto configuration quantizes.

An *effect* compares the completed trials that had a setting with those that did not: for a boolean parameter
(``op_MatMul``, ``per_channel``, ...), True against False; for any other categorical parameter (``mode``,
``weights_dtype``), each value against the others. Only trials where the parameter exists take part (``op_X``
exists only in modes that offer X; ``activations_symmetric`` only in static mode). The difference is of means,
with a seeded bootstrap 95% interval; these are observational differences between the trials the sampler
chose, not a controlled experiment, so a setting that travelled with another inherits some of its effect.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna

from opsearch.measure import mean_difference_ci
from opsearch.report._report import StudyReport, build_report
from opsearch.store import OBJECTIVES, StudyRecord, TrialRecord, trial_loss

COMPLETE = optuna.trial.TrialState.COMPLETE
MIN_PER_SIDE = 2  # a side with fewer trials gives no spread to bootstrap


@dataclass(frozen=True)
class Effect:
    param: str  # the Optuna parameter, e.g. "op_MatMul", "weights_dtype"
    value: str  # the setting compared against the rest: "True" for a boolean, else the value, e.g. "QUInt8"
    n_with: int  # trials that had it
    n_without: int  # trials where the parameter exists with another value
    speedup_diff: float  # mean speedup with minus without (x); NaN with too few trials
    speedup_ci: tuple[float, float]  # its bootstrap 95% interval
    loss_diff_pt: float  # mean accuracy loss with minus without (points); NaN with too few trials
    loss_ci_pt: tuple[float, float]

    @property
    def label(self) -> str:
        return self.param if self.value == "True" else f"{self.param}={self.value}"

    @property
    def too_few(self) -> bool:
        return min(self.n_with, self.n_without) < MIN_PER_SIDE

    @property
    def note(self) -> str:
        return f"too few trials (fewer than {MIN_PER_SIDE} on a side)" if self.too_few else ""


@dataclass(frozen=True)
class Importances:
    objective: str  # "throughput" or "accuracy_loss"
    values: dict[str, float]  # parameter -> importance (they sum to 1), most important first; empty on failure
    reason: str = ""  # why ``values`` is empty


@dataclass(frozen=True)
class OperatorMatrix:
    trials: list[int]  # the listed front's trials, fastest first
    op_types: list[str]  # every operator type the study offered or quantized
    counts: list[list[int]]  # counts[i][j]: nodes of op_types[j] that trial i quantized (0: none)


@dataclass(frozen=True)
class StudyEffects:
    effects: list[Effect]
    importances: list[Importances]
    matrix: OperatorMatrix
    interactions: list[str]  # hints: pairs of operator types whose joint effect differs from the sum


def study_effects(study: optuna.Study, *, report: StudyReport | None = None, seed: int = 0,
                  n_bootstrap: int = 2000) -> StudyEffects:
    """Effects, importances and the front's operator matrix of ``study``; ``report`` (None: built here) names
    the front."""
    report = report if report is not None else build_report(study)
    done = study.get_trials(deepcopy=False, states=(COMPLETE,))
    return StudyEffects(effects(done, seed=seed, n_bootstrap=n_bootstrap), importances(study),
                        operator_matrix(done, report), interaction_hints(done))


def trial_speedup(trial: optuna.trial.FrozenTrial) -> float:
    """The speedup the trial measured itself (the same way for every trial, unlike a later front session)."""
    record = TrialRecord.of(trial)
    speedup = record.timing.get("speedup", record.speedup)
    return math.nan if speedup is None else float(speedup)


def effects(trials: list[optuna.trial.FrozenTrial], *, seed: int = 0, n_bootstrap: int = 2000) -> list[Effect]:
    """One :class:`Effect` per boolean parameter and per value of every other categorical parameter, in
    parameter order (operators first, then flags, alphabetically), each value in the order first seen."""
    speed = {t.number: trial_speedup(t) for t in trials}
    loss = {t.number: 100 * trial_loss(t) for t in trials}
    names = sorted({k for t in trials for k, d in t.distributions.items()
                    if isinstance(d, optuna.distributions.CategoricalDistribution)},
                   key=lambda k: (not k.startswith("op_"), k))
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        having = [t for t in trials if name in t.params]
        values = list(dict.fromkeys(t.params[name] for t in having))
        compared = [True] if set(values) <= {True, False} else values
        for value in compared:
            on = [t.number for t in having if t.params[name] == value]
            off = [t.number for t in having if t.params[name] != value]
            s_diff, s_ci = _difference([speed[n] for n in on], [speed[n] for n in off], rng, n_bootstrap)
            q_diff, q_ci = _difference([loss[n] for n in on], [loss[n] for n in off], rng, n_bootstrap)
            out.append(Effect(name, str(value), len(on), len(off), s_diff, s_ci, q_diff, q_ci))
    return out


def _difference(on: list[float], off: list[float], rng: np.random.Generator,
                n_bootstrap: int) -> tuple[float, tuple[float, float]]:
    """Difference of means (on - off) and the percentile bootstrap 95% interval, resampling each side."""
    a, b = np.asarray([v for v in on if math.isfinite(v)]), np.asarray([v for v in off if math.isfinite(v)])
    if min(len(a), len(b)) < MIN_PER_SIDE:
        return math.nan, (math.nan, math.nan)
    return float(a.mean() - b.mean()), mean_difference_ci(a, b, resamples=n_bootstrap, seed=rng)


def importances(study: optuna.Study, *, seed: int = 0) -> list[Importances]:
    """Optuna's parameter importances (fANOVA, seeded) for each objective; on failure, empty with the reason."""
    done = study.get_trials(deepcopy=False, states=(COMPLETE,))
    names = StudyRecord.of(study).objectives
    out = []
    for i, objective in enumerate(names):
        study_i, trials = study, done
        timed = objective in OBJECTIVES and OBJECTIVES[objective].timed
        if timed and any(not TrialRecord.of(t).timing for t in done):  # trials stopped before timing have no speed
            trials = [t for t in done if TrialRecord.of(t).timing]
            study_i = optuna.create_study(directions=study.directions)
            study_i.add_trials(trials)
        if len(trials) < 2:
            out.append(Importances(objective, {}, f"needs at least 2 completed trials; the study has {len(trials)}"))
            continue
        target: Callable[[optuna.trial.FrozenTrial], float] = lambda t, i=i: float(t.values[i])  # noqa: E731
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = optuna.importance.get_param_importances(
                    study_i, target=target, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
        except (ValueError, RuntimeError) as exc:
            out.append(Importances(objective, {}, f"Optuna could not compute them: {exc}"))
            continue
        if not values:
            out.append(Importances(objective, {}, "no parameter is shared by every completed trial"))
            continue
        out.append(Importances(objective, {k: float(v) for k, v in values.items()}))
    return out


def operator_matrix(trials: list[optuna.trial.FrozenTrial], report: StudyReport) -> OperatorMatrix:
    """Rows: the report's listed front (fastest first); columns: every operator type offered (``op_X``) or
    quantized; values: the quantized node count the trial recorded (0 when absent)."""
    by_number = {t.number: t for t in trials}
    front = [by_number[r.trial] for r in report.front if r.trial in by_number]
    offered = {k[3:] for t in trials for k in t.params if k.startswith("op_")}
    quantized = {op for t in front for op in TrialRecord.of(t).quantized_nodes}
    ops = sorted(offered | quantized)
    counts = [[int(TrialRecord.of(t).quantized_nodes.get(op, 0)) for op in ops] for t in front]
    return OperatorMatrix([t.number for t in front], ops, counts)


def interaction_hints(trials: list[optuna.trial.FrozenTrial], *, min_cell: int = 2,
                      min_gap: float = 0.1) -> list[str]:
    """Pairs of operator types whose speedup together differs from the sum of their separate effects by more
    than ``min_gap`` (x), with every one of the four on/off cells holding ``min_cell`` trials. A hint, not a test."""
    speed = {t.number: trial_speedup(t) for t in trials}
    ops = sorted({k for t in trials for k in t.params if k.startswith("op_")})
    hints = []
    for i, a in enumerate(ops):
        for b in ops[i + 1:]:
            both = [t for t in trials if a in t.params and b in t.params]
            cells = {(x, y): [speed[t.number] for t in both if t.params[a] == x and t.params[b] == y]
                     for x in (False, True) for y in (False, True)}
            if any(len(v) < min_cell for v in cells.values()):
                continue
            mean = {k: float(np.mean(v)) for k, v in cells.items()}
            gap = mean[True, True] - mean[True, False] - mean[False, True] + mean[False, False]
            if abs(gap) > min_gap:
                hints.append(f"{a} and {b}: together {gap:+.2f}x {'more' if gap > 0 else 'less'} speedup than "
                             "their separate effects add up to")
    return hints
