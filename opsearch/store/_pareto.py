"""Pareto arithmetic: which points no other beats (over any number of objectives), and the knee of a
(throughput, accuracy loss) front.

By default a point is (throughput: maximized, accuracy loss: minimized), as in a two-objective study; ``directions``
names each coordinate's direction for any other objectives (``opsearch.store.OBJECTIVES``).
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]  # (throughput or speedup: higher is better, accuracy loss: lower is better)


def non_dominated(points: Sequence[Sequence[float]],
                  directions: Sequence[str] = ("maximize", "minimize")) -> set[int]:
    """Indices of points no other point beats: at least as good in every coordinate (by ``directions``), better in
    one."""
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]
    costs = [tuple(s * float(v) for s, v in zip(signs, p, strict=True)) for p in points]
    return {i for i, c in enumerate(costs)
            if not any(all(o <= v for o, v in zip(other, c, strict=True)) and other != c for other in costs)}


def knee(front: Sequence[Point]) -> int | None:
    """Index of the front's knee: the point that buys the most throughput for its accuracy loss.

    Both axes are scaled to [0, 1] over the front's own range, so that neither unit dominates. The front's two
    extremes (least loss, most throughput) then sit at (0, 0) and (1, 1) in (loss, throughput), and the knee is
    the point farthest from the straight line joining them, on its good side (more throughput than the line
    gives at that loss). ``None`` when the front has fewer than three distinct points, or none lies above the
    line (a straight or sagging front has no knee). Ties go to the point with less loss.
    """
    distinct = {(float(s), float(q)) for s, q in front}
    if len(distinct) < 3:
        return None
    speeds, losses = [p[0] for p in distinct], [p[1] for p in distinct]
    s_lo, s_span = min(speeds), max(speeds) - min(speeds)
    q_lo, q_span = min(losses), max(losses) - min(losses)
    if s_span <= 0 or q_span <= 0:
        return None
    best, best_gap = None, 0.0
    for i, (speed, loss) in sorted(enumerate(front), key=lambda item: (item[1][1], -item[1][0])):
        # Distance to the diagonal y = x is (y - x) / sqrt(2); the constant factor does not change the argmax.
        gap = (speed - s_lo) / s_span - (loss - q_lo) / q_span
        if gap > best_gap + 1e-12:
            best, best_gap = i, gap
    return best
