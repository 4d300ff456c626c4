"""The intervals and tests behind opsearch's answers, on injected data where the truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from opsearch.measure import (
    TimingProtocol,
    accuracy_loss_ci,
    between_sd,
    holm,
    pack_labels,
    tie_groups,
    unpack_labels,
    verdict,
    widen,
)
from opsearch.measure._timing import paired_record


def test_the_loss_interval_is_paired_and_covers_the_true_loss() -> None:
    rng = np.random.default_rng(0)
    n, covered = 872, 0
    for _ in range(200):  # a model that flips 4% of the rows, half of them for the better: true loss 1 point
        reference = rng.random(n) < 0.9
        flip = rng.random(n) < 0.04
        worse = rng.random(n) < 0.625
        candidate = np.where(flip & reference & worse, False, np.where(flip & ~reference & ~worse, True, reference))
        true_loss = 0.04 * (0.9 * 0.625 - 0.1 * 0.375)
        low, high = accuracy_loss_ci(reference, candidate, resamples=500, seed=int(rng.integers(1 << 30)))
        covered += low <= true_loss <= high
    assert covered >= 180  # 95% nominal; at least 90% of 200
    # Paired: far narrower than the two accuracies' own sampling error (about +-2 points each on 872 rows).
    assert high - low < 0.02


def test_no_changed_row_is_exactly_zero_loss_and_one_changed_row_is_not() -> None:
    right = np.ones(100, dtype=bool)
    assert accuracy_loss_ci(right, right) == (0.0, 0.0)
    one_wrong = right.copy()
    one_wrong[7] = False
    low, high = accuracy_loss_ci(right, one_wrong)
    assert low == 0.0 and high >= 0.01


def test_predictions_pack_small_and_unpack_exactly() -> None:
    predictions = np.random.default_rng(1).integers(0, 3, size=872)
    text = pack_labels(predictions)
    assert len(text) < 872 / 2 and np.array_equal(unpack_labels(text), predictions)
    with pytest.raises(ValueError, match="0..65535"):
        pack_labels(np.array([-1, 2]))


def test_holm_adjusts_step_down_and_stays_monotone() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def _rounds(rng, speed: float, n: int = 30) -> np.ndarray:
    return (0.1 / speed) * (1 + 0.01 * rng.standard_normal(n))


def test_models_within_noise_are_tied_and_a_real_gap_is_found() -> None:
    rng = np.random.default_rng(2)
    shared = 1 + 0.05 * rng.standard_normal(30)  # the machine's drift: every model in a round sees it
    a, b, c = (_rounds(rng, s) * shared for s in (2.0, 2.0, 1.8))
    groups, adjusted = tie_groups([a, b, c])
    assert groups == [[0, 1], [2]]
    assert adjusted["0-1"] > 0.05 and adjusted["0-2"] < 0.05 and adjusted["1-2"] < 0.05


def test_with_a_margin_a_difference_under_it_is_a_tie_and_one_over_it_is_not() -> None:
    """Three models 1% and 5% slower than the first, measured to 0.3% a round: without a margin every one is its
    own speed (the 1% is real); with a 2% margin the 1% is no difference worth naming, the 5% still is."""
    rng = np.random.default_rng(4)
    shared = 1 + 0.05 * rng.standard_normal(30)
    a, b, c = ((0.1 * slower) * (1 + 0.003 * rng.standard_normal(30)) * shared for slower in (1.0, 1.01, 1.05))
    assert tie_groups([a, b, c])[0] == [[0], [1], [2]]
    groups, adjusted = tie_groups([a, b, c], margin=0.02)
    assert groups == [[0, 1], [2]]
    assert adjusted["0-1"] > 0.05 and adjusted["0-2"] < 0.05


def test_between_sd_is_the_spread_beyond_each_checks_own_error() -> None:
    """DerSimonian and Laird's estimate: checks that agree within their errors have none; with equal errors se,
    tau^2 is the checks' sample variance minus se^2 (the moment identity); 1,000 checks drawn with an injected spread
    give it back."""
    assert between_sd(np.log([2.00, 2.01, 1.99]), np.array([0.02, 0.02, 0.02])) == 0.0
    assert between_sd(np.log([2.0]), np.array([0.01])) == 0.0
    y, se = np.array([0.03, 0.0, -0.03, 0.01]), 0.005
    assert between_sd(y, np.full(4, se)) ** 2 == pytest.approx(np.var(y, ddof=1) - se ** 2)
    rng = np.random.default_rng(5)
    errors = rng.uniform(0.005, 0.02, size=1000)
    drawn = rng.normal(0, 0.03, size=1000) + rng.normal(0, errors)
    assert between_sd(drawn, errors) == pytest.approx(0.03, rel=0.1)


def test_widen_adds_the_component_to_each_side_in_quadrature() -> None:
    low, high = widen((1.9, 2.2), 2.0, 0.02)
    z = 1.959964
    assert np.log(2.0 / low) == pytest.approx(np.hypot(np.log(2.0 / 1.9), z * 0.02))
    assert np.log(high / 2.0) == pytest.approx(np.hypot(np.log(2.2 / 2.0), z * 0.02))
    assert widen((1.9, 2.2), 2.0, 0.0) == (1.9, 2.2)


def test_the_verdicts_against_a_margin() -> None:
    assert verdict((0.984, 0.998), 0.02) == "same"  # inside +-2%
    assert verdict((1.0296, 1.0504), 0.02) == "a_faster"  # clears 1.02
    assert verdict((0.90, 0.95), 0.02) == "b_faster"  # clears 1/1.02
    assert verdict((0.9991, 1.0609), 0.02) == "undecided"  # holds 1 and reaches past the margin
    assert verdict((1.01, 1.03), 0.02) == "undecided"  # surely faster, but maybe by less than the margin
    assert verdict((1.01, 1.03), 0.0) == "a_faster" and verdict((0.99, 1.03), 0.0) == "same"


def _calls(seconds: np.ndarray) -> np.ndarray:
    return seconds[:, None]


def test_the_interval_holds_across_sessions_under_simulated_session_drift() -> None:
    """Each session of a model runs faster or slower for good by a few percent (its memory layout): a bootstrap over
    rounds misses that; the interval across sessions (a bootstrap over the session pairs, then the rounds) covers the
    true speedup far more often."""
    rng = np.random.default_rng(3)
    true, sessions, rounds = 2.0, 3, 24
    covered_rounds = covered_blocks = 0
    for _ in range(300):
        layout_cand = 1 + 0.02 * rng.standard_normal(sessions)
        layout_base = 1 + 0.02 * rng.standard_normal(sessions)
        pair = np.arange(rounds) % sessions  # round r ran on session pair r % 3 (no warm-up here)
        base = 0.2 * layout_base[pair] * (1 + 0.005 * rng.random(rounds))
        cand = 0.2 / true * layout_cand[pair] * (1 + 0.005 * rng.random(rounds))
        protocol = TimingProtocol(rounds=rounds, max_rounds=rounds, warmup_rounds=0, ci_target=0.02, max_seconds=None,
                                  seed=int(rng.integers(1 << 30)), sessions_per_model=sessions, estimator="floor")
        record = paired_record(cand, base, _calls(cand), _calls(base), protocol=protocol, samples_per_round=10)
        covered_rounds += record.rounds_ci[0] <= true <= record.rounds_ci[1]
        covered_blocks += record.speedup_ci[0] <= true <= record.speedup_ci[1]
        assert record.blocks == sessions
    # Rounds alone are overconfident (they cover under half the time); resampling the pairs first covers most of
    # the time. Three pairs are few for a bootstrap (about 78% here, not 95%: the README's "Honest answers" gives
    # what this means on a real machine).
    assert covered_rounds < 150
    assert covered_blocks >= 210 and covered_blocks > 2 * covered_rounds
    assert record.rounds_halfwidth <= record.ci_halfwidth  # the hull never narrows the bootstrap's
