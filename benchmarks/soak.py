"""Soak: workers on one study, killed and restarted for minutes, its database restarted under them; nothing
completed changes, nothing is lost, nothing is measured twice.

From the issues "Nothing lost, nothing hidden" and "Eight workers". Not a test (20 minutes by default):
tests/test_soak.py runs a short version of it (one SQLite study, two workers, a few kills) in the suite. Run:

    PYTHONPATH=. .venv/bin/python benchmarks/soak.py [--minutes 20] [--workers 4] [--storages sqlite,postgresql]
        [--kill-every 1,3] [--restart-every 3,6] [--down-for 5,60] [--storage-patience 5m] [--trials N] [--seed 0]

The issue's run, eight workers on one PostgreSQL study for 30 minutes, its server restarted every 3-6 minutes:

    PYTHONPATH=. .venv/bin/python benchmarks/soak.py --storages postgresql --workers 8 --minutes 30

What it does:

- builds the tests' tiny BERT classifier and its sentiment rows (``tests/conftest.py``) in a work folder
  (``--out``; by default a new folder under $TMPDIR, kept for its logs);
- starts a throwaway PostgreSQL server (``tests/postgres.py``, Debian's ``postgresql`` package, as
  ``tests/store/test_storage.py`` does; where initdb is absent, the PostgreSQL half is skipped, saying so) and makes
  a SQLite file (``--storages`` chooses: sqlite, postgresql (or postgres), or both, the default);
- creates one study in each (modes dynamic and static, static in QDQ format only, which the tiny model survives;
  no fusion; the tests' fast timing, one intra-op thread; trials in a child process) with a target of
  ``--trials`` completed trials, none run yet, its presets queued. The space holds over 100,000 recipes, so the
  target's distinct configurations exist. (``opsearch run --trials 0``, the README's way to start a study for
  workers, stores a target of 0, and a worker without ``--trials`` then has nothing to do: the soak creates its
  studies through the library, ``run_study(config, n_trials=0)``, as tests/test_workers.py does);
- keeps ``--workers`` ``opsearch worker --trials 1000000 --storage-patience P`` processes per storage running, each
  logging to files of its own (``logs/STORAGE-wN.out`` and ``.err``, a line per start and exit), until the study
  holds its target AND ``--minutes`` minutes have passed. (Without ``--trials`` a worker runs (target - completed)
  trials, failed and pruned ones included, and stops: the soak's duration would then hang on how many trials
  fail.) A worker that exits unasked is recorded with the reason its log gives, and started again (once the
  database is up); it is a violation unless the soak meant it (see below);
- for each worker, at a random moment every MIN-MAX minutes (``--kill-every``), snapshots every trial of its
  storage (keeping each COMPLETE one's number, parameters, values and user attributes, and which trials the
  worker is running), sends SIGKILL or SIGINT (chosen at random, seeded by ``--seed``), waits for the worker to
  exit and starts it again. A kill that falls while the database is down uses the snapshot taken as it went down
  (nothing can change meanwhile), waits for the exit as long as the database stays down and a minute more, and
  starts the worker again once the database is back (a worker opening a storage that is away fails at once);
- PostgreSQL only, independently of the kills (a thread of its own): at a random moment every MIN-MAX minutes
  (``--restart-every``; ``off`` for none) snapshots the study as before a kill, stops the server with
  ``pg_ctl -m immediate`` (a crash: every connection drops), keeps it down a random ``--down-for`` MIN-MAX seconds,
  and starts it again. Every storage call of the workers then waits and retries ("storage unreachable since ...",
  "storage reachable again after ..."); the downtime must stay below the workers' ``--storage-patience``. With a
  downtime that can reach the patience, a worker exiting 130 because the storage stayed away is meant, recorded and
  not a violation; below it, any such exit is one. A worker that exits because it could not open the storage while
  it was starting, as the database went down, is recorded and not a violation (opening fails at once, by design);
- at the end, brings the database up, stops every worker with SIGTERM (a clean stop, exit 130: its trial goes back
  to the queue); then one more ``opsearch worker --trials 0`` sweeps what the stopped workers left RUNNING (marks
  it failed as interrupted and queues it again), and one with ``--trials W`` runs the W trials still queued, so
  that every cut-off configuration is measured before the checks.

The checks (every violation is printed; the exit status is then 1):

1. **Unchanged.** Every trial that was COMPLETE in a snapshot before a kill or a restart is COMPLETE at the end with its
   values, parameters and user attributes byte-equal (JSON, keys sorted) to what that first snapshot read.
2. **No configuration measured twice.** A configuration is a trial's parameters plus the nodes it keeps in fp32 on
   top of them (``nodes_to_exclude``, a sensitivity fallback): together they decide the recipe. A trial *measured*
   its configuration if it is COMPLETE and holds measurements of its own, i.e. it is not marked ``same_graph_as``
   (such a trial quantized its recipe, found the graph of an earlier trial and copied that trial's accuracy and
   timing: nothing was evaluated or timed again). Measured twice = two such trials with one configuration. A
   cut-off trial stores no measurement, so its retry measuring the configuration is its first measurement; a
   sampled repeat of a finished configuration is pruned, not measured. Two *different* configurations that
   produced one graph and were both measured (workers quantizing at the same moment cannot know of each other)
   are counted, not flagged. The extra measurements are the figure "duplicated".
3. **Nothing left RUNNING** (nor queued: the drain ran everything queued).
4. **Nothing lost.** A cut-off trial (failed with a reason starting "interrupted", or with no reason at all) must
   have a retry (``retry_of``) with its configuration, itself subject to this rule; a cut-off trial that had drawn
   nothing yet (not every parameter drawn, not popped from the queue) has nothing to lose. A trial RUNNING under a
   worker when it got its signal either finished first (COMPLETE, PRUNED, or failed for a reason of its own, its
   end stored before the signal) or was cut off. A trial failed for a reason outside its configuration (a file of
   the study's cache vanished, the storage refused a write) and not queued again is lost too.
5. **Nothing hidden.** Every failed trial stores why (``fail_reason``, or its retry's ``retry_reason``), and every
   worker exit the soak did not ask for (a crash, a worker still running a minute after its signal, a code other
   than SIGTERM's at the end) is a violation.
6. **The target**: the study holds at least ``--trials`` completed trials (by ``--max-minutes`` at the latest).

SIGINT: the checks are written for the behaviour opsearch is being given, where a Ctrl-C marks the running trial
failed as interrupted and queues its configuration again, as the sweep after a kill -9 does. Today a Ctrl-C makes
Optuna mark the trial FAIL with no reason and nothing is queued again: checks 4 and 5 then fail for that trial,
and the violation says "(SIGINT as handled today)".

The reader of these snapshots reads the study's tables itself and waits (retrying every 2 s) while the database
is away; the soak does not read while it knows the server is down.

Output: the summary table (storage, workers, minutes, kills by signal, database restarts and seconds down, trials
completed of the target, failed with their reasons, pruned, lost, duplicated), the workers' unasked exits with
their reasons, the outage lines counted in the workers' logs, the violations, and ``soak.json`` in the work folder
with every kill, restart, exit and figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout's opsearch; the tests' tiny model and data
from postgres import NoPostgres, Postgres, throwaway_postgres  # noqa: E402  (tests/postgres.py, shared)

from opsearch.config import duration_seconds  # noqa: E402  (the flag's parser, as the workers read it)
from opsearch.store import configuration_of, connection_lost  # noqa: E402  (read as the workers read them)

STUDY = "soak"
SIGNALS = (signal.SIGKILL, signal.SIGINT)
EXIT_SECONDS = 60  # a worker must be gone this long after a signal
POLL_SECONDS = 1.0
ORPHAN_SECONDS = 60  # opsearch sweeps a RUNNING trial that never said whose it is only after this long
MODES = ["dynamic", "static"]
# Failures that say nothing of the configuration: the trial is lost unless it was queued again.
OUTSIDE_REASONS = ("FileNotFoundError", "No such file or directory", "database is locked", "OperationalError")
# Static QOperator quantization breaks the tiny model (chance-level accuracy, a failed trial) nearly every time;
# QDQ keeps it working, so the studies complete trials instead of failing most of them.
FORMATS = ["QDQ"]
# Workers run this many trials: never done, they run until the soak stops them (the study's target is a floor).
WORKER_TRIALS = 1_000_000
# The soak's database restarts: every MIN-MAX minutes, down MIN-MAX seconds; the workers' storage_patience.
RESTART_EVERY = (3.0, 6.0)
DOWN_FOR = (5.0, 60.0)
PATIENCE = "5m"
UP_AT_LEAST = 20.0  # seconds the server stays up between two restarts, whatever the draw
READ_RETRY_SECONDS = 2.0
READ_PATIENCE = 900.0  # how long the soak's reader waits for a database that went away before it gives up

Say = Callable[[str], None]


# The inputs --------------------------------------------------------------------------------------------------

def make_inputs(folder: Path) -> tuple[Path, Path]:
    """The tests' tiny BERT classifier (trained for seconds) and its labelled rows, built in ``folder``."""
    from conftest import make_tiny_bert, sentiment_rows, write_table

    model = folder / "tiny-bert"
    if not (model / "config.json").is_file():
        make_tiny_bert(model)
    data = folder / "tiny.csv"
    if not data.is_file():
        write_table(data, sentiment_rows(240))
    return model, data


def study_settings(url: str, model: Path, data: Path, *, trials: int, seed: int) -> dict:
    """The study: dynamic and static modes without fusion, the tests' fast timing, trials in a child process."""
    from conftest import fast_settings

    return {"model": str(model), "dataset": str(data), "storage": url, "study_name": STUDY, "modes": MODES,
            "formats": FORMATS, "trials": trials, "seed": seed, "remeasure_front": False,
            **fast_settings(isolation="process")}


# What `opsearch` exits with when SIGINT or SIGTERM stops it cleanly (opsearch.errors.Interrupted).
INTERRUPTED_EXIT = 130

_CREATE = """import json, sys
from opsearch.config import StudyConfig
from opsearch.search import run_study

run_study(StudyConfig(**json.loads(sys.argv[1])), n_trials=0)
"""


def child_env(workdir: Path) -> dict:
    """Workers of this soak take turns timing under a lock of their own, and import this checkout's opsearch."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OPSEARCH_LOCK_DIR": str(workdir), "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def create_study(name: str, url: str, workdir: Path, settings: dict, say: Say = print) -> Target:
    """Create the study (its fp32 baseline measured, its presets queued) and return what the soak keeps of it."""
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(logs / f"{name}-create.log", "w") as log:
        done = subprocess.run([sys.executable, "-c", _CREATE, json.dumps(settings)], cwd=workdir,
                              env=child_env(workdir), stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"creating the {name} study failed (code {done.returncode}): "
                           f"see {logs / f'{name}-create.log'}")
    say(f"{name}: study {STUDY!r} created in {time.monotonic() - started:.0f} s, target {settings['trials']} "
        f"completed trials")
    return Target(name, url, settings["trials"], workdir)


# PostgreSQL ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """The tests' throwaway PostgreSQL server (``tests/postgres.py``), with room for many workers' connections; the
    soak stops and starts it (``.stop("immediate")``, ``.start()``) and its workers reach it at ``.url``."""
    with throwaway_postgres(max_connections=200) as server:
        yield server


@dataclass
class Restart:
    at_s: float  # since the soak began, as the server was stopped
    planned_down_s: float
    down_s: float = 0.0  # how long it was down (until `pg_ctl start` returned)
    running: list[int] = field(default_factory=list)  # trials RUNNING at the snapshot before
    error: str = ""  # a stop or start that failed


class DbRestarts(threading.Thread):
    """Restarts a database server as a crash would, at random, until :meth:`finish`: every ``every`` MIN-MAX seconds
    (from one stop to the next, the server up at least ``up_at_least`` seconds between), calls ``before`` (the
    soak's snapshot) and stops the server (``stop("immediate")``), keeps it down ``down`` MIN-MAX seconds, starts it.
    ``lock`` is held from the snapshot until the server is stopped, so that a kill sees either the server up or the
    snapshot taken as it went down. ``up`` is set while the server is up."""

    def __init__(self, server, *, every: tuple[float, float], down: tuple[float, float], rng: random.Random,
                 before: Callable[[], list], lock: threading.Lock, elapsed: Callable[[], float], name: str = "db",
                 up_at_least: float = UP_AT_LEAST, say: Say = print) -> None:
        super().__init__(name=f"{name}-restarts", daemon=True)
        self.server, self.every, self.down, self.rng = server, every, down, rng
        self.up_at_least = up_at_least
        self.before, self.lock, self.elapsed, self.label, self.say = before, lock, elapsed, name, say
        self.up = threading.Event()
        self.up.set()
        self.stopping = threading.Event()
        self.log: list[Restart] = []
        self.outages: list[tuple[float, float | None]] = []  # (stopped, started) as time.time(), started None if down

    @property
    def down_s(self) -> float:
        return sum(r.down_s for r in self.log)

    def run(self) -> None:
        next_at = self.elapsed() + self.rng.uniform(*self.every)
        while not self.stopping.wait(max(0.0, next_at - self.elapsed())):
            planned = self.rng.uniform(*self.down)
            with self.lock:
                try:
                    trials = self.before()
                except Exception as exc:  # noqa: BLE001  (said and recorded; the restart goes on)
                    trials = []
                    self.say(f"{self.label}: the snapshot before a restart failed: {exc!r}")
                stopped_at = self.elapsed()
                record = Restart(round(stopped_at, 1), round(planned, 1),
                                 running=[t.number for t in trials if t.state.name == "RUNNING"])
                self.up.clear()
                stopped = time.monotonic()
                self.outages.append((time.time(), None))
                try:
                    self.server.stop("immediate", check=True)
                except Exception as exc:  # noqa: BLE001
                    record.error = f"stop: {exc!r}"
            self.say(f"{self.label}: database stopped (immediate) at {record.at_s / 60:.1f} min, down for "
                     f"{planned:.0f} s; {len(record.running)} trial(s) running")
            self.stopping.wait(planned)
            record.error += self._start()
            record.down_s = round(time.monotonic() - stopped, 2)
            self.outages[-1] = (self.outages[-1][0], time.time())
            self.up.set()
            self.log.append(record)
            self.say(f"{self.label}: database started again after {record.down_s:.0f} s down (restart "
                     f"{len(self.log)})" + (f"; {record.error}" if record.error else ""))
            next_at = max(stopped_at + self.rng.uniform(*self.every), self.elapsed() + self.up_at_least)

    def _start(self) -> str:
        for attempt in range(5):
            try:
                self.server.start()
                return ""
            except Exception as exc:  # noqa: BLE001  (tried again: a stop leaves the server busy a moment)
                error = f"start {attempt + 1}: {exc!r}"
                time.sleep(1)
        return error

    def finish(self) -> None:
        """No more restarts; the server is up when this returns."""
        self.stopping.set()
        if self.is_alive():
            self.join()
        if not self.up.is_set():
            self._start()
            self.up.set()

    def down_since(self, wall: float) -> bool:
        """Whether the server went down at ``wall`` (time.time()) or since, or was down then."""
        return any(started is None or started >= wall for _, started in self.outages)


# Reading a study without opsearch's locks or Optuna's cache -----------------------------------------------------

class Reader:
    """The study's trials as stored right now. Not through ``optuna.load_study``: its cache keeps finished trials
    as first read, which would hide a change. Not through opsearch's storage either: its SQLite transactions take
    the write lock, and the soak only reads."""

    def __init__(self, url: str, patience: float = READ_PATIENCE) -> None:
        import optuna

        self.patience = patience
        self.storage = None
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        self.storage = self.retrying(lambda: optuna.storages.RDBStorage(url, engine_kwargs=kwargs))
        self.study_id = self.retrying(lambda: self.storage.get_study_id_from_name(STUDY))

    def retrying(self, read: Callable):
        """``read()``, tried again every READ_RETRY_SECONDS while the database is away (a lost or refused
        connection), for up to ``patience`` seconds: the soak restarts the server under its own reads too."""
        since = None
        while True:
            try:
                return read()
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                since = time.monotonic() if since is None else since
                if time.monotonic() - since > self.patience:
                    raise
            time.sleep(READ_RETRY_SECONDS)
            if self.storage is not None:  # the next try starts from a fresh session and pool
                with contextlib.suppress(Exception):
                    self.storage.scoped_session.remove()
                with contextlib.suppress(Exception):
                    self.storage.engine.dispose()

    def trials(self) -> list:
        return self.retrying(lambda: self.storage.get_all_trials(self.study_id, deepcopy=False))

    def count(self, state: str) -> int:
        from sqlalchemy import text

        def read() -> int:
            with self.storage.engine.connect() as connection:
                return int(connection.execute(
                    text("SELECT COUNT(*) FROM trials WHERE study_id = :s AND state = :state"),
                    {"s": self.study_id, "state": state}).scalar_one())

        return self.retrying(read)

    def close(self) -> None:
        self.storage.engine.dispose()


def frozen(trial) -> str:
    """What must never change in a completed trial, byte for byte."""
    return json.dumps({"values": trial.values, "params": trial.params, "user_attrs": trial.user_attrs},
                      sort_keys=True, default=repr)


# The workers --------------------------------------------------------------------------------------------------

@dataclass
class Kill:
    worker: str
    pid: int
    signal: str
    at_s: float  # since the soak began
    at_wall: float = 0.0  # time.time() as the signal was sent
    exit_code: int | None = None
    exit_s: float = 0.0  # how long it took to exit
    cut_off: list[int] = field(default_factory=list)  # trials RUNNING under its pid at the snapshot before
    db_down: bool = False  # sent while the database was down (the snapshot is the one taken as it went down)
    reason: str = ""  # what its log said last


@dataclass
class Exit:
    """A worker that exited without being asked."""

    worker: str
    pid: int
    code: int
    at_s: float
    reason: str  # from its log
    meant: str = ""  # why the soak does not count it as a violation; empty: it is one


@dataclass
class Finding:
    check: str
    message: str
    sigint_today: bool = False  # fails only because of today's SIGINT handling


class Worker:
    """One `opsearch worker` slot: started, killed and started again, logging to its own two files."""

    def __init__(self, name: str, url: str, workdir: Path, extra: tuple[str, ...] = ()) -> None:
        self.name, self.url, self.workdir, self.extra = name, url, workdir, extra
        self.out = workdir / "logs" / f"{name}.out"
        self.err = workdir / "logs" / f"{name}.err"
        self.proc: subprocess.Popen | None = None  # None: not started yet, or waiting for the database to start
        self.starts = 0
        self.started_wall = 0.0
        self.offsets = (0, 0)  # where this run's lines begin in its .out and .err
        self.next_kill = float("inf")

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def start(self) -> None:
        self.starts += 1
        self.started_wall = time.time()
        out, err = self.out.open("a"), self.err.open("a")
        self.offsets = (out.tell(), err.tell())
        stamp = time.strftime("%H:%M:%S")
        for f in (out, err):
            f.write(f"=== {self.name} start {self.starts} at {stamp}\n")
            f.flush()
        # A session of its own: a Ctrl-C of the soak reaches the soak, which stops its workers itself.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opsearch.cli", "worker", "--storage", self.url, "--study-name", STUDY,
             "--trials", str(WORKER_TRIALS), *self.extra],
            cwd=self.workdir, env=child_env(self.workdir), stdout=out, stderr=err, start_new_session=True)
        out.close()
        err.close()

    def last_words(self) -> str:
        """Why this run ended, as its log says: the "opsearch: stopped/error" line, a traceback's last line, or the
        last line it wrote."""
        lines = []
        for path, offset in ((self.out, self.offsets[0]), (self.err, self.offsets[1])):
            with contextlib.suppress(OSError), path.open(errors="replace") as f:
                f.seek(offset)
                lines += [line.rstrip() for line in f if line.strip() and not line.startswith("=== ")]
        return exit_reason(lines)

    def note_exit(self, code: int, why: str) -> None:
        with self.err.open("a") as f:
            f.write(f"=== {self.name} pid {self.pid} exited with code {code} ({why}) at {time.strftime('%H:%M:%S')}\n")

    def stop(self, sig: signal.Signals = signal.SIGTERM, wait: float = EXIT_SECONDS) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def exit_reason(lines: list[str]) -> str:
    """The reason a worker's log gives for its end (see :meth:`Worker.last_words`)."""
    for line in reversed(lines):
        if line.startswith(("opsearch: stopped", "opsearch: error")):
            return line[:400]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback"):
            return f"traceback: {lines[-1][:400]}"
    return lines[-1][:400] if lines else "(nothing in its log)"


@dataclass
class Target:
    """One storage under soak: its study, its workers, what the soak saw and did."""

    name: str
    url: str
    trials: int
    workdir: Path
    workers: list[Worker] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    restarts: int = 0  # workers started again (after a kill or an exit)
    server: Postgres | None = None  # restarted under the workers when set
    restarter: DbRestarts | None = None
    patience_exits_meant: bool = False  # the downtime can reach the workers' storage_patience
    exits: list[Exit] = field(default_factory=list)  # workers' unasked exits
    frozen: list = field(default_factory=list)  # the snapshot taken as the database went down
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False  # its workers stopped
    seen: dict[int, str] = field(default_factory=dict)  # each COMPLETE trial as the first snapshot read it
    changed: dict[int, str] = field(default_factory=dict)  # trials seen changing between snapshots
    findings: list[Finding] = field(default_factory=list)  # found while running (workers' own exits)
    reached_s: float | None = None
    ended_s: float = 0.0
    _reader: Reader | None = None

    @property
    def reader(self) -> Reader:
        if self._reader is None:
            self._reader = Reader(self.url)
        return self._reader

    @property
    def down(self) -> bool:
        """The soak stopped the database and has not started it again yet."""
        return self.restarter is not None and not self.restarter.up.is_set()

    def freeze(self) -> list:
        """The snapshot before a restart: kept for the kills while the database is down."""
        self.frozen = self.snapshot()
        return self.frozen

    def snapshot(self) -> list:
        """Read every trial; remember each COMPLETE one as first seen, and note any that changed since."""
        trials = self.reader.trials()
        for t in trials:
            if t.state.name == "COMPLETE":
                now = frozen(t)
                first = self.seen.setdefault(t.number, now)
                if now != first and t.number not in self.changed:
                    self.changed[t.number] = differences(first, now)
        return trials


def differences(before: str, after: str | None) -> str:
    if after is None:
        return "no longer COMPLETE"
    a, b = json.loads(before), json.loads(after)
    parts = [k for k in ("values", "params") if a[k] != b[k]]
    attrs = sorted(k for k in set(a["user_attrs"]) | set(b["user_attrs"])
                   if a["user_attrs"].get(k) != b["user_attrs"].get(k))
    return ", ".join(parts + [f"user attr {k!r}" for k in attrs]) or "its JSON"


# The soak -----------------------------------------------------------------------------------------------------

def random_signals(rng: random.Random) -> Iterator[signal.Signals]:
    while True:
        yield rng.choice(SIGNALS)


def soak(targets: list[Target], *, workers: int, minutes: float, kill_every: tuple[float, float],
         rng: random.Random, signals: Iterable[signal.Signals] | None = None, max_kills: int | None = None,
         mid_trial: bool = False, max_minutes: float | None = None, restart_every: tuple[float, float] | None = None,
         down_for: tuple[float, float] = DOWN_FOR, patience: str | None = None, say: Say = print) -> None:
    """Keep ``workers`` workers per target alive, killing each at a random moment every ``kill_every`` minutes and
    starting it again, until its study holds its target and ``minutes`` passed; then stop them (SIGTERM), sweep
    what they left RUNNING and run what is still queued. ``mid_trial``: a kill that falls due waits until the worker
    is inside a trial (every parameter drawn), so that few kills are enough to cut trials off.

    ``restart_every`` (MIN, MAX minutes): the database server of each target that has one (``target.server``) is
    stopped as a crash would at a random moment in that range and started again ``down_for`` (MIN, MAX) seconds
    later. ``patience``: the workers' ``--storage-patience`` (their default when None)."""
    signals = iter(signals) if signals is not None else random_signals(rng)
    lo, hi = (60 * m for m in kill_every)
    began = time.monotonic()
    extra = ("--storage-patience", patience) if patience else ()
    patience_s = duration_seconds(patience or "10m")

    def elapsed() -> float:
        return time.monotonic() - began

    for target in targets:
        target.workers = [Worker(f"{target.name}-w{i + 1}", target.url, target.workdir, extra)
                          for i in range(workers)]
        for worker in target.workers:
            worker.start()
            worker.next_kill = elapsed() + rng.uniform(lo, hi)
        if target.server is not None and restart_every is not None:
            target.patience_exits_meant = down_for[1] >= patience_s
            target.restarter = DbRestarts(target.server, every=(60 * restart_every[0], 60 * restart_every[1]),
                                          down=down_for, rng=random.Random(rng.random()), before=target.freeze,
                                          lock=target.lock, elapsed=elapsed, name=target.name, say=say)
            target.restarter.start()
    restarting = [t.name for t in targets if t.restarter is not None]
    say(f"soak: {workers} workers on each of {', '.join(t.name for t in targets)}; killing each every "
        f"{kill_every[0]:g}-{kill_every[1]:g} min until the target and {minutes:g} min"
        + (f"; restarting the database of {', '.join(restarting)} every {restart_every[0]:g}-{restart_every[1]:g} "
           f"min, down {down_for[0]:g}-{down_for[1]:g} s (workers' storage_patience {patience_s:g} s)"
           if restarting else "")
        + f"; logs in {targets[0].workdir / 'logs'}")
    try:
        while not all(t.done for t in targets):
            for target in (t for t in targets if not t.done):
                _tend(target, elapsed, lambda: next(signals), rng, lo, hi, max_kills, mid_trial, say)
                late = max_minutes is not None and elapsed() > 60 * max_minutes
                if late and target.reached_s is None:
                    target.findings.append(Finding("target", f"{target.name}: the study did not reach its "
                                                   f"{target.trials} completed trials within {max_minutes:g} min"))
                if late or (target.reached_s is not None and elapsed() >= 60 * minutes):
                    stop_workers(target, elapsed, say)
            time.sleep(POLL_SECONDS / 5 if mid_trial else POLL_SECONDS)
    finally:
        for target in targets:  # a Ctrl-C of the soak, or an error in it: leave nothing running, the database up
            if target.restarter is not None:
                target.restarter.finish()
            for worker in target.workers:
                if worker.proc is not None and worker.proc.poll() is None:
                    worker.note_exit(worker.stop(), "SIGTERM: the soak stopped")
    with ThreadPoolExecutor(len(targets)) as pool:  # one storage's sweep need not wait for another's
        list(pool.map(lambda target: sweep_and_drain(target, say, extra), targets))


def _tend(target: Target, elapsed, next_signal, rng, lo: float, hi: float, max_kills: int | None, mid_trial: bool,
          say: Say) -> None:
    # While the soak knows the database is down it reads nothing (the reader would wait for it).
    if not target.down and target.reached_s is None and target.reader.count("COMPLETE") >= target.trials:
        target.reached_s = elapsed()
        say(f"{target.name}: the study holds its {target.trials} completed trials after {target.reached_s / 60:.1f} "
            f"min ({len(target.kills)} kills)")
    for worker in target.workers:
        if worker.proc is None:  # exited or killed while the database was down: started once it is back
            if not target.down:
                worker.start()
                target.restarts += 1
            continue
        code = worker.proc.poll()
        if code is not None:  # a worker runs WORKER_TRIALS trials: it never stops by itself
            unasked_exit(target, worker, code, elapsed, say)
            worker.proc = None
            if not target.down:
                worker.start()
                target.restarts += 1
        elif elapsed() >= worker.next_kill and (max_kills is None or len(target.kills) < max_kills):
            if mid_trial:
                trials = target.frozen if target.down else target.reader.trials()
                if not any(t.state.name == "RUNNING" and "recipe" in t.user_attrs
                           and (t.user_attrs.get("worker") or {}).get("pid") == worker.pid for t in trials):
                    continue  # not inside a trial yet: look again at the next poll
            kill(target, worker, next_signal(), elapsed, say)
            worker.next_kill = elapsed() + rng.uniform(lo, hi)


def unasked_exit(target: Target, worker: Worker, code: int, elapsed, say: Say) -> Exit:
    """Record a worker's exit the soak did not ask for, with its log's reason; a violation unless the soak meant
    it: past its storage_patience when the downtime could reach it, or unable to open the storage as it started
    while the database went down (opening a storage fails at once, by design)."""
    record = Exit(worker.name, worker.pid, code, round(elapsed(), 1), worker.last_words())
    outage = target.restarter is not None and target.restarter.down_since(worker.started_wall)
    if code == INTERRUPTED_EXIT and "storage was unreachable" in record.reason and target.patience_exits_meant:
        record.meant = "the storage stayed away past the workers' storage_patience, as the soak's downtime allows"
    elif code != 0 and "cannot be opened" in record.reason and outage:
        record.meant = "the database went down as it started: opening the storage fails at once"
    target.exits.append(record)
    worker.note_exit(code, "unasked" + (f": {record.meant}" if record.meant else ""))
    say(f"{target.name}: {worker.name} (pid {worker.pid}) exited by itself with code {code} at "
        f"{record.at_s / 60:.1f} min: {record.reason}" + (f" ({record.meant})" if record.meant else ""))
    if not record.meant:
        target.findings.append(Finding("workers", f"{target.name}: {worker.name} (pid {worker.pid}) exited by "
                                       f"itself with code {code} at {record.at_s / 60:.1f} min: {record.reason}; "
                                       f"see {worker.err}"))
    return record


def stop_workers(target: Target, elapsed, say: Say) -> None:
    """The end: the database comes up for good, then every worker gets SIGTERM (a clean stop: the trial in hand
    goes back to the queue)."""
    if target.restarter is not None:
        target.restarter.finish()
    for worker in target.workers:
        if worker.proc is None:  # exited while the database was down and never started again: nothing to stop
            continue
        pid = worker.pid
        if worker.proc.poll() is not None:  # exited by itself since the last look: judged as such
            unasked_exit(target, worker, worker.proc.returncode, elapsed, say)
            continue
        code = worker.stop(signal.SIGTERM)
        if code == -signal.SIGTERM and not any((t.user_attrs.get("worker") or {}).get("pid") == pid
                                               for t in target.reader.trials()):
            # Started seconds ago (after a kill), it had not yet set its handlers, nor run any trial: nothing to lose.
            worker.note_exit(code, "SIGTERM: the soak's end, while it was starting, before any trial of its own")
            continue
        if code != INTERRUPTED_EXIT:  # a clean stop: the trial in hand goes back to the queue
            target.findings.append(Finding("workers", f"{target.name}: {worker.name} (pid {worker.pid}) ended with "
                                           f"code {code} on SIGTERM (expected {INTERRUPTED_EXIT}): "
                                           f"{worker.last_words()}; see {worker.err}"))
        worker.note_exit(code, "SIGTERM: the soak's end")
    target.done = True
    target.ended_s = elapsed()
    say(f"{target.name}: {len(target.workers)} workers stopped by SIGTERM at {target.ended_s / 60:.1f} min")


def kill(target: Target, worker: Worker, sig: signal.Signals, elapsed, say: Say) -> Kill:
    """Snapshot the storage, send ``sig``, wait for the worker to exit, start it again. While the database is down
    the snapshot is the one taken as it went down, the worker has as long as the database stays down and
    EXIT_SECONDS more to exit, and it starts again once the database is back."""
    with target.lock:  # the database is up and stays so until the signal is sent, or was stopped after `frozen`
        down = target.down
        trials = target.frozen if down else target.snapshot()
        pid = worker.pid
        cut_off = [t.number for t in trials if t.state.name == "RUNNING"
                   and (t.user_attrs.get("worker") or {}).get("pid") == pid]
        record = Kill(worker.name, pid, sig.name, round(elapsed(), 1), cut_off=cut_off, db_down=down)
        sent = time.monotonic()
        record.at_wall = time.time()
        worker.proc.send_signal(sig)
    record.exit_code = _wait_exit(target, worker)
    if record.exit_code is None:
        worker.proc.kill()
        record.exit_code = worker.proc.wait()
        target.findings.append(Finding("workers", f"{target.name}: {worker.name} (pid {pid}) was still running "
                                       f"{EXIT_SECONDS} s after {sig.name}"
                                       + (" and the database's return" if down else "")
                                       + f": killed with SIGKILL; see {worker.err}"))
    record.exit_s = round(time.monotonic() - sent, 2)
    if sig != signal.SIGKILL:
        record.reason = worker.last_words()
    worker.note_exit(record.exit_code, f"sent {sig.name}" + (" while the database was down" if down else ""))
    target.kills.append(record)
    later = target.down
    say(f"{target.name}: {sig.name} to {worker.name} (pid {pid}) at {record.at_s / 60:.1f} min"
        + (" (database down)" if down else "")
        + (f", running trial {', '.join(map(str, cut_off))}" if cut_off else "")
        + f"; exited with code {record.exit_code} in {record.exit_s:.1f} s; "
        + ("starts again once the database is back" if later else "started again"))
    if later:
        worker.proc = None  # _tend starts it once the database is up
    else:
        worker.start()
        target.restarts += 1
    return record


def _wait_exit(target: Target, worker: Worker) -> int | None:
    """The worker's exit code, or None if it is still running EXIT_SECONDS after the signal and after the
    database's return (a worker may need the database to store its interrupted trial)."""
    deadline = time.monotonic() + EXIT_SECONDS
    while True:
        try:
            return worker.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            if target.down:
                deadline = max(deadline, time.monotonic() + EXIT_SECONDS)
            elif time.monotonic() >= deadline:
                return None


def _cli(target: Target, name: str, *args: str, timeout: float = 1800) -> int:
    logs = target.workdir / "logs"
    with open(logs / f"{target.name}-{name}.out", "w") as out, open(logs / f"{target.name}-{name}.err", "w") as err:
        try:
            return subprocess.run([sys.executable, "-m", "opsearch.cli", *args], cwd=target.workdir,
                                  env=child_env(target.workdir), stdout=out, stderr=err, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return -1


def sweep_and_drain(target: Target, say: Say = print, extra: tuple[str, ...] = ()) -> None:
    """One worker that runs no trial sweeps the trials killed workers left RUNNING (queuing them again); one more
    runs whatever is still queued."""
    common = ("worker", "--storage", target.url, "--study-name", STUDY, *extra)
    for attempt in range(3):
        name = f"sweep{attempt + 1}"
        code = _cli(target, name, *common, "--trials", "0")
        if code != 0:
            target.findings.append(Finding("workers", f"{target.name}: the sweeping worker exited with code {code}: "
                                           f"see {target.workdir / 'logs' / f'{target.name}-{name}.err'}"))
        running = [t for t in target.reader.trials() if t.state.name == "RUNNING"]
        # A trial killed before it said whose it is is swept only once it is ORPHAN_SECONDS old.
        young = [t for t in running if "worker" not in t.user_attrs and t.datetime_start is not None]
        if not young:
            break
        oldest = min(t.datetime_start for t in young)
        wait = ORPHAN_SECONDS + 1 - (time.time() - oldest.timestamp())
        say(f"{target.name}: {len(young)} RUNNING trial(s) that never said whose they are: sweeping again in "
            f"{max(wait, 0):.0f} s")
        time.sleep(max(wait, 0))
    waiting = target.reader.count("WAITING")
    if waiting:
        say(f"{target.name}: {waiting} trial(s) still queued (retries, presets): one worker runs them")
        code = _cli(target, "drain", *common, "--trials", str(waiting))
        if code != 0:
            target.findings.append(Finding("workers", f"{target.name}: the draining worker exited with code {code}: "
                                           f"see {target.workdir / 'logs' / f'{target.name}-drain.err'}"))


# The checks ---------------------------------------------------------------------------------------------------

def reason_kind(reason: str) -> str:
    """A reason with its numbers blanked, for counting."""
    return re.sub(r"\b\d+(\.\d+)?\b", "N", reason).split(" (")[0][:80]


@dataclass
class Outcome:
    """One storage's figures and violations."""

    storage: str
    workers: int
    minutes: float
    kills: dict[str, int]
    worker_restarts: int  # workers started again after a kill or an exit
    db_restarts: int
    db_down_s: float  # seconds the database was down, in all
    target: int
    completed: int
    failed: int
    failed_reasons: dict[str, int]
    pruned: int
    pruned_reasons: dict[str, int]
    retries: int
    same_graph: int  # completed trials that shared an earlier trial's measurement
    graph_measured_twice: int  # distinct configurations with one graph, each measured (not a violation)
    lost: list[int]
    duplicated: list[int]  # trials that measured a configuration another trial had measured
    exits: list[Exit]  # workers' unasked exits, meant or not
    log_lines: dict[str, int]  # outages and takeovers the workers' logs tell of
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings


def check(target: Target, trials: list | None = None) -> Outcome:
    """The end checks (see the module's docstring) on the study as stored now."""
    trials = target.reader.trials() if trials is None else trials
    dump_trials(trials, target.workdir / f"{target.name}-trials.json")
    by_number = {t.number: t for t in trials}
    state = {t.number: t.state.name for t in trials}
    findings = list(target.findings)
    sigint_pids = {k.pid for k in target.kills if k.signal == "SIGINT"}
    killed = {k.pid: k.signal for k in target.kills}

    def pid_of(t) -> int:
        return (t.user_attrs.get("worker") or {}).get("pid", -1)

    def today(t) -> bool:  # a trial SIGINT cut off, failed with no reason: what Ctrl-C does before the fix
        return pid_of(t) in sigint_pids and state[t.number] == "FAIL" and not t.user_attrs.get("fail_reason")

    def label(t) -> str:
        by = killed.get(pid_of(t))
        return f"trial {t.number}" + (f" (run by pid {pid_of(t)}, later sent {by})" if by else "")

    sigint_note = " (SIGINT as handled today)"

    # 1. Unchanged.
    for number, before in sorted(target.seen.items()):
        t = by_number.get(number)
        now = frozen(t) if t is not None and state[number] == "COMPLETE" else None
        if number in target.changed:
            findings.append(Finding("unchanged", f"trial {number} changed between two snapshots: "
                                    f"{target.changed[number]}"))
        elif now != before:
            findings.append(Finding("unchanged", f"trial {number}, completed before a kill, is not as it was: "
                                    f"{differences(before, now)}"))

    # 2. No configuration measured twice.
    complete = [t for t in trials if state[t.number] == "COMPLETE"]
    measured: dict[str, list[int]] = {}
    for t in complete:
        if t.user_attrs.get("same_graph_as") is None:
            key = json.dumps([t.params, t.user_attrs.get("nodes_to_exclude") or []], sort_keys=True, default=repr)
            measured.setdefault(key, []).append(t.number)
    duplicated = sorted(n for numbers in measured.values() for n in numbers[1:])
    for numbers in measured.values():
        if len(numbers) > 1:
            findings.append(Finding("measured once", f"one configuration measured by trials "
                                    f"{', '.join(map(str, numbers))}: {by_number[numbers[0]].user_attrs.get('label')}"))
    graphs = Counter(t.user_attrs.get("graph_hash") for t in complete
                     if t.user_attrs.get("same_graph_as") is None and t.user_attrs.get("graph_hash"))

    # 3. Nothing left running or queued.
    for t in trials:
        if state[t.number] in ("RUNNING", "WAITING"):
            findings.append(Finding("nothing running", f"{label(t)} is still {state[t.number]}"))

    # 4. Nothing lost; 5. nothing hidden.
    retries: dict[int, list] = {}
    for t in trials:
        if t.user_attrs.get("retry_of") is not None:
            retries.setdefault(t.user_attrs["retry_of"], []).append(t)
    running_at = {}  # trial -> (signal, wall-clock time) of the first kill that found it running
    for k in target.kills:
        for n in k.cut_off:
            running_at.setdefault(n, (k.signal, k.at_wall))
    lost: list[int] = []
    for t in trials:
        if state[t.number] != "FAIL":
            continue
        reason = t.user_attrs.get("fail_reason", "")
        again = retries.get(t.number, [])
        if not reason and not any(r.user_attrs.get("retry_reason") for r in again):
            findings.append(Finding("nothing hidden", f"{label(t)} failed with no reason stored"
                                    + (sigint_note if today(t) else ""), today(t)))
        cut = not reason or reason.startswith("interrupted")
        outside = any(text in reason for text in OUTSIDE_REASONS)
        if not cut and not outside:
            if t.number in running_at and not again:
                sig, at = running_at[t.number]
                if t.datetime_complete is None or t.datetime_complete.timestamp() >= at:
                    lost.append(t.number)
                    findings.append(Finding("nothing lost", f"{label(t)}, running when its worker got {sig}, failed "
                                            f"after the signal with a reason of its own ({reason[:100]!r}) and was "
                                            "not queued again"))
            continue  # a failure of its own (a broken model, a crash of its trial process): tried, not lost
        # What it was to measure: its parameters once all were drawn ("recipe" is stored then), else those it
        # was queued with (a preset, a retry); a sampled trial cut off while drawing had chosen nothing yet.
        drawn = configuration_of(t)
        if not again:
            if drawn:
                lost.append(t.number)
                if outside:
                    why = f"failed for a reason outside its configuration ({reason[:140]!r})"
                else:
                    why = "was cut off" + (" (popped from the queue, cut off before its parameters were drawn)"
                                           if "recipe" not in t.user_attrs else "")
                findings.append(Finding("nothing lost", f"{label(t)} {why} and its configuration was not queued "
                                        "again" + (sigint_note if today(t) else ""), today(t)))
            continue
        for r in again:
            ran = configuration_of(r)
            if drawn and ran != drawn:
                differ = {k: (drawn.get(k), (ran or {}).get(k)) for k in sorted({*drawn, *(ran or {})})
                          if drawn.get(k) != (ran or {}).get(k)}
                findings.append(Finding("nothing lost", f"trial {r.number} ({state[r.number]}), the retry of trial "
                                        f"{t.number}, runs other parameters: {differ} (theirs, the retry's); "
                                        f"trial {t.number}: {_provenance(t)}; trial {r.number}: {_provenance(r)}"))
    for k in target.kills:
        for n in k.cut_off:
            if n not in by_number:
                findings.append(Finding("nothing lost", f"trial {n}, cut off by {k.signal}, is gone from the study"))

    # 6. The target.
    if len(complete) < target.trials:
        findings.append(Finding("target", f"{len(complete)} completed trials, fewer than the target "
                                f"{target.trials}"))

    # The database restarts themselves.
    restarts = target.restarter.log if target.restarter is not None else []
    for r in restarts:
        if r.error:
            findings.append(Finding("database", f"the restart at {r.at_s / 60:.1f} min: {r.error}"))

    failed = [t for t in trials if state[t.number] == "FAIL"]
    pruned = [t for t in trials if state[t.number] == "PRUNED"]
    return Outcome(
        storage=target.name, workers=len(target.workers), minutes=round(target.ended_s / 60, 1),
        kills=dict(Counter(k.signal for k in target.kills)), worker_restarts=target.restarts,
        db_restarts=len(restarts), db_down_s=round(sum(r.down_s for r in restarts), 1), target=target.trials,
        completed=len(complete), failed=len(failed),
        failed_reasons=dict(Counter(reason_kind(t.user_attrs.get("fail_reason", "") or "(no reason)")
                                    for t in failed).most_common()),
        pruned=len(pruned),
        pruned_reasons=dict(Counter(reason_kind(t.user_attrs.get("fail_reason", "") or "(no reason)")
                                    for t in pruned).most_common()),
        retries=sum(len(v) for v in retries.values()),
        same_graph=sum(1 for t in complete if t.user_attrs.get("same_graph_as") is not None),
        graph_measured_twice=sum(n - 1 for n in graphs.values() if n > 1), lost=lost, duplicated=duplicated,
        exits=list(target.exits), log_lines=log_lines(target), findings=findings)


# What the workers' logs tell: each a line's beginning or a phrase in it.
LOG_LINES = {"storage unreachable": "storage unreachable since", "storage reachable again": "storage reachable again",
             "marked failed by another worker while away": "by another worker while the storage was away",
             "past storage_patience": "storage was unreachable for", "traceback": "Traceback (most recent call last)"}


def log_lines(target: Target) -> dict[str, int]:
    """How often the workers' logs (theirs, the sweep's and the drain's) say each of LOG_LINES."""
    counts = dict.fromkeys(LOG_LINES, 0)
    for path in sorted((target.workdir / "logs").glob(f"{target.name}-*")):
        if path.name.endswith("create.log"):
            continue
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace")
            for name, phrase in LOG_LINES.items():
                counts[name] += text.count(phrase)
    return counts


def _provenance(trial) -> dict:
    """Where a trial's configuration came from, for a finding about it."""
    keys = ("retry_of", "retry_reason", "instead_of", "preset", "interrupted", "repeat_of", "fail_reason", "worker")
    return {"has_recipe": "recipe" in trial.user_attrs, "fixed_params": trial.system_attrs.get("fixed_params"),
            **{k: trial.user_attrs[k] for k in keys if k in trial.user_attrs}}


def dump_trials(trials: list, path: Path) -> None:
    """Every trial as stored at the end (state, parameters, provenance), kept to look into a finding afterwards."""
    rows = [{"number": t.number, "state": t.state.name, "params": t.params, "values": t.values,
             "start": str(t.datetime_start), "complete": str(t.datetime_complete), **_provenance(t)}
            for t in sorted(trials, key=lambda t: t.number)]
    path.write_text(json.dumps(rows, indent=1, default=str))


# The summary --------------------------------------------------------------------------------------------------

def summary(outcomes: list[Outcome]) -> str:
    head = ["storage", "workers", "minutes", "kills", "SIGKILL", "SIGINT", "db restarts", "s down", "completed",
            "failed", "pruned", "lost", "duplicated"]
    rows = [[o.storage, str(o.workers), f"{o.minutes:.1f}", str(sum(o.kills.values())), str(o.kills.get("SIGKILL", 0)),
             str(o.kills.get("SIGINT", 0)), str(o.db_restarts), f"{o.db_down_s:.0f}", f"{o.completed}/{o.target}",
             str(o.failed), str(o.pruned), ", ".join(map(str, o.lost)) if o.lost else "0",
             ", ".join(map(str, o.duplicated)) if o.duplicated else "0"] for o in outcomes]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in [head, *rows]]
    for o in outcomes:
        lines.append(f"{o.storage}: {o.retries} retries of cut-off trials; {o.same_graph} completed trials shared an "
                     f"earlier trial's graph and measurement; {o.graph_measured_twice} graphs measured again under "
                     f"another configuration; {o.worker_restarts} worker restarts")
        for kind, counts in (("failed", o.failed_reasons), ("pruned", o.pruned_reasons)):
            for reason, n in counts.items():
                lines.append(f"  {kind} {n:4d}  {reason}")
        if o.db_restarts or any(o.log_lines.values()):
            lines.append("  workers' logs: " + "; ".join(f"{name}: {n}" for name, n in o.log_lines.items()))
        lines.append(f"  workers' unasked exits: {len(o.exits)}" + (" (none)" if not o.exits else ""))
        for e in o.exits:
            lines.append(f"    {e.worker} pid {e.pid} code {e.code} at {e.at_s / 60:.1f} min: {e.reason[:160]}"
                         + (f" [meant: {e.meant}]" if e.meant else " [VIOLATION]"))
    findings = [(o.storage, f) for o in outcomes for f in o.findings]
    if not findings:
        lines.append("checks: every trial completed before a kill or a database restart unchanged; no configuration "
                     "measured twice (duplicated: 0); nothing left RUNNING; the target reached; lost: 0")
    else:
        lines.append(f"VIOLATIONS ({len(findings)}):")
        lines += [f"  {storage} [{f.check}] {f.message}" for storage, f in findings]
        today = sum(f.sigint_today for _, f in findings)
        if today:
            lines.append(f"{today} of them only because of today's SIGINT handling (a Ctrl-C marks the trial FAIL "
                         "with no reason and does not queue it again); the fix under way makes them pass.")
    return "\n".join(lines)


def write_record(path: Path, targets: list[Target], outcomes: list[Outcome], args: dict) -> None:
    record = {"args": args, "storages": [
        {**{k: v for k, v in asdict(o).items() if k != "findings"},
         "lost_count": len(o.lost), "duplicated_count": len(o.duplicated),
         "findings": [asdict(f) for f in o.findings], "kill_log": [asdict(k) for k in t.kills],
         "restart_log": [asdict(r) for r in (t.restarter.log if t.restarter is not None else [])],
         "exit_codes_after": {s: dict(Counter(str(k.exit_code) for k in t.kills if k.signal == s)) for s in
                              ("SIGKILL", "SIGINT")}}
        for t, o in zip(targets, outcomes, strict=True)]}
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")


# The command --------------------------------------------------------------------------------------------------

def _pair(flag: str, text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag} {text!r}: give MIN,MAX") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"{flag} {text!r}: give MIN,MAX with 0 < MIN <= MAX")
    return lo, hi


def _minutes_pair(text: str) -> tuple[float, float]:
    return _pair("--kill-every", text)


def _restart_pair(text: str) -> tuple[float, float] | None:
    return None if text.strip().lower() in ("off", "none", "0", "no") else _pair("--restart-every", text)


def _seconds_pair(text: str) -> tuple[float, float]:
    return _pair("--down-for", text)


def _duration(text: str) -> str:
    from opsearch.config import check_duration
    from opsearch.errors import ConfigError

    try:
        check_duration("--storage-patience", text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


STORAGE_NAMES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql", "pg": "postgresql"}


def storage_names(text: str) -> list[str]:
    """--storages: sqlite, postgresql (postgres, pg) or both ("both", or the two with a comma)."""
    names: list[str] = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part in ("both", "all"):
            found = ["sqlite", "postgresql"]
        elif part in STORAGE_NAMES:
            found = [STORAGE_NAMES[part]]
        else:
            raise argparse.ArgumentTypeError(f"--storages: {part!r} is neither sqlite nor postgresql")
        names += [n for n in found if n not in names]
    if not names:
        raise argparse.ArgumentTypeError("--storages: name sqlite, postgresql or both")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--minutes", type=float, default=20, help="at least this long (default 20)")
    parser.add_argument("--workers", type=int, default=4, help="workers per storage (default 4)")
    parser.add_argument("--storages", type=storage_names, default=["sqlite", "postgresql"],
                        help="sqlite, postgresql (or postgres) or both (default: both)")
    parser.add_argument("--kill-every", type=_minutes_pair, default=(1.0, 3.0), metavar="MIN,MAX",
                        help="kill each worker at a random moment every MIN-MAX minutes (default 1,3)")
    parser.add_argument("--restart-every", type=_restart_pair, default=RESTART_EVERY, metavar="MIN,MAX",
                        help="PostgreSQL: stop the server as a crash would (pg_ctl -m immediate) at a random moment "
                             "every MIN-MAX minutes and start it again; 'off' for never (default "
                             f"{RESTART_EVERY[0]:g},{RESTART_EVERY[1]:g})")
    parser.add_argument("--down-for", type=_seconds_pair, default=DOWN_FOR, metavar="MIN,MAX",
                        help="keep the stopped server down a random MIN-MAX seconds (default "
                             f"{DOWN_FOR[0]:g},{DOWN_FOR[1]:g}); below --storage-patience, no worker should exit for "
                             "its outage; from it on, such exits are meant")
    parser.add_argument("--storage-patience", type=_duration, default=PATIENCE, metavar="DURATION",
                        help=f"the workers' --storage-patience (default {PATIENCE})")
    parser.add_argument("--trials", type=int, default=None,
                        help="each study's target of completed trials, a floor (default: 10 per minute of --minutes)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kills, their signals, the restarts and the "
                        "studies")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop, failing, after this long (default: 2 x --minutes + 15)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a new one under $TMPDIR)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers: at least 1")
    trials = args.trials or max(10, round(10 * args.minutes))
    max_minutes = args.max_minutes or 2 * args.minutes + 15
    workdir = (args.out or Path(tempfile.mkdtemp(prefix="opsearch-soak-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    restarts = args.restart_every if "postgresql" in args.storages else None
    patience_s = duration_seconds(args.storage_patience)
    print(f"soak: work folder {workdir}; {args.workers} workers per storage on {', '.join(args.storages)}; "
          f"{args.minutes:g} min, kills every {args.kill_every[0]:g}-{args.kill_every[1]:g} min"
          + (f", PostgreSQL restarts every {restarts[0]:g}-{restarts[1]:g} min down {args.down_for[0]:g}-"
             f"{args.down_for[1]:g} s (storage_patience {patience_s:g} s)" if restarts else "")
          + f", target {trials} completed trials per study, seed {args.seed}")
    if restarts and args.down_for[1] >= patience_s:
        print(f"soak: the downtime can reach the workers' storage_patience ({patience_s:g} s): workers exiting 130 "
              "for it are meant, recorded and started again")
    model, data = make_inputs(workdir)
    with contextlib.ExitStack() as stack:
        targets: list[Target] = []
        for name in args.storages:
            server = None
            if name == "sqlite":
                url = f"sqlite:///{workdir / 'sqlite' / 'soak.db'}"
                (workdir / "sqlite").mkdir(exist_ok=True)
            else:
                try:
                    server = stack.enter_context(postgres_server())
                except NoPostgres as exc:
                    print(f"postgresql: SKIPPED, {exc}")
                    continue
                url = server.url
            settings = study_settings(url, model, data, trials=trials, seed=args.seed)
            target = create_study(name, url, workdir, settings)
            target.server = server
            targets.append(target)
        if not targets:
            print("soak: no storage to soak")
            return 1
        began = time.monotonic()
        soak(targets, workers=args.workers, minutes=args.minutes, kill_every=args.kill_every, rng=rng,
             max_minutes=max_minutes, restart_every=restarts, down_for=args.down_for,
             patience=args.storage_patience)
        outcomes = [check(t) for t in targets]
        for t in targets:
            t.reader.close()
        took = time.monotonic() - began
    write_record(workdir / "soak.json", targets, outcomes,
                 {**vars(args), "out": str(workdir), "trials": trials, "max_minutes": max_minutes,
                  "took_minutes": round(took / 60, 1)})
    print(summary(outcomes))
    print(f"soak: took {took / 60:.1f} min (the workers, the sweep, the drain and the checks); kills, restarts, "
          f"figures and violations in {workdir / 'soak.json'}; worker logs in {workdir / 'logs'}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
