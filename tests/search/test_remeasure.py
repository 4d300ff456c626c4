"""What the front session times: the front, and the answer to "the fastest within the limit" where the front's
members within it are all uncertain; and what the report then says."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from report_study import BASELINE, Spec, _params, make_study

from opsearch.config import StudyConfig
from opsearch.report import build_report, limit_line
from opsearch.search import StudyContext, _remeasure
from opsearch.search._remeasure import front_trials, session_trials
from opsearch.store import set_study_attrs

REFERENCE = BASELINE["timing"]["throughput"]
LIMIT = 0.01


def _spec(speedup: float, loss: float, ci: tuple[float, float], graph: str, **params) -> Spec:
    return Spec(speedup * REFERENCE, loss, graph, _params(**params), extra_attrs={"accuracy_loss_ci": list(ci)})


# Trial 0 is fast with a loss interval straddling the limit (the front alone); trial 1 is surely within, near fp32
# speed, dominated by 0; trial 2 is surely within too, slower still; trial 3 is over the limit.
SPECS = [_spec(1.60, -0.0011, (-0.0126, 0.0103), "h0"),
         _spec(0.99, 0.0, (0.0, 0.0), "h1", op_Gather=True),
         _spec(0.90, 0.0, (-0.001, 0.002), "h2", per_channel=True),
         _spec(2.20, 0.038, (0.016, 0.06), "h3", reduce_range=True)]


def _timing(speedup: float) -> dict:
    return {"speedup": speedup, "speedup_ci": [speedup - 0.02, speedup + 0.02], "ci_halfwidth": 0.01, "rounds": 12}


def test_the_session_also_times_the_fastest_trial_surely_within_the_limit(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db", SPECS)
    front = {t.number for t in front_trials(study)}
    assert 1 not in front and 0 in front
    assert [t.number for t in session_trials(study, LIMIT)] == sorted(front | {1})
    assert [t.number for t in session_trials(study, None)] == sorted(front)  # no limit: the front only
    # Once the front holds a trial surely within the limit, nothing is added.
    assert [t.number for t in session_trials(study, 0.05)] == sorted(front)


def test_after_the_session_the_report_names_the_within_trial_and_the_faster_uncertain_one(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db", SPECS)
    speedups = {0: 1.58, 1: 1.0, 3: 2.1}
    timed = {str(t.number): _timing(speedups[t.number]) for t in session_trials(study, LIMIT)}
    set_study_attrs(study, front_remeasured={"at": "2026-12-01T09:00:00+00:00", "considered": [0, 1, 2, 3],
                                             "trials": timed})
    report = build_report(study, max_accuracy_loss=LIMIT)
    assert report.best_feasible.trial == 1
    assert [r.trial for r in report.faster_uncertain] == [0]
    line = limit_line(report)
    assert line.startswith("best within 1.00 pt: trial 1")
    assert "faster but uncertain" in line and "trial 0 1.58x" in line


def test_a_session_without_a_trial_surely_within_says_which_might_qualify(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db", SPECS)
    set_study_attrs(study, front_remeasured={"at": "2026-12-01T09:00:00+00:00", "considered": [0, 1, 2, 3],
                                             "trials": {"0": _timing(1.58), "3": _timing(2.1)}})
    line = limit_line(build_report(study, max_accuracy_loss=LIMIT))
    assert line.startswith("no trial is surely within 1.00 pt accuracy loss; faster but uncertain")
    assert "trial 0 1.58x, loss -1.26 to +1.03 pt" in line and "more rows" in line


@pytest.mark.parametrize("candidates", [1, 3])
def test_the_front_session_times_by_the_studys_protocol_with_a_budget_per_candidate(tmp_path: Path, monkeypatch,
                                                                                     candidates: int) -> None:
    """Each round of the session times every candidate: its time budget grows with them, and nothing else changes."""
    config = StudyConfig(model="some-org/some-model", dataset="data.csv", storage=f"sqlite:///{tmp_path / 's.db'}",
                         rounds=7, max_rounds=41, warmup_rounds=3, ci_target=0.037, max_seconds=50.0, seed=13,
                         sessions_per_model=2, speedup_estimator="median")
    study = StudyContext(config, progress=lambda line: None).protocol
    given = []
    monkeypatch.setattr(_remeasure, "measure_interleaved",
                        lambda baseline, sides, *, protocol, **rest: given.append((len(sides), protocol)))

    @contextmanager
    def fp32_sessions():
        yield ["fp32"]

    context = SimpleNamespace(protocol=study, workload=SimpleNamespace(runner=lambda sessions: sessions, samples=10),
                              fp32_timing_sessions=fp32_sessions, lock_path=None, study_name="s",
                              progress=lambda line: None)
    _remeasure._time_session(context, [["q"]] * candidates)
    [(sides, session)] = given
    assert sides == candidates
    assert session.max_seconds == pytest.approx(50.0 * candidates)
    assert dataclasses.replace(session, max_seconds=study.max_seconds) == study
    # What a study's time budget has left caps the session's timed rounds; nothing else changes.
    _remeasure._time_session(context, [["q"]] * candidates, max_seconds=7.0)
    assert given[-1][1] == dataclasses.replace(study, max_seconds=7.0)
