"""The intervals and tests behind opsearch's answers: bootstraps by scipy (``scipy.stats.bootstrap``, percentile
method) where one level of resampling is right; a two-level bootstrap over session pairs and rounds, and Holm's
adjustment, written here since scipy has neither; Wilcoxon's signed-rank test from scipy.

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


def across_sessions_ci(candidate_calls: np.ndarray, baseline_calls: np.ndarray, blocks: np.ndarray, *,
                       estimator: str, level: float = 0.95, resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """The speedup's interval across sessions: a two-level bootstrap, over the pairs of sessions and then over the
    rounds inside each pair (each side rounds x calls, the rounds paired; ``blocks``: each round's pair).

    One session of a model runs a little faster or slower for good (its memory layout), and so does a process; a
    bootstrap over rounds alone cannot see that, so its interval holds for this process only. Resampling the pairs
    first puts their disagreement into the interval. (scipy's bootstrap resamples one level only; this is the
    hierarchical bootstrap of Saravanan et al., "Application of the hierarchical bootstrap to multi-level data in
    neuroscience", 2020.)"""
    cand, base = np.asarray(candidate_calls, dtype=float), np.asarray(baseline_calls, dtype=float)
    blocks = np.asarray(blocks)
    labels, position_block = np.unique(blocks, return_inverse=True)
    k = len(labels)
    order = np.argsort(position_block, kind="stable")
    sizes = np.bincount(position_block, minlength=k)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng(seed)
    stats = []
    batch = max(1, min(200, int(2e7 // cand.size)))  # resamples at a time, memory bounded on large workloads
    for done in range(0, resamples, batch):
        n = min(batch, resamples - done)
        chosen = rng.integers(0, k, size=(n, k))[:, position_block]  # the pair each round position draws from
        picked = order[starts[chosen] + (rng.random(chosen.shape) * sizes[chosen]).astype(int)]
        if estimator == "floor":
            stats.append(base[picked].min(axis=1).sum(axis=-1) / cand[picked].min(axis=1).sum(axis=-1))
        else:
            stats.append(np.median(base[picked].sum(axis=-1) / cand[picked].sum(axis=-1), axis=1))
    values = np.concatenate(stats)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def tie_groups(seconds: list[np.ndarray], *, alpha: float = 0.05,
               margin: float = 0.0) -> tuple[list[list[int]], dict]:
    """Which of several models timed in the same rounds cannot be told apart by more than ``margin``.

    ``seconds``: each model's seconds per round, fastest model first, the rounds shared. Every pair is compared by
    a Wilcoxon signed-rank test on the per-round log ratio (the rounds are paired), the p-values adjusted by Holm
    for the number of pairs. With a ``margin`` (relative, e.g. 0.02), the test is one-sided and shifted: is the
    slower one slower by more than the margin? (a difference under it is none worth naming); without, two-sided:
    do they differ at all? Groups form in speed order: a model joins the last group when it cannot be told apart
    from that group's first (fastest) member, and otherwise starts a group. Returns the groups (indices
    into ``seconds``) and the adjusted p-values, keyed "i-j"."""
    from scipy import stats

    n = len(seconds)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    raw = []
    for i, j in pairs:
        diff = np.log(np.asarray(seconds[j], dtype=float)) - np.log(np.asarray(seconds[i], dtype=float))
        if margin:
            diff = diff - np.log1p(margin)
            raw.append(float(stats.wilcoxon(diff, alternative="greater").pvalue) if np.any(diff) else 1.0)
        else:
            raw.append(1.0 if not np.any(diff) else float(stats.wilcoxon(diff).pvalue))
    adjusted = dict(zip((f"{i}-{j}" for i, j in pairs), holm(raw), strict=True)) if pairs else {}
    groups: list[list[int]] = []
    for k in range(n):
        if groups and adjusted[f"{groups[-1][0]}-{k}"] > alpha:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups, adjusted


# What `opsearch bench` and a study's answers say of a speedup's interval against the margin (see ``verdict``).
VERDICTS = ("same", "a_faster", "b_faster", "undecided")


def verdict(interval: tuple[float, float], margin: float) -> str:
    """What a speedup's interval (A's time over B's, inverted: above 1 means A is faster) says, given the smallest
    difference worth naming (``margin``, relative):

    - "same": the whole interval lies within +-margin: no meaningful difference;
    - "a_faster" / "b_faster": the whole interval clears the margin (and so 1) on one side;
    - "undecided": neither: they may differ, by at most the interval's far end; more rounds would decide.

    Margin 0 is the plain test: "same" when the interval holds 1. (An equivalence test in the manner of Schuirmann's
    two one-sided tests, read off the interval, beside a minimum-effect test for a difference.)"""
    low, high = interval
    upper, lower = 1 + margin, 1 / (1 + margin)
    if low > upper:
        return "a_faster"
    if high < lower:
        return "b_faster"
    if margin == 0 or (low >= lower and high <= upper):
        return "same"
    return "undecided"


def between_sd(log_estimates: np.ndarray, standard_errors: np.ndarray) -> float:
    """How much an estimate moves between checkpoints beyond what each one's own standard error explains: the
    standard deviation between them in a random-effects model, by DerSimonian and Laird's moment estimator
    ("Meta-analysis in clinical trials", 1986), the checkpoints taken for studies. 0 when they agree within their
    errors, and with fewer than two. (Neither scipy nor numpy has it; statsmodels does, which opsearch does not
    depend on.)"""
    y, se = np.asarray(log_estimates, dtype=float), np.asarray(standard_errors, dtype=float)
    if len(y) < 2:
        return 0.0
    w = 1 / np.maximum(se, 1e-12) ** 2
    mean = float(np.sum(w * y) / np.sum(w))
    q = float(np.sum(w * (y - mean) ** 2))
    denominator = float(np.sum(w) - np.sum(w ** 2) / np.sum(w))
    return float(np.sqrt(max(0.0, (q - (len(y) - 1)) / denominator))) if denominator > 0 else 0.0


def widen(interval: tuple[float, float], point: float, sd: float, *, level: float = 0.95) -> tuple[float, float]:
    """A ratio's interval with one more variance component, ``sd`` (on the log scale), added to each side's
    half-width in quadrature: the interval of an estimate whose error is the sum of the measured one and an
    independent one of that size."""
    from scipy import stats

    if not sd:
        return interval
    z = float(stats.norm.ppf(0.5 + level / 2))
    low, high = interval
    below = np.hypot(np.log(point) - np.log(low), z * sd)
    above = np.hypot(np.log(high) - np.log(point), z * sd)
    return float(point * np.exp(-below)), float(point * np.exp(above))


def mean_difference_ci(on: np.ndarray, off: np.ndarray, *, level: float = 0.95, resamples: int = 2000,
                       seed: int | np.random.Generator = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(on) - mean(off), each side resampled on its own."""
    def difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return a.mean(axis=axis) - b.mean(axis=axis)

    return _percentile_bootstrap((np.asarray(on, dtype=float), np.asarray(off, dtype=float)), difference,
                                 level=level, resamples=resamples, seed=seed)


def accuracy_loss_ci(reference_correct: np.ndarray, candidate_correct: np.ndarray, *, level: float = 0.95,
                     resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap interval of the accuracy loss (reference accuracy minus the candidate's, a fraction).

    The two models answered the same rows, so the rows are resampled together: only the rows where one is right
    and the other wrong move the loss, and the interval is as narrow as their number allows (an unpaired interval
    would carry each model's full sampling error). No row changed: the loss is exactly 0, (0, 0)."""
    differences = np.asarray(reference_correct, dtype=float) - np.asarray(candidate_correct, dtype=float)
    if not np.any(differences):
        return 0.0, 0.0
    batch = max(1, int(2e7 // len(differences)))  # bounded memory on large evaluation sets
    low, high = _percentile_bootstrap((differences,), np.mean, level=level, resamples=resamples, seed=seed,
                                      batch=batch)
    point = float(differences.mean())
    return min(low, point), max(high, point)


def metric_loss_ci(metric, reference: np.ndarray, candidate: np.ndarray, references: np.ndarray, *,
                   level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap interval of fp32's ``metric`` minus a candidate's, for a metric that is no mean of per-row
    scores (F1, MCC, a correlation): ``reference`` and ``candidate`` are their predictions of the same rows, and each
    resample takes the same rows of both, so only the rows where they differ move the loss. Widened if need be to
    hold the point estimate. No prediction differs: exactly (0, 0)."""
    reference, candidate, references = np.asarray(reference), np.asarray(candidate), np.asarray(references)
    if np.array_equal(reference, candidate):
        return 0.0, 0.0
    counted = metric.counts(reference, references)
    if counted is not None:  # a metric of counts summed over rows: the rows' counts, made once, are resampled
        differences = (counted, metric.counts(candidate, references))

        def loss(rows: np.ndarray, axis: int = -1) -> np.ndarray:
            picked = np.atleast_2d(rows.astype(int))
            return metric.of_counts(differences[0][picked].sum(axis=1)) - metric.of_counts(
                differences[1][picked].sum(axis=1))
    else:
        def loss(rows: np.ndarray, axis: int = -1) -> np.ndarray:
            picked = np.atleast_2d(rows.astype(int))
            truth = references[picked]
            return metric.batched(reference[picked], truth) - metric.batched(candidate[picked], truth)

    batch = max(1, int(2e6 // len(references)))  # bounded memory on large evaluation sets
    low, high = _percentile_bootstrap((np.arange(len(references)),), loss, level=level, resamples=resamples,
                                      seed=seed, batch=batch)
    point = metric.score(reference, references) - metric.score(candidate, references)
    return min(low, point), max(high, point)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of p-values for the number of comparisons: the chance of declaring any
    difference where there is none stays at alpha. (scipy has Benjamini-Hochberg only, which bounds the share of
    false declarations instead.)"""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def surely_above(differences: np.ndarray, bound: float, *, alpha: float) -> bool:
    """Whether the mean of ``differences`` (per-row, paired) lies above ``bound`` at one-sided level ``alpha``:
    Student's one-sample t-test (scipy). Rows that all agree decide by their mean alone."""
    from scipy import stats

    differences = np.asarray(differences, dtype=float)
    if len(differences) < 2:
        return False
    if np.ptp(differences) == 0:
        return bool(differences[0] > bound)
    return bool(stats.ttest_1samp(differences, bound, alternative="greater").pvalue < alpha)


def surely_at_most(successes: int, trials: int, bound: float, *, alpha: float) -> bool:
    """Whether a proportion (``successes`` of ``trials``) lies at or below ``bound`` at one-sided level ``alpha``:
    the upper end of its Wilson interval (scipy) is at most ``bound``."""
    from scipy import stats

    if trials < 1:
        return False
    high = stats.binomtest(successes, trials).proportion_ci(confidence_level=1 - 2 * alpha, method="wilson").high
    return bool(high <= bound)
