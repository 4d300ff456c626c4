"""Stopping a study cleanly: SIGINT and SIGTERM become :class:`~opsearch.errors.Interrupted` (a full disk,
:class:`~opsearch.errors.DiskFull`, comes from :mod:`opsearch._files`); either way the running trial goes back to
the head of the queue.

A stop must never be lost. Python runs a signal handler wherever the main thread happens to be, and an exception
raised there does not always reach the study: in a finalizer (``__del__``) or a weakref callback, as the garbage
collector runs them, Python drops it; and a library may turn it into an error of its own. So every stop is noted
before it is raised, a stop Python dropped is raised again a moment later, and when the study's block ends, by
returning or by any error, a noted stop is what it ends with.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from opsearch.errors import Interrupted

_REDELIVER_S = 0.05


class _Delivery:
    """The stops of the running block. While Optuna stores a trial's outcome a stop is held: raised there, it would
    leave Optuna's bookkeeping half done (the trial RUNNING, an UnboundLocalError in its place)."""

    held = False
    pending: str | None = None
    requested: str | None = None  # the first signal of this block, raised or not
    depth = 0


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
    """Stops are raised again as they come (a pending one is not raised here; the block's end raises it)."""
    _Delivery.held, _Delivery.pending = False, None


def stop_requested() -> str | None:
    """The signal's name if one asked the running block to stop, else None."""
    return _Delivery.requested


def _redeliver(name: str) -> None:
    """Send the signal again a moment later, to the main thread itself (a signal another thread took would not wake
    the main thread from a sleep)."""
    timer = threading.Timer(_REDELIVER_S, signal.pthread_kill, (threading.main_thread().ident, signal.Signals[name]))
    timer.daemon = True
    timer.start()


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs (in the main thread), SIGINT and SIGTERM raise :class:`Interrupted` instead of killing the
    process or raising KeyboardInterrupt inside Optuna, which would record the running trial as failed. Blocks
    nest; the outermost one raises a stop that was noted but never surfaced (see the module's docstring)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame) -> None:
        name = signal.Signals(signum).name
        _Delivery.requested = _Delivery.requested or name
        if _Delivery.held:
            _Delivery.pending = name
            return
        raise Interrupted(name)

    def swallowed(unraisable) -> None:  # raised in a finalizer or a weakref callback, where Python drops it
        if isinstance(unraisable.exc_value, Interrupted):
            _redeliver(unraisable.exc_value.reason)
            return
        previous_hook(unraisable)

    outermost = _Delivery.depth == 0
    if outermost:  # a new block starts clean: nothing held or noted by an earlier one
        _Delivery.requested, _Delivery.held, _Delivery.pending = None, False, None
        previous_hook, sys.unraisablehook = sys.unraisablehook, swallowed
    _Delivery.depth += 1
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except Exception as exc:  # a stop a library turned into an error of its own is still a stop
        if outermost and _Delivery.requested is not None:
            raise Interrupted(_Delivery.requested) from exc
        raise
    else:
        if outermost and _Delivery.requested is not None:
            raise Interrupted(_Delivery.requested)
    finally:
        _Delivery.depth -= 1
        for s, handler in previous.items():
            signal.signal(s, handler)
        if outermost:
            _Delivery.requested = None
            sys.unraisablehook = previous_hook
