"""Throughput measured like pyperf measures: warm-ups apart, repeated rounds, variation checked.

A trial is timed *paired* with the fp32 model: each round runs both over the same workload, in an order
shuffled per round, so both sides see the same machine. Two estimators of the speedup come from the same
rounds:

- ``floor`` (the default): each side's cost is the sum, over the workload's calls, of each call's fastest
  time across rounds; the speedup is the ratio of those sums. A shared machine only ever *adds* time to a
  call (another tenant, an interrupt, a cache flushed), and that added time is not proportional: it hurts the
  faster model's short calls more, and by how much depends on the machine's state at the moment. The
  fastest of several tries of each call is the call with the least added, which the machine reaches again
  and again; that makes the floor more reproducible between processes than the median (coefficient of
  variation 2.0% against 3.1% over 30 processes here; the README's "How reproducible is a speedup?").
  Chen and Revels make the same argument for the minimum in "Robust benchmarking in noisy environments"
  (2016), the basis of Julia's BenchmarkTools.
- ``median``: the median over rounds of the per-round ratio (fp32 seconds / candidate seconds): a drift in
  the machine's speed cancels in each round's ratio; the machine's typical interference stays in.

Throughput (samples/s) is always the candidate's own median round: what the machine gave, interference
included. Latency is each side's per-call times pooled over its rounds (all sessions): their 50th, 95th and 99th
percentiles, in milliseconds. A call is one batch of the workload (one text at batch size 1).

The speedup's interval takes in the sessions, not only the rounds. Rounds rotate over ``sessions_per_model``
sessions of each model, so the rounds fall into *blocks*, one per pair of sessions; a session (like a process)
runs a little faster or slower for good, which no resampling of rounds can see. The reported interval is a
two-level bootstrap, over the blocks and then the rounds inside each (``across_sessions_ci``). Rounds are added
while the part more rounds can shrink, the bootstrap over rounds alone, is wider than ``ci_target``.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from opsearch.measure._protocol import TimingProtocol
from opsearch.measure._statistics import across_sessions_ci, between_sd, bootstrap_ci, floor_ci, floor_seconds

Clock = Callable[[], float]
# Racing (``measure_paired(race=...)``) may stop a candidate from this many rounds on.
RACE_FROM = 5
# One side of a round: runs the workload once; returns each call's seconds, or None (then the whole pass
# counts as one call).
Side = Callable[[], "Sequence[float] | np.ndarray | None"]
# Told the candidate's record so far; returns why its rounds can stop ("" to go on).
Race = Callable[["PairedTiming"], str]
# A run's rounds are cut into this many stretches of time to see how far the speedup drifts over it.
DRIFT_SEGMENTS = 3
# The latency percentiles every timing record keeps (of single calls, in ms).
PERCENTILES = (50, 95, 99)


def call_percentiles_ms(calls: np.ndarray) -> dict[str, float]:
    """The ``PERCENTILES`` of per-call seconds (any shape: rounds x calls), in milliseconds: {"p50", "p95", "p99"}."""
    values = np.asarray(calls, dtype=float).ravel()
    return {f"p{q}": float(np.percentile(values, q) * 1e3) for q in PERCENTILES}


@dataclass(frozen=True)
class PairedTiming:
    """An immutable record of one paired measurement: seconds per round for each side."""

    candidate_s: tuple[float, ...]
    baseline_s: tuple[float, ...]
    samples_per_round: int
    warmup_rounds: int
    ci_target: float  # wanted relative half-width of the speedup's confidence interval
    speedup_ci: tuple[float, float]  # of the chosen estimator's speedup, across sessions (see the module)
    ci_level: float = 0.95
    estimator: str = "median"  # "floor" or "median" (see the module's docstring); measuring passes the study's
    # Each side's sum over calls of the call's fastest time across rounds (for the floor estimator).
    candidate_floor_s: float | None = None
    baseline_floor_s: float | None = None
    # What else the CPUs did meanwhile, in cores busy on average (None: not watched).
    other_cores: float | None = None
    steal_cores: float | None = None
    rounds_ci: tuple[float, float] | None = None  # the bootstrap over rounds alone (None: speedup_ci is it)
    blocks: int = 1  # the pairs of sessions the rounds rotated over (1: the interval is the rounds' alone)
    raced: str = ""  # why rounds stopped before the interval met its target (racing: surely dominated)
    latency_ms: dict | None = None  # the candidate's per-call percentiles {"p50", "p95", "p99"} (None: not measured)
    baseline_latency_ms: dict | None = None  # fp32's, from the same rounds

    @property
    def rounds(self) -> int:
        return len(self.candidate_s)

    @property
    def ratios(self) -> np.ndarray:
        return np.asarray(self.baseline_s) / np.asarray(self.candidate_s)

    @property
    def median_ratio(self) -> float:
        """Median over rounds of (fp32 seconds / candidate seconds)."""
        return float(np.median(self.ratios))

    @property
    def floor_speedup(self) -> float | None:
        """fp32's floor cost over the candidate's (see the module's docstring)."""
        if self.candidate_floor_s is None or self.baseline_floor_s is None:
            return None
        return self.baseline_floor_s / self.candidate_floor_s

    @property
    def speedup(self) -> float:
        """The chosen estimator's speedup."""
        return self.floor_speedup if self.estimator == "floor" else self.median_ratio

    @property
    def ci_halfwidth(self) -> float:
        """Half the confidence interval's width, relative to the speedup."""
        low, high = self.speedup_ci
        return (high - low) / 2 / self.speedup

    @property
    def rounds_halfwidth(self) -> float:
        """The bootstrap-over-rounds part's half-width, relative: what more rounds shrink."""
        low, high = self.rounds_ci or self.speedup_ci
        return (high - low) / 2 / self.speedup

    def drift_sd(self, segments: int = DRIFT_SEGMENTS) -> float:
        """How much the speedup moved over this measurement's own run (log scale): its rounds, in the order they
        ran, cut into ``segments`` stretches of time, each stretch's mean log ratio and standard error, and the
        spread between stretches beyond those errors (``between_sd``). Rounds rotate over the sessions, so every
        stretch holds them all: what differs between stretches is the machine over minutes. 0 with fewer than two
        rounds a stretch."""
        logs = np.log(np.asarray(self.baseline_s) / np.asarray(self.candidate_s))
        if len(logs) < 2 * segments:
            return 0.0
        parts = np.array_split(logs, segments)
        return between_sd(np.array([p.mean() for p in parts]),
                          np.array([p.std(ddof=1) / np.sqrt(len(p)) for p in parts]))

    @property
    def target_met(self) -> bool:
        return self.rounds_halfwidth <= self.ci_target

    @property
    def noisy(self) -> bool:
        return not self.target_met and not self.raced

    @property
    def speedup_cv(self) -> float:
        return _cv(self.ratios)

    @property
    def candidate_cv(self) -> float:
        return _cv(np.asarray(self.candidate_s))

    @property
    def throughput(self) -> float:
        """Candidate samples per second, from its own median round."""
        return self.samples_per_round / statistics.median(self.candidate_s)

    @property
    def baseline_throughput(self) -> float:
        return self.samples_per_round / statistics.median(self.baseline_s)

    def warnings(self) -> list[str]:
        return (stability_warnings(np.asarray(self.candidate_s), what="candidate")
                + stability_warnings(np.asarray(self.baseline_s), what="fp32")
                + load_warnings(self.other_cores, self.steal_cores))

    def to_dict(self) -> dict:
        return {
            "speedup": self.speedup, "speedup_ci": list(self.speedup_ci), "ci_halfwidth": self.ci_halfwidth,
            "ci_target": self.ci_target, "target_met": self.target_met, "estimator": self.estimator,
            "floor_speedup": self.floor_speedup, "candidate_floor_s": self.candidate_floor_s,
            "baseline_floor_s": self.baseline_floor_s, "median_ratio": self.median_ratio,
            "median_ratio_ci": list(bootstrap_ci(self.ratios)), "speedup_cv": self.speedup_cv,
            "throughput": self.throughput, "baseline_throughput": self.baseline_throughput,
            "candidate_cv": self.candidate_cv, "rounds": self.rounds, "warmup_rounds": self.warmup_rounds,
            "samples_per_round": self.samples_per_round, "noisy": self.noisy, "warnings": self.warnings(),
            "other_cores": self.other_cores, "steal_cores": self.steal_cores,
            "rounds_ci": None if self.rounds_ci is None else list(self.rounds_ci),
            "rounds_halfwidth": self.rounds_halfwidth, "blocks": self.blocks, "raced": self.raced,
            "latency_ms": self.latency_ms, "baseline_latency_ms": self.baseline_latency_ms,
            "candidate_s": list(self.candidate_s), "baseline_s": list(self.baseline_s),
        }

    @classmethod
    def from_dict(cls, data: dict) -> PairedTiming:
        return cls(tuple(data["candidate_s"]), tuple(data["baseline_s"]), data["samples_per_round"],
                   data["warmup_rounds"], data["ci_target"], tuple(data["speedup_ci"]),
                   estimator=data["estimator"], candidate_floor_s=data["candidate_floor_s"],
                   baseline_floor_s=data["baseline_floor_s"], other_cores=data["other_cores"],
                   steal_cores=data["steal_cores"],
                   rounds_ci=None if data["rounds_ci"] is None else tuple(data["rounds_ci"]),
                   blocks=data["blocks"], raced=data["raced"], latency_ms=data["latency_ms"],
                   baseline_latency_ms=data["baseline_latency_ms"])


# pyperf's thresholds: a spread over 10% of the mean, or a value 50% away from the median, is suspect;
# a round under a millisecond is too short for the clock to time well.
_MAX_CV = 0.10
_MAX_OUTLIER = 0.50
_MIN_ROUND_S = 1e-3
# Other processes keeping this share of a core busy, or a hypervisor taking this share, skew a speedup: the
# two models do not suffer alike from a neighbour (the faster one's short calls suffer more).
_MAX_OTHER_CORES = 0.15
_MAX_STEAL_CORES = 0.05


def stability_warnings(seconds: np.ndarray, *, what: str) -> list[str]:
    """pyperf-style checks; each warning says what to do about it."""
    out = []
    if len(seconds) > 1 and _cv(seconds) > _MAX_CV:
        out.append(f"{what}: rounds vary by {_cv(seconds):.0%} (std/mean > {_MAX_CV:.0%}): measure more rounds "
                   "(--max-rounds), use a larger workload (--timing-samples), or quiet the machine")
    median = float(np.median(seconds))
    if median > 0 and np.any(np.abs(seconds - median) > _MAX_OUTLIER * median):
        out.append(f"{what}: a round lies over {_MAX_OUTLIER:.0%} away from the median: something else ran on "
                   "the machine; quiet it and measure again")
    if np.min(seconds) < _MIN_ROUND_S:
        out.append(f"{what}: a round took under {_MIN_ROUND_S * 1e3:.0f} ms, too short to time reliably: "
                   "raise --timing-samples")
    return out


def load_warnings(other_cores: float | None, steal_cores: float | None) -> list[str]:
    """Warnings for a machine that was busy with something else while timing ran."""
    out = []
    if other_cores is not None and other_cores > _MAX_OTHER_CORES:
        out.append(f"other processes kept {other_cores:.2f} cores busy while timing ran: they slow the two "
                   "models unequally; stop them (other workers quantizing, builds, browsers) and measure again")
    if steal_cores is not None and steal_cores > _MAX_STEAL_CORES:
        out.append(f"the hypervisor took {steal_cores:.2f} cores (steal time) while timing ran: another tenant "
                   "of this virtual machine was busy; measure again later, or on a dedicated machine")
    return out


def _cv(values: np.ndarray) -> float:
    mean = float(np.mean(values))
    return float(np.std(values, ddof=1) / mean) if len(values) > 1 and mean > 0 else 0.0


def _speedup(candidate_s: np.ndarray, baseline_s: np.ndarray, candidate_calls: np.ndarray,
             baseline_calls: np.ndarray, estimator: str) -> float:
    if estimator == "floor":
        return floor_seconds(baseline_calls) / floor_seconds(candidate_calls)
    return float(np.median(baseline_s / candidate_s))


def paired_record(candidate_s: Sequence[float], baseline_s: Sequence[float], candidate_calls: np.ndarray,
                  baseline_calls: np.ndarray, *, protocol: TimingProtocol, samples_per_round: int) -> PairedTiming:
    """The record of paired rounds: round totals, per-call times (rounds x calls) for the floor. Round ``r`` ran
    on session pair ``(warmup_rounds + r) % sessions_per_model`` (see the module's docstring)."""
    estimator, seed, blocks = protocol.estimator, protocol.seed, protocol.sessions_per_model
    cand, base = np.asarray(candidate_s, dtype=float), np.asarray(baseline_s, dtype=float)
    if estimator == "floor":
        rounds_ci = floor_ci(candidate_calls, baseline_calls, seed=seed)
    else:
        rounds_ci = bootstrap_ci(base / cand, seed=seed)
    point = _speedup(cand, base, candidate_calls, baseline_calls, estimator)
    block = (protocol.warmup_rounds + np.arange(len(cand))) % max(1, blocks)
    ci = rounds_ci
    if len(np.unique(block)) > 1:
        low, high = across_sessions_ci(candidate_calls, baseline_calls, block, estimator=estimator, seed=seed)
        ci = (min(low, rounds_ci[0], point), max(high, rounds_ci[1], point))
    return PairedTiming(tuple(candidate_s), tuple(baseline_s), samples_per_round, protocol.warmup_rounds,
                        protocol.ci_target, ci, estimator=estimator, candidate_floor_s=floor_seconds(candidate_calls),
                        baseline_floor_s=floor_seconds(baseline_calls), rounds_ci=rounds_ci,
                        blocks=len(np.unique(block)), latency_ms=call_percentiles_ms(candidate_calls),
                        baseline_latency_ms=call_percentiles_ms(baseline_calls))


def measure_paired(run_candidate: Side, run_baseline: Side, *, protocol: TimingProtocol, samples_per_round: int,
                   load_meter: Callable[[], Any] | None = None, race: Race | None = None,
                   clock: Clock = time.perf_counter) -> PairedTiming:
    """Time one candidate against the baseline in interleaved rounds (see :func:`measure_interleaved`).

    ``race``: asked after each round from the ``RACE_FROM``-th on, with the record so far; a reason it returns
    (the candidate is surely dominated: see ``search``) stops the rounds there, ``rounds`` reached or not."""
    return measure_interleaved(run_baseline, [run_candidate], protocol=protocol, samples_per_round=samples_per_round,
                               load_meter=load_meter, race=race, clock=clock)[0]


def measure_interleaved(run_baseline: Side, candidates: Sequence[Side], *, protocol: TimingProtocol,
                        samples_per_round: int, load_meter: Callable[[], Any] | None = None, race: Race | None = None,
                        clock: Clock = time.perf_counter) -> list[PairedTiming]:
    """Time the baseline and every candidate once per round, in an order shuffled per round.

    ``protocol.rounds`` rounds are always measured; then one more at a time while the 95% bootstrap interval of any
    candidate's speedup over rounds is wider than +-``ci_target`` (relative), until ``max_rounds`` rounds or
    ``max_seconds`` of measuring. Warm-up rounds run every side and are discarded. Returns one record per
    candidate, each paired with the baseline's times from the same rounds. The sides rotate over
    ``sessions_per_model`` sessions of each model (see the module's docstring). ``load_meter`` (e.g.
    :class:`opsearch.measure.LoadMeter`) watches what else the CPUs do during the timed rounds.
    """
    sides = [run_baseline, *candidates]
    for _ in range(protocol.warmup_rounds):
        for fn in sides:
            fn()
    rounds = _Rounds(sides, protocol, samples_per_round, clock)
    race_from = min(RACE_FROM, protocol.rounds) if race is not None and len(candidates) == 1 else None
    meter = load_meter() if load_meter is not None else None
    with meter if meter is not None else contextlib.nullcontext():
        started = clock()
        while True:
            n = rounds.run_one()
            racing = race_from is not None and n >= race_from
            if n < protocol.rounds and not racing:
                continue
            records = rounds.records()
            reason = race(records[0]) if racing else ""
            if reason:
                records = [replace(records[0], raced=reason)]
                break
            if n >= protocol.rounds and _enough(records, n, clock() - started, protocol):
                break
    load = getattr(meter, "load", None)
    if load is None:
        return records
    return [replace(r, other_cores=load.other_cores, steal_cores=load.steal_cores) for r in records]


def _enough(records: list[PairedTiming], rounds: int, seconds: float, protocol: TimingProtocol) -> bool:
    """Whether rounds can stop, ``protocol.rounds`` reached: every interval met its target, or the budget is spent."""
    out_of_time = protocol.max_seconds is not None and seconds >= protocol.max_seconds
    met = max(r.rounds_halfwidth for r in records) <= protocol.ci_target
    return met or rounds >= protocol.max_rounds or out_of_time


class _Rounds:
    """The rounds measured so far: each side's round totals and per-call seconds (side 0 is the baseline)."""

    def __init__(self, sides: list[Side], protocol: TimingProtocol, samples_per_round: int, clock: Clock) -> None:
        self.sides, self.protocol, self.samples_per_round, self.clock = sides, protocol, samples_per_round, clock
        self.rng = np.random.default_rng(protocol.seed)
        self.totals: list[list[float]] = [[] for _ in sides]
        self.calls: list[list[np.ndarray]] = [[] for _ in sides]

    def run_one(self) -> int:
        """Run one round, every side once in a shuffled order; returns how many rounds have run."""
        for i in self.rng.permutation(len(self.sides)):
            start = self.clock()
            per_call = self.sides[i]()
            self.totals[i].append(self.clock() - start)
            self.calls[i].append(np.asarray(per_call if per_call is not None else [self.totals[i][-1]], dtype=float))
        return len(self.totals[0])

    def records(self) -> list[PairedTiming]:
        """Each candidate's record so far, paired with the baseline's rounds."""
        return [paired_record(self.totals[j], self.totals[0], np.stack(self.calls[j]), np.stack(self.calls[0]),
                              protocol=self.protocol, samples_per_round=self.samples_per_round)
                for j in range(1, len(self.sides))]


@dataclass(frozen=True)
class SingleTiming:
    """Seconds per round for one model alone (the study's fp32 reference)."""

    seconds: tuple[float, ...]
    samples_per_round: int
    warmup_rounds: int
    latency_ms: dict | None = None  # per-call percentiles (call_percentiles_ms); None: the side gave no calls

    @property
    def throughput(self) -> float:
        return self.samples_per_round / statistics.median(self.seconds)

    @property
    def cv(self) -> float:
        return _cv(np.asarray(self.seconds))

    def to_dict(self) -> dict:
        return {"throughput": self.throughput, "cv": self.cv, "rounds": len(self.seconds),
                "warmup_rounds": self.warmup_rounds, "samples_per_round": self.samples_per_round,
                "latency_ms": self.latency_ms, "seconds": list(self.seconds)}


def measure_single(run: Side, *, protocol: TimingProtocol, samples_per_round: int,
                   clock: Clock = time.perf_counter) -> SingleTiming:
    """Time one model alone: ``protocol.warmup_rounds`` discarded, then exactly ``protocol.rounds`` rounds."""
    for _ in range(protocol.warmup_rounds):
        run()
    seconds, calls = [], []
    for _ in range(protocol.rounds):
        start = clock()
        per_call = run()
        seconds.append(clock() - start)
        if per_call is not None:
            calls.append(np.asarray(per_call, dtype=float))
    return SingleTiming(tuple(seconds), samples_per_round, protocol.warmup_rounds,
                        call_percentiles_ms(np.concatenate(calls)) if calls else None)
