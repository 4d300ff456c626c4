"""opsearch.timing: paired measurement, the stop rule, warm-ups, stability checks, bootstrap intervals.

Every measurement runs on a fake machine: its clock only moves when a fake workload "runs", so no test
sleeps and every duration is known exactly.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable

import numpy as np
import pytest

from opsearch.timing import (
    PairedTiming,
    SingleTiming,
    bootstrap_ci,
    measure_paired,
    measure_single,
    stability_warnings,
)

CANDIDATE_S = 0.05  # the candidate's cost of one round on an undisturbed machine
BASELINE_S = 0.10  # the fp32 model's: the true speedup is 2
TRUE_SPEEDUP = BASELINE_S / CANDIDATE_S


class FakeMachine:
    """A clock that advances only when a workload runs; each workload's cost may depend on the time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now

    def workload(self, name: str, cost: Callable[[float, int], float]) -> Callable[[], None]:
        """``cost(now, index)`` is the seconds the ``index``-th call (0-based, per workload) takes at time ``now``."""
        count = [0]

        def run() -> None:
            self.now += cost(self.now, count[0])
            count[0] += 1
            self.calls.append(name)

        return run

    def count(self, name: str) -> int:
        return self.calls.count(name)


def constant(seconds: float) -> Callable[[float, int], float]:
    return lambda now, index: seconds


def noisy(seconds: float, sigma: float, seed: int) -> Callable[[float, int], float]:
    rng = np.random.default_rng(seed)
    return lambda now, index: seconds * float(rng.lognormal(0.0, sigma))


def paired(
    machine: FakeMachine, cand: Callable[[float, int], float], base: Callable[[float, int], float], **settings
) -> PairedTiming:
    options = {
        "samples_per_round": 10,
        "rounds": 5,
        "max_rounds": 20,
        "warmup_rounds": 0,
        "ci_target": 0.02,
        "seed": 0,
        **settings,
    }
    return measure_paired(
        machine.workload("candidate", cand), machine.workload("baseline", base), clock=machine.clock, **options
    )


# Drift ---------------------------------------------------------------------------------------------------


def test_linear_drift_cancels_in_the_paired_speedup() -> None:
    machine = FakeMachine()
    drift_per_s = 0.15  # the machine slows down steadily: +15% per second of work

    def slowing(seconds: float) -> Callable[[float, int], float]:
        return lambda now, index: seconds * (1 + drift_per_s * now)

    timing = paired(machine, slowing(CANDIDATE_S), slowing(BASELINE_S), rounds=30, max_rounds=30)

    assert timing.rounds == 30
    # The candidate's own seconds drift: its last rounds are much slower than its first ones ...
    cand = np.asarray(timing.candidate_s)
    first_throughput = timing.samples_per_round / cand[:5].mean()
    last_throughput = timing.samples_per_round / cand[-5:].mean()
    assert last_throughput < 0.8 * first_throughput
    assert timing.candidate_cv > 0.10
    # ... yet the per-round ratio, measured with the baseline next to it, stays at the true speedup.
    assert timing.speedup == pytest.approx(TRUE_SPEEDUP, rel=0.02)
    assert np.all(np.abs(timing.ratios / TRUE_SPEEDUP - 1) < 0.03)
    low, high = timing.speedup_ci
    assert low <= timing.speedup <= high


def test_round_order_is_shuffled() -> None:
    machine = FakeMachine()
    paired(machine, constant(CANDIDATE_S), constant(BASELINE_S), rounds=40, max_rounds=40)
    firsts = machine.calls[0::2]
    assert len(firsts) == 40
    assert set(firsts) == {"candidate", "baseline"}
    # Each round runs each side exactly once.
    assert all(sorted(machine.calls[i : i + 2]) == ["baseline", "candidate"] for i in range(0, 80, 2))


# Stop rule -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rounds", [1, 3, 7])
def test_stable_ratio_stops_at_the_minimum_rounds(rounds: int) -> None:
    machine = FakeMachine()
    timing = paired(machine, constant(CANDIDATE_S), constant(BASELINE_S), rounds=rounds, max_rounds=25)

    assert timing.rounds == rounds
    assert len(timing.baseline_s) == rounds
    assert machine.count("candidate") == machine.count("baseline") == rounds
    assert timing.speedup == pytest.approx(TRUE_SPEEDUP)
    assert timing.ci_halfwidth == pytest.approx(0.0)
    assert timing.target_met and not timing.noisy


@pytest.mark.parametrize(("rounds", "max_rounds"), [(3, 12), (5, 5), (4, 30)])
def test_noisy_ratio_runs_up_to_max_rounds_and_is_flagged(rounds: int, max_rounds: int) -> None:
    machine = FakeMachine()
    timing = paired(
        machine,
        noisy(CANDIDATE_S, 0.3, seed=1),
        noisy(BASELINE_S, 0.3, seed=2),
        rounds=rounds,
        max_rounds=max_rounds,
        ci_target=0.01,
    )

    assert timing.rounds == max_rounds
    assert machine.count("candidate") == machine.count("baseline") == max_rounds
    assert timing.ci_halfwidth > 0.01
    assert timing.noisy and not timing.target_met
    assert timing.to_dict()["noisy"] is True


def test_rounds_are_added_only_while_the_interval_is_too_wide() -> None:
    machine = FakeMachine()
    target, rounds = 0.02, 3
    timing = paired(
        machine,
        noisy(CANDIDATE_S, 0.03, seed=3),
        noisy(BASELINE_S, 0.03, seed=4),
        rounds=rounds,
        max_rounds=60,
        ci_target=target,
    )

    def halfwidth(ratios: np.ndarray) -> float:
        low, high = bootstrap_ci(ratios)
        return (high - low) / 2 / float(np.median(ratios))

    ratios = timing.ratios
    assert rounds < timing.rounds < 60, "the noise should need some, not all, extra rounds"
    for n in range(rounds, timing.rounds):
        assert halfwidth(ratios[:n]) > target, f"it went on after round {n} although the target was met"
    assert halfwidth(ratios) <= target
    assert timing.target_met and not timing.noisy


# Warm-up -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("warmup_rounds", [0, 1, 3])
def test_warmup_rounds_run_but_are_not_recorded(warmup_rounds: int) -> None:
    machine = FakeMachine()

    def cold_then(seconds: float) -> Callable[[float, int], float]:
        # The first calls (the warm-up) are very slow: a cold cache.
        return lambda now, index: 100.0 if index < warmup_rounds else seconds

    timing = paired(
        machine, cold_then(CANDIDATE_S), cold_then(BASELINE_S), rounds=4, max_rounds=4, warmup_rounds=warmup_rounds
    )

    assert machine.count("candidate") == machine.count("baseline") == warmup_rounds + 4
    assert timing.rounds == 4
    assert timing.warmup_rounds == warmup_rounds
    assert timing.candidate_s == pytest.approx((CANDIDATE_S,) * 4)
    assert timing.baseline_s == pytest.approx((BASELINE_S,) * 4)


# Stability warnings --------------------------------------------------------------------------------------

ALTERNATING_20PCT = [0.08, 0.12] * 5  # std/mean ~ 21%, nothing 50% off the median
ALTERNATING_9PCT = [0.091, 0.109] * 5  # std/mean ~ 9.5%


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param([0.1] * 10, set(), id="clean"),
        pytest.param([0.1, 0.101, 0.099, 0.1, 0.102], set(), id="clean-jitter"),
        pytest.param(ALTERNATING_9PCT, set(), id="spread-just-under-10pct"),
        pytest.param(ALTERNATING_20PCT, {"spread"}, id="spread-over-10pct"),
        pytest.param([0.1] * 99 + [0.145], set(), id="45pct-above-median"),
        pytest.param([0.1] * 99 + [0.155], {"outlier"}, id="outlier-above"),
        pytest.param([0.1] * 99 + [0.045], {"outlier"}, id="outlier-below"),
        pytest.param([0.0011] * 10, set(), id="just-over-1ms"),
        pytest.param([0.0009] * 10, {"short"}, id="under-1ms"),
        pytest.param([0.0005, 0.0015] * 5, {"spread", "short"}, id="short-and-spread"),
    ],
)
def test_stability_warnings(seconds: list[float], expected: set[str]) -> None:
    warnings = stability_warnings(np.asarray(seconds), what="probe")
    kinds = set()
    for warning in warnings:
        assert warning.startswith("probe: ")
        if "std/mean" in warning:
            kinds.add("spread")
        elif "from the median" in warning:
            kinds.add("outlier")
        elif "ms" in warning:
            kinds.add("short")
    assert len(warnings) == len(kinds)
    assert kinds == expected


def test_single_round_has_no_spread_warning() -> None:
    assert stability_warnings(np.asarray([0.1]), what="x") == []


def test_paired_warnings_name_the_side() -> None:
    timing = PairedTiming(
        candidate_s=tuple(ALTERNATING_20PCT),
        baseline_s=(0.2,) * 10,
        samples_per_round=5,
        warmup_rounds=0,
        ci_target=0.02,
        speedup_ci=(1.5, 2.5),
    )
    warnings = timing.warnings()
    assert warnings and all(w.startswith("candidate: ") for w in warnings)
    swapped = PairedTiming(
        candidate_s=(0.2,) * 10,
        baseline_s=tuple(ALTERNATING_20PCT),
        samples_per_round=5,
        warmup_rounds=0,
        ci_target=0.02,
        speedup_ci=(0.4, 0.6),
    )
    assert swapped.warnings() and all(w.startswith("fp32: ") for w in swapped.warnings())


# Bootstrap -----------------------------------------------------------------------------------------------


def _samples(kind: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    return {
        "normal": rng.normal(2.0, 0.1, size=25),
        "skewed": rng.lognormal(0.0, 0.8, size=40),
        "few": np.array([1.9, 2.1, 2.0]),
        "outlier": np.array([2.0] * 10 + [9.0]),
    }[kind]


@pytest.mark.parametrize("kind", ["normal", "skewed", "few", "outlier"])
@pytest.mark.parametrize("level", [0.5, 0.9, 0.95])
def test_bootstrap_ci_brackets_the_median(kind: str, level: float) -> None:
    values = _samples(kind)
    low, high = bootstrap_ci(values, level=level, seed=3)
    assert low <= float(np.median(values)) <= high
    assert values.min() <= low and high <= values.max()


def test_bootstrap_ci_is_seeded_and_widens_with_the_level() -> None:
    values = _samples("skewed")
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    narrow = bootstrap_ci(values, level=0.5)
    wide = bootstrap_ci(values, level=0.99)
    assert wide[0] <= narrow[0] and narrow[1] <= wide[1]
    assert wide[1] - wide[0] > narrow[1] - narrow[0]


def test_bootstrap_ci_of_a_constant_is_a_point() -> None:
    assert bootstrap_ci(np.full(8, 1.7)) == pytest.approx((1.7, 1.7))


# measure_single ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("warmup_rounds", [0, 2])
def test_measure_single(warmup_rounds: int) -> None:
    machine = FakeMachine()
    costs = [0.2, 0.4, 0.1, 0.3, 0.5]
    run = machine.workload("model", lambda now, index: 9.0 if index < warmup_rounds else costs[index - warmup_rounds])

    timing = measure_single(
        run, samples_per_round=12, rounds=len(costs), warmup_rounds=warmup_rounds, clock=machine.clock
    )

    assert isinstance(timing, SingleTiming)
    assert machine.count("model") == warmup_rounds + len(costs)
    assert timing.seconds == pytest.approx(tuple(costs))
    assert timing.throughput == pytest.approx(12 / 0.3)  # the median round took 0.3 s
    assert timing.cv == pytest.approx(statistics.stdev(costs) / statistics.mean(costs))
    data = json.loads(json.dumps(timing.to_dict()))
    assert data["rounds"] == len(costs)
    assert data["warmup_rounds"] == warmup_rounds
    assert data["samples_per_round"] == 12
    assert data["throughput"] == pytest.approx(40.0)
    assert data["seconds"] == pytest.approx(costs)


# PairedTiming.to_dict ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ci_target", "noisy_expected"), [(0.2, False), (0.1, True)])
def test_paired_timing_to_dict_round_trips(ci_target: float, noisy_expected: bool) -> None:
    timing = PairedTiming(
        candidate_s=(0.05, 0.05, 0.05),
        baseline_s=(0.10, 0.15, 0.20),
        samples_per_round=20,
        warmup_rounds=2,
        ci_target=ci_target,
        speedup_ci=(2.5, 3.5),
    )
    data = json.loads(json.dumps(timing.to_dict()))  # it is stored as a JSON trial attribute

    assert data["speedup"] == pytest.approx(3.0)  # median of the ratios 2, 3, 4
    assert data["speedup_ci"] == [2.5, 3.5]
    assert data["ci_halfwidth"] == pytest.approx(0.5 / 3.0)
    assert data["noisy"] is noisy_expected and data["target_met"] is (not noisy_expected)
    assert data["rounds"] == 3
    assert data["warmup_rounds"] == 2
    assert data["samples_per_round"] == 20
    assert data["throughput"] == pytest.approx(20 / 0.05)
    assert data["baseline_throughput"] == pytest.approx(20 / 0.15)
    assert data["speedup_cv"] == pytest.approx(statistics.stdev([2, 3, 4]) / 3)

    rebuilt = PairedTiming(
        tuple(data["candidate_s"]),
        tuple(data["baseline_s"]),
        data["samples_per_round"],
        data["warmup_rounds"],
        data["ci_target"],
        tuple(data["speedup_ci"]),
    )
    assert rebuilt == timing
    assert rebuilt.to_dict() == data


def test_measured_timing_serializes_to_json() -> None:
    machine = FakeMachine()
    timing = paired(machine, noisy(CANDIDATE_S, 0.05, seed=5), noisy(BASELINE_S, 0.05, seed=6))
    data = json.loads(json.dumps(timing.to_dict()))
    assert data["rounds"] == timing.rounds == len(data["candidate_s"]) == len(data["baseline_s"])
    assert data["speedup"] == pytest.approx(
        float(np.median(np.asarray(data["baseline_s"]) / np.asarray(data["candidate_s"])))
    )
    assert data["speedup_ci"][0] <= data["speedup"] <= data["speedup_ci"][1]
