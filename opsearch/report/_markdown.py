"""The report as a markdown page: the baseline, the front, the precision grids, the cost, the operator effects, the
parameter importances and the front's operator matrix."""

from __future__ import annotations

from opsearch.report._anytime import answer_lines
from opsearch.report._effects import StudyEffects
from opsearch.report._lines import (
    baseline_line,
    best_by_lines,
    cost_lines,
    counts_words,
    footnotes,
    knee_line,
    limit_line,
    study_line,
)
from opsearch.report._report import StudyReport
from opsearch.report._tables import (
    GRID_LEGEND,
    effects_table_rows,
    front_table_rows,
    matrix_table_rows,
    precision_grid,
)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def format_markdown(report: StudyReport, effects: StudyEffects) -> str:
    """A markdown page: the baseline, the front table, the effects table, the importances, the operator matrix."""
    parts = [f"# opsearch report: {report.study_name}", "", counts_words(report) or "no trial yet", "",
             study_line(report), "", f"**{baseline_line(report)}**", ""]
    if report.max_accuracy_loss is not None:
        parts += [limit_line(report), ""]
    parts += [*(f"- {line}" for line in best_by_lines(report)), ""] if best_by_lines(report) else []
    parts += _front(report) + _grids(report)
    answer = answer_lines(report.answer, None if report.max_accuracy_loss is None else 100 * report.max_accuracy_loss)
    if answer:
        parts += ["## How the answer improved", "", answer[0][0].upper() + answer[0][1:], "",
                  *[f"- {line.strip()}" for line in answer[1:]], ""]
    if cost_lines(report):
        parts += ["## Cost", "", *[f"- {line.strip()}" for line in cost_lines(report)], ""]
    parts += _effects(effects)
    if effects.matrix.trials:
        parts += ["## Operators quantized on the front (node counts)", "",
                  markdown_table(*matrix_table_rows(effects)), ""]
    return "\n".join(parts)


def _front(report: StudyReport) -> list[str]:
    parts = ["## Pareto front", ""]
    if report.front:
        parts += [f"{len(report.front)} of {len(report.rows)} completed trials, fastest first. {knee_line(report)}.",
                  "", markdown_table(*front_table_rows(report)), "", *[f"- {line}" for line in footnotes(report)], ""]
    else:
        parts += ["No completed feasible trial yet.", ""]
    return parts


def _grids(report: StudyReport) -> list[str]:
    grids = [r for r in report.front if r.group_precisions]
    if not grids:
        return []
    parts = ["## Precision per layer and role", "", f"{GRID_LEGEND}.", ""]
    for r in grids:
        header, rows, outside = precision_grid(r.group_precisions, r.smoothed)
        parts += [f"**trial {r.trial}** ({r.mode} {r.flags})", ""]
        if rows:
            parts += [markdown_table(header, rows), ""]
        if outside:
            parts += ["Outside the layers: " + ", ".join(outside), ""]
    return parts


def _effects(effects: StudyEffects) -> list[str]:
    """The effects table, the interaction hints and the parameter importances."""
    parts = ["## Operator and flag effects", "",
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
    return parts
