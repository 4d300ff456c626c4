"""The intervals opsearch reports, as bootstraps by scipy (``scipy.stats.bootstrap``, percentile method).

The percentile method rather than BCa: the floor is a minimum, whose bootstrap distribution is lumpy (a resample
can only repeat the rounds it has), and BCa's acceleration estimate is unstable on such statistics.
"""

from __future__ import annotations

import numpy as np


def _percentile_bootstrap(data: tuple[np.ndarray, ...], statistic, *, level: float, resamples: int,
                          seed: int | np.random.Generator, batch: int | None = None) -> tuple[float, float]:
    from scipy import stats

    result = stats.bootstrap(data, statistic, n_resamples=resamples, batch=batch, vectorized=True,
                             confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_ci(values: np.ndarray, *, level: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.ptp(values) == 0:
        return float(np.median(values)), float(np.median(values))
    return _percentile_bootstrap((values,), np.median, level=level, resamples=resamples, seed=seed)


def floor_seconds(calls: np.ndarray) -> float:
    """A side's floor cost: the sum over calls of each call's fastest time across rounds (rounds x calls)."""
    return float(np.asarray(calls).min(axis=0).sum())


def floor_ci(candidate_calls: np.ndarray, baseline_calls: np.ndarray, *, level: float = 0.95,
             resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the floor speedup, resampling whole rounds (each side rounds x calls, the rounds
    paired: a resample takes the same rounds of both sides).

    Widened if need be to contain the estimate itself: a resample holds fewer distinct rounds, so its minima lie
    a little higher, and the plain percentile interval of an extreme can miss it.
    """
    cand, base = np.asarray(candidate_calls, dtype=float), np.asarray(baseline_calls, dtype=float)
    point = floor_seconds(base) / floor_seconds(cand)
    if len(cand) < 2:
        return point, point

    def ratio(rounds: np.ndarray, axis: int = -1) -> np.ndarray:
        picked = rounds.astype(int)  # (..., n) round indices of each resample
        return base[picked].min(axis=-2).sum(axis=-1) / cand[picked].min(axis=-2).sum(axis=-1)

    low, high = _percentile_bootstrap((np.arange(len(cand)),), ratio, level=level, resamples=resamples, seed=seed,
                                      batch=200)
    return min(low, point), max(high, point)


def mean_difference_ci(on: np.ndarray, off: np.ndarray, *, level: float = 0.95, resamples: int = 2000,
                       seed: int | np.random.Generator = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(on) - mean(off), each side resampled on its own."""
    def difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return a.mean(axis=axis) - b.mean(axis=axis)

    return _percentile_bootstrap((np.asarray(on, dtype=float), np.asarray(off, dtype=float)), difference,
                                 level=level, resamples=resamples, seed=seed)
