"""The report in the formats ``opsearch report --format`` writes: text, markdown, csv and json
(html, a page with interactive plots, lives in :mod:`opsearch.html_report`)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from opsearch.effects import StudyEffects
from opsearch.errors import ConfigError
from opsearch.report import ROW_CELLS, StudyReport, TrialRow, format_report, knee_line, limit_line, row_cells

FORMATS = ("text", "markdown", "csv", "json", "html")


def render(report: StudyReport, effects: StudyEffects | None, fmt: str) -> str:
    """The report as ``fmt`` (one of :data:`FORMATS`); ``effects`` is needed by markdown, json and html."""
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r} is not one of {', '.join(FORMATS)}.")
    if fmt == "text":
        return format_report(report)
    if fmt == "csv":
        return report.to_frame(front_only=False).to_csv(index=False)
    if effects is None:
        raise ConfigError(f"the {fmt} report includes the operator effects: pass effects=study_effects(study).")
    if fmt == "markdown":
        return format_markdown(report, effects)
    if fmt == "json":
        return json.dumps(report_dict(report, effects), indent=2)
    from opsearch.html_report import render_html

    return render_html(report, effects)


def json_ready(value: Any) -> Any:
    """JSON-ready: tuples become lists, NaN and infinities become null (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def report_dict(report: StudyReport, effects: StudyEffects) -> dict:
    """Everything the report knows, JSON-ready: the rows, the front, the baseline, the machine, the settings,
    the effects, the importances and the front's operator matrix."""
    knee, best = report.knee, report.best_feasible
    return json_ready({
        "study": report.study_name,
        "counts": report.counts,
        "baseline": report.baseline,
        "max_accuracy_loss": report.max_accuracy_loss,
        "front": [asdict(r) for r in report.front],
        "rows": [asdict(r) for r in report.rows],
        "knee": None if knee is None else knee.trial,
        "best_feasible": None if best is None else best.trial,
        "same_graph": [asdict(g) for g in report.same_graph],
        "remeasured_at": report.remeasured_at,
        "machine": report.machine,
        "versions": report.versions,
        "settings": report.settings,
        "effects": [{**asdict(e), "label": e.label, "note": e.note} for e in effects.effects],
        "importances": [asdict(i) for i in effects.importances],
        "operator_matrix": asdict(effects.matrix),
        "interactions": effects.interactions,
    })


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _ci(low: float, high: float, fmt: str = "+.3f") -> str:
    return "-" if not (math.isfinite(low) and math.isfinite(high)) else f"{low:{fmt}} to {high:{fmt}}"


def _diff(value: float, fmt: str = "+.3f") -> str:
    return "-" if not math.isfinite(value) else f"{value:{fmt}}"


def front_table_rows(report: StudyReport) -> tuple[list[str], list[list[object]]]:
    """The front as table rows (header, rows), fastest first, the knee and the best feasible trial marked."""
    knee, best = report.knee, report.best_feasible

    def mark(r: TrialRow) -> str:
        return " ".join(m for m, on in (("knee", knee is not None and knee.trial == r.trial),
                                        ("best within limit", best is not None and best.trial == r.trial)) if on)

    header = ["trial", "", *ROW_CELLS, "noisy"]
    rows: list[list[object]] = [[r.trial, mark(r), *row_cells(r).values(), "NOISY" if r.noisy else ""]
                                for r in report.front]
    return header, rows


def effects_table_rows(effects: StudyEffects) -> tuple[list[str], list[list[object]]]:
    header = ["setting", "n with", "n without", "speedup diff (x)", "95% CI", "loss diff (pt)", "95% CI", "note"]
    rows: list[list[object]] = [[e.label, e.n_with, e.n_without, _diff(e.speedup_diff), _ci(*e.speedup_ci),
                                 _diff(e.loss_diff_pt, "+.2f"), _ci(*e.loss_ci_pt, "+.2f"), e.note]
                                for e in effects.effects]
    return header, rows


def baseline_line(report: StudyReport) -> str:
    base = report.baseline
    if not base:
        return "fp32 baseline: not measured"
    return (f"fp32 baseline: accuracy {base['metrics']['accuracy']:.4f}, "
            f"{base['timing']['throughput']:.1f} samples/s (batch 1)")


def format_markdown(report: StudyReport, effects: StudyEffects) -> str:
    """A markdown page: the baseline, the front table, the effects table, the importances, the operator matrix."""
    parts = [f"# opsearch report: {report.study_name}", "",
             ", ".join(f"{n} {state}" for state, n in sorted(report.counts.items())) or "no trial yet", "",
             f"**{baseline_line(report)}**", ""]
    if report.max_accuracy_loss is not None:
        parts += [limit_line(report), ""]
    parts += ["## Pareto front", ""]
    if report.front:
        parts += [f"{len(report.front)} of {len(report.rows)} completed trials, fastest first. {knee_line(report)}.",
                  "", markdown_table(*front_table_rows(report)), ""]
    else:
        parts += ["No completed feasible trial yet.", ""]
    parts += ["## Operator and flag effects", "",
              "Mean with the setting minus mean without, over completed trials where the parameter exists; "
              "95% bootstrap intervals. Observational: settings the sampler chose together share their effects.",
              "", markdown_table(*effects_table_rows(effects)), ""]
    if effects.interactions:
        parts += ["Interaction hints:", "", *[f"- {hint}" for hint in effects.interactions], ""]
    parts += ["## Parameter importances (Optuna, fANOVA)", ""]
    for imp in effects.importances:
        if imp.values:
            parts += [f"{imp.objective}: " + ", ".join(f"{k} {v:.2f}" for k, v in imp.values.items()), ""]
        else:
            parts += [f"{imp.objective}: not available ({imp.reason})", ""]
    matrix = effects.matrix
    if matrix.trials:
        parts += ["## Operators quantized on the front (node counts)", "",
                  markdown_table(["trial", *matrix.op_types],
                                 [[t, *row] for t, row in zip(matrix.trials, matrix.counts, strict=True)]), ""]
    return "\n".join(parts)
