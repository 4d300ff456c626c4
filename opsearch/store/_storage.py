"""Where a study lives: an Optuna storage opened from a URL, and the cache folder beside it.

- ``sqlite:///path.db``: one machine, a few workers (a busy timeout lets them share the file).
- ``journal:path.log``: Optuna's journal file, appended to under a file lock; for NFS-like folders.
- any other SQLAlchemy URL (``postgresql://user@host/db``): many workers on many machines.

Database storages get Optuna's heartbeat: a trial whose worker stops beating is failed after a grace
period and its configuration queued again, on whichever worker comes next.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import optuna

from opsearch.config import DEFAULT_RUN_DIR
from opsearch.errors import StudyError
from opsearch.store._patience import patient_storage
from opsearch.store._records import TrialRecord, configuration_of, trial_attrs

JOURNAL_PREFIX = "journal:"
HEARTBEAT_SECONDS = 30
# A worker silent this long is taken for dead: well above the heartbeat, so a busy machine is not mistaken.
GRACE_SECONDS = 180


def file_of(storage: str) -> Path | None:
    """The file a SQLite or journal storage writes to; None for a database server."""
    if storage.startswith("sqlite:///"):
        return Path(storage[len("sqlite:///"):]).expanduser()
    if storage.startswith(JOURNAL_PREFIX):
        rest = storage[len(JOURNAL_PREFIX):]
        return Path(rest[2:] if rest.startswith("//") else rest).expanduser()
    return None


def cache_dir_for(storage: str, study_name: str) -> Path:
    """Exports and trial models live next to a study's file, else under ./opsearch-runs."""
    path = file_of(storage)
    return (path.parent if path is not None else DEFAULT_RUN_DIR) / f"{study_name}.cache"


# How long a database storage is waited for when it goes away, unless the study says (storage_patience).
DEFAULT_PATIENCE = 600.0

# What --storage takes, for the message that refuses anything else.
SCHEMES = "sqlite:///FILE.db, journal:FILE.log, or a database URL such as postgresql://USER@HOST/DB"


def open_storage(storage: str, *, create: bool = True, patience: float = DEFAULT_PATIENCE,
                 say: Callable[[str], None] | None = None) -> optuna.storages.BaseStorage:
    """The storage a URL names. ``create=False`` (the read-only commands): a file that is not there is an error,
    and nothing is created, not even its folder. A database storage, once open, waits up to ``patience`` seconds
    for a database that goes away (``store._patience``), saying so through ``say``."""
    path = file_of(storage)
    if path is not None:
        if create:
            _check_writable(storage, path)
        elif not path.is_file():
            here = sorted(p.name for p in path.parent.glob("*.db")) if path.parent.is_dir() else []
            raise StudyError(f"storage {storage!r}: there is no file {str(path)!r}"
                             + (f" (the folder holds {', '.join(here)})" if here else "")
                             + ". Check the path; `opsearch run` prints its study's --storage when it ends.")
    elif "://" not in storage:
        raise StudyError(f"storage {storage!r} is not a storage URL: give {SCHEMES}.")
    if path is not None and storage.startswith("sqlite:///") and path.is_file() and path.stat().st_size:
        _check_sqlite_file(storage, path)
    if storage.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    heartbeat = {"heartbeat_interval": HEARTBEAT_SECONDS, "grace_period": GRACE_SECONDS,
                 _stale_callback_argument(): _queue_again}
    if storage.startswith("sqlite:///"):
        # A busy timeout lets workers, a report and a running study share the file.
        backend = optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 60}}, **heartbeat)
        _lock_whole_transactions(backend.engine)
        return backend
    try:
        return patient_storage(storage, patience=patience, say=say, engine_kwargs={"pool_pre_ping": True},
                               **heartbeat)
    except ImportError as exc:
        raise StudyError(f"storage {storage!r} needs a database driver that is not installed ({exc}). For "
                         "PostgreSQL: pip install 'opsearch[postgres]'.") from None
    except Exception as exc:
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        if isinstance(exc, NoSuchModuleError | ArgumentError):
            scheme = storage.split("://", 1)[0]
            raise StudyError(f"storage {storage!r}: {scheme!r} is not a database opsearch can open; give "
                             f"{SCHEMES}.") from None
        raise StudyError(f"storage {storage!r} cannot be opened: {type(exc).__name__}: {exc}. Check the URL, "
                         "that the server runs and that the database exists.") from None


SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite_file(storage: str, path: Path) -> None:
    """Refuse, naming the file and what is wrong, an SQLite file that is damaged (truncated, overwritten, bits
    flipped: SQLite's own quick_check, read-only) or that holds another program's tables, before anything opens it
    for writing: a command never makes a damaged storage worse, nor builds a study on top of it."""
    import sqlite3

    def refuse(what: str, fix: str = "Restore it from a copy (`sqlite3 FILE .recover` may save what is left), or "
                                       "give a new file") -> StudyError:
        return StudyError(f"storage {storage!r}: {str(path)!r} {what}; opsearch changed nothing in it. {fix}: "
                          "--storage sqlite:///NEW.db.")

    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise refuse(f"is not an SQLite database, or its first page is damaged (it begins {header[:8]!r})")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    try:
        problems = [row[0] for row in connection.execute("PRAGMA quick_check(5)")]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise refuse(f"is damaged ({exc})") from None
    finally:
        connection.close()
    if problems != ["ok"]:
        raise refuse(f"is damaged (SQLite's check: {'; '.join(problems)[:200]})")
    if tables and "studies" not in tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise refuse(f"holds another program's tables ({shown}), no study storage", "Give opsearch a file of its own")


def _lock_whole_transactions(engine) -> None:
    """Every SQLite transaction takes the write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna hands out a queued trial by reading that it waits, then marking it running, and counts on
    ``SELECT ... FOR UPDATE`` to keep both in one locked step. SQLite has no such thing, and Python's sqlite3
    driver does not even begin the transaction before the read: two workers could both read "waiting" and
    both run the trial (4 processes asking 100 times for queued trials got 81 to 84 distinct ones). SQLAlchemy's recipe
    for the driver: it begins nothing itself, and every transaction begins IMMEDIATE.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _driver_begins_nothing(dbapi_connection, connection_record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while Optuna set up its tables reconnect with the listeners


def _stale_callback_argument() -> str:
    """Optuna 4.9 renamed the argument; older releases know only the first name."""
    import inspect

    names = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    return "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in names else "failed_trial_callback"


def load_existing(storage: str, study_name: str) -> optuna.Study:
    """A study that exists; nothing is created when it does not."""
    backend = open_storage(storage, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
    if study_name not in names:
        raise StudyError(f"no study {study_name!r} in {storage!r}; the studies there are {names or 'none'}. "
                         "Start one with `opsearch run`.")
    return optuna.load_study(study_name=study_name, storage=backend)


def _check_writable(storage: str, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A probe of its own: workers that start together must not remove each other's.
        with tempfile.TemporaryFile(dir=path.parent, prefix=f".{path.name}.write-test-"):
            pass
        if path.exists() and not path.is_file():
            raise IsADirectoryError(21, "is a folder")
    except OSError as exc:
        blocking = next((p for p in path.parents if p.is_file()), None)
        why = f"{str(blocking)!r} is a file, not a folder" if blocking is not None else exc.strerror
        raise StudyError(f"storage {storage!r}: cannot write {str(path)!r} ({why}). Choose a place you can write "
                         "to, e.g. --storage sqlite:///./study.db") from None


def queue_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str) -> None:
    """Queue a trial that was cut off (its configuration, its preset name, whether it is a starting point) to be
    tried again, with its whole configuration (``configuration_of``: the parameters a queued trial had drawn so far
    are only some of it, and a retry given those alone would draw the rest afresh); a sampled trial cut off before
    its configuration was chosen is not queued."""
    params = configuration_of(trial)
    if params:
        record = TrialRecord.of(trial)
        extra = {"preset": record.preset} if record.preset else {}
        if record.starting is not None:
            extra["starting"] = record.starting
        study.enqueue_trial(params, user_attrs=trial_attrs(retry_of=trial.number, retry_reason=reason, **extra))


def _queue_again(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna failed a trial whose worker stopped beating: try its configuration again."""
    queue_retry(study, trial, "its worker stopped sending heartbeats")
