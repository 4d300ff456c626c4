"""The study's results as a report: the fp32 baseline, every completed trial as a row, the Pareto front, its
knee, the fastest trial within an accuracy limit, and trials whose different settings produced one graph;
and the plain-text table ``opsearch report`` prints."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
import pandas as pd

from opsearch.config import StudyConfig, legacy_values
from opsearch.store import (
    LEGACY_OBJECTIVES,
    OBJECTIVES,
    SameGraphGroup,
    StudyRecord,
    TrialRecord,
    TrialRow,
    best_within,
    faster_uncertain,
    front_rows,
    knee,
    same_graph_groups,
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
    return StudyCost(out, int(record.data.get("eval_rows", 0)), bool(config.get("early_stop", False)))


def cost_lines(report: StudyReport) -> list[str]:
    """The study's cost and what early stopping cut short, for the report; empty for a study without costs kept."""
    cost = report.cost
    if cost is None or not cost.trials:
        return []
    lines = [f"cost: {len(cost.trials)} trials measured, {cost.evaluate_s:.0f} s evaluating, {cost.timing_s:.0f} s "
             "timing"]
    stopped = cost.stopped_evaluations + cost.raced
    if not stopped:
        lines[0] += "; early stopping " + ("stopped none" if cost.early_stop else "off (--no-early-stop)")
        return lines
    saved = cost.saved_s
    lines[0] += (f"; early stopping cut {len(cost.stopped_evaluations)} evaluations and {len(cost.raced)} timings "
                 "short" + ("" if math.isnan(saved) else f", saving about {saved:.0f} s (estimated from the trials "
                                                             "that ran whole)"))
    lines += [f"  trial {t.trial}: {t.stopped_early} ({t.evaluate_s:.1f} s evaluating"
              + (f", {t.timing_s:.1f} s timing)" if t.timing_s else ")") for t in stopped]
    return lines


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
    objectives: tuple[str, ...] = LEGACY_OBJECTIVES  # what the study optimizes, its values' order

    @property
    def front(self) -> list[TrialRow]:
        """Pareto trials, fastest first; a trial that repeats an earlier one's graph is listed once."""
        return front_rows(self.rows)

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
        """How the study's speedups were estimated (see :mod:`opsearch.timing`); studies before the setting
        used the median of per-round ratios."""
        stored = self.settings.get("opsearch_config") or {}
        return stored.get("speedup_estimator", legacy_values(StudyConfig)["speedup_estimator"])

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
                       objectives=record.objectives)


# The cells every table of the front shows for a trial, from its preset to the speedup's interval.
ROW_CELLS = ("preset", "mode", "quantized operators", "flags", "accuracy", "loss (pt)", "loss 95% CI", "vs limit",
             "samples/s", "speedup", "95% CI", "tie", "MB", "p50/p95/p99 ms")


def _num(value: float, fmt: str) -> str:
    return f"{value:{fmt}}" if math.isfinite(value) else "-"


def latency_cell(p50: float, p95: float, p99: float) -> str:
    return "-" if not math.isfinite(p50) else f"{p50:.1f}/{p95:.1f}/{p99:.1f}"


def tie_label(group: int | None) -> str:
    """A tie group's name in tables and the plot: A for the fastest group, B for the next, ..."""
    return "" if group is None else chr(ord("A") + group % 26)


def row_cells(r: TrialRow) -> dict[str, str]:
    """A trial's ROW_CELLS, formatted."""
    return dict(zip(ROW_CELLS, (r.preset or "-", r.mode, r.operators, r.flags or "-", f"{r.accuracy:.4f}",
                                f"{r.accuracy_loss_pt:+.2f}", f"{r.loss_ci_low_pt:+.2f} to {r.loss_ci_high_pt:+.2f}",
                                r.constraint or "-", f"{r.samples_per_s:.1f}", f"{r.speedup:.2f}x",
                                f"{r.speedup_ci_low:.2f}-{r.speedup_ci_high:.2f}", tie_label(r.tie_group) or "-",
                                _num(r.size_mb, ".1f"),
                                latency_cell(r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms)),
                    strict=True))


# A precision as one grid cell: fp32 stays blank-ish, a partial group shows its kinds' node counts ("D2/3").
_CELL = {"fp32": "-", "dynamic": "D", "static": "S", "weight_only": "W"}
GRID_LEGEND = "D dynamic int8, S static int8 (QDQ), W weight-only, - fp32; D2/3: 2 of the group's 3 nodes"


def _cell_of(precision: str) -> str:
    if precision in _CELL:
        return _CELL[precision]
    parts = precision.split()  # "dynamic 2/3 static 1/3"
    return "".join(f"{_CELL.get(kind, kind)}{count}" for kind, count in zip(parts[::2], parts[1::2], strict=False))


def precision_grid(groups: dict[str, str]) -> tuple[list[str], list[list[str]], list[str]]:
    """A trial's group precisions as a layer x role grid: (header, one row per layer, the groups outside the
    layers as "role cell" words). Empty for a trial stored before groups were recorded."""
    from opsearch.quantize import LAYER_ROLES

    layers: dict[int, dict[str, str]] = {}
    outside = []
    for key, precision in groups.items():
        if key.startswith("layer.") and "/" in key:
            index, role = key[len("layer."):].split("/", 1)
            layers.setdefault(int(index), {})[role] = _cell_of(precision)
        else:
            outside.append(f"{key} {_cell_of(precision)}")
    roles = [r for r in LAYER_ROLES if any(r in row for row in layers.values())]
    rows = [[str(i), *(layers[i].get(r, "") for r in roles)] for i in sorted(layers)]
    return ["layer", *roles], rows, outside


def grid_lines(report: StudyReport) -> list[str]:
    """Each front configuration's precisions, layer by layer and role by role."""
    front = [r for r in report.front if r.group_precisions]
    if not front:
        return []
    lines = [f"Precision per layer and role of the front's configurations ({GRID_LEGEND}):"]
    for r in front:
        header, rows, outside = precision_grid(r.group_precisions)
        lines.append(f"  trial {r.trial} ({r.mode}{' ' + r.flags if r.flags else ''}):")
        if rows:
            table = pd.DataFrame(rows, columns=header)
            lines += ["    " + line for line in table.to_string(index=False).splitlines()]
        if outside:
            lines.append("    outside the layers: " + ", ".join(outside))
    return lines


def format_report(report: StudyReport) -> str:
    """A plain-text table for the terminal."""
    base = report.baseline
    lines = [f"study {report.study_name!r}: "
             + ", ".join(f"{n} {state}" for state, n in sorted(report.counts.items()))]
    lines.append(study_line(report))
    if base:
        lines.append(baseline_line(report))
    front = report.front
    if not front:
        if not report.rows:
            lines.append("no completed trial yet.")
        else:
            lines.append(limit_line(report) or "no feasible trial: every completed trial breaks a stored constraint.")
        return "\n".join(lines + cost_lines(report))
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
    lines.extend(best_by_lines(report))
    lines.extend(grid_lines(report))
    if report.same_graph:
        lines.append("Trials that produced identical graphs (their differing settings changed nothing):")
        for group in report.same_graph:
            lines.append(f"  trials {', '.join(map(str, group.trials))}: differ in "
                         f"{', '.join(group.differing) or 'nothing'}")
    if any(r.noisy for r in report.rows):
        lines.append("NOISY: the speedup's bootstrap over rounds (the part more rounds shrink) stayed wider than "
                     "ci_target after max_rounds; "
                     "raise max_rounds or timing_samples, or quiet the machine.")
    if any(r.tie_group is not None for r in front):
        lines.append("tie: the front session could not tell these trials' speeds apart (Wilcoxon signed-rank "
                     "tests on its paired rounds, Holm-adjusted); the same letter is one speed.")
    session = report.remeasured_at
    if session:
        lines.append(f"'front session': re-timed side by side with fp32 in one interleaved session ({session}).")
    lines.extend(footnotes(report))
    lines.extend(cost_lines(report))
    return "\n".join(lines)


def footnotes(report: StudyReport) -> list[str]:
    """What the numbers are: the speedup's estimator and interval, and the loss's."""
    how = ("each side's summed fastest time per text over paired rounds" if report.estimator == "floor"
           else "median of per-round ratios")
    return [f"throughput = fp32 reference samples/s x paired speedup ({how}); the speedup's 95% interval (+-) "
            "takes in the sessions: a bootstrap over the session pairs the rounds rotated over, then over rounds "
            "(the machine's drift over minutes stays outside it: see the README's \"Honest answers\").",
            f"loss 95% CI: paired bootstrap over the evaluation rows (both models answered the same rows, at batch "
            f"{report.accuracy_batch_size}); vs limit: within (the whole interval at most the limit), over (all of "
            "it above), uncertain (it straddles the limit: more evaluation rows would decide)."]


def workload_words(workload: dict) -> str:
    """The timed workload in words: what a study's speeds and latencies belong to."""
    if not workload:
        return "workload not recorded"
    batch = int(workload.get("batch_size", 1))
    shape = "one text per call, unpadded" if batch == 1 else f"batches of {batch}, padded to the longest"
    tokens = (f", texts cut to {workload['max_length']} tokens (mean {workload['mean_tokens']:.0f})"
              if "max_length" in workload and "mean_tokens" in workload else "")
    return (f"{workload.get('samples', '?')} texts, {shape}{tokens}, "
            + ("tokenized inside the timed region" if workload.get("end_to_end") else "tokenized beforehand"))


def machine_words(machine: dict) -> str:
    if not machine:
        return "machine not recorded"
    flags = machine.get("int8_flags") or []
    threads = (machine.get("threads") or {}).get("intra_op_threads")
    return (f"{machine.get('cpu', '?')} ({', '.join(flags) if flags else 'no int8 flags read'})"
            + (f", {threads} threads" if threads else ""))


def study_line(report: StudyReport) -> str:
    """What the study optimizes, and the workload and CPU its front belongs to."""
    return (f"optimizes {', '.join(OBJECTIVES[o].title for o in report.objectives)}; "
            f"workload: {workload_words(report.settings.get('workload', {}))}; CPU: {machine_words(report.machine)}")


def baseline_line(report: StudyReport) -> str:
    base = report.baseline
    if not base:
        return "fp32 baseline: not measured"
    latency = base["timing"].get("latency_ms") or {}
    extra = ([f"{base['size_mb']:.1f} MB"] if "size_mb" in base else []) + (
        [f"latency p50/p95/p99 {latency_cell(latency['p50'], latency['p95'], latency['p99'])} ms"] if latency else [])
    return (f"fp32 baseline: accuracy {base['metrics']['accuracy']:.4f} (batch {report.accuracy_batch_size}), "
            f"{base['timing']['throughput']:.1f} samples/s (timed at batch "
            f"{report.settings.get('workload', {}).get('batch_size', 1)})" + "".join(f", {e}" for e in extra))


_BEST_WORDS = {"size": "smallest file", "p50": "lowest median latency", "p95": "lowest p95 latency",
               "p99": "lowest p99 latency"}


def best_by_lines(report: StudyReport) -> list[str]:
    """For each objective besides throughput and accuracy loss, its best trial within the limit."""
    where = "any loss" if report.max_accuracy_loss is None else f"{100 * report.max_accuracy_loss:.2f} pt"
    out = []
    for name, r in report.best_by().items():
        out.append(f"{_BEST_WORDS[name]} within {where}: trial {r.trial}, {_num(r.size_mb, '.1f')} MB, "
                   f"p99 {_num(r.latency_p99_ms, '.1f')} ms, {_num(r.speedup, '.2f')}x fp32, loss "
                   f"{r.accuracy_loss_pt:+.2f} pt (95% CI {r.loss_ci_low_pt:+.2f} to {r.loss_ci_high_pt:+.2f})")
    return out


def limit_line(report: StudyReport) -> str:
    """The accuracy limit and the fastest trial within it; empty without a limit."""
    if report.max_accuracy_loss is None:
        return ""
    limit = f"{100 * report.max_accuracy_loss:.2f} pt"
    best = report.best_feasible
    faster = report.faster_uncertain
    maybe = ("" if not faster else "; faster but uncertain (their loss intervals straddle the limit: more "
             "evaluation rows would decide): " + ", ".join(
                 f"trial {r.trial} {r.speedup:.2f}x, loss {r.loss_ci_low_pt:+.2f} to {r.loss_ci_high_pt:+.2f} pt"
                 for r in faster))
    if best is None and not faster:
        return f"no trial loses at most {limit} accuracy: raise --max-accuracy-loss or run more trials."
    if best is None:
        return (f"no trial is surely within {limit} accuracy loss{maybe}; raise --max-accuracy-loss, or evaluate "
                "on more rows (--max-samples, a larger dataset) to decide.")
    tied = [r.trial for r in report.rows if best.tie_group is not None and r.tie_group == best.tie_group
            and r.trial != best.trial]
    tie = ("" if not tied else f"; tied in speed with trial{'s' if len(tied) > 1 else ''} "
           f"{', '.join(map(str, tied))}, chosen for the lower accuracy loss, then fewer quantized nodes")
    return (f"best within {limit}: trial {best.trial}, {best.speedup:.2f}x fp32 "
            f"({best.samples_per_s:.1f} samples/s), loss {best.accuracy_loss_pt:+.2f} pt "
            f"(95% CI {best.loss_ci_low_pt:+.2f} to {best.loss_ci_high_pt:+.2f}){tie}{maybe}")


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
