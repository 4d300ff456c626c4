"""opsearch.measure.LoadMeter: what else the CPUs did while timing ran, with this process left out."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from opsearch.measure import LoadMeter


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _quiet_window() -> float:
    """Other processes' load with this one asleep: what the machine does anyway, to compare against."""
    with LoadMeter() as meter:
        time.sleep(1.5)
    assert meter.load is not None
    return meter.load.other_cores


def test_another_process_busy_is_counted() -> None:
    anyway = _quiet_window()
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 5\n"
                             "while time.monotonic() < end: pass"])
    try:
        time.sleep(0.3)  # let it start
        with LoadMeter() as meter:
            time.sleep(1.5)
    finally:
        busy.kill()
        busy.wait()
    assert meter.load is not None
    # One core spinning, give or take the kernel's 10 ms ticks; on a busy machine it may get less than a core.
    assert meter.load.other_cores - anyway > 0.6 or meter.load.other_cores > 1.6
    assert meter.load.seconds == pytest.approx(1.5, abs=0.3)


def test_this_process_busy_is_not_counted() -> None:
    anyway = _quiet_window()
    with LoadMeter() as meter:
        _spin(1.5)  # the measurement's own work
    assert meter.load is not None
    assert meter.load.other_cores - anyway < 0.5  # counting its own spin would add about 1.0


def test_a_window_too_short_to_count_gives_no_load() -> None:
    with LoadMeter() as meter:
        pass
    assert meter.load is None
