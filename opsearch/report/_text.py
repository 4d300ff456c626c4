"""The report as plain text for the terminal: what ``opsearch report`` prints, and ``opsearch run`` at its end."""

from __future__ import annotations

import pandas as pd

from opsearch.report._anytime import answer_lines
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
from opsearch.report._tables import GRID_LEGEND, precision_grid, row_cells


def format_report(report: StudyReport) -> str:
    """A plain-text table for the terminal."""
    lines = [f"study {report.study_name!r}: {counts_words(report)}", study_line(report)]
    if report.baseline:
        lines.append(baseline_line(report))
    front = report.front
    if not front:
        if not report.rows:
            lines.append("no completed trial yet.")
        else:
            lines.append(limit_line(report) or "no feasible trial: every completed trial breaks a stored constraint.")
        return "\n".join(lines + cost_lines(report))
    lines.append(f"Pareto front ({len(front)} of {len(report.rows)} completed trials), fastest first:")
    lines.append(front_table(report))
    lines.append(knee_line(report))
    if report.max_accuracy_loss is not None:
        lines.append(limit_line(report))
    lines.extend(best_by_lines(report))
    lines.extend(answer_lines(report.answer, _limit_pt(report)))
    lines.extend(grid_lines(report))
    lines.extend(_notes(report))
    lines.extend(footnotes(report))
    lines.extend(cost_lines(report))
    return "\n".join(lines)


def front_table(report: StudyReport) -> str:
    """The front, fastest first, as aligned text columns."""
    table = pd.DataFrame([{
        "trial": r.trial,
        **row_cells(r, report.metric_title),
        "+-": f"{r.ci_halfwidth:.1%}" + (" NOISY" if r.noisy else ""),
        "timed": "front session" if r.remeasured else "own trial",
        "same graph as": "" if r.same_graph_as is None else str(r.same_graph_as),
    } for r in report.front])
    return table.to_string(index=False)


def grid_lines(report: StudyReport) -> list[str]:
    """Each front configuration's precisions, layer by layer and role by role."""
    front = [r for r in report.front if r.group_precisions]
    if not front:
        return []
    lines = [f"Precision per layer and role of the front's configurations ({GRID_LEGEND}):"]
    for r in front:
        header, rows, outside = precision_grid(r.group_precisions, r.smoothed)
        lines.append(f"  trial {r.trial} ({r.mode}{' ' + r.flags if r.flags else ''}):")
        if rows:
            table = pd.DataFrame(rows, columns=header)
            lines += ["    " + line for line in table.to_string(index=False).splitlines()]
        if outside:
            lines.append("    outside the layers: " + ", ".join(outside))
    return lines


def _notes(report: StudyReport) -> list[str]:
    """What the front table's marks mean: identical graphs, NOISY, tie letters and the front session."""
    lines = []
    if report.same_graph:
        lines.append("Trials that produced identical graphs (their differing settings changed nothing):")
        for group in report.same_graph:
            lines.append(f"  trials {', '.join(map(str, group.trials))}: differ in "
                         f"{', '.join(group.differing) or 'nothing'}")
    if any(r.noisy for r in report.rows):
        lines.append("NOISY: the speedup's bootstrap over rounds (the part more rounds shrink) stayed wider than "
                     "ci_target after max_rounds; "
                     "raise max_rounds or timing_samples, or quiet the machine.")
    if any(r.tie_group is not None for r in report.front):
        by = f"by more than the {report.margin:.0%} margin" if report.margin else "at all"
        lines.append(f"tie: the front session could not tell these trials' speeds apart {by} (Wilcoxon signed-rank "
                     "tests on its paired rounds, Holm-adjusted); the same letter is one speed.")
    session = report.remeasured_at
    if session:
        lines.append(f"'front session': re-timed side by side with fp32 in one interleaved session ({session}).")
    return lines


def _limit_pt(report: StudyReport) -> float | None:
    return None if report.max_accuracy_loss is None else 100 * report.max_accuracy_loss
