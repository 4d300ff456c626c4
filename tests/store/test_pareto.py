"""opsearch.store._pareto: the non-dominated points and the knee of a (throughput up, loss down) front."""

from __future__ import annotations

import pytest

from opsearch.store import knee, non_dominated

# (throughput, loss): the front rises steeply, then flattens; the bend is at (90, 1.0).
BENT = [(50.0, 0.0), (90.0, 1.0), (95.0, 3.0), (100.0, 6.0)]


def test_non_dominated_keeps_points_no_other_beats() -> None:
    points = [(100.0, 1.0), (120.0, 2.0), (90.0, 1.5), (120.0, 2.0), (80.0, 0.5), (79.0, 0.5)]
    # (90, 1.5) is beaten by (100, 1.0); (79, 0.5) by (80, 0.5); equal points do not beat each other.
    assert non_dominated(points) == {0, 1, 3, 4}


def test_knee_is_the_bend_of_the_front() -> None:
    assert knee(BENT) == 1


def test_knee_is_the_farthest_point_above_the_chord() -> None:
    # Scaled to [0, 1]: the chord is y = x; gaps (y - x) are 0, 0.8-1/6, 0.9-0.5, 0 -> the second point wins.
    expected = max(range(len(BENT)), key=lambda i: (BENT[i][0] - 50) / 50 - BENT[i][1] / 6)
    assert knee(BENT) == expected == 1


@pytest.mark.parametrize("scale", [(1.0, 1.0), (0.01, 1.0), (1.0, 100.0), (37.0, 0.001)])
def test_knee_ignores_the_units_of_either_axis(scale: tuple[float, float]) -> None:
    scaled = [(s * scale[0], q * scale[1]) for s, q in BENT]
    assert knee(scaled) == 1


def test_knee_does_not_depend_on_the_order_of_the_points() -> None:
    shuffled = [BENT[3], BENT[1], BENT[0], BENT[2]]
    assert knee(shuffled) == 1  # index into the list given


@pytest.mark.parametrize(
    "front",
    [
        [],
        [(100.0, 1.0)],
        [(50.0, 0.0), (100.0, 2.0)],  # two points: no bend between them
        [(50.0, 0.0), (75.0, 1.0), (100.0, 2.0)],  # on the chord: a straight front has no knee
        [(50.0, 0.0), (60.0, 1.5), (100.0, 2.0)],  # sagging below the chord
        [(50.0, 0.0), (50.0, 0.0), (100.0, 2.0)],  # three points but two distinct
    ],
    ids=["empty", "one", "two", "straight", "sagging", "duplicates"],
)
def test_no_knee(front: list[tuple[float, float]]) -> None:
    assert knee(front) is None


def test_knee_tie_goes_to_less_loss() -> None:
    # Both middle points sit 0.25 above the chord once scaled.
    front = [(0.0, 0.0), (50.0, 0.25), (75.0, 0.5), (100.0, 1.0)]
    assert knee(front) == 1
