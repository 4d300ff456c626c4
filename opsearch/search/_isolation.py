"""Where trials run: in a spawned child process (the default) or in this one.

A quantizer that segfaults, a graph that makes ONNX Runtime hang, or a recipe that eats the machine's
memory must cost one trial, not the study. The child runs trials one after another (it keeps its fp32
sessions warm between them); when it crashes, hangs past the time limit or grows past the memory limit,
the parent kills it, fails that trial with the reason, and starts a fresh child for the next one. The
parent alone writes to the study's storage.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from opsearch.errors import DiskFull, Interrupted, StudyStopped, TrialFailed
from opsearch.measure import WAITING_FOR_LOCK
from opsearch.search._trial import TrialJob, TrialMeasurer, TrialOutcome, TrialSetup

POLL_SECONDS = 0.1
# Phases in which the child may wait as long as it must: another process holds the machine's timing lock.
UNTIMED_PHASES = (WAITING_FOR_LOCK,)
MeasurerFactory = Callable[[TrialSetup], TrialMeasurer]


@dataclass(frozen=True)
class Limits:
    """``seconds``: per phase of a trial (quantizing, evaluating, timing). ``memory_mb``: the child's resident
    memory; None: no limit. ``start_seconds``: for a new child to import its libraries and open its sessions."""

    seconds: float
    memory_mb: float | None = None
    start_seconds: float = 600.0

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"seconds={self.seconds!r}: the time limit must be positive")
        if self.memory_mb is not None and not self.memory_mb > 0:
            raise ValueError(f"memory_mb={self.memory_mb!r}: the memory limit must be positive (or None)")


class Executor(Protocol):
    def run(self, job: TrialJob) -> TrialOutcome:
        """The trial's outcome; raises :class:`TrialFailed` with the reason when it could not be measured."""

    def close(self) -> None: ...

    def stop(self) -> None:
        """Stop at once, whatever the trial is doing (the study is being interrupted)."""


class InProcess:
    """Trials run in this process: fastest to start, but a native crash takes the study down with it."""

    def __init__(self, setup: TrialSetup, *, measurer_factory: MeasurerFactory = TrialMeasurer,
                 on_phase: Callable[[str], None] = lambda name: None) -> None:
        self.measurer = measurer_factory(setup)
        self.on_phase = on_phase

    def run(self, job: TrialJob) -> TrialOutcome:
        try:
            return self.measurer.run(job, self.on_phase)
        except MemoryError as exc:
            raise TrialFailed("ran out of memory") from exc

    def close(self) -> None:
        pass

    def stop(self) -> None:
        pass


class ChildProcess:
    """Trials run in a spawned child, within :class:`Limits`; see the module's docstring."""

    def __init__(self, setup: TrialSetup, *, limits: Limits, measurer_factory: MeasurerFactory = TrialMeasurer,
                 on_phase: Callable[[str], None] = lambda name: None) -> None:
        self.setup, self.limits, self.measurer_factory, self.on_phase = setup, limits, measurer_factory, on_phase
        self._process = None
        self._conn = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def run(self, job: TrialJob) -> TrialOutcome:
        if self._process is None or not self._process.is_alive():
            self._start()
        self._conn.send(job)
        return self._wait("running the trial")

    def close(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                try:
                    self._conn.send(None)  # asks the child to leave its loop
                    self._process.join(timeout=5)
                except (BrokenPipeError, OSError):
                    pass
            self._kill()

    def stop(self) -> None:
        self._kill()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent_end, child_end = ctx.Pipe()
        self._process = ctx.Process(target=_child_main, args=(child_end, self.setup, self.measurer_factory),
                                    name="opsearch-trial", daemon=True)
        self._process.start()
        child_end.close()
        self._conn = parent_end
        message = self._wait("starting the trial process", self.limits.start_seconds)
        if message != "ready":
            self._kill()
            raise TrialFailed(f"the trial process did not start: {message}")

    def _wait(self, phase: str, seconds: float | None = None):
        """The child's answer; kills it and raises TrialFailed on a crash, a hang or too much memory."""
        seconds = self.limits.seconds if seconds is None else seconds
        deadline = time.monotonic() + seconds
        while True:
            if self._conn.poll(POLL_SECONDS):
                try:
                    kind, payload = self._conn.recv()
                except (EOFError, OSError):
                    raise TrialFailed(self._death_reason(phase)) from None
                if kind == "phase":
                    phase = payload
                    self.on_phase(phase)
                    untimed = phase.startswith(UNTIMED_PHASES)
                    seconds = self.limits.seconds
                    deadline = float("inf") if untimed else time.monotonic() + seconds
                elif kind in ("ok", "ready"):
                    return payload
                elif kind == "failed":
                    raise TrialFailed(payload)
                elif kind == "stopped":  # the disk filled up under the trial: the study stops, the trial waits
                    name, reason = payload
                    raise {"DiskFull": DiskFull}.get(name, Interrupted)(reason)
                else:  # "fatal": the child's state cannot be trusted any more
                    self._kill()
                    raise TrialFailed(payload)
            elif not self._process.is_alive():
                raise TrialFailed(self._death_reason(phase))
            if time.monotonic() > deadline:
                self._kill()
                raise TrialFailed(f"hung: no progress for {seconds:g} s while {phase} (the time limit, "
                                  "trial_timeout); the process was killed")
            used = self._resident_mb()
            if self.limits.memory_mb is not None and used > self.limits.memory_mb:
                self._kill()
                raise TrialFailed(f"out of memory: the trial used {used:.0f} MB while {phase}, over the limit of "
                                  f"{self.limits.memory_mb:.0f} MB (trial_memory_mb); the process was killed")

    def _resident_mb(self) -> float:
        import psutil

        try:
            return psutil.Process(self._process.pid).memory_info().rss / 2**20
        except psutil.Error:
            return 0.0

    def _death_reason(self, phase: str) -> str:
        self._process.join(timeout=5)
        code = self._process.exitcode
        self._kill()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = {"SIGSEGV": "a fault inside native code: the quantizer or ONNX Runtime",
                    "SIGKILL": "killed from outside, often by the system's out-of-memory killer",
                    "SIGABRT": "native code aborted"}.get(name, "")
            return f"crashed with {name} while {phase}" + (f" ({hint})" if hint else "")
        return f"the trial process exited with code {code} while {phase}"

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None


def _child_main(conn, setup: TrialSetup, measurer_factory: MeasurerFactory) -> None:
    _die_with_parent()
    # Ctrl-C reaches the whole process group; the parent decides what an interrupt means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from opsearch._logging import quiet_libraries

    quiet_libraries()
    try:
        measurer = measurer_factory(setup)
    except Exception as exc:
        conn.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", "ready"))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        try:
            outcome = measurer.run(job, lambda name: conn.send(("phase", name)))
        except TrialFailed as exc:
            conn.send(("failed", str(exc)))
        except StudyStopped as exc:
            conn.send(("stopped", (type(exc).__name__, exc.reason)))
        except MemoryError:
            conn.send(("fatal", "out of memory: an allocation failed inside the trial"))
            return
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            conn.send(("failed", f"{type(exc).__name__}: {exc} (at {os.path.basename(where.filename)}:{where.lineno})"))
        else:
            conn.send(("ok", outcome))


def _die_with_parent() -> None:
    """On Linux, the kernel kills the child when the parent dies (say, by kill -9), so no orphan keeps timing."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the call
            os._exit(1)
    except (OSError, AttributeError):
        pass
