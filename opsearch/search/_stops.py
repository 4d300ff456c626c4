"""Stopping a study cleanly: SIGINT and SIGTERM become :class:`~opsearch.errors.Interrupted` (a full disk,
:class:`~opsearch.errors.DiskFull`, comes from :mod:`opsearch._files`); either way the running trial goes back to
the head of the queue."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from opsearch.errors import Interrupted


class _Delivery:
    """While Optuna stores a trial's outcome, a stop waits: raised there, it would leave Optuna's bookkeeping half
    done (the trial RUNNING, an UnboundLocalError in its place)."""

    held = False
    pending: str | None = None


def hold_stops() -> None:
    """From here until :func:`deliver_stops`, a signal is noted, not raised."""
    _Delivery.held = True


def deliver_stops() -> None:
    """Raise the stop a signal asked for while stops were held, if any."""
    _Delivery.held = False
    pending, _Delivery.pending = _Delivery.pending, None
    if pending is not None:
        raise Interrupted(pending)


def release_stops() -> None:
    """Stops are raised again as they come (a pending one is dropped: the study is ending anyway)."""
    _Delivery.held, _Delivery.pending = False, None


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs (in the main thread), SIGINT and SIGTERM raise :class:`Interrupted` instead of killing the
    process or raising KeyboardInterrupt inside Optuna, which would record the running trial as failed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame) -> None:
        if _Delivery.held:
            _Delivery.pending = signal.Signals(signum).name
            return
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
