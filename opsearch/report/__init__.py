"""Stage 5, the answer: the report's model (:mod:`._report`), a renderer per format over it (text, markdown,
csv and json, html), the plots, the operator effects, a model's graph inspection, and a trial exported as a ready
model.

The names below are imported on first use, as :mod:`opsearch`'s are, so that the command line reads
:data:`FORMATS` for its parser without loading pandas, Optuna or a plotting library.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it.
_EXPORTS = {
    "StudyCost": "_report",
    "StudyReport": "_report",
    "TrialCost": "_report",
    "build_report": "_report",
    "ROW_CELLS": "_tables",
    "row_cells": "_tables",
    "cost_lines": "_lines",
    "knee_line": "_lines",
    "limit_line": "_lines",
    "FORMATS": "_formats",
    "RENDERERS": "_render",
    "Renderer": "_render",
    "render": "_render",
    "write_report": "_render",
    "format_report": "_text",
    "format_markdown": "_markdown",
    "front_records": "_csv_json",
    "render_front_json": "_csv_json",
    "report_dict": "_csv_json",
    "write_csv": "_csv_json",
    "EFFECTS_DIV": "_html",
    "PARETO_DIV": "_html",
    "render_html": "_html",
    "write_html_report": "_html",
    "AnswerStep": "_anytime",
    "answer_lines": "_anytime",
    "answer_over_time": "_anytime",
    "draw_answer": "_anytime",
    "ANSWER_PNG": "_outputs",
    "PARETO_HTML": "_outputs",
    "PARETO_PNG": "_outputs",
    "REPORT_PAGE": "_outputs",
    "default_output": "_outputs",
    "X_AXES": "_plot",
    "Y_AXES": "_plot",
    "EffectsPlotInfo": "_plot",
    "ParetoPlotInfo": "_plot",
    "draw_effects": "_plot",
    "draw_pareto": "_plot",
    "effects_figure": "_plot",
    "effects_plot_info": "_plot",
    "pareto_figure": "_plot",
    "pareto_plot_info": "_plot",
    "write_pareto_html": "_plot",
    "Effect": "_effects",
    "StudyEffects": "_effects",
    "effects": "_effects",
    "importances": "_effects",
    "interaction_hints": "_effects",
    "study_effects": "_effects",
    "Inspection": "_inspection",
    "format_inspection": "_inspection",
    "inspection_json": "_inspection",
    "TRIAL_FILE": "_export",
    "choose_trial": "_export",
    "export_trial": "_export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'opsearch.report' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"opsearch.report.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
