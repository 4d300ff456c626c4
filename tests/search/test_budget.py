"""A study's time budget: trials start only while another and the front session fit; the study then ends cleanly,
its front session run within what is left, and resumes as any stopped study does."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from conftest import fast_settings

from opsearch.config import StudyConfig
from opsearch.errors import ConfigError
from opsearch.measure import TimingProtocol
from opsearch.search import resume_study, run_study
from opsearch.search._budget import Budget, front_session_seconds

COMPLETE = optuna.trial.TrialState.COMPLETE


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("90s", 90), ("1h30m", 5400), ("2.5m", 150),
                                                (45, 45)])
def test_a_timeout_reads_as_seconds(text, seconds) -> None:
    assert StudyConfig(model="m", dataset="d", timeout=text).timeout_seconds == seconds


@pytest.mark.parametrize("text", ["10 minutes", "m", "0", "-5", "0s"])
def test_a_timeout_that_is_no_duration_is_refused_naming_the_flag(text) -> None:
    with pytest.raises(ConfigError, match="timeout=.*must be a positive duration"):
        StudyConfig(model="m", dataset="d", timeout=text if text not in ("0", "-5") else float(text))


def test_a_trial_starts_only_while_it_and_the_front_session_fit() -> None:
    budget = Budget(100.0, started=time.monotonic() - 60)  # 40 s left
    assert Budget(None).room_for_trial([1000.0], 1000.0)
    assert budget.room_for_trial([], 1000.0)  # the first trial always starts
    assert budget.room_for_trial([10.0, 20.0, 30.0], 15.0)  # 20 + 15 < 40
    assert not budget.room_for_trial([10.0, 20.0, 30.0], 25.0)  # 20 + 25 > 40
    assert not budget.room_for_trial([50.0], 0.0)
    assert "too little for another trial" in budget.why_stopped([50.0], 5.0)


def test_the_front_session_costs_more_with_more_and_slower_candidates(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("baseline", {"metrics": {"accuracy": 0.9}, "timing": {"throughput": 100.0}})

    def trial(speedup: float, quantize_seconds: float):
        return optuna.trial.create_trial(values=[100 * speedup, 0.0], user_attrs={
            "speedup": speedup, "quantize_seconds": quantize_seconds})

    protocol = TimingProtocol(rounds=10, max_rounds=30, warmup_rounds=2, ci_target=0.02, max_seconds=120,
                              seed=0, sessions_per_model=3, estimator="floor")
    one = front_session_seconds(study, [trial(2.0, 1.0)], protocol, 150)
    # 12 rounds, each fp32 (1.5 s) and the candidate (0.75 s), and its quantization again
    assert one == pytest.approx(1.0 + 12 * (1.5 + 0.75))
    assert front_session_seconds(study, [trial(2.0, 1.0), trial(1.5, 1.0)], protocol, 150) > one
    assert front_session_seconds(study, [trial(1.0, 1.0)], protocol, 150) > one
    assert front_session_seconds(study, [], protocol, 150) == 0


def _config(tmp_path: Path, model: Path, data: Path, **extra) -> StudyConfig:
    return StudyConfig(model=str(model), dataset=str(data), storage=f"sqlite:///{tmp_path / 'study.db'}",
                       study_name="budget", **fast_settings(modes=["dynamic"], **extra))


def test_a_spent_budget_ends_the_study_between_trials_with_its_front_session_and_it_resumes(
        tmp_path, tiny_checkpoint, tiny_csv, monkeypatch) -> None:
    from opsearch.search import _remeasure

    lines: list[str] = []
    sessions = []  # (its protocol, when it began)
    timed = _remeasure.measure_interleaved
    monkeypatch.setattr(_remeasure, "measure_interleaved",
                        lambda *args, protocol, **kwargs: sessions.append((protocol, time.monotonic()))
                        or timed(*args, protocol=protocol, **kwargs))
    from opsearch.search import _study

    budgets: list[Budget] = []
    # One second, most of it spent before the first trial (a fast machine's baseline and trial could take less than
    # a second): the first trial still runs; none after it.
    monkeypatch.setattr(_study, "Budget", lambda seconds: budgets.append(Budget(seconds, started=time.monotonic()
                                                                                 - 0.8)) or budgets[-1])
    wall, mono = time.time(), time.monotonic()  # to read a trial's end (wall clock) on the budget's clock
    study = run_study(_config(tmp_path, tiny_checkpoint, tiny_csv, timeout=1), n_trials=5, progress=lines.append)
    assert len(study.get_trials(states=(COMPLETE,))) == 1
    assert any("the time budget (1 s)" in line and "stopping between trials" in line for line in lines)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    session = study.user_attrs["front_remeasured"]  # the front session ran, on what was left: nothing more than
    assert session["considered"] == [t.number for t in study.get_trials(states=(COMPLETE,))]  # its minimum rounds
    # its time cap is what the budget had left when it was set, after the trial ended (nothing, or a little)
    [(protocol, _)], [budget] = sessions, budgets
    trial_end = study.get_trials(states=(COMPLETE,))[0].datetime_complete.timestamp() - wall + mono
    assert protocol.max_seconds <= max(0.0, 1.0 - (trial_end - budget.started)) + 0.05
    resumed = resume_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="budget", n_trials=1,
                           progress=lines.append, timeout=3600)
    assert len(resumed.get_trials(states=(COMPLETE,))) == 2


def test_an_ample_budget_runs_every_trial_asked_for(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    lines: list[str] = []
    study = run_study(_config(tmp_path, tiny_checkpoint, tiny_csv, timeout="1h", remeasure_front=False), n_trials=2,
                      progress=lines.append)
    assert len(study.get_trials(states=(COMPLETE,))) == 2
    assert not any("time budget" in line for line in lines)
