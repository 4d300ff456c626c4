"""The study's results as rows: the Pareto front, the fp32 baseline beside it, and trials whose
different settings produced the same graph (settings that changed nothing).

A trial is *feasible* unless it breaks a constraint: an accuracy loss over the caller's ``max_accuracy_loss``,
or a constraint the study stored with it (user attr ``constraint``, or Optuna's own, ``Trial.set_constraint``:
a value above 0 is a violation). As in Optuna, the Pareto front is taken over feasible trials only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import optuna
import pandas as pd

from opsearch.config import LEGACY_DEFAULTS
from opsearch.errors import ConfigError
from opsearch.pareto import knee, non_dominated
from opsearch.quantize import QuantRecipe

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


@dataclass(frozen=True)
class SameGraphGroup:
    trials: list[int]
    differing: list[str]  # parameters that differ inside the group, yet gave one graph


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

    @property
    def front(self) -> list[TrialRow]:
        """Pareto trials, fastest first; a trial that repeats an earlier one's graph is listed once."""
        return sorted((r for r in self.rows if r.pareto and r.same_graph_as is None), key=lambda r: -r.samples_per_s)

    @property
    def knee(self) -> TrialRow | None:
        """The front's knee (see :func:`opsearch.pareto.knee`), or None when the front has none."""
        front = self.front
        i = knee([(r.samples_per_s, r.accuracy_loss_pt) for r in front])
        return None if i is None else front[i]

    @property
    def best_feasible(self) -> TrialRow | None:
        """The fastest feasible trial when a ``max_accuracy_loss`` was given; None without a limit or a candidate.

        It is the front's fastest point, since the front holds feasible trials only (after a front session, those
        it re-timed)."""
        front = self.front
        return front[0] if self.max_accuracy_loss is not None and front else None

    @property
    def estimator(self) -> str:
        """How the study's speedups were estimated (see :mod:`opsearch.timing`); studies before the setting
        used the median of per-round ratios."""
        return self.settings.get("opsearch_config", {}).get("speedup_estimator", LEGACY_DEFAULTS["speedup_estimator"])

    def to_frame(self, *, front_only: bool = True) -> pd.DataFrame:
        rows = self.front if front_only else self.rows
        return pd.DataFrame([asdict(r) for r in rows], columns=list(TrialRow.__dataclass_fields__))


SETTINGS_ATTRS = ("opsearch_config", "task", "threads", "workload", "data", "search_space")


def build_report(study: optuna.Study, *, max_accuracy_loss: float | None = None) -> StudyReport:
    """Rows for every completed trial. Where the front was re-measured side by side, those speedups are used,
    and the front is recomputed on them.

    ``max_accuracy_loss`` (a fraction: 0.01 is one point) marks trials that lose more as infeasible; None sets
    no limit. Trials that break a stored constraint are infeasible either way; the front holds feasible ones.
    """
    if max_accuracy_loss is not None and not (max_accuracy_loss >= 0 and math.isfinite(max_accuracy_loss)):
        raise ConfigError(f"max_accuracy_loss={max_accuracy_loss} must be a fraction of at least 0 "
                          "(e.g. 0.01 for one point).")
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == COMPLETE]
    remeasured = study.user_attrs.get("front_remeasured", {}).get("trials", {})
    reference = study.user_attrs.get("baseline", {}).get("timing", {}).get("throughput")
    rows = [_row(t, remeasured.get(str(t.number)), reference, max_accuracy_loss) for t in done]
    # After a front session, only its numbers, all taken side by side, decide the front: a trial's own
    # measurement from another moment must not outrank them.
    candidates = [i for i, r in enumerate(rows) if r.feasible and (r.remeasured or not remeasured)]
    front = {candidates[j] for j in non_dominated([(rows[i].samples_per_s, rows[i].accuracy_loss_pt)
                                                    for i in candidates])}
    rows = [replace(r, pareto=i in front) for i, r in enumerate(rows)]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    attrs = study.user_attrs
    return StudyReport(study.study_name, dict(attrs.get("baseline", {})), rows,
                       _same_graph_groups(done), counts, attrs.get("front_remeasured", {}).get("at", ""),
                       max_accuracy_loss=max_accuracy_loss, machine=dict(attrs.get("machine", {})),
                       versions=dict(attrs.get("versions", {})),
                       settings={k: attrs[k] for k in SETTINGS_ATTRS if k in attrs})


def constraint_values(trial: optuna.trial.FrozenTrial) -> list[float]:
    """The constraint values stored with a trial (user attr ``constraint``, else Optuna's own constraints, in
    either of its formats), as floats; a value above 0 is a violation. Empty when the study set none."""
    raw = trial.user_attrs.get("constraint")
    if raw is None:
        return [float(v) for v in trial.constraints.values()]
    values = raw if isinstance(raw, (list, tuple)) else [raw]
    return [float(v) for v in values]


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
    attrs = trial.user_attrs
    recipe = attrs.get("recipe", {})
    timing = remeasured or attrs.get("timing", {})
    throughput = reference * timing["speedup"] if remeasured and reference else float(trial.values[0])
    ci = timing.get("speedup_ci", [math.nan, math.nan])
    nodes = attrs.get("quantized_nodes", {})
    flags = QuantRecipe.from_dict(recipe).flags() if recipe else []
    reason = _infeasible_reason(trial, max_accuracy_loss)
    return TrialRow(
        trial=trial.number,
        mode=recipe.get("mode", "?"),
        operators=" ".join(f"{op}x{n}" for op, n in nodes.items()) or "(none)",
        flags=" ".join(flags),
        accuracy=float(attrs.get("accuracy", math.nan)),
        accuracy_loss_pt=100 * float(trial.values[1]),
        samples_per_s=throughput,
        speedup=float(timing.get("speedup", math.nan)),
        speedup_ci_low=float(ci[0]),
        speedup_ci_high=float(ci[1]),
        speedup_cv=float(timing.get("speedup_cv", math.nan)),
        ci_halfwidth=float(timing.get("ci_halfwidth", math.nan)),
        rounds=int(timing.get("rounds", 0)),
        noisy=bool(timing.get("noisy", False)),
        same_graph_as=attrs.get("same_graph_as"),
        pareto=False,
        preset=attrs.get("preset", ""),
        remeasured=remeasured is not None,
        feasible=not reason,
        infeasible_reason=reason,
    )


def _same_graph_groups(done: list[optuna.trial.FrozenTrial]) -> list[SameGraphGroup]:
    by_hash: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in done:
        if "graph_hash" in t.user_attrs:
            by_hash.setdefault(t.user_attrs["graph_hash"], []).append(t)
    groups = []
    for members in by_hash.values():
        if len(members) < 2:
            continue
        keys = sorted({k for t in members for k in t.params})
        differing = [k for k in keys if len({repr(t.params.get(k)) for t in members}) > 1]
        groups.append(SameGraphGroup([t.number for t in members], differing))
    return sorted(groups, key=lambda g: g.trials[0])


# The cells every table of the front shows for a trial, from its preset to the speedup's interval.
ROW_CELLS = ("preset", "mode", "quantized operators", "flags", "accuracy", "loss (pt)", "samples/s", "speedup",
             "95% CI")


def row_cells(r: TrialRow) -> dict[str, str]:
    """A trial's ROW_CELLS, formatted."""
    return dict(zip(ROW_CELLS, (r.preset or "-", r.mode, r.operators, r.flags or "-", f"{r.accuracy:.4f}",
                                f"{r.accuracy_loss_pt:+.2f}", f"{r.samples_per_s:.1f}", f"{r.speedup:.2f}x",
                                f"{r.speedup_ci_low:.2f}-{r.speedup_ci_high:.2f}"), strict=True))


def format_report(report: StudyReport) -> str:
    """A plain-text table for the terminal."""
    base = report.baseline
    lines = [f"study {report.study_name!r}: "
             + ", ".join(f"{n} {state}" for state, n in sorted(report.counts.items()))]
    if base:
        lines.append(f"fp32 baseline: accuracy {base['metrics']['accuracy']:.4f}, "
                     f"{base['timing']['throughput']:.1f} samples/s (batch 1)")
    front = report.front
    if not front:
        if not report.rows:
            lines.append("no completed trial yet.")
        else:
            lines.append(limit_line(report) or "no feasible trial: every completed trial breaks a stored constraint.")
        return "\n".join(lines)
    lines.append(f"Pareto front ({len(front)} of {len(report.rows)} completed trials), fastest first:")
    table = pd.DataFrame([{
        "trial": r.trial,
        **row_cells(r),
        "+-": f"{r.ci_halfwidth:.1%}" + (" NOISY" if r.noisy else ""),
        "timed": "front session" if r.remeasured else "own trial",
        "same graph as": "" if r.same_graph_as is None else str(r.same_graph_as),
    } for r in front])
    lines.append(table.to_string(index=False))
    lines.append(knee_line(report))
    if report.max_accuracy_loss is not None:
        lines.append(limit_line(report))
    if report.same_graph:
        lines.append("Trials that produced identical graphs (their differing settings changed nothing):")
        for group in report.same_graph:
            lines.append(f"  trials {', '.join(map(str, group.trials))}: differ in "
                         f"{', '.join(group.differing) or 'nothing'}")
    if any(r.noisy for r in report.rows):
        lines.append("NOISY: the speedup's 95% interval stayed wider than ci_target after max_rounds; "
                     "raise max_rounds or timing_samples, or quiet the machine.")
    session = report.remeasured_at
    if session:
        lines.append(f"'front session': re-timed side by side with fp32 in one interleaved session ({session}).")
    how = ("each side's summed fastest time per text over paired rounds" if report.estimator == "floor"
           else "median of per-round ratios")
    lines.append(f"throughput = fp32 reference samples/s x paired speedup ({how}); "
                 "+- is the half-width of the speedup's 95% bootstrap interval.")
    return "\n".join(lines)


def limit_line(report: StudyReport) -> str:
    """The accuracy limit and the fastest trial within it; empty without a limit."""
    if report.max_accuracy_loss is None:
        return ""
    limit = f"{100 * report.max_accuracy_loss:.2f} pt"
    best = report.best_feasible
    if best is None:
        return f"no trial loses at most {limit} accuracy: raise --max-accuracy-loss or run more trials."
    return (f"best within {limit}: trial {best.trial}, {best.speedup:.2f}x fp32 "
            f"({best.samples_per_s:.1f} samples/s), loss {best.accuracy_loss_pt:+.2f} pt")


def knee_line(report: StudyReport) -> str:
    knee = report.knee
    if knee is None:
        return "knee: none (the front has fewer than three points, or no bend)"
    return (f"knee of the front: trial {knee.trial}, {knee.speedup:.2f}x fp32 at {knee.accuracy_loss_pt:+.2f} pt "
            "(the point farthest above the line joining the front's ends, both axes scaled to the front)")


def write_csv(report: StudyReport, path: str | Path, *, front_only: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.to_frame(front_only=front_only).to_csv(path, index=False)
    return path
