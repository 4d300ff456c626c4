"""The report as one self-contained HTML page: the interactive Pareto plot, the operator-effects plot, the front
table, the baseline, the machine, the versions and the study's settings.

plotly.js is inlined once (``include_plotlyjs=True``) and nothing is fetched from the network, so the file opens
offline, e-mailed or attached to an issue.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from opsearch.report._csv_json import json_ready
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
from opsearch.report._plot import effects_figure, effects_plot_info, pareto_figure, pareto_plot_info
from opsearch.report._report import StudyReport
from opsearch.report._tables import (
    GRID_LEGEND,
    effects_table_rows,
    front_table_rows,
    matrix_table_rows,
    precision_grid,
)

PARETO_DIV = "opsearch-pareto"
EFFECTS_DIV = "opsearch-effects"
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } tr.knee td { background: #fff4e0; } tr.best td { background: #e6f6ea; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
.note { color: #666; font-size: 0.9em; }
"""


def _table(header: list[str], rows: list[list[object]], row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _mapping(data: dict) -> str:
    """A flat key/value table; nested values shown as compact JSON."""
    def show(value: object) -> str:
        return value if isinstance(value, str) else json.dumps(json_ready(value))

    return _table(["key", "value"], [[k, show(v)] for k, v in data.items()]) if data else \
        '<p class="note">not recorded</p>'


def render_html(report: StudyReport, effects: StudyEffects, *, y_axis: str = "speedup") -> str:
    """The whole page as a string (see the module docstring)."""
    esc = html.escape
    pareto = pareto_figure(pareto_plot_info(report, y_axis=y_axis)).to_html(
        full_html=False, include_plotlyjs=True, div_id=PARETO_DIV, config=_PLOTLY_CONFIG)
    interactions = "".join(f"<li>{esc(h)}</li>" for h in effects.interactions)
    settings = json.dumps(json_ready(report.settings), indent=2, sort_keys=True) if report.settings else "not recorded"
    return _PAGE.format(
        title=esc(report.study_name), style=_STYLE, metric=esc(report.metric_title),
        summary="".join(f"<p>{esc(line)}</p>" for line in _summary(report) if line),
        pareto=pareto, listed=len(report.front), completed=len(report.rows), front=_front_html(report),
        groups=_same_graph_html(report), grids=_grids_html(report),
        effects_plot=_effects_plot_html(report, effects), effects_table=_table(*effects_table_rows(effects)),
        interactions=f"<p>Interaction hints:</p><ul>{interactions}</ul>" if interactions else "",
        importances=_importances_html(effects), matrix=_matrix_html(effects), baseline=_mapping(report.baseline),
        machine=_mapping(report.machine), versions=_mapping(report.versions), settings=esc(settings))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>opsearch report: {title}</title>
<style>{style}</style>
</head>
<body>
<h1>opsearch report: {title}</h1>
{summary}
<h2>Pareto front: speedup against {metric} loss</h2>
<p class="note">Error bars: the speedup's 95% interval across sessions (vertical) and the {metric} loss's paired
95% interval (horizontal). Faded: dominated trials (circles) and infeasible ones (crosses). Hover a point for its
recipe, where it stands against the limit, and its tie group.</p>
{pareto}
<h2>Front ({listed} of {completed} completed trials), fastest first</h2>
{front}
{groups}
{grids}
<h2>Operator and flag effects</h2>
<p class="note">Mean with the setting minus mean without, over completed trials where the parameter exists, with
95% bootstrap intervals. Observational: settings the sampler chose together share their effects.</p>
{effects_plot}
{effects_table}
{interactions}
<h2>Parameter importances (Optuna, fANOVA)</h2>
{importances}
<h2>Operators quantized on the front (node counts)</h2>
{matrix}
<h2>fp32 baseline</h2>
{baseline}
<h2>Machine</h2>
{machine}
<h2>Versions</h2>
{versions}
<h2>Study settings</h2>
<pre>{settings}</pre>
</body>
</html>
"""


def _summary(report: StudyReport) -> list[str]:
    """The sentences above the plots: counts, workload, baseline, knee, limit, best by objective, notes, cost."""
    return [counts_words(report) or "no trial yet", study_line(report), baseline_line(report), knee_line(report),
            limit_line(report), *best_by_lines(report), *footnotes(report),
            *(line.strip() for line in cost_lines(report))]


def _front_html(report: StudyReport) -> str:
    """The front table, the knee's row and the best feasible trial's row coloured."""
    header, rows = front_table_rows(report)
    classes = ["knee" if "knee" in str(r[1]) else "best" if "best" in str(r[1]) else "" for r in rows]
    return _table(header, rows, classes) if rows else '<p class="note">No completed feasible trial yet.</p>'


def _effects_plot_html(report: StudyReport, effects: StudyEffects) -> str:
    """The interactive effects plot, or why there is none, and the settings it leaves out."""
    bars = effects_plot_info(effects, title=f"operator and flag effects: {report.study_name}")
    if bars.speedup:
        out = effects_figure(bars).to_html(full_html=False, include_plotlyjs=False, div_id=EFFECTS_DIV,
                                           config=_PLOTLY_CONFIG)
    else:
        out = '<p class="note">Too few trials on both sides of any setting to estimate an effect.</p>'
    if bars.too_few:
        out += (f'<p class="note">Left out (fewer than two trials on a side): '
                f"{html.escape(', '.join(bars.too_few))}.</p>")
    return out


def _importances_html(effects: StudyEffects) -> str:
    esc = html.escape
    return "".join(
        f"<p><b>{esc(i.objective)}</b>: "
        + (esc(", ".join(f"{k} {v:.2f}" for k, v in i.values.items())) if i.values else
           f'<span class="note">not available ({esc(i.reason)})</span>') + "</p>"
        for i in effects.importances)


def _matrix_html(effects: StudyEffects) -> str:
    header, rows = matrix_table_rows(effects)
    return _table(header, rows) if rows else '<p class="note">No front yet.</p>'


def _same_graph_html(report: StudyReport) -> str:
    esc = html.escape
    groups = "".join(f"<li>trials {esc(', '.join(map(str, g.trials)))}: differ in "
                     f"{esc(', '.join(g.differing) or 'nothing')}</li>" for g in report.same_graph)
    return (f"<p>Trials that produced identical graphs (their differing settings changed nothing):</p><ul>{groups}</ul>"
            if groups else "")


def _grids_html(report: StudyReport) -> str:
    """Each front configuration's precision per layer and role; empty when none recorded them."""
    esc = html.escape
    grids = ""
    for r in report.front:
        if r.group_precisions:
            grid_header, grid_rows, outside = precision_grid(r.group_precisions, r.smoothed)
            grids += (f"<h3>trial {r.trial} ({esc(r.mode)} {esc(r.flags)})</h3>"
                      + (_table(grid_header, grid_rows) if grid_rows else "")
                      + (f"<p>Outside the layers: {esc(', '.join(outside))}</p>" if outside else ""))
    return f'<h2>Precision per layer and role</h2><p class="note">{esc(GRID_LEGEND)}.</p>{grids}' if grids else ""


def write_html_report(report: StudyReport, effects: StudyEffects, out: str | Path, *,
                      y_axis: str = "speedup") -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report, effects, y_axis=y_axis), encoding="utf-8")
    return out
