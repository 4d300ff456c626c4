"""Nothing lost, nothing hidden: the soak of benchmarks/soak.py, short. Two workers on one SQLite study, killed
with SIGINT and SIGKILL in turn and started again; then the soak's own end checks. Then the soak's parts that the
short run does not reach, each in a fraction of a second: its database restarts (on a fake server), its checks of a
configuration measured twice and of a trial changed since a snapshot, its reader waiting out an outage, and its
judgement of a worker that outlived its storage_patience."""

from __future__ import annotations

import importlib.util
import itertools
import random
import signal
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution

TARGET = 4  # completed trials: a floor, reached within the 25 s
SOAK_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def _load_soak():
    spec = importlib.util.spec_from_file_location("opsearch_soak", SOAK_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


soak = _load_soak()


def test_two_workers_killed_and_restarted_lose_nothing(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    url = f"sqlite:///{tmp_path / 'soak.db'}"
    settings = soak.study_settings(url, tiny_checkpoint, tiny_csv, trials=TARGET, seed=0)
    target = soak.create_study("sqlite", url, tmp_path, settings, say=print)
    # The two kills, one per worker 9-15 s after it starts (or once it is inside a trial, if later), are a SIGINT
    # and a SIGKILL, in 25 s; then SIGTERM, the sweep, the drain and the checks.
    soak.soak([target], workers=2, minutes=25 / 60, kill_every=(0.15, 0.25), rng=random.Random(0),
              signals=itertools.cycle([signal.SIGINT, signal.SIGKILL]), max_kills=2, mid_trial=True, max_minutes=4,
              say=print)
    outcome = soak.check(target)
    target.reader.close()
    print(soak.summary([outcome]))
    assert len(target.kills) == 2
    assert {k.signal for k in target.kills} == {"SIGINT", "SIGKILL"}
    assert any(k.cut_off for k in target.kills)  # at least one kill landed inside a trial
    assert [f"[{f.check}] {f.message}" for f in outcome.findings] == []
    assert outcome.lost == [] and outcome.completed >= TARGET


# The soak's own parts, without workers: each a fraction of a second.

class FakeServer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def stop(self, mode: str = "immediate", *, check: bool = False) -> None:
        self.calls.append((f"stop {mode}", time.monotonic()))

    def start(self) -> None:
        self.calls.append(("start", time.monotonic()))


def test_database_restarts_stop_as_a_crash_and_start_again_at_random() -> None:
    server, snapshots, lock = FakeServer(), [], threading.Lock()
    began = time.monotonic()
    restarts = soak.DbRestarts(server, every=(0.15, 0.25), down=(0.03, 0.06), rng=random.Random(1),
                               before=lambda: snapshots.append(time.monotonic()) or [], lock=lock,
                               elapsed=lambda: time.monotonic() - began, up_at_least=0.05, say=lambda _: None)
    restarts.start()
    time.sleep(0.9)
    restarts.finish()
    names = [name for name, _ in server.calls]
    assert len(restarts.log) >= 3 and names == ["stop immediate", "start"] * len(restarts.log)
    assert len(snapshots) == len(restarts.log)  # a snapshot before every stop
    assert all(s <= stop for s, (_, stop) in zip(snapshots, server.calls[::2], strict=True))
    stops, starts = [t for _, t in server.calls[::2]], [t for _, t in server.calls[1::2]]
    assert all(0.03 <= b - a < 0.5 for a, b in zip(stops, starts, strict=True))  # down its drawn time
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(stops))  # one stop to the next: every MIN-MAX
    assert restarts.up.is_set() and abs(restarts.down_s - sum(r.down_s for r in restarts.log)) < 1e-9
    assert 0.03 * len(restarts.log) <= restarts.down_s < 0.5 * len(restarts.log)


def test_database_restarts_finish_brings_the_server_up_at_once() -> None:
    server, began = FakeServer(), time.monotonic()
    restarts = soak.DbRestarts(server, every=(0.01, 0.01), down=(30, 30), rng=random.Random(0), before=list,
                               lock=threading.Lock(), elapsed=lambda: time.monotonic() - began, say=lambda _: None)
    restarts.start()
    while not server.calls:
        time.sleep(0.01)
    assert not restarts.up.is_set() and restarts.down_since(time.time() - 1)
    restarts.finish()
    assert [name for name, _ in server.calls] == ["stop immediate", "start"] and restarts.up.is_set()
    assert len(restarts.log) == 1 and restarts.log[0].down_s < 5


def _trial(number: int, params: dict, **user_attrs):
    trial = optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[1.0], params=params,
                                      distributions={k: IntDistribution(0, 9) for k in params},
                                      user_attrs=user_attrs)
    trial.number = number
    return trial


def test_checks_count_a_configuration_measured_twice_and_a_changed_trial(tmp_path) -> None:
    target = soak.Target("postgresql", "unused", trials=3, workdir=tmp_path)
    trials = [_trial(0, {"a": 1}, label="x"), _trial(1, {"a": 2}), _trial(2, {"a": 1}),
              _trial(3, {"a": 1}, same_graph_as=0), _trial(4, {"a": 2}, nodes_to_exclude=["n"])]
    target.seen = {n: soak.frozen(t) for n, t in enumerate(trials)}
    clean = soak.check(target, trials)
    assert clean.duplicated == [2] and clean.completed == 5 and clean.lost == []
    assert [f.check for f in clean.findings] == ["measured once"]
    target.seen[1] = soak.frozen(_trial(1, {"a": 2}, label="before"))  # as a snapshot before a restart read it
    changed = soak.check(target, trials)
    assert sorted(f.check for f in changed.findings) == ["measured once", "unchanged"]


def test_the_reader_waits_while_the_database_is_away(monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    monkeypatch.setattr(soak, "READ_RETRY_SECONDS", 0.0)
    reader = soak.Reader.__new__(soak.Reader)
    reader.storage, reader.patience = None, 60
    tries = iter([OperationalError("SELECT", {}, ConnectionRefusedError()), OperationalError("SELECT", {}, None), 7])

    def read():
        answer = next(tries)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert reader.retrying(read) == 7
    with pytest.raises(ProgrammingError):  # a bad query is no outage
        reader.retrying(lambda: (_ for _ in ()).throw(ProgrammingError("SELECT", {}, None)))
    reader.patience = 0
    with pytest.raises(OperationalError):  # away past its patience
        reader.retrying(lambda: (_ for _ in ()).throw(OperationalError("SELECT", {}, None)))


def test_a_worker_past_its_storage_patience_is_a_violation_unless_the_downtime_meant_it(tmp_path) -> None:
    (tmp_path / "logs").mkdir()
    worker = soak.Worker("postgresql-w1", "unused", tmp_path)
    worker.err.write_text("storage unreachable since 10:00:00, retrying every 2 s\n\nopsearch: stopped: the storage "
                          "was unreachable for 91 s (storage_patience 90 s). Completed trials are saved.\n")
    for meant in (False, True):
        target = soak.Target("postgresql", "unused", trials=1, workdir=tmp_path, patience_exits_meant=meant)
        record = soak.unasked_exit(target, worker, 130, lambda: 60.0, say=lambda _: None)
        assert record.reason.startswith("opsearch: stopped: the storage was unreachable for 91 s")
        assert bool(record.meant) == meant and len(target.findings) == (0 if meant else 1)
        assert target.exits == [record]
