"""What a measurement was taken on: the CPU and its int8 instructions, the cores, the library versions, and
what else the CPUs were doing meanwhile."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from opsearch.measure._sessions import physical_cores

# CPU flags that decide which int8 kernels ONNX Runtime can use.
INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "asimddp", "i8mm")
LIBRARIES = ("opsearch", "onnxruntime", "onnx", "optimum", "optimum-onnx", "transformers", "torch", "optuna",
             "datasets", "evaluate", "numpy", "scikit-learn")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in INT8_FLAGS if flag in present]
    except OSError:
        pass
    return []


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def fingerprint(threads: dict | None = None) -> dict:
    """A JSON-ready description of this machine (and the thread settings timing ran with)."""
    import onnxruntime

    return {
        "onnxruntime": onnxruntime.__version__,
        **({"threads": threads} if threads else {}),
        "cpu": cpu_model(),
        "int8_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def machine_id(print_: dict) -> str:
    """A short, stable name for a fingerprint: equal machines (and thread settings), equal ids."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(print_, sort_keys=True).encode()).hexdigest()[:10]


def fingerprint_changes(stored: dict, current: dict) -> list[str]:
    """What differs between two fingerprints, as 'key: old -> new' lines."""
    return [f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(stored) | set(current))
            if stored.get(k) != current.get(k)]


def default_lock_path() -> Path:
    """One lock file per machine (``OPSEARCH_LOCK_DIR`` moves it), shared by every study and worker."""
    import tempfile

    return Path(os.environ.get("OPSEARCH_LOCK_DIR", tempfile.gettempdir())) / "opsearch-timing.lock"


# The phase a trial reports while another process holds the lock; what follows it names the holder.
WAITING_FOR_LOCK = "waiting for the timing lock"


@contextlib.contextmanager
def timing_lock(path: Path | None, *, holder: str = "", on_wait: Callable[[str], None] | None = None):
    """Held while a process times models: CPU-bound timings taken at once on shared cores mean nothing, so
    workers on one machine take turns (quantizing and evaluating may overlap). ``None``: no lock.

    ``holder`` (a study's name) is written beside the lock while it is held; a process that finds the lock taken
    tells ``on_wait`` who holds it (pid, study, since when) before it waits, so a wait never looks like a hang."""
    if path is None:
        yield
        return
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait(f"{WAITING_FOR_LOCK} {str(path)!r}, held by {lock_holder(path)}")
        lock.acquire()
    note = _holder_file(path)
    try:
        note.write_text(json.dumps({"pid": os.getpid(), "study": holder, "since": time.time()}))
        yield
    finally:
        note.unlink(missing_ok=True)
        lock.release()


def lock_holder(path: Path) -> str:
    """Who holds the timing lock, in words: "pid 4242 (study 'default'), timing for 35 s"."""
    try:
        note = json.loads(_holder_file(path).read_text())
    except (OSError, ValueError):
        return "another process (it did not say which)"
    study = f" (study {note['study']!r})" if note.get("study") else ""
    return f"pid {note.get('pid')}{study}, timing for {time.time() - float(note.get('since', time.time())):.0f} s"


def _holder_file(path: Path) -> Path:
    return Path(str(path) + ".holder")


@dataclass(frozen=True)
class Load:
    """What else the CPUs did while a measurement ran, in cores kept busy on average."""

    other_cores: float  # by every process but this one (another worker quantizing, a build, a browser)
    steal_cores: float  # by the hypervisor, for another tenant of this virtual machine
    seconds: float


class LoadMeter:
    """``with LoadMeter() as meter: ...`` then ``meter.load`` (None for a window too short to count on:
    the kernel counts CPU time in ticks of 10 ms)."""

    MIN_SECONDS = 1.0

    def __init__(self) -> None:
        self.load: Load | None = None

    @staticmethod
    def _busy(times) -> float:
        return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))

    def __enter__(self) -> LoadMeter:
        import psutil

        self._process = psutil.Process()
        self._start = (time.monotonic(), psutil.cpu_times(), self._process.cpu_times())
        return self

    def __exit__(self, *exc) -> None:
        import psutil

        end = (time.monotonic(), psutil.cpu_times(), self._process.cpu_times())
        (t0, all0, own0), (t1, all1, own1) = self._start, end
        seconds = t1 - t0
        if seconds < self.MIN_SECONDS:
            return
        own = (own1.user + own1.system) - (own0.user + own0.system)
        other = max(0.0, self._busy(all1) - self._busy(all0) - own)
        steal = max(0.0, getattr(all1, "steal", 0.0) - getattr(all0, "steal", 0.0))
        self.load = Load(other / seconds, steal / seconds, seconds)
