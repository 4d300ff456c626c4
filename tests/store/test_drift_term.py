"""opsearch.store's drift term: checks of the reference pair, read from the trials and the front session, widen
every interval by the spread between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from report_study import SPECS, Spec, make_study

from opsearch.report import build_report, format_report
from opsearch.store import Drift, DriftCheck, set_study_attrs, study_drift, trial_rows

Z95 = 1.959963984540054


def _check(at: float, speedup: float, graph: str = "h-a") -> dict:
    return {**DriftCheck(at, speedup, (speedup * 0.999, speedup * 1.001)).to_dict(), "graph_hash": graph}


def _study(path: Path, checks: list[dict]):
    """The report fixture's trials, trial 0 the reference (timed at t=0, 1.22x +-5%), with ``checks`` on later
    trials; one check of another graph, which must not count."""
    specs = [Spec(s.throughput, s.loss, s.graph, s.params, s.noisy, s.same_graph_as, s.preset, s.state,
                  {**s.extra_attrs, **({"timed_window": [0.0, 0.0]} if i == 0 else {}),
                   **({"drift_check": checks[i - 1]} if 0 < i <= len(checks) else {})})
             for i, s in enumerate(SPECS)]
    study = make_study(path, specs)
    set_study_attrs(study, drift_reference={"trial": 0, "graph_hash": "h-a"})
    return study


def test_checks_that_move_widen_every_interval_by_their_spread(tmp_path: Path) -> None:
    # The reference's own 1.22x, then 3% up, 3% down and level again, each to +-0.1%; and one check of another graph.
    reference = SPECS[0].throughput / 98.7
    moves = [1.03, 0.97, 1.0, 1.03]
    checks = [_check(60.0 * (k + 1), reference * m) for k, m in enumerate(moves)]
    checks.append(_check(400.0, 9.9, graph="another"))
    study = _study(tmp_path / "s.db", checks)
    drift = study_drift(study)
    assert drift.reference == 0 and len(drift.checks) == 1 + len(moves)  # the other graph's check left out
    logs = np.log([reference, *(reference * m for m in moves)])
    ses = np.array([c.log_se for c in drift.checks])
    # DerSimonian-Laird's estimate on these checks, by hand: the reference's wide interval weighs little.
    w = 1 / ses ** 2
    q = np.sum(w * (logs - np.sum(w * logs) / np.sum(w)) ** 2)
    tau = np.sqrt((q - (len(logs) - 1)) / (np.sum(w) - np.sum(w ** 2) / np.sum(w)))
    assert drift.sd == pytest.approx(tau) and 0.02 < drift.sd < 0.03
    for row in trial_rows(study):
        low, high = row.speedup_ci_low, row.speedup_ci_high
        assert np.log(high / row.speedup) == pytest.approx(np.hypot(np.log(1.05), Z95 * drift.sd))
        assert np.log(row.speedup / low) == pytest.approx(np.hypot(np.log(1 / 0.95), Z95 * drift.sd))
    text = format_report(build_report(study))
    assert "drift: the reference pair (trial 0 against fp32), timed 5 times over 4 min" in text
    assert f"moved by {drift.sd:.1%} (sd) beyond its own intervals; every speedup interval is widened by it" in text


def test_a_study_without_checks_keeps_its_intervals_and_says_what_they_cover(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db")  # made before drift was measured: no reference
    assert study_drift(study) == Drift(None)
    for row in trial_rows(study):
        assert (row.speedup_ci_low, row.speedup_ci_high) == pytest.approx((0.95 * row.speedup, 1.05 * row.speedup))
    assert "drift: not measured (a study made before opsearch measured it)" in format_report(build_report(study))
    one = _study(tmp_path / "one.db", [])
    assert "drift: 1 timing of the reference pair (trial 0 against fp32) so far, too few to measure it" in (
        format_report(build_report(one)))
