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

A static recipe gets an upper bound only (``CostModel.static_bound``): which nodes gain quantize/dequantize pairs
depends on which neighbours are quantized too, so one probe per fusion level and format quantizes every operator
type, and each type's saving there bounds what quantizing it can save in any recipe. A bound can prune (its top
below the bar) and stop a study; it is never checked as a prediction nor suggested.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from opsearch.measure._kernels import NotPredicted, borrowed_kinds, replaced_nodes
from opsearch.quantize import GraphGroups, QuantRecipe

if TYPE_CHECKING:
    pass

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
# A factor computed from a profile below this is noise (a kernel cannot run in no time): it is kept at this.
MIN_FACTOR = 0.02


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
    # A static recipe's: only an upper bound (``speedup`` is its top before the band, ``low`` 0), see
    # ``CostModel.static_bound``. Never checked against a timed trial as a prediction, never suggested.
    bound_only: bool = False

    def surely_below(self, speedup: float) -> bool:
        """True when even the interval's top lies below ``speedup``."""
        return self.high < speedup

    def describe(self) -> str:
        """"predicted 1.45x (1.21-1.74)", or "predicted at most 1.90x" (a bound), for a pruned trial's reason and
        the report."""
        if self.bound_only:
            return f"predicted at most {self.high:.2f}x"
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
    # "<fusion>|static/<format>" -> operator type -> the most a static recipe saves per call by quantizing that
    # type, measured by one probe that quantizes every type (``measure._probes.static_savings``)
    savings: dict[str, dict[str, float]] = field(default_factory=dict)

    # Predicting -------------------------------------------------------------------------------------------------

    def predict(self, recipe: QuantRecipe) -> Prediction | None:
        """The recipe's speedup over the export's fp32 graph; None when the model does not cover it
        (``unpredictable`` says why)."""
        try:
            return self._predict(recipe)
        except NotPredicted:
            return None

    def unpredictable(self, recipe: QuantRecipe) -> str:
        """Why ``predict`` gives None for this recipe ("" when it gives a prediction)."""
        try:
            self._predict(recipe)
        except NotPredicted as exc:
            return str(exc)
        return ""

    def _predict(self, recipe: QuantRecipe) -> Prediction:
        base = self.graphs.get("none")
        graph = self.graphs.get(recipe.fusion)
        if base is None or graph is None:
            raise NotPredicted(f"fusion {recipe.fusion!r} was not profiled")
        if recipe.mode == "static":
            return self.static_bound(recipe)
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
            raise NotPredicted(f"no probe measured {', '.join(sorted(unmeasured))}, "
                                f"{unmeasured_s / graph.kernel_s:.0%} of the fp32 kernel time")
        raw = base.total_s / total
        error = self.error + (BORROW_ERROR if borrowed else 0.0)
        fastest = base.total_s / max(total - unmeasured_s, 1e-12)
        slowest = base.total_s / (total + (UNMEASURED_SLOWEST - 1.0) * unmeasured_s)
        return Prediction(raw * math.exp(self.bias), slowest * math.exp(self.bias - error),
                          fastest * math.exp(self.bias + error), raw, tuple(sorted(borrowed)),
                          tuple(sorted(unmeasured)))

    def static_bound(self, recipe: QuantRecipe) -> Prediction:
        """The most a static recipe can speed the model up: each operator type it quantizes saves at most what its
        type saved in the probe that quantized every type (its integer kernels against the fp32 kernels they
        replaced), with no quantize/dequantize pair at the borders. Which nodes gain those pairs depends on which
        neighbours are quantized too, so there is no point estimate: a bound, widened by the band (and for a
        per-channel, u8-weight or s8-activation recipe, by ``BORROW_ERROR``: the probe ran the default kernels)."""
        saved = self.savings.get(f"{recipe.fusion}|static/{recipe.format}")
        if saved is None:
            raise NotPredicted(f"static mode in the {recipe.format} format was not probed on the {recipe.fusion} "
                               "graph")
        missing = [op for op in recipe.operators_to_quantize if op not in saved]
        if missing:
            raise NotPredicted(f"the static probe did not quantize {', '.join(missing)}")
        base, graph = self.graphs["none"], self.graphs[recipe.fusion]
        saving = sum(max(0.0, saved[op]) for op in recipe.operators_to_quantize)
        top = base.total_s / max(graph.total_s - saving, 1e-12)
        borrowed = (recipe.per_channel or recipe.weights_dtype != "QInt8" or recipe.activations_dtype != "QUInt8"
                    or recipe.float_output)
        error = self.error + (BORROW_ERROR if borrowed else 0.0)
        return Prediction(top * math.exp(self.bias), 0.0, top * math.exp(self.bias + error), top,
                          (f"static/{recipe.format}",) if borrowed else (), bound_only=True)

    def _factor(self, fusion: str, kind: str) -> tuple[float | None, str]:
        """The kind's factor on ``fusion``'s graph, and where it was borrowed from ("" when measured there)."""
        for i, (f, k) in enumerate(borrowed_kinds(fusion, kind)):
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
            if prediction is None or prediction.bound_only:
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
                "bias": self.bias, "residuals": list(self.residuals), "savings": self.savings}

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
                   float(data.get("bias", 0.0)), tuple(data.get("residuals", ())),
                   {k: {op: float(t) for op, t in v.items()} for k, v in data.get("savings", {}).items()})

    def describe(self) -> list[str]:
        """One line per measured factor, then the base graphs: what a report shows of the model."""
        lines = [f"{key}: x{value:.2f}" for key, value in sorted(self.factors.items())]
        for level, g in self.graphs.items():
            lines.append(f"fp32 graph {level}: {g.kernel_s * 1e3:.2f} ms in kernels, {g.outside_s * 1e3:.2f} ms "
                         "outside, per call")
        lines.append(f"error: x/÷{math.exp(self.error):.2f}, bias x{math.exp(self.bias):.2f}, from "
                     f"{len(self.residuals)} checks ({len(self.probe_checks())} of them probes timed beside fp32)")
        return lines
