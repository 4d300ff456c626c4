"""The report's tables as cells: a trial's row, the front, the effects, and a trial's precision per layer and role.
Each renderer lays them out its own way (text columns, markdown, HTML)."""

from __future__ import annotations

import math

from opsearch.report._effects import StudyEffects
from opsearch.report._report import StudyReport, tie_label
from opsearch.store import TrialRow

# The cells every table of the front shows for a trial, from its preset to the speedup's interval ("accuracy": the
# study's metric, named by it).
ROW_CELLS = ("preset", "mode", "quantized operators", "flags", "accuracy", "loss (pt)", "loss 95% CI", "vs limit",
             "samples/s", "speedup", "95% CI", "tie", "MB", "p50/p95/p99 ms")


def row_cell_names(metric_title: str) -> list[str]:
    """ROW_CELLS with the metric's column named by it."""
    return [metric_title if c == "accuracy" else c for c in ROW_CELLS]


def number_cell(value: float, fmt: str) -> str:
    """A number as ``fmt``, or "-" for one not measured (NaN)."""
    return f"{value:{fmt}}" if math.isfinite(value) else "-"


def latency_cell(p50: float, p95: float, p99: float) -> str:
    return "-" if not math.isfinite(p50) else f"{p50:.1f}/{p95:.1f}/{p99:.1f}"


def row_cells(r: TrialRow, metric_title: str = "accuracy") -> dict[str, str]:
    """A trial's ROW_CELLS, formatted (the metric's column named by it)."""
    cells = (r.preset or "-", r.mode, r.operators, r.flags or "-", f"{r.accuracy:.4f}", f"{r.accuracy_loss_pt:+.2f}",
             f"{r.loss_ci_low_pt:+.2f} to {r.loss_ci_high_pt:+.2f}", r.constraint or "-", f"{r.samples_per_s:.1f}",
             f"{r.speedup:.2f}x", f"{r.speedup_ci_low:.2f}-{r.speedup_ci_high:.2f}", tie_label(r.tie_group) or "-",
             number_cell(r.size_mb, ".1f"), latency_cell(r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms))
    return dict(zip(row_cell_names(metric_title), cells, strict=True))


def front_table_rows(report: StudyReport) -> tuple[list[str], list[list[object]]]:
    """The front as table rows (header, rows), fastest first, the knee and the best feasible trial marked."""
    knee, best = report.knee, report.best_feasible

    def mark(r: TrialRow) -> str:
        return " ".join(m for m, on in (("knee", knee is not None and knee.trial == r.trial),
                                        ("best within limit", best is not None and best.trial == r.trial)) if on)

    header = ["trial", "", *row_cell_names(report.metric_title), "noisy"]
    rows: list[list[object]] = [[r.trial, mark(r), *row_cells(r).values(), "NOISY" if r.noisy else ""]
                                for r in report.front]
    return header, rows


def _ci(low: float, high: float, fmt: str = "+.3f") -> str:
    return "-" if not (math.isfinite(low) and math.isfinite(high)) else f"{low:{fmt}} to {high:{fmt}}"


def _diff(value: float, fmt: str = "+.3f") -> str:
    return "-" if not math.isfinite(value) else f"{value:{fmt}}"


def effects_table_rows(effects: StudyEffects) -> tuple[list[str], list[list[object]]]:
    header = ["setting", "n with", "n without", "speedup diff (x)", "95% CI", "loss diff (pt)", "95% CI", "note"]
    rows: list[list[object]] = [[e.label, e.n_with, e.n_without, _diff(e.speedup_diff), _ci(*e.speedup_ci),
                                 _diff(e.loss_diff_pt, "+.2f"), _ci(*e.loss_ci_pt, "+.2f"), e.note]
                                for e in effects.effects]
    return header, rows


def matrix_table_rows(effects: StudyEffects) -> tuple[list[str], list[list[object]]]:
    """The front's operator matrix (node counts per operator type) as table rows; no rows without a front."""
    matrix = effects.matrix
    return (["trial", *matrix.op_types],
            [[t, *row] for t, row in zip(matrix.trials, matrix.counts, strict=True)])


# A precision as one grid cell: fp32 stays blank-ish, a partial group shows its kinds' node counts ("D2/3").
_CELL = {"fp32": "-", "dynamic": "D", "static": "S", "weight_only": "W"}
GRID_LEGEND = ("D dynamic int8, S static int8 (QDQ), W weight-only, - fp32; D2/3: 2 of the group's 3 nodes; "
               "~ smoothed (its input's outlier channels moved into its weights)")


def _cell_of(precision: str) -> str:
    if precision in _CELL:
        return _CELL[precision]
    parts = precision.split()  # "dynamic 2/3 static 1/3"
    return "".join(f"{_CELL.get(kind, kind)}{count}" for kind, count in zip(parts[::2], parts[1::2], strict=False))


def precision_grid(groups: dict[str, str], smoothed: tuple[str, ...] = ()) -> tuple[list[str], list[list[str]],
                                                                                    list[str]]:
    """A trial's group precisions as a layer x role grid: (header, one row per layer, the groups outside the
    layers as "role cell" words), a quantized group of a ``smoothed`` role marked "~". Empty for a trial that
    recorded no groups."""
    from opsearch.quantize import LAYER_ROLES

    layers: dict[int, dict[str, str]] = {}
    outside = []
    for key, precision in groups.items():
        if key.startswith("layer.") and "/" in key:
            index, role = key[len("layer."):].split("/", 1)
            mark = "~" if role in smoothed and precision != "fp32" else ""
            layers.setdefault(int(index), {})[role] = _cell_of(precision) + mark
        else:
            outside.append(f"{key} {_cell_of(precision)}")
    roles = [r for r in LAYER_ROLES if any(r in row for row in layers.values())]
    rows = [[str(i), *(layers[i].get(r, "") for r in roles)] for i in sorted(layers)]
    return ["layer", *roles], rows, outside
