"""Per-node kernel times from ONNX Runtime's profiler: each node's time per call in the fastest pass, several
models profiled in alternating passes, and the time a call spends outside kernels (what the cost model sums)."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from opsearch.measure._sessions import Feed, ThreadSettings, input_names, make_session, session_options

if TYPE_CHECKING:
    pass

# The most time outside kernels a call is credited with, per kernel (see ``outside_time``).
OUTSIDE_PER_NODE = 3e-6


# Profiles -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeProfile:
    """One model's kernels on this machine: each node's seconds per call in the session's (optimized) graph, the
    node's operator as the session runs it, and one whole call's seconds from an unprofiled session.

    Each call of the workload counts in its fastest pass (the least kernel time in all), as the study's timing
    counts each call's fastest round: a shared machine only ever adds time, and the fastest of a few tries is the
    one it reaches again. Taking every node from that one pass, rather than each node's own fastest, keeps the
    nodes' sum a time some call took. ``seconds`` are the workload's means per call, less ``event_s``."""

    seconds: dict[str, float]  # node name -> seconds per call, the profiler's own cost taken out
    op_types: dict[str, str]  # node name -> the operator the session ran (FusedGemm, DynamicQuantizeMatMul, ...)
    wall_s: float  # one call, unprofiled
    calls: int
    passes: int
    # What the profiler adds to each kernel's event, taken out of ``seconds``: the least time any node of the graph
    # took (Shape, a scalar's Sqrt: kernels with next to no work, whose events last 2 us where they run in 0.1).
    event_s: float = 0.0

    @property
    def kernel_s(self) -> float:
        """All kernels of one call."""
        return float(sum(self.seconds.values()))

    @property
    def outside_s(self) -> float:
        """A call's time outside kernels (the session's own work between them), as wall minus kernels; slightly
        negative when noise or the estimate of ``event_s`` outweighs it."""
        return self.wall_s - self.kernel_s


def profile_nodes(model_path: str | Path, feeds: Sequence[Feed], threads: ThreadSettings, *, passes: int = 5,
                  warmup: int = 1) -> NodeProfile:
    """Profile ``model_path`` on ``feeds`` with ONNX Runtime's profiler (the study's session options).

    ``warmup`` passes over the feeds are run and dropped, then ``passes`` (see ``NodeProfile`` for how a node's time
    per call is read from them). ORT names a kernel's event ``<node>_kernel_time`` (category "Node",
    ``dur`` in microseconds, ``args.op_name`` its operator); each event belongs to the ``model_run`` it lies in.
    The wall time per call comes from a session without the profiler, which adds its own bookkeeping per node.
    """
    return profile_together([model_path], feeds, threads, passes=passes, warmup=warmup)[0]


def profile_together(model_paths: Sequence[str | Path], feeds: Sequence[Feed], threads: ThreadSettings, *,
                     passes: int = 5, warmup: int = 1) -> list[NodeProfile]:
    """``profile_nodes`` for several models in alternating passes (the order reversed every other pass), each
    profiled pass followed by an unprofiled one of the same model: a ratio of their times, and a model's kernels
    against its wall time, then hold for one state of the machine, not two taken minutes apart."""
    if not feeds:
        raise ValueError("profiling needs at least one feed")
    clock = time.perf_counter
    with tempfile.TemporaryDirectory(prefix="opsearch-profile-") as tmp:
        profiled = [_profiling_session(path, threads, Path(tmp) / f"profile-{i}")
                    for i, path in enumerate(model_paths)]
        plain = [make_session(path, threads) for path in model_paths]
        inputs = [[{k: v for k, v in feed.items() if k in input_names(s)} for feed in feeds] for s in profiled]
        walls = np.empty((len(plain), passes, len(feeds)))
        for turn in range(warmup + passes):
            for i in _order(len(plain), turn):
                for feed in inputs[i]:
                    profiled[i].run(None, feed)
                for j, feed in enumerate(inputs[i]):
                    start = clock()
                    plain[i].run(None, feed)
                    if turn >= warmup:
                        walls[i, turn - warmup, j] = clock() - start
        traces = [json.loads(Path(s.end_profiling()).read_text()) for s in profiled]
    out = []
    for events, wall in zip(traces, walls, strict=True):
        per_call, op_types = _node_times(events, calls=len(feeds), skip=warmup * len(feeds))
        names = list(per_call)
        runs = np.stack([per_call[n].reshape(passes, len(feeds)) for n in names])  # nodes x passes x calls (us)
        fastest = runs.sum(axis=0).argmin(axis=0)  # each call's pass of least kernel time
        chosen = runs[:, fastest, np.arange(len(feeds))].mean(axis=1) * 1e-6  # nodes: mean over calls
        event = float(chosen.min()) if len(chosen) else 0.0
        seconds = {n: float(t) - event for n, t in zip(names, chosen, strict=True)}
        out.append(NodeProfile(seconds, op_types, float(wall.min(axis=0).mean()), len(feeds), passes, event))
    return out


def outside_time(profile: NodeProfile) -> float:
    """The time of a call outside its kernels: wall minus kernels, kept between 0 and ``OUTSIDE_PER_NODE`` per
    kernel. The session's own work between two kernels is a microsecond or two; a larger gap is the machine's noise
    between the profiled and the unprofiled pass, and counting it would pull every prediction towards 1."""
    return min(max(0.0, profile.outside_s), OUTSIDE_PER_NODE * len(profile.seconds))


def _order(n: int, turn: int) -> list[int]:
    return list(range(n)) if turn % 2 == 0 else list(range(n - 1, -1, -1))


def _profiling_session(path: str | Path, threads: ThreadSettings, prefix: Path):
    """``make_session``'s options with the profiler on (it must be set before the session exists)."""
    import onnxruntime as ort

    options = session_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _node_times(events: list[dict], *, calls: int, skip: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each node's microseconds in every measured run (the first ``skip`` runs dropped), and its operator."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    measured = runs[skip:]
    if not measured or len(measured) % calls:
        raise RuntimeError(f"the profile holds {len(runs)} runs, not warm-up plus whole passes of {calls} calls")
    starts = np.array([r["ts"] for r in measured])
    ends = starts + np.array([r["dur"] for r in measured])
    times: dict[str, np.ndarray] = {}
    op_types: dict[str, str] = {}
    suffix = "_kernel_time"
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith(suffix):
            continue
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i < 0 or e["ts"] > ends[i]:
            continue  # a warm-up run's node
        name = e["name"][:-len(suffix)]
        times.setdefault(name, np.zeros(len(measured)))[i] += e["dur"]
        op_types[name] = e.get("args", {}).get("op_name", "")
    return times, op_types


# What a recipe replaces -----------------------------------------------------------------------------------------
