"""The report's plots, split as Optuna splits them: compute the data behind a plot, then draw it.

Tests check :class:`ParetoPlotInfo` and :class:`EffectsPlotInfo` (which points, in what order, which are faded,
which is the knee); drawing is a thin layer over them, in matplotlib (PNG) or plotly (interactive HTML).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from opsearch.config import PLOT_X_AXES, PLOT_Y_AXES
from opsearch.errors import ConfigError
from opsearch.report._report import StudyReport, tie_label
from opsearch.store import TrialRow

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from opsearch.report._effects import StudyEffects

# What each axis can show: the speed on y (or a cost), a cost on x. Costs are lower-is-better objectives.
Y_AXES, X_AXES = PLOT_Y_AXES, PLOT_X_AXES
_LABELS = {"speedup": "speedup over fp32 (x, batch {batch}, higher is better)",
           "throughput": "throughput (samples/s, batch {batch}, higher is better)",
           "accuracy_loss": "{metric} loss vs fp32 (points, lower is better)",
           "size": "model file (MB, lower is better)",
           **{f"p{q}": f"p{q} latency of one call (ms, batch {{batch}}, lower is better)" for q in (50, 95, 99)}}
_COLUMNS = {"size": "size_mb", "p50": "latency_p50_ms", "p95": "latency_p95_ms", "p99": "latency_p99_ms"}


class ParetoPoint(NamedTuple):
    trial: int
    accuracy_loss_pt: float
    samples_per_s: float
    speedup: float
    label: str
    y: float = math.nan  # what the plot's y axis shows: the speedup, or samples/s
    y_low: float = math.nan  # the 95% interval of y (the speedup's, scaled to samples/s on that axis)
    y_high: float = math.nan
    preset: str = ""
    infeasible_reason: str = ""
    x_low: float = math.nan  # the accuracy loss's paired 95% interval, in points
    x_high: float = math.nan
    constraint: str = ""  # within / over / uncertain against the limit
    tie: str = ""  # the front session's tie group (A, B, ...), if it shares one
    x: float = math.nan  # what the x axis shows: the accuracy loss (x_low, x_high its interval), or a cost
    size_mb: float = math.nan
    latency_p99_ms: float = math.nan


class ParetoPlotInfo(NamedTuple):
    front: list[ParetoPoint]  # sorted by accuracy loss, so the front's line is drawn in order
    dominated: list[ParetoPoint]  # feasible but beaten: drawn faded
    baseline_samples_per_s: float
    title: str
    infeasible: list[ParetoPoint] = []  # over the accuracy limit or breaking a constraint: faded differently
    y_axis: str = "speedup"
    y_label: str = _LABELS["speedup"]
    baseline_y: float = 1.0  # the fp32 baseline's spot on the y axis (at zero loss)
    knee: ParetoPoint | None = None  # see opsearch.store.knee
    best_feasible: ParetoPoint | None = None  # fastest within max_accuracy_loss, when one was given
    max_accuracy_loss_pt: float | None = None  # the limit, drawn as a vertical line
    presets: list[tuple[str, ParetoPoint]] = []  # every preset trial with its name, by trial number
    x_axis: str = "accuracy_loss"
    x_label: str = _LABELS["accuracy_loss"].format(metric="accuracy")
    baseline_x: float = 0.0  # the fp32 baseline's spot on the x axis
    # True when the plot's axes are the study's two objectives: the front is then a staircase, drawn as one. Over
    # more objectives (or other axes) the front's points are drawn alone: a point behind another here may be
    # better on an objective not shown.
    front_is_line: bool = True


def _axis(r: TrialRow, axis: str, baseline: float) -> tuple[float, float, float]:
    """A row's value on an axis and its 95% interval (the value itself where none is kept)."""
    if axis == "speedup":
        return r.speedup, r.speedup_ci_low, r.speedup_ci_high
    if axis == "throughput":  # the interval is the speedup's, scaled by the fp32 reference throughput
        return r.samples_per_s, baseline * r.speedup_ci_low, baseline * r.speedup_ci_high
    if axis == "accuracy_loss":
        return r.accuracy_loss_pt, r.loss_ci_low_pt, r.loss_ci_high_pt
    value = getattr(r, _COLUMNS[axis])
    return value, value, value


def _baseline_on(axis: str, report: StudyReport) -> float:
    base = report.baseline
    if axis in ("speedup", "accuracy_loss"):
        return 1.0 if axis == "speedup" else 0.0
    if axis == "throughput":
        return float(base.get("timing", {}).get("throughput", math.nan))
    if axis == "size":
        size = base.get("size_mb")  # None: not measured ({} without a baseline)
        return math.nan if size is None else float(size)
    return float((base.get("timing", {}).get("latency_ms") or {}).get(axis, math.nan))


def pareto_plot_info(report: StudyReport, *, y_axis: str = "speedup", x_axis: str = "accuracy_loss") -> ParetoPlotInfo:
    """The points to draw: y is the speedup over fp32 (``y_axis="speedup"``), samples/s (``"throughput"``), the
    model file's size or a latency percentile; x the accuracy loss (``x_axis="accuracy_loss"``), the size or a
    latency percentile.

    A trial that repeated an earlier trial's graph sits on the same spot and is drawn once; a preset it ran is
    labelled on that spot.
    """
    if y_axis not in Y_AXES:
        raise ConfigError(f"y_axis={y_axis!r} is not one of {', '.join(Y_AXES)}.")
    if x_axis not in X_AXES:
        raise ConfigError(f"x_axis={x_axis!r} is not one of {', '.join(X_AXES)}.")
    baseline = float(report.baseline.get("timing", {}).get("throughput", math.nan))

    def point(r: TrialRow) -> ParetoPoint:
        y, low, high = _axis(r, y_axis, baseline)
        x, x_low, x_high = _axis(r, x_axis, baseline)
        return ParetoPoint(r.trial, r.accuracy_loss_pt, r.samples_per_s, r.speedup,
                           f"#{r.trial} {r.mode} {r.operators.split(' ')[0] if r.operators else ''}",
                           y, low, high, r.preset, r.infeasible_reason, x_low, x_high,
                           r.constraint, tie_label(r.tie_group), x, r.size_mb, r.latency_p99_ms)

    rows = [r for r in report.rows if r.same_graph_as is None and r.timed]  # untimed: no speed to draw
    rows = [r for r in rows if all(math.isfinite(v) for v in (_axis(r, x_axis, baseline)[0],
                                                               _axis(r, y_axis, baseline)[0]))]
    points = {r.trial: point(r) for r in rows}
    y_sign = 1.0 if y_axis in ("speedup", "throughput") else -1.0
    front = sorted((points[r.trial] for r in rows if r.pareto), key=lambda p: (p.x, -y_sign * p.y))
    dominated = sorted((points[r.trial] for r in rows if r.feasible and not r.pareto), key=lambda p: p.trial)
    infeasible = sorted((points[r.trial] for r in rows if not r.feasible), key=lambda p: p.trial)
    presets = []
    for r in sorted(report.rows, key=lambda r: r.trial):
        spot = points.get(r.trial if r.same_graph_as is None else r.same_graph_as)
        if r.preset and spot is not None:
            presets.append((r.preset, spot))
    knee, best = report.knee, report.best_feasible
    limit = None if report.max_accuracy_loss is None or x_axis != "accuracy_loss" else 100 * report.max_accuracy_loss
    batch = report.settings.get("workload", {}).get("batch_size", 1)
    standard = x_axis == "accuracy_loss" and y_axis in ("speedup", "throughput")
    shown = {x_axis, "throughput" if y_axis == "speedup" else y_axis}
    return ParetoPlotInfo(front, dominated, baseline, f"opsearch: {report.study_name}", infeasible, y_axis,
                          _LABELS[y_axis].format(batch=batch, metric=report.metric_title),
                          _baseline_on(y_axis, report),
                          points.get(knee.trial) if knee is not None and standard else None,
                          None if best is None else points.get(best.trial), limit, presets, x_axis,
                          _LABELS[x_axis].format(batch=batch, metric=report.metric_title),
                          _baseline_on(x_axis, report),
                          front_is_line=set(report.objectives) <= shown and len(report.objectives) == 2)


def _error_bars(points: list[ParetoPoint]) -> list[list[float]]:
    """Distances below and above each point (0 where no interval was recorded), as errorbar/plotly take them."""
    def gap(a: float, b: float) -> float:
        return max(a - b, 0.0) if math.isfinite(a) and math.isfinite(b) else 0.0

    return [[gap(p.y, p.y_low) for p in points], [gap(p.y_high, p.y) for p in points]]


def _loss_bars(points: list[ParetoPoint]) -> list[list[float]]:
    """The same for the x axis' interval (horizontal bars: the accuracy loss's; none for a size or latency)."""
    def gap(a: float, b: float) -> float:
        return max(a - b, 0.0) if math.isfinite(a) and math.isfinite(b) else 0.0

    return [[gap(p.x, p.x_low) for p in points], [gap(p.x_high, p.x) for p in points]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_pareto(info: ParetoPlotInfo, out: str | Path) -> Path:
    """Write the Pareto plot as a PNG (matplotlib)."""
    plt = _pyplot()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    for points, style in ((info.infeasible, dict(color="tab:gray", marker="x", alpha=0.4, label="infeasible")),
                          (info.dominated, dict(color="tab:blue", marker="o", alpha=0.25, label="dominated")),
                          (info.front, dict(color="tab:red", marker="o", alpha=1.0, label="Pareto front"))):
        if points:
            ax.errorbar([p.x for p in points], [p.y for p in points], yerr=_error_bars(points),
                        xerr=_loss_bars(points), linestyle="none", capsize=2, zorder=3, **style)
    if info.front and info.front_is_line:
        ax.step([p.x for p in info.front], [p.y for p in info.front], where="post",
                color="tab:red", alpha=0.5)
    if info.knee is not None:
        ax.scatter([info.knee.x], [info.knee.y], s=260, facecolors="none", edgecolors="tab:orange",
                   linewidths=2, label=f"knee (#{info.knee.trial})", zorder=5)
    if info.best_feasible is not None:
        ax.scatter([info.best_feasible.x], [info.best_feasible.y], marker="D", s=90,
                   color="tab:green", label=f"best within limit (#{info.best_feasible.trial})", zorder=6)
    if info.max_accuracy_loss_pt is not None:
        ax.axvline(info.max_accuracy_loss_pt, color="tab:gray", linestyle="--", alpha=0.6,
                   label=f"loss limit ({info.max_accuracy_loss_pt:.2f} pt)")
    ax.scatter([info.baseline_x], [info.baseline_y], marker="*", s=220, color="black", label="fp32 baseline",
               zorder=7)
    fig.canvas.draw()  # fixes the axes' limits, so data positions map to pixels
    _labels(ax, [(f"#{p.trial} {p.speedup:.2f}x" + (f" tie {p.tie}" if p.tie else ""), p) for p in info.front],
            first=4, step=11, color="black")
    _labels(ax, info.presets, first=-12, step=-11, color="tab:purple")
    ax.set_xlabel(info.x_label)
    ax.set_ylabel(info.y_label)
    ax.set_title(info.title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _hover(p: ParetoPoint) -> str:
    extra = f"<br>preset: {p.preset}" if p.preset else ""
    extra += f"<br>infeasible: {p.infeasible_reason}" if p.infeasible_reason else ""
    extra += f"<br>vs the limit: {p.constraint}" if p.constraint else ""
    extra += f"<br>tie group {p.tie}: the front session could not tell these speeds apart" if p.tie else ""
    extra += f"<br>{p.size_mb:.1f} MB" if math.isfinite(p.size_mb) else ""
    extra += f", p99 {p.latency_p99_ms:.1f} ms" if math.isfinite(p.latency_p99_ms) else ""
    return (f"{p.label}<br>speedup {p.speedup:.3f}x ({p.samples_per_s:.1f} samples/s)"
            f"<br>loss {p.accuracy_loss_pt:+.2f} pt{extra}")


def pareto_figure(info: ParetoPlotInfo) -> go.Figure:
    """The Pareto plot as an interactive plotly figure: hover a point for its recipe and numbers."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for points, name, marker, opacity in (
            (info.infeasible, "infeasible", dict(color="gray", symbol="x"), 0.4),
            (info.dominated, "dominated", dict(color="royalblue"), 0.3),
            (info.front, "Pareto front", dict(color="crimson", size=9), 1.0)):
        if points:
            low, high = _error_bars(points)
            left, right = _loss_bars(points)
            fig.add_trace(go.Scatter(
                x=[p.x for p in points], y=[p.y for p in points], name=name, opacity=opacity,
                mode="lines+markers" if name == "Pareto front" and info.front_is_line else "markers", marker=marker,
                line=dict(shape="hv", color="crimson") if name == "Pareto front" and info.front_is_line else None,
                error_y=dict(type="data", symmetric=False, array=high, arrayminus=low, thickness=1),
                error_x=dict(type="data", symmetric=False, array=right, arrayminus=left, thickness=1),
                text=[_hover(p) for p in points], hoverinfo="text"))
    if info.knee is not None:
        fig.add_trace(go.Scatter(x=[info.knee.x], y=[info.knee.y], mode="markers",
                                 name=f"knee (#{info.knee.trial})", hoverinfo="name",
                                 marker=dict(size=22, color="rgba(0,0,0,0)", line=dict(color="orange", width=3))))
    if info.best_feasible is not None:
        fig.add_trace(go.Scatter(x=[info.best_feasible.x], y=[info.best_feasible.y], mode="markers",
                                 name=f"best within limit (#{info.best_feasible.trial})", hoverinfo="name",
                                 marker=dict(size=13, color="seagreen", symbol="diamond")))
    if info.presets:
        fig.add_trace(go.Scatter(x=[p.x for _, p in info.presets], y=[p.y for _, p in info.presets],
                                 mode="text", text=[name for name, _ in info.presets], textposition="bottom right",
                                 textfont=dict(color="purple", size=11), name="presets", hoverinfo="text"))
    fig.add_trace(go.Scatter(x=[info.baseline_x], y=[info.baseline_y], mode="markers", name="fp32 baseline",
                             marker=dict(symbol="star", size=16, color="black"), hoverinfo="name"))
    if info.max_accuracy_loss_pt is not None:
        fig.add_vline(x=info.max_accuracy_loss_pt, line_dash="dash", line_color="gray",
                      annotation_text=f"limit {info.max_accuracy_loss_pt:.2f} pt")
    fig.update_layout(title=info.title, xaxis_title=info.x_label,
                      yaxis_title=info.y_label, template="plotly_white", height=560)
    return fig


def write_pareto_html(info: ParetoPlotInfo, out: str | Path) -> Path:
    """Write the interactive Pareto plot as one self-contained HTML file (plotly.js inlined: opens offline)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pareto_figure(info).write_html(out, include_plotlyjs=True, full_html=True, config={"displaylogo": False})
    return out


# Operator effects ---------------------------------------------------------------------------------------------


class EffectBar(NamedTuple):
    label: str  # e.g. "op_MatMul", "weights_dtype=QUInt8"
    diff: float  # mean with it minus mean without (NaN: too few trials)
    low: float  # 95% bootstrap interval of that difference
    high: float
    n_with: int
    n_without: int


class EffectsPlotInfo(NamedTuple):
    speedup: list[EffectBar]  # one bar per setting, in the same order in both panels
    accuracy_loss_pt: list[EffectBar]
    too_few: list[str]  # settings left out: a side had fewer than two trials
    title: str


def effects_plot_info(effects: StudyEffects, *, title: str = "operator and flag effects") -> EffectsPlotInfo:
    """Bars for every setting with enough trials on both sides, in the order :mod:`opsearch.report._effects`
    lists them."""
    shown = [e for e in effects.effects if not e.too_few]
    return EffectsPlotInfo(
        [EffectBar(e.label, e.speedup_diff, *e.speedup_ci, e.n_with, e.n_without) for e in shown],
        [EffectBar(e.label, e.loss_diff_pt, *e.loss_ci_pt, e.n_with, e.n_without) for e in shown],
        [e.label for e in effects.effects if e.too_few], title)


_PANELS = (("speedup", "speedup difference (x), with minus without"),
           ("accuracy_loss_pt", "accuracy loss difference (points), with minus without"))


def draw_effects(info: EffectsPlotInfo, out: str | Path) -> Path:
    """Write the operator-effects forest plot as a PNG: each setting's difference with its 95% interval."""
    plt = _pyplot()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = max(len(info.speedup), 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.4 * n), dpi=120, sharey=True)
    for ax, (field, xlabel) in zip(axes, _PANELS, strict=True):
        bars: list[EffectBar] = getattr(info, field)
        ys = list(range(len(bars)))[::-1]
        ax.errorbar([b.diff for b in bars], ys, xerr=[[max(b.diff - b.low, 0) for b in bars],
                                                      [max(b.high - b.diff, 0) for b in bars]],
                    fmt="o", color="tab:blue", capsize=3)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [f"{b.label} ({b.n_with}/{b.n_without})" for b in bars])
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    note = f"; {len(info.too_few)} settings left out: too few trials" if info.too_few else ""
    fig.suptitle(f"{info.title} (n with/without{note})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def effects_figure(info: EffectsPlotInfo) -> go.Figure:
    """The operator-effects forest plot as an interactive plotly figure (two panels side by side)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=[t for _, t in _PANELS])
    for col, (field, _) in enumerate(_PANELS, start=1):
        bars: list[EffectBar] = getattr(info, field)
        fig.add_trace(go.Scatter(
            x=[b.diff for b in bars], y=[b.label for b in bars], mode="markers", showlegend=False,
            marker=dict(color="royalblue", size=9),
            error_x=dict(type="data", symmetric=False, array=[max(b.high - b.diff, 0) for b in bars],
                         arrayminus=[max(b.diff - b.low, 0) for b in bars]),
            text=[f"{b.label}: {b.diff:+.3f} (95% CI {b.low:+.3f} to {b.high:+.3f}; n {b.n_with} with, "
                  f"{b.n_without} without)" for b in bars], hoverinfo="text"), row=1, col=col)
        fig.add_vline(x=0.0, line_color="black", line_width=1, row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=info.title, template="plotly_white", height=200 + 32 * max(len(info.speedup), 1))
    return fig


def _labels(ax, items: list[tuple[str, ParetoPoint]], *, first: float, step: float, color: str) -> None:
    """Label points; labels whose points lie close together (presets often share one graph) are stacked."""
    placed: list[tuple[float, float]] = []
    for name, p in sorted(items, key=lambda item: -item[1].y):
        x, y = ax.transData.transform((p.x, p.y))
        crowd = sum(1 for px, py in placed if abs(px - x) < 120 and abs(py - y) < 24)
        placed.append((x, y))
        ax.annotate(name, (p.x, p.y), textcoords="offset points", xytext=(5, first + step * crowd),
                    fontsize=8, color=color)
