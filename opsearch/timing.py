"""Throughput measured like pyperf measures: warm-ups apart, repeated rounds, variation checked.

A trial is timed *paired* with the fp32 model: each round runs both over the same workload, in an order
shuffled per round, so a drift in the machine's speed hits both alike and cancels in the per-round ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Clock = Callable[[], float]


@dataclass(frozen=True)
class PairedTiming:
    """An immutable record of one paired measurement: seconds per round for each side."""

    candidate_s: tuple[float, ...]
    baseline_s: tuple[float, ...]
    samples_per_round: int
    warmup_rounds: int
    ci_target: float  # wanted relative half-width of the speedup's confidence interval
    speedup_ci: tuple[float, float]
    ci_level: float = 0.95

    @property
    def rounds(self) -> int:
        return len(self.candidate_s)

    @property
    def ratios(self) -> np.ndarray:
        return np.asarray(self.baseline_s) / np.asarray(self.candidate_s)

    @property
    def speedup(self) -> float:
        """Median over rounds of (fp32 seconds / candidate seconds)."""
        return float(np.median(self.ratios))

    @property
    def ci_halfwidth(self) -> float:
        """Half the confidence interval's width, relative to the speedup."""
        low, high = self.speedup_ci
        return (high - low) / 2 / self.speedup

    @property
    def target_met(self) -> bool:
        return self.ci_halfwidth <= self.ci_target

    @property
    def noisy(self) -> bool:
        return not self.target_met

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
        return stability_warnings(np.asarray(self.candidate_s), what="candidate") + stability_warnings(
            np.asarray(self.baseline_s), what="fp32"
        )

    def to_dict(self) -> dict:
        return {
            "speedup": self.speedup, "speedup_ci": list(self.speedup_ci), "ci_halfwidth": self.ci_halfwidth,
            "ci_target": self.ci_target, "target_met": self.target_met, "speedup_cv": self.speedup_cv,
            "throughput": self.throughput, "baseline_throughput": self.baseline_throughput,
            "candidate_cv": self.candidate_cv, "rounds": self.rounds, "warmup_rounds": self.warmup_rounds,
            "samples_per_round": self.samples_per_round, "noisy": self.noisy, "warnings": self.warnings(),
            "candidate_s": list(self.candidate_s), "baseline_s": list(self.baseline_s),
        }


# pyperf's thresholds: a spread over 10% of the mean, or a value 50% away from the median, is suspect;
# a round under a millisecond is too short for the clock to time well.
_MAX_CV = 0.10
_MAX_OUTLIER = 0.50
_MIN_ROUND_S = 1e-3


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


def _cv(values: np.ndarray) -> float:
    mean = float(np.mean(values))
    return float(np.std(values, ddof=1) / mean) if len(values) > 1 and mean > 0 else 0.0


def bootstrap_ci(values: np.ndarray, *, level: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median."""
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(resamples, len(values)), replace=True), axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(medians, alpha)), float(np.quantile(medians, 1 - alpha))


def measure_paired(run_candidate: Callable[[], None], run_baseline: Callable[[], None], *,
                   samples_per_round: int, rounds: int, max_rounds: int, warmup_rounds: int,
                   ci_target: float, max_seconds: float | None = None, seed: int = 0,
                   clock: Clock = time.perf_counter) -> PairedTiming:
    """Time one candidate against the baseline in interleaved rounds (see :func:`measure_interleaved`)."""
    return measure_interleaved(run_baseline, [run_candidate], samples_per_round=samples_per_round, rounds=rounds,
                               max_rounds=max_rounds, warmup_rounds=warmup_rounds, ci_target=ci_target,
                               max_seconds=max_seconds, seed=seed, clock=clock)[0]


def measure_interleaved(run_baseline: Callable[[], None], candidates: Sequence[Callable[[], None]], *,
                        samples_per_round: int, rounds: int, max_rounds: int, warmup_rounds: int,
                        ci_target: float, max_seconds: float | None = None, seed: int = 0,
                        clock: Clock = time.perf_counter) -> list[PairedTiming]:
    """Time the baseline and every candidate once per round, in an order shuffled per round.

    ``rounds`` rounds are always measured; then one more at a time while the 95% bootstrap interval of any
    candidate's median per-round speedup is wider than +-``ci_target`` (relative), until ``max_rounds``
    rounds or ``max_seconds`` of measuring. Warm-up rounds run every side and are discarded. Returns one
    record per candidate, each paired with the baseline's times from the same rounds.
    """
    rng = np.random.default_rng(seed)
    sides = [run_baseline, *candidates]
    for _ in range(warmup_rounds):
        for fn in sides:
            fn()
    times: list[list[float]] = [[] for _ in sides]
    started = clock()
    while True:
        for i in rng.permutation(len(sides)):
            start = clock()
            sides[i]()
            times[i].append(clock() - start)
        n = len(times[0])
        if n < rounds:
            continue
        cis = [bootstrap_ci(np.asarray(times[0]) / np.asarray(t), seed=seed) for t in times[1:]]
        widths = [(hi - lo) / 2 / float(np.median(np.asarray(times[0]) / np.asarray(t)))
                  for (lo, hi), t in zip(cis, times[1:], strict=True)]
        out_of_time = max_seconds is not None and clock() - started >= max_seconds
        if max(widths) <= ci_target or n >= max_rounds or out_of_time:
            return [PairedTiming(tuple(t), tuple(times[0]), samples_per_round, warmup_rounds, ci_target, ci)
                    for t, ci in zip(times[1:], cis, strict=True)]


@dataclass(frozen=True)
class SingleTiming:
    """Seconds per round for one model alone (the study's fp32 reference)."""

    seconds: tuple[float, ...]
    samples_per_round: int
    warmup_rounds: int

    @property
    def throughput(self) -> float:
        return self.samples_per_round / statistics.median(self.seconds)

    @property
    def cv(self) -> float:
        return _cv(np.asarray(self.seconds))

    def to_dict(self) -> dict:
        return {"throughput": self.throughput, "cv": self.cv, "rounds": len(self.seconds),
                "warmup_rounds": self.warmup_rounds, "samples_per_round": self.samples_per_round,
                "seconds": list(self.seconds)}


def measure_single(run: Callable[[], None], *, samples_per_round: int, rounds: int, warmup_rounds: int,
                   clock: Clock = time.perf_counter) -> SingleTiming:
    for _ in range(warmup_rounds):
        run()
    seconds = []
    for _ in range(rounds):
        start = clock()
        run()
        seconds.append(clock() - start)
    return SingleTiming(tuple(seconds), samples_per_round, warmup_rounds)
