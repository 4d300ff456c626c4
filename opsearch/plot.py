"""The Pareto plot, split as Optuna splits it: compute the data behind the plot, then draw it.

Tests check :class:`ParetoPlotInfo` (which points, in what order, which are faded); drawing is a thin
matplotlib layer over it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from opsearch.report import StudyReport


class ParetoPoint(NamedTuple):
    trial: int
    accuracy_loss_pt: float
    samples_per_s: float
    speedup: float
    label: str


class ParetoPlotInfo(NamedTuple):
    front: list[ParetoPoint]  # sorted by accuracy loss, so the front's line is drawn in order
    dominated: list[ParetoPoint]  # drawn faded
    baseline_samples_per_s: float
    title: str


def pareto_plot_info(report: StudyReport) -> ParetoPlotInfo:
    def point(r) -> ParetoPoint:
        return ParetoPoint(r.trial, r.accuracy_loss_pt, r.samples_per_s, r.speedup,
                           f"#{r.trial} {r.mode} {r.operators.split(' ')[0] if r.operators else ''}")

    # A trial that repeated an earlier trial's graph sits on the same spot: draw each graph once.
    rows = [r for r in report.rows if r.same_graph_as is None]
    front = sorted((point(r) for r in rows if r.pareto), key=lambda p: (p.accuracy_loss_pt, -p.samples_per_s))
    dominated = sorted((point(r) for r in rows if not r.pareto), key=lambda p: p.trial)
    baseline = float(report.baseline.get("timing", {}).get("throughput", float("nan")))
    return ParetoPlotInfo(front, dominated, baseline, f"opsearch: {report.study_name}")


def draw_pareto(info: ParetoPlotInfo, out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    if info.dominated:
        ax.scatter([p.accuracy_loss_pt for p in info.dominated], [p.samples_per_s for p in info.dominated],
                   color="tab:blue", alpha=0.25, label="dominated trials")
    if info.front:
        ax.step([p.accuracy_loss_pt for p in info.front], [p.samples_per_s for p in info.front], where="post",
                color="tab:red", alpha=0.5)
        ax.scatter([p.accuracy_loss_pt for p in info.front], [p.samples_per_s for p in info.front],
                   color="tab:red", label="Pareto front", zorder=3)
        for p in info.front:
            ax.annotate(f"#{p.trial} {p.speedup:.2f}x", (p.accuracy_loss_pt, p.samples_per_s),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.scatter([0.0], [info.baseline_samples_per_s], marker="*", s=200, color="black", label="fp32 baseline",
               zorder=4)
    ax.set_xlabel("accuracy loss vs fp32 (points, lower is better)")
    ax.set_ylabel("throughput (samples/s, batch 1, higher is better)")
    ax.set_title(info.title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
