"""The report in the formats ``opsearch report --format`` writes: text, markdown, csv and json
(html, a page with interactive plots, lives in :mod:`opsearch.html_report`)."""

from __future__ import annotations

import json
from dataclasses import asdict

from opsearch.errors import ConfigError
from opsearch.report._effects import StudyEffects
from opsearch.report._html import render_html
from opsearch.report._report import (
    GRID_LEGEND,
    StudyReport,
    baseline_line,
    best_by_lines,
    cost_lines,
    footnotes,
    format_report,
    knee_line,
    limit_line,
    precision_grid,
    study_line,
)
from opsearch.report._tables import effects_table_rows, front_table_rows, json_ready
from opsearch.store import CONSTRAINT_STATES

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
    return render_html(report, effects)


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
        "objectives": list(report.objectives),
        "best_by": {name: row.trial for name, row in report.best_by().items()},
        "knee": None if knee is None else knee.trial,
        "best_feasible": None if best is None else best.trial,
        "faster_uncertain": [r.trial for r in report.faster_uncertain],
        "constraint_counts": {state: sum(r.constraint == state for r in report.front) for state in CONSTRAINT_STATES}
        if report.max_accuracy_loss is not None else {},
        "ties": [[r.trial for r in report.front if r.tie_group == g]
                 for g in sorted({r.tie_group for r in report.front if r.tie_group is not None})],
        "same_graph": [asdict(g) for g in report.same_graph],
        "cost": None if report.cost is None else {**asdict(report.cost), "evaluate_s": report.cost.evaluate_s,
                                                  "timing_s": report.cost.timing_s, "saved_s": report.cost.saved_s},
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


def format_markdown(report: StudyReport, effects: StudyEffects) -> str:
    """A markdown page: the baseline, the front table, the effects table, the importances, the operator matrix."""
    parts = [f"# opsearch report: {report.study_name}", "",
             ", ".join(f"{n} {state}" for state, n in sorted(report.counts.items())) or "no trial yet", "",
             study_line(report), "", f"**{baseline_line(report)}**", ""]
    if report.max_accuracy_loss is not None:
        parts += [limit_line(report), ""]
    parts += [*(f"- {line}" for line in best_by_lines(report)), ""] if best_by_lines(report) else []
    parts += ["## Pareto front", ""]
    if report.front:
        parts += [f"{len(report.front)} of {len(report.rows)} completed trials, fastest first. {knee_line(report)}.",
                  "", markdown_table(*front_table_rows(report)), "", *[f"- {line}" for line in footnotes(report)], ""]
    else:
        parts += ["No completed feasible trial yet.", ""]
    grids = [r for r in report.front if r.group_precisions]
    if grids:
        parts += ["## Precision per layer and role", "", f"{GRID_LEGEND}.", ""]
        for r in grids:
            header, rows, outside = precision_grid(r.group_precisions)
            parts += [f"**trial {r.trial}** ({r.mode} {r.flags})", ""]
            if rows:
                parts += [markdown_table(header, rows), ""]
            if outside:
                parts += ["Outside the layers: " + ", ".join(outside), ""]
    if cost_lines(report):
        parts += ["## Cost", "", *[f"- {line.strip()}" for line in cost_lines(report)], ""]
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
