"""Nothing lost on Ctrl-C or SIGTERM: a real signal to a real `opsearch run`, phase by phase, then `opsearch resume`.

Each case starts a tiny study as a separate process, waits until it reaches the phase under test (a line it prints,
a phase event of --json-log, or the export's temporary folder), sends the signal, and checks what the user sees (exit
code, one clean line, no traceback, no Optuna warning) and what the storage holds; then resumes the study to the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from conftest import fast_settings, sentiment_rows, settings_argv, write_table

from opsearch.store import StudyRecord, TrialRecord, load_existing

WAITING, COMPLETE, RUNNING = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.COMPLETE,
                              optuna.trial.TrialState.RUNNING)


def _flags(tmp_path: Path, model: Path, data: Path, **extra) -> list[str]:
    settings = {**fast_settings(isolation="process", modes=["dynamic"]), "trials": 2, **extra}
    argv = ["--model", str(model), "--dataset", str(data), "--storage", f"sqlite:///{tmp_path / 's.db'}",
            "--study-name", "sig"]
    return argv + settings_argv(settings)


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OPSEARCH_LOCK_DIR": str(log.parent)}
    return subprocess.Popen([sys.executable, "-m", "opsearch.cli", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env)


def _wait_for(process: subprocess.Popen, log: Path, found, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found(log.read_text()):
            return
        assert process.poll() is None, f"the study ended before {what}:\n{log.read_text()}"
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"never reached {what}:\n{log.read_text()}")


def _stop(process: subprocess.Popen, signum: int) -> int:
    process.send_signal(signum)
    return process.wait(timeout=120)


def _phase_event(name: str):
    def found(text: str) -> bool:
        events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        return any(e.get("event") == "phase" and e.get("name") == name for e in events)
    return found


def _clean(text: str) -> None:
    assert "Traceback" not in text and "[W " not in text and "failed with" not in text, text


def _resume_to_the_end(tmp_path: Path) -> optuna.Study:
    log = tmp_path / "resume.log"
    resume = _start(["resume", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--study-name", "sig", "--quiet"], log)
    assert resume.wait(timeout=600) == 0, log.read_text()
    _clean(log.read_text())
    return load_existing(f"sqlite:///{tmp_path / 's.db'}", "sig")


def test_ctrl_c_while_a_trial_times_puts_it_back_first_and_resume_finishes_it(tmp_path, tiny_checkpoint,
                                                                           tiny_csv) -> None:
    signum = signal.SIGINT
    log = tmp_path / "run.log"
    # Long timing rounds: the signal lands while the trial's child times it.
    run = _start(["run", *_flags(tmp_path, tiny_checkpoint, tiny_csv, rounds=60, max_rounds=60, timing_samples=40),
                  "--json-log"], log)
    _wait_for(run, log, _phase_event("timing"), "the first trial's timing")
    assert _stop(run, signum) == 130
    text = log.read_text()
    _clean(text)
    name = signal.Signals(signum).name
    assert f"opsearch: stopped: {name}; trial 0 was timing and is queued again, first." in text
    assert "continue with `opsearch resume --storage" in text

    study = load_existing(f"sqlite:///{tmp_path / 's.db'}", "sig")
    first = study.trials[0]
    assert first.state == WAITING and TrialRecord.of(first).interrupted == [f"{name} while timing"]
    assert TrialRecord.of(first).preset == "dynamic: weight MatMuls only"  # the preset is not lost
    assert not study.get_trials(states=(RUNNING,))
    assert not list((tmp_path / "sig.cache" / "trials").glob("trial-*"))

    resumed = _resume_to_the_end(tmp_path)
    assert resumed.trials[0].state == COMPLETE  # the same trial, under its own number, ran first
    assert len(resumed.get_trials(states=(COMPLETE,))) == 2
    done = resumed.get_trials(states=(COMPLETE,))
    assert resumed.trials[0].datetime_complete == min(t.datetime_complete for t in done)


def test_sigterm_during_the_export_leaves_a_study_resume_continues(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    log = tmp_path / "run.log"
    run = _start(["run", *_flags(tmp_path, tiny_checkpoint, tiny_csv)], log)
    cache = tmp_path / "sig.cache"
    _wait_for(run, log, lambda text: cache.is_dir() and any(p.name.startswith(".export-") for p in cache.iterdir()),
              "the export")
    assert _stop(run, signal.SIGTERM) == 130, log.read_text()
    text = log.read_text()
    _clean(text)
    assert "opsearch: stopped: SIGTERM. Completed trials are saved; continue with `opsearch resume" in text
    assert not (cache / "fp32").exists() or not (cache / "fp32" / "model.onnx").exists()  # nothing half-written
    resumed = _resume_to_the_end(tmp_path)
    assert StudyRecord.of(resumed).complete and len(resumed.get_trials(states=(COMPLETE,))) == 2


def test_a_signal_during_the_baseline_is_resumed_from_the_baseline(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    log = tmp_path / "run.log"
    run = _start(["run", *_flags(tmp_path, tiny_checkpoint, tiny_csv, rounds=60, max_rounds=60, timing_samples=40)],
                 log)
    _wait_for(run, log, lambda text: "fp32 baseline: timing ..." in text, "the baseline's timing")
    assert _stop(run, signal.SIGINT) == 130
    _clean(log.read_text())
    study = load_existing(f"sqlite:///{tmp_path / 's.db'}", "sig")
    assert not StudyRecord.of(study).complete and StudyRecord.of(study).made_by_opsearch
    # A worker must not time a second baseline; resume measures it and goes on.
    log2 = tmp_path / "worker.log"
    worker = _start(["worker", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--study-name", "sig"], log2)
    assert worker.wait(timeout=120) == 2
    assert "has no fp32 baseline yet" in log2.read_text() and "opsearch resume" in log2.read_text()
    resumed = _resume_to_the_end(tmp_path)
    assert StudyRecord.of(resumed).complete and len(resumed.get_trials(states=(COMPLETE,))) == 2


def test_a_signal_during_the_probe_fit_and_the_front_session(tmp_path, tiny_encoder_checkpoint, tiny_csv) -> None:
    log = tmp_path / "run.log"
    flags = _flags(tmp_path, tiny_encoder_checkpoint, tiny_csv, trials=1, probe_samples=60)
    run = _start(["run", *flags, "--task", "embedding"], log)
    _wait_for(run, log, lambda text: "probe: embedding" in text, "the probe's fit")
    assert _stop(run, signal.SIGINT) == 130
    _clean(log.read_text())

    # Resume runs to the front session; stop it there; a second resume re-times the front and ends.
    log = tmp_path / "resume1.log"
    resume = _start(["resume", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--study-name", "sig"], log)
    _wait_for(resume, log, lambda text: "re-measuring the front" in text, "the front session")
    assert _stop(resume, signal.SIGINT) == 130
    _clean(log.read_text())
    study = load_existing(f"sqlite:///{tmp_path / 's.db'}", "sig")
    assert StudyRecord.of(study).front_remeasured == {} and len(study.get_trials(states=(COMPLETE,))) == 1
    resumed = _resume_to_the_end(tmp_path)
    assert StudyRecord.of(resumed).front_remeasured["considered"] == [t.number for t in
                                                                      resumed.get_trials(states=(COMPLETE,))]
    assert len(resumed.get_trials(states=(COMPLETE,))) == 1  # nothing measured twice


def test_a_signal_while_a_trial_quantizes_then_while_it_evaluates(tmp_path, tiny_checkpoint) -> None:
    # Enough rows that static calibration (quantizing) and the evaluation each take seconds on the tiny model.
    data = write_table(tmp_path / "rows.csv", sentiment_rows(6000))
    flags = _flags(tmp_path, tiny_checkpoint, data, modes=["static"], trials=1, fit_size=1500,
                   calibration_samples=1500, calibration_max_length=64, max_length=64)
    stops = []
    for command, phase, signum in ((["run", *flags], "quantizing", signal.SIGINT),
                                   (["resume", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--study-name", "sig"],
                                    "evaluating", signal.SIGTERM)):
        log = tmp_path / f"{command[0]}.log"
        process = _start([*command, "--json-log"], log)
        _wait_for(process, log, _phase_event(phase), f"the first trial's {phase}")
        assert _stop(process, signum) == 130
        text = log.read_text()
        _clean(text)
        name = signal.Signals(signum).name
        stop_lines = [line for line in text.splitlines() if line.startswith("opsearch: stopped")]
        assert stop_lines == [f"opsearch: stopped: {name}; trial 0 was {phase} and is queued again, first. "
                              "Completed trials are saved; continue with `opsearch resume --storage "
                              f"sqlite:///{tmp_path / 's.db'} --study-name sig`."]
        assert text.rstrip().splitlines()[-1] == stop_lines[0]  # the one line, last
        stops.append(f"{name} while {phase}")
        study = load_existing(f"sqlite:///{tmp_path / 's.db'}", "sig")
        assert study.trials[0].state == WAITING and TrialRecord.of(study.trials[0]).interrupted == stops
        assert not study.get_trials(states=(RUNNING,))
        assert not list((tmp_path / "sig.cache" / "trials").glob("trial-*"))  # the child and its files gone
    resumed = _resume_to_the_end(tmp_path)
    assert resumed.trials[0].state == COMPLETE and len(resumed.get_trials(states=(COMPLETE,))) == 1
