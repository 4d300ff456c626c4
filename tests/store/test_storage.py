"""Study storages: SQLite, a journal file, and a real PostgreSQL server started for the test."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import fast_settings, settings_argv
from postgres import NoPostgres, throwaway_postgres

from opsearch.config import StudyConfig
from opsearch.errors import StudyError
from opsearch.report import build_report
from opsearch.search import resume_study, run_study, run_worker
from opsearch.store import cache_dir_for, file_of, open_storage
from opsearch.store._storage import _check_writable

COMPLETE = optuna.trial.TrialState.COMPLETE


@pytest.mark.parametrize(("storage", "path"), [
    ("sqlite:///runs/a.db", "runs/a.db"),
    ("sqlite:////abs/a.db", "/abs/a.db"),
    ("journal:runs/a.log", "runs/a.log"),
    ("journal:///abs/a.log", "/abs/a.log"),
    ("postgresql://u@host/db", None),
])
def test_file_of_a_storage(storage: str, path: str | None) -> None:
    assert file_of(storage) == (Path(path) if path else None)
    expected = (Path(path).parent if path else Path("opsearch-runs")) / "s.cache"
    assert cache_dir_for(storage, "s") == expected


def test_an_unreachable_database_names_the_url_and_the_fix() -> None:
    with pytest.raises(StudyError, match=r"(?s)postgresql://nobody@127.0.0.1:9/none.*cannot be "
                                         r"opened.*server runs"):
        open_storage("postgresql://nobody@127.0.0.1:9/none")  # the URL the README shows, with the extra's driver


def test_a_database_without_its_driver_says_what_to_install() -> None:
    with pytest.raises(StudyError, match="driver"):
        open_storage("mysql+nosuchdriver://u@127.0.0.1/db")


def test_many_workers_opening_one_storage_at_once_all_pass_the_write_check(tmp_path) -> None:
    # Workers start together: each checks that the study's folder is writable. A probe file shared by
    # name made one worker delete another's probe, and refuse a folder it could write to.
    import threading

    storage = f"journal:{tmp_path / 'busy.log'}"
    errors: list[Exception] = []
    start = threading.Barrier(8)

    def open_many() -> None:
        start.wait()
        for _ in range(200):
            try:
                _check_writable(storage, tmp_path / "busy.log")
            except StudyError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=open_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == []  # no probe left behind


def _ask_queued(storage: str, asks: int, start, results) -> None:
    study = optuna.load_study(study_name="queue", storage=open_storage(storage))
    start.wait()
    results.put([study.ask().number for _ in range(asks)])


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_workers_popping_queued_trials_at_once_each_get_their_own(tmp_path, kind: str) -> None:
    # Presets and retries are queued trials; workers started together take them from the queue at once.
    import multiprocessing

    storage = f"sqlite:///{tmp_path / 'q.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'q.log'}"
    study = optuna.create_study(study_name="queue", storage=open_storage(storage))
    for x in range(60):
        study.enqueue_trial({"x": x})
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_ask_queued, args=(storage, 15, start, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    taken = [number for _ in workers for number in results.get(timeout=120)]
    for worker in workers:
        worker.join()
    assert sorted(taken) == list(range(60))  # every queued trial, none handed to two workers


def test_a_journal_file_holds_a_study(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    storage = f"journal:{tmp_path / 'study.log'}"
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=storage, study_name="j",
                         modes=["dynamic"], remeasure_front=False, **fast_settings())
    run_study(config, n_trials=2, progress=lambda line: None)
    resumed = resume_study(storage=storage, study_name="j", n_trials=1, progress=lambda line: None)
    assert len(resumed.get_trials(states=(COMPLETE,))) == 3
    assert (tmp_path / "study.log").stat().st_size > 0
    assert (tmp_path / "j.cache" / "fp32" / "model.onnx").is_file()  # the cache sits beside the journal


@pytest.fixture(scope="module")
def postgres():
    try:
        with throwaway_postgres() as server:
            yield server
    except NoPostgres as exc:
        pytest.skip(str(exc))


@pytest.fixture()
def postgres_url(postgres):
    return postgres.url


def test_a_postgresql_study_runs_resumes_and_takes_a_worker(postgres_url, tmp_path, monkeypatch, tiny_checkpoint,
                                                            tiny_csv) -> None:
    monkeypatch.chdir(tmp_path)  # a database storage keeps its cache under ./opsearch-runs
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=postgres_url, study_name="pg",
                         modes=["dynamic"], trials=4, remeasure_front=False, **fast_settings())
    study = run_study(config, n_trials=2, progress=lambda line: None)
    first = {t.number: t.values for t in study.get_trials(states=(COMPLETE,))}
    resume_study(storage=postgres_url, study_name="pg", n_trials=1, progress=lambda line: None)
    worker = run_worker(storage=postgres_url, study_name="pg", progress=lambda line: None)  # up to trials = 4
    done = worker.get_trials(states=(COMPLETE,))
    assert len(done) == 4
    assert {t.number: t.values for t in done if t.number in first} == first
    assert build_report(worker).front
    assert (tmp_path / "opsearch-runs" / "pg.cache" / "fp32" / "model.onnx").is_file()


def _opsearch(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OPSEARCH_LOCK_DIR": str(cwd)}
    return subprocess.Popen([sys.executable, "-m", "opsearch.cli", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env, cwd=cwd)


def _wait_for_line(process: subprocess.Popen, log: Path, text: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.01)


def _run_args(postgres, model: Path, data: Path, study: str, **settings) -> list[str]:
    return ["run", "--model", str(model), "--dataset", str(data), "--storage", postgres.url, "--study-name", study,
            *settings_argv(fast_settings(isolation="process", modes=["dynamic"], remeasure_front=False,
                                         **settings))]


def _outage(run: subprocess.Popen, postgres) -> None:
    """The server stops at once, as in a crash, while the run is held still: however quick its trials, its next
    storage call meets the outage."""
    run.send_signal(signal.SIGSTOP)
    try:
        postgres.stop(check=True)
    finally:
        run.send_signal(signal.SIGCONT)


def test_a_database_restart_is_waited_for_and_one_past_storage_patience_stops_the_run_for_resume(
        postgres, tmp_path, tiny_checkpoint, tiny_csv) -> None:
    """One run meets two outages: a restart it outlasts (the trial being measured is stored once the server is
    back), then a server away past --storage-patience, which stops it as an interrupted study; resume finishes."""
    log = tmp_path / "run.log"
    run = _opsearch([*_run_args(postgres, tiny_checkpoint, tiny_csv, "outage", trials=6), "--storage-patience", "8"],
                    log, tmp_path)
    _wait_for_line(run, log, "trial 0: ")  # a trial is being measured
    _outage(run, postgres)
    _wait_for_line(run, log, "storage unreachable since")  # away until the run has met it
    time.sleep(3)
    postgres.start()
    _wait_for_line(run, log, "storage reachable again after")
    _wait_for_line(run, log, "[1/6 ")  # trial 0, measured across the outage, is told
    _wait_for_line(run, log, "trial 1: ")  # and trial 1 is being measured (it takes a tenth of a second or more)
    _outage(run, postgres)  # the run has trials to go: it meets this one too, and it lasts
    try:
        assert run.wait(timeout=120) == 130, log.read_text()
    finally:
        postgres.start()
    text = log.read_text()
    assert "storage unreachable since" in text and "the running trial is kept" in text and "Traceback" not in text
    assert "opsearch: stopped: the storage was unreachable for" in text and "(storage_patience 8 s)" in text
    assert "opsearch resume --storage" in text
    assert re.search(r"trial 1 was [a-z ]+: once the database is back, it is found stale and queued again", text)
    study = optuna.load_study(study_name="outage", storage=postgres.url)
    assert len(study.get_trials(states=(COMPLETE,))) >= 1  # trial 0, measured across the first outage, was stored

    resume = _opsearch(["resume", "--storage", postgres.url, "--study-name", "outage"], tmp_path / "resume.log",
                       tmp_path)
    assert resume.wait(timeout=300) == 0, (tmp_path / "resume.log").read_text()
    assert "trial 1 was left running by a stopped process: marked failed, queued again" in (
        tmp_path / "resume.log").read_text()
    study = optuna.load_study(study_name="outage", storage=postgres.url)
    assert len(study.get_trials(states=(COMPLETE,))) == 6
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    numbers = [t.params for t in study.get_trials(states=(COMPLETE,))]
    assert len({json.dumps(p, sort_keys=True) for p in numbers}) == len(numbers)  # none stored twice


def test_a_queued_trial_cut_off_before_its_parameters_were_drawn_is_queued_again_as_queued(tmp_path) -> None:
    """A worker killed between popping a queued trial (a starting point) and drawing its parameters leaves a trial
    with no params: its retry comes from what it was queued with, preset name and starting flag kept."""
    from opsearch.store import queue_retry, trial_attrs

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize", "minimize"])
    study.enqueue_trial({"op_MatMul": True, "per_channel": False},
                        user_attrs=trial_attrs(preset="dynamic: weight MatMuls only", starting=True))
    popped = study.ask()  # the queue's trial, RUNNING, nothing drawn yet
    cut = study._storage.get_trial(popped._trial_id)
    assert cut.params == {}
    queue_retry(study, cut, "the process running it stopped")
    retry = study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0]
    assert retry.system_attrs["fixed_params"] == {"op_MatMul": True, "per_channel": False}
    assert retry.user_attrs["retry_of"] == cut.number and retry.user_attrs["preset"] == "dynamic: weight MatMuls only"
    assert retry.user_attrs["starting"] is True

    fresh = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize", "minimize"])
    sampled = fresh.ask()  # not queued: a sampled trial cut off while drawing chose nothing, and is not retried
    queue_retry(fresh, fresh._storage.get_trial(sampled._trial_id), "the process running it stopped")
    assert not fresh.get_trials(states=(optuna.trial.TrialState.WAITING,))
    sampled.suggest_categorical("op_MatMul", [False, True])  # cut off halfway through its draws: still not chosen
    queue_retry(fresh, fresh._storage.get_trial(sampled._trial_id), "the process running it stopped")
    assert not fresh.get_trials(states=(optuna.trial.TrialState.WAITING,))


def test_a_queued_trial_cut_off_halfway_through_its_draws_is_queued_again_whole(tmp_path) -> None:
    """Killed after drawing some of its queued parameters (its recipe not yet stored): the retry is queued with
    every parameter it was queued with, not with the few drawn, which would leave the rest to be drawn afresh (the
    soak's "retry runs other parameters"). Once its recipe is stored, its drawn parameters are its configuration."""
    from opsearch.store import queue_retry, set_trial_attrs

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize", "minimize"])
    queued = {"op_MatMul": True, "per_channel": True, "reduce_range": False}
    study.enqueue_trial(queued)
    popped = study.ask()
    popped.suggest_categorical("op_MatMul", [False, True])
    queue_retry(study, study._storage.get_trial(popped._trial_id), "its worker stopped sending heartbeats")
    retry = study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0]
    assert retry.system_attrs["fixed_params"] == queued

    sampled = study.ask()  # the retry, popped, drawn whole, its recipe stored
    for name in queued:
        sampled.suggest_categorical(name, [False, True])
    set_trial_attrs(sampled, recipe={"mode": "dynamic"})
    queue_retry(study, study._storage.get_trial(sampled._trial_id), "its worker stopped sending heartbeats")
    again = study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0]
    assert again.system_attrs["fixed_params"] == queued and again.user_attrs["retry_of"] == sampled.number


def _damaged(source: Path, target: Path, how: str) -> Path:
    """A copy of a study file, damaged as a bad copy or a full disk leaves one."""
    data = bytearray(source.read_bytes())
    page = 4096
    if how == "truncated":
        data = data[:len(data) // 3]
    elif how == "zero-filled":
        third = len(data) // 3
        data[third:2 * third] = bytes(third)
    elif how == "bits-flipped":
        for start in range(page, len(data), page):  # every page's header: its b-tree page type and cell count
            for offset in range(0, 8):
                data[start + offset] ^= 0xA5
    elif how == "another-program":
        import sqlite3

        with sqlite3.connect(target) as connection:
            connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        connection.close()
        return target
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("how", ["truncated", "zero-filled", "bits-flipped", "another-program"])
def test_a_damaged_study_file_is_named_and_left_as_it_was_by_every_command(how, tmp_path, capsys, tiny_checkpoint,
                                                                           tiny_csv) -> None:
    import hashlib

    from opsearch.cli import main

    source = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "stored").glob("*.db"))[-1]
    path = _damaged(source, tmp_path / "study.db", how)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    storage = f"sqlite:///{path}"
    commands = [["report", "--storage", storage, "--study-name", "s"],
                ["plot", "--storage", storage, "--study-name", "s", "--out", str(tmp_path / "p.png")],
                ["export", "--storage", storage, "--study-name", "s", "--best", str(tmp_path / "out")],
                ["run", "--storage", storage, "--study-name", "new", "--model", str(tiny_checkpoint), "--dataset",
                 str(tiny_csv), "--trials", "1"]]
    for command in commands:
        assert main(command) != 0, command
        err = capsys.readouterr().err
        assert "Traceback" not in err and f"{str(path)!r}" in err and "opsearch changed nothing in it" in err, err
        assert ("another program's tables (invoices)" in err) == (how == "another-program"), err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not (tmp_path / "new.cache").exists()  # run built nothing on top of it


def test_a_lost_connection_is_waited_for_and_anything_else_raised_at_once(tmp_path, monkeypatch) -> None:
    """The retry loop on its own (the PostgreSQL tests restart a real server): a lost connection is tried again
    with one line as it goes and one as it comes back, past the patience the study stops, and an error that is
    no lost connection is raised at once."""
    from sqlalchemy.exc import OperationalError

    from opsearch.errors import StorageUnreachable
    from opsearch.store import _patience

    monkeypatch.setattr(_patience, "RETRY_SECONDS", 0.01)
    lines: list[str] = []
    storage = _patience.patient_storage(f"sqlite:///{tmp_path / 'p.db'}", patience=5, say=lines.append)
    calls = []

    def flaky(self, value):
        calls.append(value)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection unexpectedly"))
        return value * 2

    assert storage._patiently(flaky, 21) == 42 and len(calls) == 3
    assert lines[0].startswith("storage unreachable since ") and "the running trial is kept" in lines[0]
    assert lines[1].startswith("storage reachable again after") and len(lines) == 2

    storage.patience = 0.05
    with pytest.raises(StorageUnreachable, match=r"unreachable for .* \(storage_patience 0 s\)"):
        storage._patiently(lambda self: (_ for _ in ()).throw(OperationalError("x", {}, ConnectionError("gone"))))
    with pytest.raises(ValueError):
        storage._patiently(lambda self: (_ for _ in ()).throw(ValueError("a bad query is no outage")))


def test_after_an_outage_no_trial_is_judged_stale_until_the_living_workers_could_beat_again(tmp_path,
                                                                                           monkeypatch) -> None:
    """Every worker's heartbeats stop while the database is away: a sweep right after it would take the living
    for dead. A worker that saw the outage (a call that waited, or a beat that missed) judges no trial stale within
    a grace period of it, and beats for its own trial as soon as the database is back."""
    from sqlalchemy.exc import OperationalError

    from opsearch.store import _patience

    monkeypatch.setattr(_patience, "RETRY_SECONDS", 0.01)
    storage = _patience.patient_storage(f"sqlite:///{tmp_path / 'p.db'}", patience=5, say=lambda line: None,
                                        heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="beats")
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.2)
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]  # no outage seen: judged as usual

    def unreachable(self, trial_id):
        raise OperationalError("INSERT", {}, ConnectionError("server closed the connection unexpectedly"))

    with monkeypatch.context() as patch:
        patch.setattr(optuna.storages.RDBStorage, "record_heartbeat", unreachable)
        storage.record_heartbeat(trial._trial_id)  # missed, and not raised: the beat thread lives on
    assert storage._get_stale_trial_ids(study._study_id) == []  # held off: the outage was just now

    storage._back_at = -math.inf
    calls = []

    def back_on_second_try(self):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection unexpectedly"))
        return self.get_heartbeat_interval()

    assert storage._patiently(back_on_second_try) == 1
    storage._back_at = -math.inf  # the hold-off aside, its trial is fresh: it beat on coming back
    assert storage._get_stale_trial_ids(study._study_id) == []


def test_a_stop_that_lands_inside_the_driver_is_raised_as_the_stop_not_the_drivers_cleanup_error(tmp_path,
                                                                                              monkeypatch) -> None:
    """Ctrl-C raises where the process is, possibly inside psycopg; SQLAlchemy's cleanup then fails on the half-used
    connection ("can't change 'autocommit' now") and its error replaced the stop: the trial was failed with no
    reason instead of put back (the 8-worker soak found it). The stop is raised, on fresh connections."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import ProgrammingError

    from opsearch.errors import Interrupted
    from opsearch.store import _patience

    storage = _patience.patient_storage(f"sqlite:///{tmp_path / 'p.db'}", patience=5, say=lambda line: None)
    disposed = []
    monkeypatch.setattr(storage.engine, "dispose", lambda: disposed.append(1))

    def stopped_mid_ping(self):
        try:
            try:
                raise Interrupted("SIGINT")
            except Interrupted:  # the driver's cleanup, failing in turn
                raise ConnectionError("can't change 'autocommit' now: connection in transaction status ACTIVE")  # noqa: B904 (as the driver does: the stop is only its context)
        except ConnectionError as exc:
            wrapped = ProgrammingError("SELECT 1", {}, exc)
            wrapped.__cause__ = exc  # as SQLAlchemy raises it: from the driver's error
            raise StorageInternalError("An exception is raised during the commit.") from wrapped

    with pytest.raises(Interrupted, match="SIGINT"):
        storage._patiently(stopped_mid_ping)
    assert disposed
