"""The report's tables and lines, as the markdown and HTML pages both show them."""

from __future__ import annotations

import math
from typing import Any

from opsearch.report._effects import StudyEffects
from opsearch.report._report import ROW_CELLS, StudyReport, row_cells
from opsearch.store import TrialRow


def json_ready(value: Any) -> Any:
    """JSON-ready: tuples become lists, NaN and infinities become null (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


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
