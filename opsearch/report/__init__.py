"""Stage 5, the answer: the report in every format, the plots, the operator effects, and a trial exported as a
ready model."""

from __future__ import annotations

from opsearch.report._effects import Effect, StudyEffects, effects, importances, interaction_hints, study_effects
from opsearch.report._export import TRIAL_FILE, choose_trial, export_trial
from opsearch.report._formats import FORMATS, format_markdown, render, report_dict
from opsearch.report._html import EFFECTS_DIV, PARETO_DIV, render_html, write_html_report
from opsearch.report._plot import (
    X_AXES,
    Y_AXES,
    EffectsPlotInfo,
    ParetoPlotInfo,
    draw_effects,
    draw_pareto,
    effects_figure,
    effects_plot_info,
    pareto_figure,
    pareto_plot_info,
    write_pareto_html,
)
from opsearch.report._report import (
    ROW_CELLS,
    StudyCost,
    StudyReport,
    TrialCost,
    build_report,
    cost_lines,
    format_report,
    knee_line,
    limit_line,
    row_cells,
    write_csv,
)

__all__ = [
    "EFFECTS_DIV",
    "Effect",
    "EffectsPlotInfo",
    "FORMATS",
    "PARETO_DIV",
    "ParetoPlotInfo",
    "ROW_CELLS",
    "StudyCost",
    "StudyEffects",
    "StudyReport",
    "TrialCost",
    "TRIAL_FILE",
    "X_AXES",
    "Y_AXES",
    "build_report",
    "choose_trial",
    "cost_lines",
    "draw_effects",
    "draw_pareto",
    "effects",
    "effects_figure",
    "effects_plot_info",
    "export_trial",
    "format_markdown",
    "format_report",
    "importances",
    "interaction_hints",
    "knee_line",
    "limit_line",
    "pareto_figure",
    "pareto_plot_info",
    "render",
    "render_html",
    "report_dict",
    "row_cells",
    "study_effects",
    "write_csv",
    "write_html_report",
    "write_pareto_html",
]
