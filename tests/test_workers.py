"""Nothing lost: a study killed with kill -9 resumes cleanly, and several workers share one study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
from conftest import fast_settings

from opsearch.config import StudyConfig
from opsearch.search import resume_study, run_study, run_worker
from opsearch.store import cache_dir_for

COMPLETE, FAIL, RUNNING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.RUNNING)


def _toml(path: Path, **values) -> Path:
    lines = [f"{k} = {_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _opsearch(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "opsearch.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    except KeyError:  # not created yet
        return []


def _snapshot(trials) -> dict:
    return {t.number: (t.values, t.params, t.user_attrs) for t in trials if t.state == COMPLETE}


def test_kill_9_mid_trial_then_resume_loses_nothing(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    storage = f"sqlite:///{tmp_path / 'kill.db'}"
    study_file = _toml(tmp_path / "kill.toml", model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=storage,
                       study_name="kill", modes=["dynamic"], trials=20, remeasure_front=False,
                       # A timed phase of seconds, so the kill lands inside a trial and not between two.
                       **fast_settings(isolation="process", rounds=40, max_rounds=40))
    run = _opsearch("run", str(study_file), "--quiet")
    deadline = time.monotonic() + 300
    while True:  # wait for the queued presets to be done and a sampled trial under way, then kill
        trials = _trials(storage, "kill")
        # "recipe" is stored once every parameter is drawn: a kill before it leaves a part-sampled trial.
        running = [t for t in trials if t.state == RUNNING and "recipe" in t.user_attrs]
        queued = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
        trial_process = psutil.Process(run.pid).children(recursive=True)
        if len([t for t in trials if t.state == COMPLETE]) >= 2 and running and not queued and trial_process:
            break
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the study did not get going"
        time.sleep(0.1)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    # The child dies with its parent: nothing goes on timing on an orphaned process.
    _, alive = psutil.wait_procs(trial_process, timeout=15)
    assert not alive

    before = _trials(storage, "kill")
    interrupted = [t for t in before if t.state == RUNNING]
    assert len(interrupted) == 1
    lines: list[str] = []
    resumed = resume_study(storage=storage, study_name="kill", n_trials=2, progress=lines.append)
    after = resumed.get_trials()
    assert _snapshot(after) | _snapshot(before) == _snapshot(after)  # every trial completed before is intact
    orphan = after[interrupted[0].number]
    assert orphan.state == FAIL and orphan.user_attrs["fail_reason"].startswith("interrupted")
    added = [t for t in after if t.number > max(t.number for t in before)]
    # A sampled trial may draw a configuration already measured: it is pruned as a repeat, not counted, and an
    # untried configuration queued in its place runs instead.
    repeats = [t for t in added if "repeat_of" in t.user_attrs]
    assert all(t.state == optuna.trial.TrialState.PRUNED and t.user_attrs["fail_reason"].startswith(
        "same configuration") for t in repeats)
    for repeat in repeats:
        assert [t.user_attrs.get("instead_of") for t in added if t.number > repeat.number][0] == repeat.number
    counted = [t for t in added if t not in repeats]
    assert len(counted) == 2 and all(t.state == COMPLETE for t in counted)  # exactly the trials asked for
    assert added[0].user_attrs["retry_of"] == orphan.number and added[0].params == orphan.params  # the retry first
    assert any("left running by a stopped process" in line for line in lines)
    # No half-written trial model is left behind to be reused.
    assert not list((cache_dir_for(storage, "kill") / "trials").glob("trial-*"))


def test_two_workers_share_one_sqlite_study_and_take_turns_timing(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=storage, study_name="shared",
                         modes=["dynamic"], trials=6, remeasure_front=False, **fast_settings(isolation="process"))
    run_study(config, n_trials=0, progress=lambda line: None)  # the study and its fp32 baseline
    env = {"OPSEARCH_LOCK_DIR": str(tmp_path)}  # this test's workers share a lock of their own
    workers = [_opsearch("worker", "--storage", storage, "--study-name", "shared", "--quiet", env=env)
               for _ in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
    trials = _trials(storage, "shared")
    done = [t for t in trials if t.state == COMPLETE]
    assert 6 <= len(done) <= 7  # both may finish a trial at the moment the sixth completes
    assert not [t for t in trials if t.state in (RUNNING, FAIL)]
    assert len({t.user_attrs["worker"]["pid"] for t in done}) == 2  # both took part
    # Timed sections never overlapped: workers on one machine take turns timing.
    windows = sorted(tuple(t.user_attrs["timed_window"]) for t in done if "timed_window" in t.user_attrs)
    assert len(windows) >= 2
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        assert end <= start


def test_a_worker_needs_a_started_study(tmp_path) -> None:
    from opsearch.errors import StudyError

    storage = f"sqlite:///{tmp_path / 'none.db'}"
    optuna.create_study(storage=storage, study_name="bare")
    with pytest.raises(StudyError, match="not made by opsearch"):
        run_worker(storage=storage, study_name="bare")


def test_a_damaged_export_cache_is_exported_again(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=f"sqlite:///{tmp_path}/d.db",
                         study_name="d", modes=["dynamic"], remeasure_front=False, **fast_settings())
    study = run_study(config, n_trials=1, progress=lambda line: None)
    before = _snapshot(study.get_trials())
    model = cache_dir_for(config.resolved_storage(), "d") / "fp32" / "model.onnx"
    good = model.read_bytes()
    model.write_bytes(good[: len(good) // 2])  # a crash mid-copy, a full disk
    lines: list[str] = []
    resumed = resume_study(storage=config.resolved_storage(), study_name="d", n_trials=1, progress=lines.append)
    assert any("is damaged" in line and "exporting again" in line for line in lines)
    assert len(model.read_bytes()) == len(good)
    assert len(resumed.get_trials(states=(COMPLETE,))) == 2
    assert _snapshot(resumed.get_trials()) | before == _snapshot(resumed.get_trials())


def test_a_trial_another_workers_sweep_took_for_dead_is_not_stored_twice_and_the_worker_goes_on(
        tmp_path, tiny_checkpoint, tiny_csv, monkeypatch) -> None:
    """After a database outage longer than the heartbeat's grace, another worker's sweep may fail the trial this
    worker is measuring and queue its configuration again. Optuna then refuses to store it ("Cannot tell a FAIL
    trial"): the worker says so and goes on, and the queued copy is the one stored."""
    import opsearch.search._trial as trial_module
    import opsearch.store._storage as storage_module

    storage = f"sqlite:///{tmp_path / 'taken.db'}"
    real, swept = trial_module.quantize, []

    def swept_meanwhile(recipe, **kwargs):
        if not swept:  # as another worker's stale sweep does it: fail the running trial, queue its configuration
            other = optuna.load_study(study_name="taken", storage=storage)
            (running,) = other.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            other._storage.set_trial_state_values(running._trial_id, FAIL)
            storage_module._queue_again(other, other._storage.get_trial(running._trial_id))
            swept.append(running.number)
        return real(recipe, **kwargs)

    monkeypatch.setattr(trial_module, "quantize", swept_meanwhile)
    lines: list[str] = []
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=storage, study_name="taken",
                         modes=["dynamic"], remeasure_front=False, **fast_settings())
    study = run_study(config, n_trials=2, progress=lines.append)
    (taken,) = swept
    assert any(f"trial {taken} was marked fail by another worker while the storage was away" in line
               for line in lines), lines
    assert study.trials[taken].state == FAIL and study.trials[taken].values is None  # nothing stored on it
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == taken)
    assert retry.state == optuna.trial.TrialState.WAITING
    assert retry.system_attrs["fixed_params"] == study.trials[taken].params
    assert len(study.get_trials(states=(COMPLETE,))) == 2  # the worker went on


def test_a_silent_worker_on_another_host_has_its_trial_failed_and_queued_again(tmp_path, tiny_checkpoint, tiny_csv,
                                                                               monkeypatch) -> None:
    import opsearch.store._storage as storage_module
    from opsearch.search import SearchSpace

    monkeypatch.setattr(storage_module, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(storage_module, "GRACE_SECONDS", 1)
    storage = f"sqlite:///{tmp_path / 'beat.db'}"
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=storage, study_name="beat",
                         modes=["dynamic"], remeasure_front=False, **fast_settings())
    study = run_study(config, n_trials=0, progress=lambda line: None)
    for waiting in study.get_trials(states=(optuna.trial.TrialState.WAITING,)):  # no presets in the way
        study._storage.set_trial_state_values(waiting._trial_id, optuna.trial.TrialState.FAIL)
    silent = study.ask()
    recipe = SearchSpace.from_dict(study.user_attrs["search_space"]).suggest(silent)
    silent.set_user_attr("recipe", recipe.to_dict())  # drawn whole, as the runner records it
    silent.set_user_attr("worker", {"host": "another-host", "pid": 1})  # not ours to judge by pid
    study._storage.record_heartbeat(silent._trial_id)  # it beat once, then its machine went away
    time.sleep(2.5)
    resumed = resume_study(storage=storage, study_name="beat", n_trials=1, progress=lambda line: None)
    assert resumed.trials[silent.number].state == FAIL
    retry = resumed.trials[-1]
    assert retry.state == COMPLETE and retry.params == resumed.trials[silent.number].params
    assert retry.user_attrs["retry_of"] == silent.number and "heartbeats" in retry.user_attrs["retry_reason"]
