"""What a running study tells its user: messages, and one event per trial started and finished.

Three ways to show them: :class:`Lines` (a line per event, for logs and pipes), :class:`Bar` (a progress bar
with elapsed and remaining time, the current trial's configuration and the best point so far, with messages
printed above it) and :class:`JsonLog` (one JSON object per line, for machines). Library functions take any
callable of one string as ``progress``; a plain callable gets :class:`Lines`' wording.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TextIO


@dataclass(frozen=True)
class TrialEvent:
    """One finished trial, as every display needs it."""

    trial: int
    state: str  # "complete", "fail", "pruned"
    label: str
    done: int  # trials finished by this process so far, this one included
    total: int
    elapsed_s: float
    remaining_s: float
    speedup: float | None = None
    ci_halfwidth: float | None = None
    rounds: int | None = None
    samples_per_s: float | None = None
    accuracy_loss_pt: float | None = None
    loss_ci_pt: list[float] | None = None  # the loss's paired 95% interval, in points
    constraint: str = ""  # within / over / uncertain against the study's limit; "" without one
    noisy: bool = False
    same_graph_as: int | None = None
    reason: str = ""
    stopped_early: str = ""  # why early stopping cut its evaluation (then it was never timed) or its timing short
    evaluate_s: float | None = None  # what the trial cost: seconds evaluating, seconds timing
    timing_s: float | None = None
    size_mb: float | None = None  # the quantized model file
    latency_p99_ms: float | None = None  # its p99 call latency (None: not timed)
    warnings: list[str] = field(default_factory=list)
    # The fastest trial within the study's accuracy limit (any loss without one): {"trial", "speedup",
    # "accuracy_loss_pt", "limit_pt"}, from opsearch.store.best_within, as the report names it.
    best: dict | None = None
    metric: str = "accuracy"  # how the study's metric is named: the loss is in points of it


def trial_event(trial, rows: list, limit: float | None, *, done: int, total: int, elapsed: float,
                metric: str = "accuracy") -> TrialEvent:
    """The event of a finished trial (an Optuna ``FrozenTrial``), with the study's rows (``store.trial_rows``) to
    name the best trial within ``limit``."""
    from opsearch.store import TrialRecord, best_within

    record = TrialRecord.of(trial)
    common = {"trial": trial.number, "state": trial.state.name.lower(), "label": record.label, "done": done,
              "total": total, "elapsed_s": round(elapsed, 1), "remaining_s": round(elapsed / done * (total - done), 1),
              "metric": metric}
    best = best_within(rows, limit)
    common["best"] = None if best is None else {"trial": best.trial, "speedup": best.speedup,
                                                "accuracy_loss_pt": best.accuracy_loss_pt,
                                                "limit_pt": None if limit is None else 100 * limit}
    if trial.state.name != "COMPLETE":
        return TrialEvent(**common, reason=record.fail_reason)
    timing, twin = record.timing, record.same_graph_as
    row = next((r for r in rows if r.trial == trial.number), None)
    own = twin is None  # a repeated graph shows its twin's measurements, not what they cost again
    return TrialEvent(
        **common, speedup=timing.get("speedup"), ci_halfwidth=timing.get("ci_halfwidth"),
        rounds=timing.get("rounds"), samples_per_s=row.samples_per_s if row is not None else None,
        accuracy_loss_pt=100 * float(record.accuracy_loss),
        loss_ci_pt=None if record.accuracy_loss_ci is None else [100 * v for v in record.accuracy_loss_ci],
        constraint=row.constraint if row is not None else "", noisy=bool(timing.get("noisy")), same_graph_as=twin,
        # Pairing cancels most drift; the stability warnings matter when the interval stayed wide.
        warnings=timing.get("warnings", []) if own and timing.get("noisy") else [],
        stopped_early=record.stopped_early if own else "", evaluate_s=record.evaluate_seconds if own else None,
        timing_s=record.timing_seconds if own else None, size_mb=record.size_mb,
        latency_p99_ms=(timing.get("latency_ms") or {}).get("p99"))


class Lines:
    """A line per message and per finished trial."""

    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.write = write

    def __call__(self, text: str) -> None:
        self.write(text)

    def start(self, total: int) -> None:
        pass

    def trial_started(self, number: int, label: str) -> None:
        self.write(f"trial {number}: {label} ...")

    def phase(self, name: str) -> None:
        pass

    def trial_finished(self, event: TrialEvent) -> None:
        for line in describe(event):
            self.write(line)

    def close(self) -> None:
        pass


class Bar(Lines):
    """A tqdm bar on stderr; messages and finished trials print above it."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.stream = stream
        self.bar = None
        super().__init__(lambda text: tqdm.write(text, file=stream))

    def start(self, total: int) -> None:
        self.close()
        self.bar = self._tqdm(total=total, unit="trial", file=self.stream, dynamic_ncols=True,
                              bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} trials [{elapsed}<{remaining}] {postfix}")
        self._best = ""

    def trial_started(self, number: int, label: str) -> None:
        if self.bar is None:
            return super().trial_started(number, label)
        self.bar.set_description_str(f"trial {number}", refresh=False)
        self.bar.set_postfix_str(f"{label}{self._best}")

    def phase(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(f"{self.bar.desc.split(':')[0]}: {name}")

    def trial_finished(self, event: TrialEvent) -> None:
        super().trial_finished(event)
        if self.bar is not None:
            if event.best:
                self._best = f" | {best_words(event.best)}: #{event.best['trial']} {event.best['speedup']:.2f}x " \
                             f"{event.best['accuracy_loss_pt']:+.2f} pt"
            self.bar.set_postfix_str(self._best.lstrip(" |"))
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class JsonLog(Lines):
    """One JSON object per line: {"event": "message" | "started" | "trial_started" | "phase" | "trial_finished"}."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        super().__init__(lambda text: self._emit({"event": "message", "text": text}))

    def _emit(self, record: dict) -> None:
        self.stream.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
        self.stream.flush()

    def start(self, total: int) -> None:
        self._emit({"event": "started", "trials": total})

    def trial_started(self, number: int, label: str) -> None:
        self._emit({"event": "trial_started", "trial": number, "label": label})

    def phase(self, name: str) -> None:
        self._emit({"event": "phase", "name": name})

    def trial_finished(self, event: TrialEvent) -> None:
        self._emit({"event": "trial_finished", **asdict(event)})


class Quiet(Lines):
    def __init__(self) -> None:
        super().__init__(lambda text: None)


def as_progress(progress) -> Lines:
    """Any callable of one string becomes a :class:`Lines`; a display is used as it is."""
    return progress if isinstance(progress, Lines) else Lines(progress)


def describe(event: TrialEvent) -> list[str]:
    """The lines a finished trial prints."""
    head = (f"[{event.done}/{event.total} {clock(event.elapsed_s)} elapsed, ~{clock(event.remaining_s)} left] "
            f"trial {event.trial}")
    if event.state != "complete":
        return [f"{head} {event.label}: {event.state}: {event.reason}"]
    note = f" (same graph as trial {event.same_graph_as}: measured once)" if event.same_graph_as is not None else ""
    noisy = "  NOISY" if event.noisy else ""
    loss = f"{event.metric} loss {event.accuracy_loss_pt:+.2f} pt{_loss_interval(event)}"
    if event.size_mb is not None:
        loss += f", {event.size_mb:.1f} MB"
    if event.latency_p99_ms is not None:
        loss += f", p99 {event.latency_p99_ms:.1f} ms"
    if event.speedup is None:  # stopped early for accuracy
        lines = [f"{head} {event.label}: {loss}; not timed{note}"]
    else:
        lines = [f"{head} {event.label}: {event.samples_per_s:.1f} samples/s, {event.speedup:.2f}x fp32 "
                 f"(+-{event.ci_halfwidth:.1%}, {event.rounds} rounds), {loss}{noisy}{note}"]
    lines += [f"        warning: {w}" for w in event.warnings]
    cost = cost_words(event.evaluate_s, event.timing_s)
    if event.stopped_early or cost:
        lines.append("        " + "; ".join(filter(None, [cost, event.stopped_early and
                                                          f"stopped early: {event.stopped_early}"])))
    if event.best:
        lines.append(f"        {best_words(event.best)}: trial {event.best['trial']}, {event.best['speedup']:.2f}x, "
                     f"loss {event.best['accuracy_loss_pt']:+.2f} pt")
    return lines


def cost_words(evaluate_s: float | None, timing_s: float | None) -> str:
    """What a trial cost, e.g. "cost: 8.1 s evaluating, 25.3 s timing"; "" when nothing was measured."""
    parts = [f"{v:.1f} s {what}" for v, what in ((evaluate_s, "evaluating"), (timing_s, "timing"))
             if v is not None and v == v]
    return "cost: " + ", ".join(parts) if parts else ""


def _loss_interval(event: TrialEvent) -> str:
    if event.loss_ci_pt is None:
        return ""
    low, high = event.loss_ci_pt
    return f" (95% CI {low:+.2f} to {high:+.2f}" + (f", {event.constraint})" if event.constraint else ")")


def best_words(best: dict) -> str:
    limit = best.get("limit_pt")
    return "fastest so far" if limit is None else f"best within {limit:g} pt"


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"
