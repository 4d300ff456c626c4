"""Crash isolation: a child that segfaults, hangs or eats memory costs one trial, and the next trial runs."""

from __future__ import annotations

import time
from pathlib import Path

import faults
import pytest

from opsearch.errors import TrialFailed
from opsearch.quantize import QuantRecipe
from opsearch.search import ChildProcess, InProcess, Limits, TrialJob

RECIPE = QuantRecipe(mode="dynamic", operators_to_quantize=("MatMul",))


def _job(number: int = 0) -> TrialJob:
    return TrialJob(number, RECIPE, Path("/nonexistent"))


def _then_a_fresh_child_works(executor: ChildProcess, crashed_pid: int | None) -> None:
    executor.measurer_factory = faults.Works
    outcome = executor.run(_job(1))
    assert outcome.node_counts["pid"] != crashed_pid


@pytest.mark.parametrize(("worker", "limits", "reason"), [
    (faults.Segfaults, Limits(seconds=60), r"crashed with SIGSEGV while quantizing"),
    (faults.Hangs, Limits(seconds=1.5), r"hung: no progress for 1.5 s while timing .*killed"),
    (faults.EatsMemory, Limits(seconds=60, memory_mb=1500), r"out of memory: the trial used \d+ MB while evaluating, "
                                                           r"over the limit of 1500 MB"),
])
def test_a_failing_child_fails_the_trial_with_its_reason(worker, limits: Limits, reason: str) -> None:
    executor = ChildProcess(object(), limits=limits, measurer_factory=worker)
    try:
        started = time.monotonic()
        with pytest.raises(TrialFailed, match=reason):
            executor.run(_job())
        assert time.monotonic() - started < 60
        assert executor.pid is None  # the broken child is gone
        _then_a_fresh_child_works(executor, None)
    finally:
        executor.close()


def test_the_child_is_reused_between_trials_and_is_not_this_process() -> None:
    import os

    executor = ChildProcess(object(), limits=Limits(seconds=60), measurer_factory=faults.Works)
    try:
        first, second = executor.run(_job(0)), executor.run(_job(1))
        assert first.node_counts["pid"] == second.node_counts["pid"] != os.getpid()
    finally:
        executor.close()


def test_waiting_for_the_timing_lock_is_not_a_hang() -> None:
    phases: list[str] = []
    executor = ChildProcess(object(), limits=Limits(seconds=1.0), measurer_factory=faults.WaitsForLock,
                            on_phase=phases.append)
    try:
        assert executor.run(_job()).graph_hash == "graph-0"  # slept 1.5 s, over the limit, while waiting
        assert phases == ["waiting for the timing lock", "timing"]
    finally:
        executor.close()


def test_in_process_runs_here() -> None:
    import os

    assert InProcess(object(), measurer_factory=faults.Works).run(_job()).node_counts["pid"] == os.getpid()


@pytest.mark.parametrize("limits", [{"seconds": 0}, {"seconds": 10, "memory_mb": -1}])
def test_limits_are_checked(limits: dict) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Limits(**limits)


def test_a_trial_that_crashes_fails_alone_and_the_study_goes_on(tmp_path, tiny_checkpoint, tiny_csv,
                                                                monkeypatch) -> None:
    import optuna
    from conftest import fast_settings

    from opsearch.config import StudyConfig
    from opsearch.search import create_runner

    monkeypatch.setenv("OPSEARCH_TEST_CRASH_TRIALS", "1")  # the spawned child reads it
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=f"sqlite:///{tmp_path}/s.db",
                         study_name="crash", modes=["dynamic"], remeasure_front=False,
                         **fast_settings(isolation="process"))
    lines: list[str] = []
    runner = create_runner(config, progress=lines.append)
    runner.executor = ChildProcess(runner.trial_setup(), limits=Limits(seconds=600),
                                   measurer_factory=faults.CrashesOnMarkedTrials)
    try:
        runner.optimize(3)
    finally:
        runner.close()
    states = [t.state for t in runner.study.trials if t.state != optuna.trial.TrialState.WAITING]  # queued presets
    complete, fail = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    assert states == [complete, fail, complete]
    reason = runner.study.trials[1].user_attrs["fail_reason"]
    assert reason.startswith("crashed with SIGSEGV while quantizing")
    assert any(line.startswith("[2/3") and "fail: crashed with SIGSEGV" in line for line in lines)
