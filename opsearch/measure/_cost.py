"""Predicting a recipe's speedup on this machine, from kernel times measured once, before anything is quantized.

The model is a sum over the session's kernels. ONNX Runtime's profiler gives each node of the fp32 graph its time
per call (``profile_nodes``); a recipe replaces some of those nodes (read from the graph and the recipe: which
MatMuls have a constant weight, which groups a mixed recipe quantizes, ...), each by a quantized kernel of some
*kind* ("dynamic/matmul_w/s8", "dynamic/matmul_a", "dynamic/attention/s8", "weight_only/matmul_w/4bit/block128/acc0",
...). A kind's *factor* is measured once per study by quantizing a probe graph at this model's shapes and profiling
it beside the graph it extends (fp32's, or an earlier probe's), in alternating passes: the time of every kernel the
probe's graph holds and the other does not (the quantized kernels, and what comes with them: DynamicQuantizeLinear,
the float conversions, the fusions ONNX Runtime makes or no longer makes around them), minus the time of the kernels
that went away, over the fp32 time of the replaced nodes. Kernels present in both graphs are left out of both sides,
and with them their noise. Each probe adds one kind to those measured before it.

A prediction is fp32's time per call (an unprofiled session's) over the recipe's: that time, plus each replaced
node's profiled time times its kind's factor minus one. The kernels a recipe leaves alone and the session's own work
between kernels are unchanged. The interval is a relative error in log space: a stated prior until the study's
timed trials say otherwise (``CostModel.calibrate``). Accuracy is never predicted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from opsearch.errors import TrialFailed
from opsearch.measure._sessions import Feed, ThreadSettings, input_names, make_session
from opsearch.quantize import GraphGroups, QuantRecipe, find_groups, plan

if TYPE_CHECKING:
    import onnx

COST_VERSION = 1  # the stored format's version (CostModel.to_dict)
# The relative error a prediction carries before it is checked, in log space: exp(0.25) = x/÷1.28. Kernel times
# summed leave out what a sum cannot see (caches warmed by the previous kernel, the profiler's own cost inside
# multi-threaded kernels), and the probes were profiled on a shared machine. Calibration replaces this prior with
# residuals: the probes' own timings beside fp32 first, then the study's timed trials.
PRIOR_ERROR = 0.25
# From this many checks on, their median sets a bias (and timed trials alone check the model, without the probes).
MIN_PAIRS = 5
# From this many checks on, the band may narrow below the prior: the largest of five residuals is often passed by
# the sixth (a leave-one-out check on MiniLM missed one trial of twelve that way), the largest of ten rarely.
BAND_PAIRS = 10
# Added to the largest residual seen: the next trial may land a little outside the largest seen so far, and a
# wrong prune loses a front point for good, where a missed one costs a timing.
ERROR_MARGIN = 0.03
# Added to the band when a factor was borrowed from a neighbouring kind (per-tensor for per-channel, the export's
# for a fused graph's, blocks of 128 for blocks of 32): the kernels are alike, not the same.
BORROW_ERROR = 0.10
# A kind no probe measured may be predicted only while its nodes hold this share of the fp32 kernel time at most;
# its factor is then taken anywhere between 0 (free) and UNMEASURED_SLOWEST, both ends in the interval.
UNMEASURED_SHARE = 0.05
UNMEASURED_SLOWEST = 2.0
# The most time outside kernels a call is credited with, per kernel (see ``outside_time``).
OUTSIDE_PER_NODE = 3e-6
# A factor computed from a profile below this is noise (a kernel cannot run in no time): it is kept at this.
MIN_FACTOR = 0.02

# Node classes: what a recipe can quantize in an fp32 graph, told apart by what changes the kernel.
MATMUL_W = "matmul_w"  # a MatMul with a constant weight
MATMUL_A = "matmul_a"  # a MatMul of two activations (attention scores, context)
GEMM = "gemm"  # ONNX Runtime's dynamic quantizer rewrites it as a weighted MatMul
GATHER = "gather"  # an embedding table's lookup
ATTENTION = "attention"  # a fused Attention
EMBED_LN = "embed_ln"  # a fused EmbedLayerNormalization
_CLASS_OF_TYPE = {"Gemm": GEMM, "Attention": ATTENTION, "EmbedLayerNormalization": EMBED_LN, "Conv": "conv",
                  "LSTM": "lstm", "Transpose": "transpose"}


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

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads.intra_op_threads
    options.inter_op_num_threads = threads.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spin = "1" if threads.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.log_severity_level = 3
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

def node_classes(model: onnx.ModelProto) -> dict[str, str]:
    """The graph's nodes a recipe can quantize, each with its class (MATMUL_W, MATMUL_A, GEMM, GATHER, ...).

    A MatMul's weight is constant when it is an initializer, a Constant, or computed from constants alone (a
    transposed weight); a Gather counts when it looks up a 2-D table. Other nodes are left out."""
    constants = {init.name for init in model.graph.initializer}
    tables = {init.name for init in model.graph.initializer if len(init.dims) == 2}
    out = {}
    for node in model.graph.node:  # topological order: a node's inputs are settled before it
        if node.op_type == "Constant" or (node.input and all(i in constants for i in node.input if i)
                                          and node.op_type in ("Identity", "Cast", "Transpose", "Reshape",
                                                               "Unsqueeze")):
            constants.update(node.output)
            continue
        if node.op_type == "MatMul":
            out[node.name] = MATMUL_W if any(i in constants for i in node.input[:2]) else MATMUL_A
        elif node.op_type == "Gather":
            if node.input and node.input[0] in tables:
                out[node.name] = GATHER
        elif node.op_type in _CLASS_OF_TYPE:
            out[node.name] = _CLASS_OF_TYPE[node.op_type]
    return out


class _NotPredicted(ValueError):
    """Why a recipe gets no prediction."""


def _flavor(recipe: QuantRecipe, *, static: bool = False) -> str:
    """What changes an integer kernel among a recipe's flags: the weights' type, per-channel scales, and (static)
    int8 activations and float outputs. reduce_range, symmetry and calibration change the numbers, not the kernel."""
    parts = ["s8" if recipe.weights_dtype == "QInt8" else "u8"]
    if recipe.per_channel:
        parts.append("pc")
    if static and recipe.activations_dtype == "QInt8":
        parts.append("s8act")
    if static and recipe.float_output:
        parts.append("float_out")
    return "/".join(parts)


def _dynamic_kind(cls: str, recipe: QuantRecipe) -> str:
    if cls in (MATMUL_W, GEMM):
        return f"dynamic/{MATMUL_W}/{_flavor(recipe)}"
    if cls == ATTENTION:
        return f"dynamic/{ATTENTION}/{_flavor(recipe)}"
    return f"dynamic/{cls}"  # matmul_a (both inputs u8 whatever the flags), gather, embed_ln, ...


_DYNAMIC_OPS = {MATMUL_W: "MatMul", MATMUL_A: "MatMul", GEMM: "MatMul", GATHER: "Gather", ATTENTION: "Attention",
                EMBED_LN: "EmbedLayerNormalization", "conv": "Conv", "lstm": "LSTM", "transpose": "Transpose"}


def replaced_nodes(recipe: QuantRecipe, classes: dict[str, str], groups: GraphGroups | None = None) -> dict[str, str]:
    """The fp32 graph's nodes ``recipe`` quantizes, each with the kind of kernel that replaces it.

    ``classes`` is ``node_classes`` of the graph the recipe quantizes (its fusion level's), ``groups`` that graph's
    ``find_groups`` (mixed recipes only). Raises ValueError for what the model does not cover: static mode (which
    nodes gain Q/DQ pairs depends on which neighbours are quantized too). A recipe's
    ``matmul_weights_only`` (when it has one) keeps every MatMul of two activations fp32.
    """
    if not recipe.operators_to_quantize:
        return {}
    excluded = set(recipe.nodes_to_exclude)
    weights_only = bool(getattr(recipe, "matmul_weights_only", False))
    ops = set(recipe.operators_to_quantize)
    out: dict[str, str] = {}
    if recipe.mode == "dynamic":
        # A fused graph goes through ONNX Runtime's quantizer, which leaves MatMuls of two activations fp32
        # (MatMulConstBOnly); the export goes through optimum's, which quantizes them too.
        activations = recipe.fusion == "none" and not weights_only
        for name, cls in classes.items():
            if name in excluded or _DYNAMIC_OPS.get(cls) not in ops or (cls == MATMUL_A and not activations):
                continue
            out[name] = _dynamic_kind(cls, recipe)
        return out
    if recipe.mode == "weight_only":
        for name, cls in classes.items():
            if name in excluded:
                continue
            if cls == MATMUL_W and "MatMul" in ops:
                out[name] = (f"weight_only/{MATMUL_W}/{recipe.weight_bits}bit/block{recipe.block_size}"
                             f"/acc{recipe.accuracy_level}")
            elif cls == GATHER and "Gather" in ops:  # the quantizer packs tables at 4 bits only
                out[name] = f"weight_only/{GATHER}/block{recipe.block_size}"
        return out
    if recipe.mode == "mixed":
        if groups is None:
            raise _NotPredicted("a mixed recipe needs the graph's groups")
        members = groups.by_key()
        try:
            precisions = plan(recipe, groups)
        except ValueError as exc:  # a precision a group cannot take: the quantizer would refuse it too
            raise _NotPredicted(str(exc)) from exc
        for key, precision in precisions.items():
            if precision == "fp32":
                continue
            for name in members[key].nodes:
                cls = classes.get(name)
                if cls is None or name in excluded or (cls == MATMUL_A and weights_only):
                    continue
                if precision == "dynamic":
                    out[name] = _dynamic_kind(cls, recipe)
                else:
                    out[name] = f"static/{MATMUL_W if cls == GEMM else cls}/{_flavor(recipe, static=True)}"
        return out
    raise _NotPredicted(f"{recipe.mode} mode is not predicted: which nodes gain quantize/dequantize pairs depends "
                        "on which neighbours are quantized too")


def _borrowed(fusion: str, kind: str) -> list[tuple[str, str]]:
    """Where a factor no probe measured may come from, nearest first: the same kernel without per-channel scales,
    with blocks of 128, then on the export's graph."""
    kinds = [kind]
    if "/pc" in kind:
        kinds.append(kind.replace("/pc", ""))
    if "/block32" in kind:
        kinds += [k.replace("/block32", "/block128") for k in list(kinds)]
    fusions = [fusion] + (["none"] if fusion != "none" else [])
    return [(f, k) for f in fusions for k in kinds]


# The model --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GraphCost:
    """One fusion level's fp32 graph on this machine: its quantizable nodes' times, its kernels' and its call's."""

    fusion: str
    node_s: dict[str, float]  # quantizable node -> seconds per call (0: ONNX Runtime fused it into another kernel)
    classes: dict[str, str]  # quantizable node -> its class (node_classes)
    kernel_s: float  # every kernel of one call
    wall_s: float  # one call, unprofiled (in the same alternating passes)
    groups: dict | None = None  # find_groups(graph).to_dict(): what a mixed recipe's roles hold
    outside_s: float = 0.0  # a call's time outside kernels, as the model counts it (``outside_time``)

    @property
    def total_s(self) -> float:
        """One call as the model counts it: every kernel, and the session's work between them."""
        return self.kernel_s + self.outside_s

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GraphCost:
        return cls(data["fusion"], dict(data["node_s"]), dict(data["classes"]), float(data["kernel_s"]),
                   float(data["wall_s"]), data.get("groups"), float(data.get("outside_s", 0.0)))


@dataclass(frozen=True)
class Probe:
    """One probe: a recipe quantized at this model's shapes and profiled, and the kind's factor it gave."""

    name: str
    recipe: dict  # QuantRecipe.to_dict()
    compared_with: str  # "fp32", or the earlier probe whose graph it extends (their shared kernels drop out)
    kind: str  # the kind it measured ("" when it measured none: a kind already known, or no node)
    factor: float | None
    replaced_s: float  # the fp32 time of the nodes of that kind (per call)
    delta_s: float  # the probe graph's kernel time minus the compared graph's, on the kernels that differ
    expected_counts: dict[str, int]  # fp32 operator type -> nodes the model expected the recipe to quantize
    quantized_counts: dict[str, int]  # what the quantizer reports it quantized
    wall_s: float = 0.0  # one call of the probe's graph, unprofiled
    compared_wall_s: float = 0.0  # one call of the compared graph, in the same alternating passes
    note: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Prediction:
    """A recipe's predicted speedup over fp32, with the interval the model's error gives it."""

    speedup: float
    low: float
    high: float
    raw: float  # before calibration's bias: what ``CostModel.calibrate`` is given back with the measured speedup
    borrowed: tuple[str, ...] = ()  # kinds whose factor came from a neighbouring kind
    unmeasured: tuple[str, ...] = ()  # kinds no probe measured, bounded in the interval (a small share of time)

    def surely_below(self, speedup: float) -> bool:
        """True when even the interval's top lies below ``speedup``."""
        return self.high < speedup

    def describe(self) -> str:
        """"predicted 1.45x (1.21-1.74)", for a pruned trial's reason and the report."""
        return f"predicted {self.speedup:.2f}x ({self.low:.2f}-{self.high:.2f})"


@dataclass(frozen=True)
class CostModel:
    """Kernel times of the fp32 graphs and the factors of the quantized kernels, measured once on this machine.

    ``factors`` is keyed "<fusion>|<kind>". ``error`` is the interval's half-width in log space and ``bias`` a
    correction of every prediction (log), both from ``calibrate``; ``residuals`` are the log(measured/raw) it saw
    (the probes' own checks first, then the timed trials it was given).
    """

    graphs: dict[str, GraphCost]  # fusion level -> its fp32 graph
    factors: dict[str, float]
    probes: tuple[Probe, ...] = ()
    machine: dict = field(default_factory=dict)  # measure.fingerprint()
    threads: dict = field(default_factory=dict)
    workload: dict = field(default_factory=dict)  # calls and passes profiled
    error: float = PRIOR_ERROR
    bias: float = 0.0
    residuals: tuple[float, ...] = ()

    # Predicting -------------------------------------------------------------------------------------------------

    def predict(self, recipe: QuantRecipe) -> Prediction | None:
        """The recipe's speedup over the export's fp32 graph; None when the model does not cover it
        (``unpredictable`` says why)."""
        try:
            return self._predict(recipe)
        except _NotPredicted:
            return None

    def unpredictable(self, recipe: QuantRecipe) -> str:
        """Why ``predict`` gives None for this recipe ("" when it gives a prediction)."""
        try:
            self._predict(recipe)
        except _NotPredicted as exc:
            return str(exc)
        return ""

    def _predict(self, recipe: QuantRecipe) -> Prediction:
        base = self.graphs.get("none")
        graph = self.graphs.get(recipe.fusion)
        if base is None or graph is None:
            raise _NotPredicted(f"fusion {recipe.fusion!r} was not profiled")
        groups = GraphGroups.from_dict(graph.groups) if graph.groups else None
        nodes = replaced_nodes(recipe, graph.classes, groups)
        total = graph.total_s  # the kernels a recipe leaves alone, and the time outside kernels, unchanged
        unmeasured_s = 0.0
        borrowed, unmeasured = set(), set()
        for name, kind in nodes.items():
            seconds = graph.node_s.get(name, 0.0)
            factor, how = self._factor(recipe.fusion, kind)
            if factor is None:
                unmeasured.add(kind)
                unmeasured_s += seconds
                continue
            if how:
                borrowed.add(kind)
            total += (factor - 1.0) * seconds
        if unmeasured_s > UNMEASURED_SHARE * graph.kernel_s:
            raise _NotPredicted(f"no probe measured {', '.join(sorted(unmeasured))}, "
                                f"{unmeasured_s / graph.kernel_s:.0%} of the fp32 kernel time")
        raw = base.total_s / total
        error = self.error + (BORROW_ERROR if borrowed else 0.0)
        fastest = base.total_s / max(total - unmeasured_s, 1e-12)
        slowest = base.total_s / (total + (UNMEASURED_SLOWEST - 1.0) * unmeasured_s)
        return Prediction(raw * math.exp(self.bias), slowest * math.exp(self.bias - error),
                          fastest * math.exp(self.bias + error), raw, tuple(sorted(borrowed)),
                          tuple(sorted(unmeasured)))

    def _factor(self, fusion: str, kind: str) -> tuple[float | None, str]:
        """The kind's factor on ``fusion``'s graph, and where it was borrowed from ("" when measured there)."""
        for i, (f, k) in enumerate(_borrowed(fusion, kind)):
            if f"{f}|{k}" in self.factors:
                return self.factors[f"{f}|{k}"], "" if i == 0 else f"{f}|{k}"
        return None, ""

    # Checking against timed trials ----------------------------------------------------------------------------

    def probe_checks(self) -> list[tuple[float, float]]:
        """The probes timed beside their own fp32 graph, as (raw predicted speedup, measured speedup) pairs: each
        probe's recipe predicted against that graph, and the two graphs' unprofiled calls in the same alternating
        passes (a measured speedup, if a rougher one than a timed trial's). They check the profile's kernel times
        against a session without the profiler, whose own cost inside multi-threaded kernels a sum cannot see."""
        out = []
        for probe in self.probes:
            if probe.compared_with != "fp32" or probe.wall_s <= 0 or probe.compared_wall_s <= 0:
                continue
            recipe = QuantRecipe.from_dict(probe.recipe)
            prediction = self.predict(recipe)
            if prediction is None:
                continue
            # against the probe's own fp32 graph (a fused one for a fused probe), as its walls were timed
            scale = self.graphs[recipe.fusion].total_s / self.graphs["none"].total_s
            out.append((prediction.raw * scale, probe.compared_wall_s / probe.wall_s))
        return out

    def calibrate(self, pairs: Iterable[tuple[Prediction | float, float]] = (), *,
                  with_probes: bool | None = None) -> CostModel:
        """The model checked against every timed trial: ``pairs`` of (its prediction, or the raw predicted speedup;
        the measured speedup). Give all the pairs each time: they replace those seen before. The probes' own checks
        (``probe_checks``) are pooled with them while there are fewer than ``MIN_PAIRS`` (``with_probes`` None),
        always (True) or never (False): a trial's paired rounds measure better than a probe's few passes.

        The residuals r = log(measured / raw) set a bias (their median, once there are ``MIN_PAIRS``: a systematic
        offset such as the profiler's own cost) and the band: the largest |r - bias| plus ``ERROR_MARGIN``, and at
        least ``PRIOR_ERROR`` while there are fewer than ``BAND_PAIRS``. The largest rather than a quantile, because
        the band decides what is pruned and never timed."""
        pairs = list(pairs)
        if with_probes is None:
            with_probes = len(pairs) < MIN_PAIRS
        residuals = []
        for predicted, measured in [*(self.probe_checks() if with_probes else []), *pairs]:
            raw = predicted.raw if isinstance(predicted, Prediction) else float(predicted)
            if raw > 0 and measured > 0 and math.isfinite(raw) and math.isfinite(measured):
                residuals.append(math.log(measured / raw))
        if not residuals:
            return dataclasses.replace(self, error=PRIOR_ERROR, bias=0.0, residuals=())
        r = np.asarray(residuals)
        bias = float(np.median(r)) if len(r) >= MIN_PAIRS else 0.0
        error = float(np.max(np.abs(r - bias))) + ERROR_MARGIN
        if len(r) < BAND_PAIRS:
            error = max(error, PRIOR_ERROR)
        return dataclasses.replace(self, error=error, bias=bias, residuals=tuple(residuals))

    # Storing --------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"version": COST_VERSION, "graphs": {k: g.to_dict() for k, g in self.graphs.items()},
                "factors": dict(self.factors), "probes": [p.to_dict() for p in self.probes],
                "machine": self.machine, "threads": self.threads, "workload": self.workload, "error": self.error,
                "bias": self.bias, "residuals": list(self.residuals)}

    @classmethod
    def from_dict(cls, data: dict) -> CostModel:
        version = data.get("version")
        if version != COST_VERSION:
            raise ValueError(f"a cost model of version {version!r}; this opsearch reads version {COST_VERSION}: "
                             "build the model again")
        return cls({k: GraphCost.from_dict(g) for k, g in data["graphs"].items()},
                   {k: float(v) for k, v in data["factors"].items()},
                   tuple(Probe(**p) for p in data.get("probes", ())), dict(data.get("machine", {})),
                   dict(data.get("threads", {})), dict(data.get("workload", {})), float(data["error"]),
                   float(data.get("bias", 0.0)), tuple(data.get("residuals", ())))

    def describe(self) -> list[str]:
        """One line per measured factor, then the base graphs: what a report shows of the model."""
        lines = [f"{key}: x{value:.2f}" for key, value in sorted(self.factors.items())]
        for level, g in self.graphs.items():
            lines.append(f"fp32 graph {level}: {g.kernel_s * 1e3:.2f} ms in kernels, {g.outside_s * 1e3:.2f} ms "
                         "outside, per call")
        lines.append(f"error: x/÷{math.exp(self.error):.2f}, bias x{math.exp(self.bias):.2f}, from "
                     f"{len(self.residuals)} checks ({len(self.probe_checks())} of them probes timed beside fp32)")
        return lines


# Building it ----------------------------------------------------------------------------------------------------

def probe_recipes(classes: dict[str, dict[str, str]], *, modes: Sequence[str] = ("dynamic",),
                  static_probes: bool = False) -> list[tuple[str, QuantRecipe]]:
    """The probes that cover what a study of ``modes`` can produce on graphs with these ``classes`` (fusion level ->
    ``node_classes``), each adding one kind to those before it. ``static_probes`` (calibration rows at hand) adds the
    mixed mode's static groups (QDQ, float output)."""
    out: list[tuple[str, QuantRecipe]] = []
    dynamic = any(m in modes for m in ("dynamic", "mixed"))
    for fusion, cls in classes.items():
        present = set(cls.values())
        activations = tuple(sorted(n for n, c in cls.items() if c == MATMUL_A))
        tag = "" if fusion == "none" else f"@{fusion}"
        if dynamic and present & {MATMUL_W, GEMM}:
            # The weighted MatMuls alone first: the activation MatMuls' factor is what quantizing them adds.
            weights = QuantRecipe("dynamic", ("MatMul",), fusion=fusion, nodes_to_exclude=activations)
            out.append((f"dynamic MatMul weights s8{tag}", weights))
            if fusion == "none":
                out.append((f"dynamic MatMul weights s8 per-channel{tag}",
                            dataclasses.replace(weights, per_channel=True)))
                out.append((f"dynamic MatMul weights u8{tag}", dataclasses.replace(weights, weights_dtype="QUInt8")))
                if activations:
                    out.append((f"dynamic MatMul all s8{tag}", QuantRecipe("dynamic", ("MatMul",), fusion=fusion)))
        if dynamic and ATTENTION in present:  # QAttention holds a layer's attention: too large to borrow a factor
            attention = QuantRecipe("dynamic", ("Attention",), fusion=fusion)
            out.append((f"dynamic Attention s8{tag}", attention))
            out.append((f"dynamic Attention u8{tag}", dataclasses.replace(attention, weights_dtype="QUInt8")))
        if dynamic and GATHER in present and fusion == "none":
            out.append((f"dynamic Gather{tag}", QuantRecipe("dynamic", ("Gather",), fusion=fusion)))
        if "weight_only" in modes and fusion == "none":
            if MATMUL_W in present:
                for bits, level in ((4, 0), (4, 4), (8, 0), (8, 4)):
                    out.append((f"weight-only MatMul {bits}-bit acc{level}",
                                QuantRecipe("weight_only", ("MatMul",), weight_bits=bits, accuracy_level=level)))
            if GATHER in present:
                out.append(("weight-only Gather 4-bit", QuantRecipe("weight_only", ("Gather",))))
        if "mixed" in modes and static_probes and fusion == "none" and MATMUL_W in present:
            roles = tuple((r, "static") for r in ("qkv", "attn_out", "ffn_in", "ffn_out", "pooler", "head"))
            out.append(("static QDQ weights s8 float output", QuantRecipe(
                "mixed", ("MatMul",), precisions=roles, float_output=True)))
    return out


def build_cost_model(fp32_path: str | Path, feeds: Sequence[Feed], threads: ThreadSettings, *, work_dir: Path,
                     fusions: Sequence[str] = ("none",), modes: Sequence[str] = ("dynamic",),
                     probes: Sequence[tuple[str, QuantRecipe]] | None = None,
                     calibration: dict[str, np.ndarray] | None = None, cache_dir: Path | None = None,
                     passes: int = 5, on_probe=None) -> CostModel:
    """Profile the fp32 graph at each fusion level and every probe, and derive the kinds' factors.

    ``feeds`` are the timed workload's calls (a few dozen suffice: the shapes matter, not the texts). ``probes``
    defaults to ``probe_recipes`` for ``modes`` (static probes only when ``calibration`` is given). The probes'
    quantized models go to ``work_dir`` and are removed at the end; ``cache_dir`` is the study's cache of fused
    graphs. ``on_probe(name)`` hears each probe start (a progress line). The model comes back calibrated on the
    probes' own timings beside fp32 (``CostModel.probe_checks``). It profiles and times: hold the timing lock."""
    import onnx

    from opsearch.measure._machine import fingerprint
    from opsearch.quantize import fused_model, quantize

    fp32_path = Path(fp32_path)
    work_dir = Path(work_dir)
    cache = Path(cache_dir) if cache_dir is not None else work_dir / "cache"
    levels = list(dict.fromkeys(["none", *fusions]))
    paths = {level: fused_model(fp32_path, level, cache_dir=cache) for level in levels}
    graphs: dict[str, GraphCost] = {}
    for level, profile in zip(levels, profile_together(list(paths.values()), feeds, threads, passes=passes),
                              strict=True):
        model = onnx.load(str(paths[level]), load_external_data=False)
        classes = node_classes(model)
        graphs[level] = GraphCost(level, {n: profile.seconds.get(n, 0.0) for n in classes}, classes,
                                  profile.kernel_s, profile.wall_s, find_groups(model).to_dict(),
                                  outside_time(profile))
    if probes is None:
        probes = probe_recipes({k: g.classes for k, g in graphs.items()}, modes=modes,
                               static_probes=calibration is not None)
    model = CostModel(graphs, {}, machine=fingerprint(), threads=dataclasses.asdict(threads),
                      workload={"calls": len(feeds), "passes": passes})
    records: list[Probe] = []
    # Each probe is profiled beside the nearest graph whose replaced nodes it all replaces alike (fp32's, or an
    # earlier probe's, kept until the end for that): the kernels both share drop out, and with them their noise.
    done: list[tuple[str, str, dict[str, str], Path]] = [("fp32", level, {}, paths[level]) for level in levels]
    try:
        for i, (name, recipe) in enumerate(probes):
            if on_probe is not None:
                on_probe(name)
            graph = model.graphs[recipe.fusion]
            nodes = replaced_nodes(recipe, graph.classes, GraphGroups.from_dict(graph.groups) if graph.groups
                                   else None)
            parent, _, parent_nodes, parent_path = max(
                (d for d in done if d[1] == recipe.fusion and d[2].items() <= nodes.items()), key=lambda d: len(d[2]))
            try:
                quantized = quantize(recipe, fp32_path=fp32_path, out_dir=work_dir / f"probe-{i}",
                                     calibration=calibration, cache_dir=cache)
            except TrialFailed as exc:  # the kind stays unmeasured; the other probes go on
                records.append(Probe(name, json.loads(json.dumps(recipe.to_dict())), parent, "", None, 0.0, 0.0,
                                     {}, {}, note=f"quantization failed: {exc}"))
                continue
            base, profile = profile_together([parent_path, quantized.path], feeds, threads, passes=passes)
            record = _probe_factor(name, recipe, model, nodes, (parent, parent_nodes, base), profile,
                                   quantized.node_counts)
            records.append(record)
            done.append((name, recipe.fusion, nodes, quantized.path))
            if record.factor is not None:
                model = dataclasses.replace(model, factors={**model.factors, f"{recipe.fusion}|{record.kind}":
                                                            record.factor})
    finally:
        for i in range(len(probes)):
            shutil.rmtree(work_dir / f"probe-{i}", ignore_errors=True)
    # The probes' own timings against fp32 give the model its first bias and band (``CostModel.calibrate``).
    return dataclasses.replace(model, probes=tuple(records)).calibrate()


def _probe_factor(name: str, recipe: QuantRecipe, model: CostModel, nodes: dict[str, str],
                  compared: tuple[str, dict[str, str], NodeProfile], profile: NodeProfile,
                  counts: dict[str, int]) -> Probe:
    """The one kind ``recipe`` adds to ``model``'s, and its factor: ``nodes`` are the probe's replaced nodes, and
    ``compared`` the graph profiled beside it (its name, its replaced nodes, its profile)."""
    graph = model.graphs[recipe.fusion]
    parent, parent_nodes, base = compared
    types = _fp32_types(graph.classes)
    expected: dict[str, int] = {}
    for n in nodes:
        expected[types[n]] = expected.get(types[n], 0) + 1
    expected = dict(sorted(expected.items()))
    added = {n: k for n, k in nodes.items() if n not in parent_nodes}
    new = sorted({k for k in added.values() if f"{recipe.fusion}|{k}" not in model.factors})
    before = {(n, base.op_types.get(n)) for n in base.seconds}
    after = {(n, profile.op_types.get(n)) for n in profile.seconds}
    delta = (sum(t for n, t in profile.seconds.items() if (n, profile.op_types.get(n)) not in before)
             - sum(t for n, t in base.seconds.items() if (n, base.op_types.get(n)) not in after))
    note = "" if expected == dict(sorted(counts.items())) else "the quantizer's node counts differ from the model's"

    def record(kind: str, factor: float | None, replaced: float, why: str = "") -> Probe:
        stored = json.loads(json.dumps(recipe.to_dict()))  # as it reads back from a study (lists, not tuples)
        return Probe(name, stored, parent, kind, factor, replaced, delta, expected, dict(counts),
                     profile.wall_s, base.wall_s, "; ".join(x for x in (note, why) if x))

    if len(new) != 1:
        return record("", None, 0.0, f"adds {len(new)} kinds ({', '.join(new) or 'none'}), not one: no factor")
    kind = new[0]
    # The replaced nodes' times from the profile taken beside the probe: a factor is a ratio of one moment's times.
    replaced = sum(base.seconds.get(n, 0.0) for n, k in added.items() if k == kind)
    known = sum((model.factors[f"{recipe.fusion}|{k}"] - 1.0) * base.seconds.get(n, 0.0)
                for n, k in added.items() if k != kind)
    if replaced <= 0:
        return record(kind, None, 0.0, "its nodes took no measurable time")
    return record(kind, max(MIN_FACTOR, 1.0 + (delta - known) / replaced), replaced)


def _fp32_types(classes: dict[str, str]) -> dict[str, str]:
    """Node -> its fp32 operator type, as the quantizer's node counts name it."""
    by_class = {v: k for k, v in _CLASS_OF_TYPE.items()}
    return {n: "MatMul" if c in (MATMUL_W, MATMUL_A) else "Gather" if c == GATHER else by_class.get(c, c)
            for n, c in classes.items()}
