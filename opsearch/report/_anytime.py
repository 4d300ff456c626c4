"""How the answer improved: after each trial, the fastest trial surely within the accuracy limit so far, against
the minutes the study had spent running trials; its data (:func:`answer_over_time`), its lines and its plot.

Each step uses the trials' own timings, as they were when the study found them (a later front session re-times
the front; it does not change what the study knew then). Minutes are the study's busy time: the union of its
trials' running intervals, so a pause between a stop and a resume adds nothing, and workers running trials at
once count their shared minutes once. A trial is within the limit as the report says (its whole loss interval at
most the limit; with no limit, any loss).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import optuna

from opsearch.store import TrialRecord, TrialRow


class AnswerStep(NamedTuple):
    """From ``minutes`` into the study, the answer was ``trial``: ``speedup`` over fp32 at ``accuracy_loss_pt``."""

    minutes: float
    trial: int
    speedup: float
    accuracy_loss_pt: float


def answer_over_time(study: optuna.Study, rows: list[TrialRow]) -> list[AnswerStep]:
    """Every time the answer changed, in order (``rows``: the study's rows against its limit, ``store.trial_rows``).
    Empty when no trial was ever within the limit and timed."""
    by_trial = {r.trial: r for r in rows}
    finished = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None
                       and t.datetime_start is not None), key=lambda t: t.datetime_complete)
    steps: list[AnswerStep] = []
    best: tuple[float, int] | None = None
    for i, trial in enumerate(finished):
        row = by_trial.get(trial.number)
        speedup = TrialRecord.of(trial).speedup
        if row is None or speedup is None or not _answers(row):
            continue
        if best is None or speedup > best[0]:
            best = (float(speedup), trial.number)
            steps.append(AnswerStep(_busy_minutes(finished[:i + 1]), trial.number, best[0], row.accuracy_loss_pt))
    return steps


def study_minutes(study: optuna.Study) -> float:
    """The study's busy minutes: every finished trial's running interval, overlaps counted once."""
    return _busy_minutes([t for t in study.get_trials(deepcopy=False)
                          if t.datetime_complete is not None and t.datetime_start is not None])


def _answers(row: TrialRow) -> bool:
    """Could stand as "the fastest within the limit": feasible, timed, surely within (or no limit), its own graph."""
    return (row.feasible and row.constraint in ("", "within") and row.same_graph_as is None
            and math.isfinite(row.samples_per_s))


def _busy_minutes(trials: list[optuna.trial.FrozenTrial]) -> float:
    """The union of the trials' running intervals, in minutes, up to the last one's end."""
    total, end = 0.0, None  # an empty list: 0
    for start, stop in sorted((t.datetime_start, t.datetime_complete) for t in trials):
        if end is None or start > end:
            total += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            total += (stop - end).total_seconds()
            end = stop
    return total / 60


def answer_lines(steps: list[AnswerStep], limit_pt: float | None) -> list[str]:
    """The report's "how the answer improved" section (nothing when no trial was ever within the limit)."""
    if not steps:
        return []
    within = "at any loss" if limit_pt is None else f"surely within {limit_pt:.2f} pt"  # a caller's choice
    lines = [f"how the answer improved (the fastest {within}, by the trials' own timings; minutes of trials):"]
    lines += [f"  {s.minutes:6.1f} min  trial {s.trial}: {s.speedup:.2f}x at {s.accuracy_loss_pt:+.2f} pt"
              for s in steps]
    return lines


def draw_answer(steps: list[AnswerStep], out: str | Path, *, until: float | None = None,
                title: str = "how the answer improved") -> Path:
    """The answer's speedup against the study's minutes (to ``until``, its busy minutes in all), as a step line,
    each step labelled by its trial (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    fig, ax = plt.subplots(figsize=(7, 4))
    if steps:
        xs = [s.minutes for s in steps]
        ys = [s.speedup for s in steps]
        end = until if until is not None and until > xs[-1] else xs[-1] * 1.05 + 0.1
        ax.step([*xs, end], [*ys, ys[-1]], where="post", color="tab:blue")
        ax.scatter(xs, ys, color="tab:blue", zorder=3)
        for s in steps:
            ax.annotate(f"trial {s.trial}", (s.minutes, s.speedup), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    ax.set_xlabel("minutes of trials")
    ax.set_ylabel("speedup over fp32 (x) of the answer")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
