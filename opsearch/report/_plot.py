"""The report's plots, split as Optuna splits them: compute the data behind a plot, then draw it.

Tests check :class:`ParetoPlotInfo` and :class:`EffectsPlotInfo` (which points, in what order, which are faded,
which is the knee); drawing is a thin layer over them, in matplotlib (PNG) or plotly (interactive HTML).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from opsearch.errors import ConfigError
from opsearch.report._report import StudyReport, tie_label
from opsearch.store import TrialRow

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from opsearch.report._effects import StudyEffects

Y_AXES = ("speedup", "throughput")
_Y_LABELS = {"speedup": "speedup over fp32 (x, batch {batch}, higher is better)",
             "throughput": "throughput (samples/s, batch {batch}, higher is better)"}


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


class ParetoPlotInfo(NamedTuple):
    front: list[ParetoPoint]  # sorted by accuracy loss, so the front's line is drawn in order
    dominated: list[ParetoPoint]  # feasible but beaten: drawn faded
    baseline_samples_per_s: float
    title: str
    infeasible: list[ParetoPoint] = []  # over the accuracy limit or breaking a constraint: faded differently
    y_axis: str = "speedup"
    y_label: str = _Y_LABELS["speedup"]
    baseline_y: float = 1.0  # the fp32 baseline's spot on the y axis (at zero loss)
    knee: ParetoPoint | None = None  # see opsearch.pareto.knee
    best_feasible: ParetoPoint | None = None  # fastest within max_accuracy_loss, when one was given
    max_accuracy_loss_pt: float | None = None  # the limit, drawn as a vertical line
    presets: list[tuple[str, ParetoPoint]] = []  # every preset trial with its name, by trial number


def pareto_plot_info(report: StudyReport, *, y_axis: str = "speedup") -> ParetoPlotInfo:
    """The points to draw: y is the speedup over fp32 (``y_axis="speedup"``) or samples/s (``"throughput"``).

    A trial that repeated an earlier trial's graph sits on the same spot and is drawn once; a preset it ran is
    labelled on that spot.
    """
    if y_axis not in Y_AXES:
        raise ConfigError(f"y_axis={y_axis!r} is not one of {', '.join(Y_AXES)}.")
    baseline = float(report.baseline.get("timing", {}).get("throughput", math.nan))

    def point(r: TrialRow) -> ParetoPoint:
        if y_axis == "speedup":
            y, low, high = r.speedup, r.speedup_ci_low, r.speedup_ci_high
        else:
            # The interval is the speedup's, so on a samples/s axis it scales by the fp32 reference throughput.
            y, low, high = r.samples_per_s, baseline * r.speedup_ci_low, baseline * r.speedup_ci_high
        return ParetoPoint(r.trial, r.accuracy_loss_pt, r.samples_per_s, r.speedup,
                           f"#{r.trial} {r.mode} {r.operators.split(' ')[0] if r.operators else ''}",
                           y, low, high, r.preset, r.infeasible_reason, r.loss_ci_low_pt, r.loss_ci_high_pt,
                           r.constraint, tie_label(r.tie_group))

    rows = [r for r in report.rows if r.same_graph_as is None and r.timed]  # untimed: no speed to draw
    points = {r.trial: point(r) for r in rows}
    front = sorted((points[r.trial] for r in rows if r.pareto), key=lambda p: (p.accuracy_loss_pt, -p.y))
    dominated = sorted((points[r.trial] for r in rows if r.feasible and not r.pareto), key=lambda p: p.trial)
    infeasible = sorted((points[r.trial] for r in rows if not r.feasible), key=lambda p: p.trial)
    presets = []
    for r in sorted(report.rows, key=lambda r: r.trial):
        spot = points.get(r.trial if r.same_graph_as is None else r.same_graph_as)
        if r.preset and spot is not None:
            presets.append((r.preset, spot))
    knee, best = report.knee, report.best_feasible
    limit = None if report.max_accuracy_loss is None else 100 * report.max_accuracy_loss
    batch = report.settings.get("workload", {}).get("batch_size", 1)
    return ParetoPlotInfo(front, dominated, baseline, f"opsearch: {report.study_name}", infeasible, y_axis,
                          _Y_LABELS[y_axis].format(batch=batch), 1.0 if y_axis == "speedup" else baseline,
                          None if knee is None else points[knee.trial], None if best is None else points[best.trial],
                          limit, presets)


def _error_bars(points: list[ParetoPoint]) -> list[list[float]]:
    """Distances below and above each point (0 where no interval was recorded), as errorbar/plotly take them."""
    def gap(a: float, b: float) -> float:
        return max(a - b, 0.0) if math.isfinite(a) and math.isfinite(b) else 0.0

    return [[gap(p.y, p.y_low) for p in points], [gap(p.y_high, p.y) for p in points]]


def _loss_bars(points: list[ParetoPoint]) -> list[list[float]]:
    """The same for the accuracy loss's interval (horizontal bars)."""
    def gap(a: float, b: float) -> float:
        return max(a - b, 0.0) if math.isfinite(a) and math.isfinite(b) else 0.0

    return [[gap(p.accuracy_loss_pt, p.x_low) for p in points], [gap(p.x_high, p.accuracy_loss_pt) for p in points]]


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
            ax.errorbar([p.accuracy_loss_pt for p in points], [p.y for p in points], yerr=_error_bars(points),
                        xerr=_loss_bars(points), linestyle="none", capsize=2, zorder=3, **style)
    if info.front:
        ax.step([p.accuracy_loss_pt for p in info.front], [p.y for p in info.front], where="post",
                color="tab:red", alpha=0.5)
    if info.knee is not None:
        ax.scatter([info.knee.accuracy_loss_pt], [info.knee.y], s=260, facecolors="none", edgecolors="tab:orange",
                   linewidths=2, label=f"knee (#{info.knee.trial})", zorder=5)
    if info.best_feasible is not None:
        ax.scatter([info.best_feasible.accuracy_loss_pt], [info.best_feasible.y], marker="D", s=90,
                   color="tab:green", label=f"best within limit (#{info.best_feasible.trial})", zorder=6)
    if info.max_accuracy_loss_pt is not None:
        ax.axvline(info.max_accuracy_loss_pt, color="tab:gray", linestyle="--", alpha=0.6,
                   label=f"accuracy limit ({info.max_accuracy_loss_pt:.2f} pt)")
    ax.scatter([0.0], [info.baseline_y], marker="*", s=220, color="black", label="fp32 baseline", zorder=7)
    fig.canvas.draw()  # fixes the axes' limits, so data positions map to pixels
    _labels(ax, [(f"#{p.trial} {p.speedup:.2f}x" + (f" tie {p.tie}" if p.tie else ""), p) for p in info.front],
            first=4, step=11, color="black")
    _labels(ax, info.presets, first=-12, step=-11, color="tab:purple")
    ax.set_xlabel("accuracy loss vs fp32 (points, lower is better)")
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
    return (f"{p.label}<br>speedup {p.speedup:.3f}x ({p.samples_per_s:.1f} samples/s)"
            f"<br>accuracy loss {p.accuracy_loss_pt:+.2f} pt (95% CI {p.x_low:+.2f} to {p.x_high:+.2f}){extra}")


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
                x=[p.accuracy_loss_pt for p in points], y=[p.y for p in points], name=name, opacity=opacity,
                mode="lines+markers" if name == "Pareto front" else "markers", marker=marker,
                line=dict(shape="hv", color="crimson") if name == "Pareto front" else None,
                error_y=dict(type="data", symmetric=False, array=high, arrayminus=low, thickness=1),
                error_x=dict(type="data", symmetric=False, array=right, arrayminus=left, thickness=1),
                text=[_hover(p) for p in points], hoverinfo="text"))
    if info.knee is not None:
        fig.add_trace(go.Scatter(x=[info.knee.accuracy_loss_pt], y=[info.knee.y], mode="markers",
                                 name=f"knee (#{info.knee.trial})", hoverinfo="name",
                                 marker=dict(size=22, color="rgba(0,0,0,0)", line=dict(color="orange", width=3))))
    if info.best_feasible is not None:
        fig.add_trace(go.Scatter(x=[info.best_feasible.accuracy_loss_pt], y=[info.best_feasible.y], mode="markers",
                                 name=f"best within limit (#{info.best_feasible.trial})", hoverinfo="name",
                                 marker=dict(size=13, color="seagreen", symbol="diamond")))
    if info.presets:
        fig.add_trace(go.Scatter(x=[p.accuracy_loss_pt for _, p in info.presets], y=[p.y for _, p in info.presets],
                                 mode="text", text=[name for name, _ in info.presets], textposition="bottom right",
                                 textfont=dict(color="purple", size=11), name="presets", hoverinfo="text"))
    fig.add_trace(go.Scatter(x=[0.0], y=[info.baseline_y], mode="markers", name="fp32 baseline",
                             marker=dict(symbol="star", size=16, color="black"), hoverinfo="name"))
    if info.max_accuracy_loss_pt is not None:
        fig.add_vline(x=info.max_accuracy_loss_pt, line_dash="dash", line_color="gray",
                      annotation_text=f"limit {info.max_accuracy_loss_pt:.2f} pt")
    fig.update_layout(title=info.title, xaxis_title="accuracy loss vs fp32 (points, lower is better)",
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
    """Bars for every setting with enough trials on both sides, in the order :mod:`opsearch.effects` lists them."""
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
        x, y = ax.transData.transform((p.accuracy_loss_pt, p.y))
        crowd = sum(1 for px, py in placed if abs(px - x) < 120 and abs(py - y) < 24)
        placed.append((x, y))
        ax.annotate(name, (p.accuracy_loss_pt, p.y), textcoords="offset points", xytext=(5, first + step * crowd),
                    fontsize=8, color=color)
