"""Stopping a study cleanly: SIGINT and SIGTERM become :class:`~opsearch.errors.Interrupted` (a full disk,
:class:`~opsearch.errors.DiskFull`, comes from :mod:`opsearch._files`); either way the running trial goes back to
the head of the queue."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from opsearch.errors import Interrupted


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs (in the main thread), SIGINT and SIGTERM raise :class:`Interrupted` instead of killing the
    process or raising KeyboardInterrupt inside Optuna, which would record the running trial as failed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
