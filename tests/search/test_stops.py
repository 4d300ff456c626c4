"""A stop is never lost: raised where the signal lands, raised again after a finalizer swallowed it, and raised at
the block's end when a library turned it into an error of its own or caught it."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import pytest

from opsearch.errors import Interrupted
from opsearch.search._stops import deliver_stops, hold_stops, release_stops, stop_on_signals, stop_requested


def _signal_self(signum: int = signal.SIGTERM) -> None:
    os.kill(os.getpid(), signum)
    for _ in range(1000):  # the handler runs at the next bytecode boundaries
        pass


def test_a_signal_raises_interrupted_where_it_lands() -> None:
    with pytest.raises(Interrupted, match="SIGTERM"), stop_on_signals():
        _signal_self()
        raise AssertionError("the signal did not stop the block")
    assert stop_requested() is None  # the next block starts clean


def test_a_signal_inside_a_finalizer_is_raised_again_after_it(monkeypatch) -> None:
    hold_stops()  # left held by something before: a new block starts clean all the same

    class Finalized:
        def __del__(self) -> None:
            _signal_self()

    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", swallowed.append)
    started = time.monotonic()
    with pytest.raises(Interrupted, match="SIGTERM"), stop_on_signals():
        Finalized()  # collected at once: the signal lands in __del__, where Python would swallow an exception
        gc.collect()
        while time.monotonic() - started < 5:  # the study goes on working
            sum(range(100))
        raise AssertionError("the stop was lost in the finalizer")
    assert not swallowed  # not raised inside __del__ (Python would have printed and dropped it) ...
    assert time.monotonic() - started < 2  # ... but a moment after it, not only when the block ended


def test_a_stop_a_library_turned_into_its_own_error_is_still_a_stop() -> None:
    with pytest.raises(Interrupted, match="SIGINT") as caught, stop_on_signals():
        try:
            _signal_self(signal.SIGINT)
        except BaseException as exc:  # a library wrapping whatever it meets
            raise ValueError("could not export the model") from exc
    assert isinstance(caught.value.__cause__, ValueError)


def test_a_stop_caught_and_dropped_is_raised_when_the_block_ends() -> None:
    ran_on = []
    with pytest.raises(Interrupted), stop_on_signals():
        with stop_on_signals():  # blocks nest: only the outermost raises what was dropped
            try:
                _signal_self()
            except BaseException:
                pass
        ran_on.append(True)
    assert ran_on


def test_a_held_stop_waits_for_delivery() -> None:
    with pytest.raises(Interrupted), stop_on_signals():
        hold_stops()
        _signal_self()
        assert stop_requested() == "SIGTERM"  # noted, not raised
        deliver_stops()
        raise AssertionError("deliver_stops did not raise the held stop")
    release_stops()


def test_without_a_signal_the_block_ends_normally() -> None:
    with stop_on_signals():
        value = 1
    assert value == 1 and stop_requested() is None
