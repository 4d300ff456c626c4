"""opsearch.measure._timing: paired measurement, both estimators, the stop rule, warm-ups, stability checks, intervals.

Every measurement runs on a fake machine: its clock only moves when a fake workload "runs", so no test
sleeps and every duration is known exactly.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable

import numpy as np
import pytest

from opsearch.measure import (
    RACE_FROM,
    Load,
    PairedTiming,
    SingleTiming,
    TimingProtocol,
    bootstrap_ci,
    floor_ci,
    load_warnings,
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

    def passes(self, name: str, costs: Callable[[float, int], np.ndarray]) -> Callable[[], np.ndarray]:
        """A pass of several calls, as a real workload runs: ``costs(now, index)`` gives each call's seconds in
        the ``index``-th pass; the pass returns them, as :meth:`opsearch.measure.Workload.runner` does."""
        count = [0]

        def run() -> np.ndarray:
            seconds = np.asarray(costs(self.now, count[0]), dtype=float)
            self.now += float(seconds.sum())
            count[0] += 1
            self.calls.append(name)
            return seconds

        return run

    def count(self, name: str) -> int:
        return self.calls.count(name)


def constant(seconds: float) -> Callable[[float, int], float]:
    return lambda now, index: seconds


def noisy(seconds: float, sigma: float, seed: int) -> Callable[[float, int], float]:
    rng = np.random.default_rng(seed)
    return lambda now, index: seconds * float(rng.lognormal(0.0, sigma))


def protocol(**knobs) -> TimingProtocol:
    """A protocol for the fake machine: one session per model (one block) and no time limit, unless told."""
    return TimingProtocol(**{"rounds": 5, "max_rounds": 20, "warmup_rounds": 0, "ci_target": 0.02, "max_seconds": None,
                             "seed": 0, "sessions_per_model": 1, "estimator": "floor", **knobs})


def paired(
    machine: FakeMachine, cand: Callable[[float, int], float], base: Callable[[float, int], float], *,
    load_meter: Callable | None = None, race: Callable | None = None, **knobs
) -> PairedTiming:
    return measure_paired(
        machine.workload("candidate", cand), machine.workload("baseline", base), protocol=protocol(**knobs),
        samples_per_round=10, load_meter=load_meter, race=race, clock=machine.clock
    )


# Drift ---------------------------------------------------------------------------------------------------


def test_linear_drift_cancels_in_the_paired_speedup() -> None:
    machine = FakeMachine()
    drift_per_s = 0.15  # the machine slows down steadily: +15% per second of work

    def slowing(seconds: float) -> Callable[[float, int], float]:
        return lambda now, index: seconds * (1 + drift_per_s * now)

    timing = paired(machine, slowing(CANDIDATE_S), slowing(BASELINE_S), rounds=30, max_rounds=30,
                    estimator="median")

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


def test_floor_under_drift_needs_the_pairing() -> None:
    """The floor takes each side's fastest moment; interleaving makes it the same moment for both."""
    drift_per_s = 0.05

    def slowing(seconds: float) -> Callable[[float, int], float]:
        return lambda now, index: seconds * (1 + drift_per_s * now)

    machine = FakeMachine()
    timing = paired(machine, slowing(CANDIDATE_S), slowing(BASELINE_S), rounds=30, max_rounds=30)
    assert timing.estimator == "floor"
    assert timing.speedup == pytest.approx(TRUE_SPEEDUP, rel=0.01)

    # The same 30 rounds a side, but fp32's first and the candidate's after: the floors come from different
    # moments of the machine, and the drift between them lands in the speedup.
    machine = FakeMachine()
    base = measure_single(machine.workload("baseline", slowing(BASELINE_S)), protocol=protocol(rounds=30),
                          samples_per_round=10, clock=machine.clock)
    cand = measure_single(machine.workload("candidate", slowing(CANDIDATE_S)), protocol=protocol(rounds=30),
                          samples_per_round=10, clock=machine.clock)
    blocked = min(base.seconds) / min(cand.seconds)
    assert blocked < TRUE_SPEEDUP * 0.9


CALLS = 20


def delayed_calls(per_call_s: np.ndarray, rate: float, seed: int) -> Callable[[float, int], np.ndarray]:
    """A shared machine: each call, with probability ``rate``, has 0.5-3 ms added (another tenant, an
    interrupt). The delay does not scale with the call: it costs the faster model relatively more."""
    rng = np.random.default_rng(seed)

    def costs(now: float, index: int) -> np.ndarray:
        hit = rng.random(len(per_call_s)) < rate
        return per_call_s + hit * rng.uniform(0.5e-3, 3e-3, size=len(per_call_s))

    return costs


def test_floor_is_the_same_at_any_rate_of_interference_where_the_median_is_not() -> None:
    """Five 'processes', each on the machine in another state (how often a call is delayed): the floor gives
    the true speedup in each, while the median of per-round ratios moves with the state of the machine."""
    per_call = np.linspace(1e-3, 3e-3, CALLS)  # the candidate's undisturbed cost per call; fp32's is double
    floors, medians = [], []
    for process, rate in enumerate((0.05, 0.15, 0.3, 0.45, 0.6)):
        machine = FakeMachine()
        timing = measure_paired(machine.passes("candidate", delayed_calls(per_call, rate, seed=2 * process)),
                                machine.passes("baseline", delayed_calls(2 * per_call, rate, seed=2 * process + 1)),
                                protocol=protocol(rounds=40, max_rounds=40, ci_target=0.01), samples_per_round=CALLS,
                                clock=machine.clock)
        floors.append(timing.floor_speedup)
        medians.append(timing.median_ratio)
        low, high = timing.speedup_ci
        assert low <= TRUE_SPEEDUP <= high
    assert floors == pytest.approx([TRUE_SPEEDUP] * 5, rel=1e-9)  # every call had an undisturbed round
    assert all(m < TRUE_SPEEDUP for m in medians)
    assert (max(medians) - min(medians)) / np.median(medians) > 0.10


def test_floor_takes_each_call_at_its_fastest_round() -> None:
    machine = FakeMachine()
    # Three passes of two calls each: call 0 is fastest in pass 2, call 1 in pass 0.
    cand = [np.array([3.0, 1.0]), np.array([2.0, 4.0]), np.array([1.0, 5.0])]
    base = [np.array([4.0, 4.0])] * 3
    timing = measure_paired(machine.passes("candidate", lambda now, i: cand[i]),
                            machine.passes("baseline", lambda now, i: base[i]),
                            protocol=protocol(rounds=3, max_rounds=3, ci_target=0.5), samples_per_round=2,
                            clock=machine.clock)
    assert timing.candidate_floor_s == pytest.approx(2.0)  # 1 + 1, from different rounds
    assert timing.baseline_floor_s == pytest.approx(8.0)
    assert timing.speedup == pytest.approx(4.0)
    assert timing.median_ratio == pytest.approx(8.0 / 6.0)  # the round totals were 4, 6 and 6
    assert timing.candidate_s == pytest.approx((4.0, 6.0, 6.0))


def test_floor_ci_contains_the_estimate_and_narrows_with_rounds() -> None:
    rng = np.random.default_rng(11)

    def rounds(n: int, base: float) -> np.ndarray:
        return base * (1 + rng.exponential(0.2, size=(n, CALLS)))

    few = floor_ci(rounds(5, 1.0), rounds(5, 2.0))
    many_c, many_b = rounds(60, 1.0), rounds(60, 2.0)
    many = floor_ci(many_c, many_b)
    point = many_b.min(axis=0).sum() / many_c.min(axis=0).sum()
    assert many[0] <= point <= many[1]
    assert many[1] - many[0] < few[1] - few[0]
    assert floor_ci(np.ones((6, 3)), np.full((6, 3), 2.0)) == pytest.approx((2.0, 2.0))


def test_unknown_estimator_is_refused() -> None:
    machine = FakeMachine()
    with pytest.raises(ValueError, match="estimator='mean'"):
        paired(machine, constant(CANDIDATE_S), constant(BASELINE_S), estimator="mean")


# Stop rule -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["floor", "median"])
@pytest.mark.parametrize("rounds", [1, 3, 7])
def test_stable_ratio_stops_at_the_minimum_rounds(rounds: int, estimator: str) -> None:
    machine = FakeMachine()
    timing = paired(machine, constant(CANDIDATE_S), constant(BASELINE_S), rounds=rounds, max_rounds=25,
                    estimator=estimator)

    assert timing.rounds == rounds
    assert len(timing.baseline_s) == rounds
    assert machine.count("candidate") == machine.count("baseline") == rounds
    assert timing.speedup == pytest.approx(TRUE_SPEEDUP)
    assert timing.ci_halfwidth == pytest.approx(0.0)
    assert timing.target_met and not timing.noisy


@pytest.mark.parametrize("estimator", ["floor", "median"])
@pytest.mark.parametrize(("rounds", "max_rounds"), [(3, 12), (5, 5), (4, 30)])
def test_noisy_ratio_runs_up_to_max_rounds_and_is_flagged(rounds: int, max_rounds: int, estimator: str) -> None:
    machine = FakeMachine()
    timing = paired(
        machine,
        noisy(CANDIDATE_S, 0.3, seed=1),
        noisy(BASELINE_S, 0.3, seed=2),
        rounds=rounds,
        max_rounds=max_rounds,
        ci_target=0.01,
        estimator=estimator,
    )

    assert timing.rounds == max_rounds
    assert machine.count("candidate") == machine.count("baseline") == max_rounds
    assert timing.ci_halfwidth > 0.01
    assert timing.noisy and not timing.target_met
    assert timing.to_dict()["noisy"] is True


@pytest.mark.parametrize("estimator", ["floor", "median"])
def test_rounds_are_added_only_while_the_interval_is_too_wide(estimator: str) -> None:
    machine = FakeMachine()
    target, rounds = 0.02, 3
    timing = paired(
        machine,
        noisy(CANDIDATE_S, 0.03, seed=3),
        noisy(BASELINE_S, 0.03, seed=4),
        rounds=rounds,
        max_rounds=60,
        ci_target=target,
        estimator=estimator,
    )
    cand, base = np.asarray(timing.candidate_s), np.asarray(timing.baseline_s)

    def halfwidth(n: int) -> float:
        if estimator == "median":
            ratios = base[:n] / cand[:n]
            low, high = bootstrap_ci(ratios)
            return (high - low) / 2 / float(np.median(ratios))
        low, high = floor_ci(cand[:n, None], base[:n, None])  # one call per pass: the pass is the call
        return (high - low) / 2 / float(base[:n].min() / cand[:n].min())

    assert rounds < timing.rounds < 60, "the noise should need some, not all, extra rounds"
    for n in range(rounds, timing.rounds):
        assert halfwidth(n) > target, f"it went on after round {n} although the target was met"
    assert halfwidth(timing.rounds) <= target
    assert timing.target_met and not timing.noisy


# Racing --------------------------------------------------------------------------------------------------


def test_racing_stops_the_rounds_when_told_and_says_why() -> None:
    machine = FakeMachine()
    seen: list[int] = []

    def race(record: PairedTiming) -> str:
        seen.append(record.rounds)
        return "dominated" if record.rounds == RACE_FROM + 1 else ""

    timing = paired(machine, noisy(CANDIDATE_S, 0.3, seed=1), noisy(BASELINE_S, 0.3, seed=2), rounds=10,
                    max_rounds=30, ci_target=0.01, race=race)
    assert seen == [RACE_FROM, RACE_FROM + 1], "asked from RACE_FROM rounds on, each round, until it says stop"
    assert timing.rounds == RACE_FROM + 1 < 10
    assert machine.count("candidate") == RACE_FROM + 1
    assert timing.raced == "dominated" and not timing.noisy
    assert PairedTiming.from_dict(timing.to_dict()).raced == "dominated"


def test_a_race_that_never_calls_it_changes_nothing() -> None:
    kept = paired(FakeMachine(), noisy(CANDIDATE_S, 0.3, seed=1), noisy(BASELINE_S, 0.3, seed=2), rounds=4,
                  max_rounds=12, ci_target=0.01, race=lambda record: "")
    plain = paired(FakeMachine(), noisy(CANDIDATE_S, 0.3, seed=1), noisy(BASELINE_S, 0.3, seed=2), rounds=4,
                   max_rounds=12, ci_target=0.01)
    assert kept.candidate_s == plain.candidate_s and kept.rounds == 12 and not kept.raced


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


class FakeMeter:
    """Stands in for opsearch.measure.LoadMeter: reports a given load for the timed rounds."""

    def __init__(self, load: Load | None) -> None:
        self.given, self.load, self.entered = load, None, False

    def __enter__(self) -> FakeMeter:
        self.entered = True
        return self

    def __exit__(self, *exc) -> None:
        self.load = self.given


@pytest.mark.parametrize(
    ("other", "steal", "expected"),
    [(0.0, 0.0, set()), (0.14, 0.04, set()), (0.5, 0.0, {"other"}), (0.0, 0.2, {"steal"}),
     (1.0, 0.3, {"other", "steal"})],
)
def test_a_busy_machine_is_recorded_and_warned_about(other: float, steal: float, expected: set[str]) -> None:
    machine = FakeMachine()
    meters: list[FakeMeter] = []

    def meter() -> FakeMeter:
        meters.append(FakeMeter(Load(other, steal, 10.0)))
        return meters[-1]

    timing = paired(machine, constant(CANDIDATE_S), constant(BASELINE_S), load_meter=meter)
    assert len(meters) == 1 and meters[0].entered
    assert (timing.other_cores, timing.steal_cores) == (other, steal)
    kinds = {"other" for w in timing.warnings() if "other processes kept" in w and "stop them" in w}
    kinds |= {"steal" for w in timing.warnings() if "steal time" in w and "measure again later" in w}
    assert kinds == expected
    assert len(timing.warnings()) == len(expected)
    data = json.loads(json.dumps(timing.to_dict()))
    assert (data["other_cores"], data["steal_cores"]) == (other, steal)
    assert PairedTiming.from_dict(data) == timing


def test_an_unwatched_or_too_short_window_records_no_load() -> None:
    machine = FakeMachine()
    timing = paired(machine, constant(CANDIDATE_S), constant(BASELINE_S), load_meter=lambda: FakeMeter(None))
    assert timing.other_cores is None and timing.steal_cores is None
    assert load_warnings(None, None) == []


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
        run, protocol=protocol(rounds=len(costs), warmup_rounds=warmup_rounds), samples_per_round=12,
        clock=machine.clock
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

    assert data["estimator"] == "median" and data["floor_speedup"] is None  # a record from before the floor
    rebuilt = PairedTiming.from_dict(data)
    assert rebuilt == timing
    assert rebuilt.to_dict() == data


@pytest.mark.parametrize("estimator", ["floor", "median"])
def test_measured_timing_serializes_to_json(estimator: str) -> None:
    machine = FakeMachine()
    timing = paired(machine, noisy(CANDIDATE_S, 0.05, seed=5), noisy(BASELINE_S, 0.05, seed=6), estimator=estimator)
    data = json.loads(json.dumps(timing.to_dict()))
    assert data["rounds"] == timing.rounds == len(data["candidate_s"]) == len(data["baseline_s"])
    cand, base = np.asarray(data["candidate_s"]), np.asarray(data["baseline_s"])
    assert data["median_ratio"] == pytest.approx(float(np.median(base / cand)))
    assert data["floor_speedup"] == pytest.approx(float(base.min() / cand.min()))  # one call per pass
    assert data["estimator"] == estimator
    assert data["speedup"] == data["floor_speedup" if estimator == "floor" else "median_ratio"]
    assert data["speedup_ci"][0] <= data["speedup"] <= data["speedup_ci"][1]
    assert data["median_ratio_ci"][0] <= data["median_ratio"] <= data["median_ratio_ci"][1]
    assert PairedTiming.from_dict(data) == timing


# Latency percentiles -------------------------------------------------------------------------------------------


def test_paired_timing_keeps_each_sides_call_percentiles_over_all_rounds() -> None:
    machine = FakeMachine()
    # Each pass makes 20 calls; the candidate's 20th call is slow in the third round only: a tail event.
    cand = machine.passes("candidate", lambda now, i: np.r_[np.full(19, 0.004), 0.040 if i == 2 else 0.004])
    base = machine.passes("baseline", lambda now, i: np.linspace(0.005, 0.024, 20))
    timing = measure_paired(cand, base, protocol=protocol(rounds=5, max_rounds=5, warmup_rounds=1, ci_target=0.5),
                            samples_per_round=20, clock=machine.clock)

    calls = np.r_[np.full(99, 4.0), 40.0]  # 5 rounds x 20 calls, in ms (the warm-up left out)
    assert timing.latency_ms == pytest.approx({f"p{q}": float(np.percentile(calls, q)) for q in (50, 95, 99)})
    assert timing.latency_ms["p50"] == pytest.approx(4.0) and timing.latency_ms["p99"] > 4.0
    expected = np.percentile(np.tile(np.linspace(5.0, 24.0, 20), 5), [50, 95, 99])
    assert list(timing.baseline_latency_ms.values()) == pytest.approx(list(expected))
    again = PairedTiming.from_dict(json.loads(json.dumps(timing.to_dict())))
    assert again.latency_ms == pytest.approx(timing.latency_ms)


def test_single_timing_keeps_call_percentiles_when_the_side_reports_calls() -> None:
    machine = FakeMachine()
    run = machine.passes("fp32", lambda now, i: np.array([0.001, 0.002, 0.003, 0.010]))
    timing = measure_single(run, protocol=protocol(rounds=3), samples_per_round=4, clock=machine.clock)
    calls = np.tile([1.0, 2.0, 3.0, 10.0], 3)
    assert timing.to_dict()["latency_ms"] == pytest.approx({f"p{q}": float(np.percentile(calls, q))
                                                            for q in (50, 95, 99)})
    whole = measure_single(machine.workload("m", constant(0.1)), protocol=protocol(rounds=2), samples_per_round=4,
                           clock=machine.clock)
    assert whole.latency_ms is None  # a side that reports no calls has no per-call latency
