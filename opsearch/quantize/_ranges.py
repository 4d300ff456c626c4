"""Each group's activation range on calibration rows, and the int8 error of quantizing that group alone.

One cheap pass over the fp32 graph, run once per study: the graph is run on a few calibration rows with every
group's input activations exposed as outputs, and each group's computation is redone in numpy with int8
arithmetic as ONNX Runtime does it (activations uint8 asymmetric per tensor, weights int8 symmetric per
tensor): with the range of each call, a call per row ("dynamic"), and with the range fixed by the calibration
rows ("static"). A group's error is the relative error of its own outputs, ``||Y_int8 - Y|| / ||Y||``; its
range is the largest ``|x|`` entering it, set beside the typical one (the median over the other groups of its
role) and beside its typical channel, which is what shows an outlier: a per-tensor int8 scale set by one huge
channel leaves the other channels a few steps each (Bondarenko et al., EMNLP 2021).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from opsearch.quantize._activations import Stats, activation_stats, calibration_batches, expose, exposed_session
from opsearch.quantize._groups import GraphGroups, Group, find_groups
from opsearch.quantize._smooth import SMOOTH_ROLES, STRENGTHS, smoothing_factors

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

# Operator types whose int8 computation the pass redoes (fused Attention and Conv are left unranked).
_SIMULATED = ("MatMul", "Gemm", "Gather")
HIGH_ERROR = 0.05  # a group's relative int8 error from which the report names whether smoothing brings it under


@dataclass(frozen=True)
class GroupRange:
    key: str
    role: str
    layer: int | None
    abs_max: float  # the largest |activation| entering the group (a Gather: its table's largest |weight|)
    typical: float  # the median abs_max of the other groups of the same role
    channel_ratio: float  # the largest input channel's max |x| over the median channel's (NaN: no channels)
    error: dict[str, float]  # "dynamic" / "static" -> relative error of the group's outputs, quantized alone
    # A projection of a smoothable role (quantize._smooth): its dynamic error with its input smoothed, by strength
    # ("0.5" -> error); empty for other groups.
    smoothed: dict[str, float] = field(default_factory=dict)

    @property
    def best_smoothed(self) -> tuple[float, float] | None:
        """(strength, dynamic error) of the strength that gives the smallest error; None when not smoothable."""
        if not self.smoothed:
            return None
        alpha, error = min(self.smoothed.items(), key=lambda item: item[1])
        return float(alpha), error

    @property
    def outlier(self) -> float:
        """How many times the typical range of its role this group's range is."""
        return self.abs_max / self.typical if self.typical else 1.0


@dataclass(frozen=True)
class GroupRanges:
    groups: tuple[GroupRange, ...]
    rows: int  # calibration rows the pass ran on

    def ranking(self, precision: str) -> list[str]:
        """Group keys, the largest error under ``precision`` first (groups the pass cannot redo left out)."""
        scored = [g for g in self.groups if precision in g.error]
        return [g.key for g in sorted(scored, key=lambda g: -g.error[precision])]

    def errors(self) -> dict[str, dict[str, float]]:
        return {g.key: dict(g.error) for g in self.groups}

    def to_dict(self) -> dict:
        return {"rows": self.rows, "groups": [asdict(g) for g in self.groups]}

    @classmethod
    def from_dict(cls, data: dict) -> GroupRanges:
        return cls(tuple(GroupRange(**{"smoothed": {}, **g}) for g in data["groups"]), int(data["rows"]))


def measure_ranges(model_path: str | Path, calibration: dict[str, np.ndarray], *, rows: int = 32,
                   threads: int = 1) -> GroupRanges:
    """The pass over ``rows`` of ``calibration`` (inputs all of one shape, see ``measure.encode_padded``)."""
    import onnx

    model = onnx.load(str(model_path))
    groups = find_groups(model)
    jobs = _group_jobs(model, groups)
    wanted = sorted({t for js in jobs.values() for j in js for t in j.activations})
    expose(model, wanted)
    with tempfile.TemporaryDirectory(prefix="opsearch-ranges-") as tmp:
        session = exposed_session(model, Path(tmp), threads)
        n = min(rows, len(next(iter(calibration.values()))))
        batches = calibration_batches(session, calibration, n)
        stats = activation_stats(session, wanted, batches)
        sums = _error_sums(session, wanted, batches, jobs, stats)
        smoothable = {key: js for key, js in jobs.items() if groups.by_key()[key].role in SMOOTH_ROLES}
        smoothed = _smoothed_errors(session, wanted, batches, smoothable, stats)
    return GroupRanges(_group_ranges(groups, jobs, stats, sums, smoothed), n)


def _group_jobs(model: onnx.ModelProto, groups: GraphGroups) -> dict[str, list[_Job]]:
    """Each group's nodes the pass can redo in numpy, by group key; a group with none has no entry."""
    weights = {init.name: init for init in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    jobs: dict[str, list[_Job]] = {}
    for group in groups.groups:
        for name in group.nodes:
            job = _job(nodes[name], weights)
            if job is not None:
                jobs.setdefault(group.key, []).append(job)
    return jobs


def _error_sums(session: ort.InferenceSession, wanted: list[str], batches: list[dict[str, np.ndarray]],
                jobs: dict[str, list[_Job]], stats: dict[str, Stats]) -> dict[str, dict[str, list[float]]]:
    """Each group's summed squared int8 error and squared fp32 output, with per-call and with fixed ranges."""
    sums = {key: {"dynamic": [0.0, 0.0], "static": [0.0, 0.0]} for key in jobs}
    # A second run over the batches: a static error needs the range over every row, known only after the first.
    for feeds in batches:
        values = dict(zip(wanted, session.run(wanted, feeds), strict=True))
        for key, group_jobs in jobs.items():
            for job in group_jobs:
                for precision in job.precisions:
                    err, ref = job.error(values, stats, static=precision == "static")
                    sums[key][precision][0] += err
                    sums[key][precision][1] += ref
    return sums


def _smoothed_errors(session: ort.InferenceSession, wanted: list[str], batches: list[dict[str, np.ndarray]],
                     jobs: dict[str, list[_Job]], stats: dict[str, Stats]) -> dict[str, dict[str, float]]:
    """Each group's relative dynamic int8 error with its projections' inputs smoothed, by strength ("0.5" -> error),
    over its projections that read one activation with a weight (groups with none are left out)."""
    smoothable = {key: [j for j in js if j.weight is not None and len(j.activations) == 1] for key, js in jobs.items()}
    factors = {(key, i, alpha): smoothing_factors(stats[j.activations[0]].channels, np.abs(j.weight).max(axis=1), alpha)
               for key, js in smoothable.items() for i, j in enumerate(js) for alpha in STRENGTHS}
    sums = {key: {alpha: [0.0, 0.0] for alpha in STRENGTHS} for key, js in smoothable.items() if js}
    for feeds in batches:
        values = dict(zip(wanted, session.run(wanted, feeds), strict=True))
        for key in sums:
            for i, job in enumerate(smoothable[key]):
                for alpha in STRENGTHS:
                    err, ref = job.smoothed_error(values[job.activations[0]], factors[key, i, alpha])
                    sums[key][alpha][0] += err
                    sums[key][alpha][1] += ref
    return {key: {f"{alpha:g}": float(np.sqrt(e / r)) if r > 0 else 0.0 for alpha, (e, r) in by.items()}
            for key, by in sums.items()}


def _group_ranges(groups: GraphGroups, jobs: dict[str, list[_Job]], stats: dict[str, Stats],
                  sums: dict[str, dict[str, list[float]]],
                  smoothed: dict[str, dict[str, float]]) -> tuple[GroupRange, ...]:
    """A ``GroupRange`` for each group the pass could redo, in the graph's order of groups."""
    found = [(group, *_group_summary(jobs[group.key], stats, sums[group.key]))
             for group in groups.groups if jobs.get(group.key)]
    return tuple(GroupRange(g.key, g.role, g.layer, float(a), _typical(found, g), float(c), e,
                            smoothed.get(g.key, {}))
                 for g, a, c, e in found)


def _group_summary(group_jobs: list[_Job], stats: dict[str, Stats],
                   sums: dict[str, list[float]]) -> tuple[float, float, dict[str, float]]:
    """A group's largest input range, its largest channel ratio, and its relative error under each precision."""
    abs_max = max(j.abs_max(stats) for j in group_jobs)
    # Only a job with a weight and activations has a channel ratio; nanmax over NaNs alone would warn.
    channel = float(np.nanmax([j.channel_ratio(stats) for j in group_jobs])) if any(
        j.weight is not None and j.activations for j in group_jobs) else float("nan")
    error = {p: float(np.sqrt(e / r)) if r > 0 else 0.0 for p, (e, r) in sums.items()
             if any(p in j.precisions for j in group_jobs)}
    return abs_max, channel, error


def _typical(found: list[tuple[Group, float, float, dict[str, float]]], group: Group) -> float:
    """The median range of the other groups of ``group``'s role (its own range when it is alone in its role)."""
    others = [a for g, a, *_ in found if g.role == group.role and g.key != group.key]
    return float(np.median(others)) if others else float(next(a for g, a, *_ in found if g is group))


def format_ranges(ranges: GroupRanges, *, precision: str = "static") -> str:
    """The groups, the worst first under ``precision``: range, how far from its role's typical one, error."""
    by_key = {g.key: g for g in ranges.groups}
    order = ranges.ranking(precision) + [g.key for g in ranges.groups if precision not in g.error]
    lines = [f"activation ranges on {ranges.rows} calibration rows, and each group's int8 output error quantized "
             f"alone (worst under {precision} first):",
             f"{'group':<22}{'max |x|':>10}{'x typical':>10}{'channel':>9}{'dynamic err':>12}{'static err':>11}"
             f"{'smoothed':>15}"]
    for key in order:
        g = by_key[key]
        err = "".join(f"{g.error[p]:>{w}.2%}" if p in g.error else f"{'-':>{w}}"
                      for p, w in (("dynamic", 12), ("static", 11)))
        channel = f"{g.channel_ratio:>8.1f}x" if np.isfinite(g.channel_ratio) else f"{'-':>9}"
        best = g.best_smoothed
        smoothed = f"{best[1]:.2%} @{best[0]:g}" if best is not None else "-"
        lines.append(f"{key:<22}{g.abs_max:>10.3g}{g.outlier:>9.1f}x{channel}{err}{smoothed:>15}")
    lines.append("max |x|: the largest activation entering the group (a table: its largest weight); x typical: that "
                 "over the median of its role's other groups; channel: its largest input channel's max over the "
                 "median channel's; smoothed: its dynamic error with its input smoothed (--smoothing) at the "
                 f"strength of {', '.join(f'{a:g}' for a in STRENGTHS)} that gives the least.")
    rescued = [g for g in ranges.groups if g.best_smoothed is not None and "dynamic" in g.error
               and g.error["dynamic"] >= HIGH_ERROR]
    if rescued:
        kept = [g.key for g in rescued if g.best_smoothed[1] >= HIGH_ERROR]
        lines.append(f"{len(rescued)} group(s) lose {HIGH_ERROR:.0%} or more under dynamic int8; smoothing brings "
                     f"{len(rescued) - len(kept)} of them under it"
                     + (f"; for {', '.join(kept)} no strength does: keep them fp32 (the mixed mode's fp32 choice)"
                        if kept else "") + ".")
    return "\n".join(lines)


@dataclass
class _Job:
    """One node's int8 computation: activations by tensor name, a constant weight (or None), and how to apply."""

    op: str
    activations: tuple[str, ...]
    weight: np.ndarray | None
    precisions: tuple[str, ...]

    def abs_max(self, stats: dict[str, Stats]) -> float:
        if not self.activations:
            return float(np.abs(self.weight).max())
        return max(max(-stats[t].low, stats[t].high) for t in self.activations)

    def channel_ratio(self, stats: dict[str, Stats]) -> float:
        """Over the input's features; NaN where the last axis is no feature (a table, or attention's scores)."""
        if not self.activations or self.weight is None:
            return float("nan")
        ratios = [float(c.max() / max(np.median(c), 1e-12)) for c in (stats[t].channels for t in self.activations)]
        return max(ratios)

    def error(self, values: dict[str, np.ndarray], stats: dict[str, Stats], *, static: bool) -> tuple[float, float]:
        """The squared error of the node's int8 output, and the squared norm of its fp32 output."""
        if self.op == "Gather":  # a table: its int8 rows against its fp32 rows (indices do not change)
            q = _dequant_weight(self.weight)
            return float(np.sum((q - self.weight) ** 2)), float(np.sum(self.weight ** 2))
        xs = [values[t] for t in self.activations]
        quantized = [_dequant_activation(x, stats[t] if static else None) for x, t in zip(xs, self.activations,
                                                                                            strict=True)]
        if self.weight is not None:
            ref, got = xs[0] @ self.weight, quantized[0] @ _dequant_weight(self.weight)
        else:
            ref, got = np.matmul(xs[0], xs[1]), np.matmul(quantized[0], quantized[1])
        return float(np.sum((got - ref) ** 2)), float(np.sum(ref ** 2))


    def smoothed_error(self, x: np.ndarray, factors: np.ndarray) -> tuple[float, float]:
        """As ``error`` under dynamic int8, with the input divided by ``factors`` and the weight's rows multiplied by
        them first (quantize._smooth: the same function in fp32)."""
        ref = x @ self.weight
        got = _dequant_activation(x / factors, None) @ _dequant_weight(self.weight * factors[:, None])
        return float(np.sum((got - ref) ** 2)), float(np.sum(ref ** 2))


def _job(node, weights: dict) -> _Job | None:
    from onnx import numpy_helper

    if node.op_type not in _SIMULATED:
        return None
    if node.op_type == "Gather":
        table = weights.get(node.input[0])
        return _Job("Gather", (), numpy_helper.to_array(table).astype(np.float32), ("dynamic", "static")) \
            if table is not None else None
    a, b = node.input[0], node.input[1]
    if b in weights and a not in weights:
        w = numpy_helper.to_array(weights[b]).astype(np.float32)
        if node.op_type == "Gemm" and any(attr.name == "transB" and attr.i for attr in node.attribute):
            w = w.T
        return _Job(node.op_type, (a,), w, ("dynamic", "static")) if w.ndim == 2 else None
    if node.op_type == "MatMul" and a not in weights and b not in weights:
        return _Job("MatMul", (a, b), None, ("dynamic", "static"))  # two activations (scores, context)
    return None


def _dequant_activation(x: np.ndarray, fixed: Stats | None) -> np.ndarray:
    """uint8 asymmetric per tensor: as a calibrated QuantizeLinear (``fixed``'s range), or as DynamicQuantizeLinear
    with the range of each call, one row per call (the timed workload's batch of one)."""
    axes = tuple(range(1, x.ndim))
    if fixed is None:
        low = np.minimum(0.0, x.min(axis=axes, keepdims=True))
        high = np.maximum(0.0, x.max(axis=axes, keepdims=True))
    else:
        low, high = np.float32(fixed.low), np.float32(fixed.high)
    scale = np.where(high - low > 0, (high - low) / 255, 1.0)
    zero = np.round(-low / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _dequant_weight(w: np.ndarray) -> np.ndarray:
    """int8 symmetric per tensor."""
    scale = float(np.abs(w).max()) / 127 or 1.0
    return np.clip(np.round(w / scale), -127, 127) * scale
