"""A database storage that outlasts the database going away: a server restarted for maintenance, a dropped
connection. Every storage call that loses its connection is tried again, every few seconds, with one line when the
storage goes and one when it comes back; the running trial is kept, and stored once the database is back. A storage
away longer than ``patience`` seconds stops the study as an interrupted one stops (exit code 130), and ``opsearch
resume`` continues it: a trial left running is found stale by its missing heartbeats and queued again.

SQLite files have no connection to lose; this is for server databases (PostgreSQL, MySQL)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import sys
import time
from collections.abc import Callable

import optuna

from opsearch.errors import StorageUnreachable, StudyStopped

# How long to wait between tries while the database is away.
RETRY_SECONDS = 2.0


def connection_lost(exc: BaseException) -> bool:
    """Whether an error (or what caused it: Optuna wraps the driver's errors) is a lost or refused connection, as
    opposed to a bad query."""
    from sqlalchemy import exc as sa

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sa.OperationalError | sa.InterfaceError) or (
                isinstance(exc, sa.DBAPIError) and exc.connection_invalidated):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _stop_within(exc: BaseException) -> StudyStopped | None:
    """The stop (a signal's ``Interrupted``) an error was raised while handling, if any. A signal's handler raises
    where the process happens to be, possibly inside the database driver; the driver's cleanup then fails on the
    half-used connection and its error replaces the stop, which must not be lost: the trial would be failed
    instead of put back."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StudyStopped):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _patient(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return self._patiently(method, *args, **kwargs)

    return call


class _PatientCalls(optuna.storages.RDBStorage):
    """RDBStorage with every call that reads or writes the study wrapped in ``_patiently`` (below)."""


# Optuna's cached storage calls these of RDBStorage's own methods too, beside the public ones.
_CALLED_FROM_OUTSIDE = {"_create_new_trial", "_get_best_trial_id", "_get_stale_trial_ids", "_get_trials",
                        "_set_trial_param"}
for _name, _method in vars(optuna.storages.RDBStorage).items():
    if ((not _name.startswith("_") or _name in _CALLED_FROM_OUTSIDE) and inspect.isfunction(_method)
            and _name != "record_heartbeat"):
        setattr(_PatientCalls, _name, _patient(_method))


class PatientRDBStorage(_PatientCalls):
    """Optuna's RDBStorage whose calls wait for a database that went away (see the module's docstring)."""

    patience: float = 600.0
    say: Callable[[str], None] = staticmethod(_stderr)
    _lost_at: float | None = None  # when the storage went, while it is away (shared by the calls that wait)
    _back_at: float = -math.inf  # when it was last found away or back: stale trials are not judged soon after
    _beating: int | None = None  # the trial whose heartbeat this process records

    def _patiently(self, method, *args, **kwargs):
        while True:
            try:
                result = method(self, *args, **kwargs)
            except Exception as exc:
                stop = _stop_within(exc)
                if stop is not None:  # a stop (Ctrl-C) landed inside the driver, whose cleanup then failed
                    self._fresh_connections()
                    raise stop from None
                if not connection_lost(exc):
                    raise
                self._wait()
                continue
            if self._lost_at is not None:
                self.say(f"storage reachable again after {time.time() - self._lost_at:.0f} s; going on")
                self._lost_at = None
                self._back_at = time.time()
                self._beat_now()
            return result

    def _wait(self) -> None:
        now = time.time()
        self._back_at = now
        if self._lost_at is None:
            self._lost_at = now
            self.say(f"storage unreachable since {time.strftime('%H:%M:%S', time.localtime(now))}, retrying every "
                     f"{RETRY_SECONDS:.0f} s for up to {self.patience:.0f} s (storage_patience); the running trial "
                     "is kept")
        if now - self._lost_at >= self.patience:
            raise StorageUnreachable(f"the storage was unreachable for {now - self._lost_at:.0f} s (storage_patience "
                                     f"{self.patience:.0f} s)")
        time.sleep(RETRY_SECONDS)
        self._fresh_connections()

    def _fresh_connections(self) -> None:
        """The next call starts clean: no session left mid-transaction, no pooled connection to an old server or
        left mid-protocol."""
        with contextlib.suppress(Exception):
            self.scoped_session.remove()
        with contextlib.suppress(Exception):
            self.engine.dispose()

    def record_heartbeat(self, trial_id: int) -> None:
        """A beat is best effort: one the database misses is skipped (its thread never waits, nor dies), and
        remembered as an outage seen."""
        self._beating = trial_id
        try:
            super().record_heartbeat(trial_id)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            self._back_at = time.time()

    def _beat_now(self) -> None:
        """Back from an outage, this process's running trial says at once that its worker is alive, before another
        worker's sweep takes it for dead."""
        if self._beating is not None:
            with contextlib.suppress(Exception):
                super().record_heartbeat(self._beating)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """No trial is judged stale within a grace period of an outage this process saw: every worker's heartbeats
        stopped while the database was away, and the living ones need time to beat again."""
        if time.time() - self._back_at < (self.grace_period or 0) + (self.heartbeat_interval or 0):
            return []
        return super()._get_stale_trial_ids(study_id)


def patient_storage(url: str, *, patience: float, say: Callable[[str], None] | None = None,
                    **kwargs) -> PatientRDBStorage:
    """The database at ``url`` as a storage that waits up to ``patience`` seconds for it when it goes away once
    opened (opening it fails at once: a wrong URL is no outage)."""
    storage = PatientRDBStorage(url, **kwargs)
    storage.patience = patience
    if say is not None:
        storage.say = say
    return storage
