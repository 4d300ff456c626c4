"""Trial workers that fail the way real quantizers and runtimes do, for crash-isolation tests.

They live in an importable module (not in a test function) because a spawned child imports them by name.
"""

from __future__ import annotations

import ctypes
import os
import time

from opsearch.search import TrialJob, TrialMeasurer, TrialOutcome


def _outcome(job: TrialJob) -> TrialOutcome:
    return TrialOutcome(graph_hash=f"graph-{job.number}", node_counts={"MatMul": 1}, quantize_seconds=0.0,
                        metrics={"accuracy": 0.9}, timing={"speedup": 2.0})


class Segfaults:
    def __init__(self, setup) -> None:
        pass

    def run(self, job: TrialJob, phase=lambda name: None) -> TrialOutcome:
        phase("quantizing")
        ctypes.string_at(0)  # reads address 0: SIGSEGV, as a native bug would
        raise AssertionError("unreachable")


class Hangs:
    def __init__(self, setup) -> None:
        pass

    def run(self, job: TrialJob, phase=lambda name: None) -> TrialOutcome:
        phase("timing")
        time.sleep(3600)
        raise AssertionError("unreachable")


class EatsMemory:
    """Grows its resident memory by 50 MB every 20 ms, touching every page, until something stops it."""

    def __init__(self, setup) -> None:
        pass

    def run(self, job: TrialJob, phase=lambda name: None) -> TrialOutcome:
        phase("evaluating")
        hoard = []
        for _ in range(400):  # 20 GB at most: the limit under test must stop it long before
            hoard.append(bytearray(os.urandom(1)) * (50 * 2**20))
            time.sleep(0.02)
        raise AssertionError("the memory limit did not stop the trial")


class Works:
    """Answers at once; records its pid in the outcome, to show which process ran the job."""

    def __init__(self, setup) -> None:
        pass

    def run(self, job: TrialJob, phase=lambda name: None) -> TrialOutcome:
        outcome = _outcome(job)
        outcome.node_counts = {"pid": os.getpid()}
        return outcome


class WaitsForLock:
    """Reports the untimed phase, then sleeps past the time limit: waiting for the timing lock is not a hang."""

    def __init__(self, setup) -> None:
        pass

    def run(self, job: TrialJob, phase=lambda name: None) -> TrialOutcome:
        phase("waiting for the timing lock")
        time.sleep(1.5)
        phase("timing")
        return _outcome(job)


class CrashesOnMarkedTrials(TrialMeasurer):
    """A real trial worker, but it segfaults on the trials listed in OPSEARCH_TEST_CRASH_TRIALS (e.g. "1,3")."""

    def run(self, job: TrialJob, phase=lambda name: None) -> TrialOutcome:
        marked = {int(n) for n in os.environ.get("OPSEARCH_TEST_CRASH_TRIALS", "").split(",") if n}
        if job.number in marked:
            phase("quantizing")
            ctypes.string_at(0)
        return super().run(job, phase)

