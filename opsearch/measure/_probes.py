"""Building the cost model: the probe graphs that cover a study's modes and fusion levels, each quantized with the
study's own quantizer and profiled beside the graph it extends, once per study and machine."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from opsearch.errors import TrialFailed
from opsearch.measure._cost import MIN_FACTOR, CostModel, GraphCost, Probe
from opsearch.measure._kernels import (
    ATTENTION,
    CLASS_OF_TYPE,
    GATHER,
    GEMM,
    MATMUL_A,
    MATMUL_W,
    node_classes,
    replaced_nodes,
)
from opsearch.measure._profile import NodeProfile, outside_time, profile_together
from opsearch.measure._sessions import Feed, ThreadSettings
from opsearch.quantize import GraphGroups, QuantRecipe, find_groups

if TYPE_CHECKING:
    pass


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
        if dynamic and CLASS_OF_TYPE["Transpose"] in present and present & {MATMUL_W, GEMM}:
            # ONNX Runtime moves a Transpose to int8 only behind a quantized MatMul: measured on top of the MatMuls.
            out.append((f"dynamic MatMul + Transpose s8{tag}", QuantRecipe(
                "dynamic", ("MatMul", "Transpose"), fusion=fusion, nodes_to_exclude=() if fusion == "none" else
                activations)))
        if dynamic and ATTENTION in present:  # QAttention holds a layer's attention: too large to borrow a factor
            attention = QuantRecipe("dynamic", ("Attention",), fusion=fusion)
            out.append((f"dynamic Attention s8{tag}", attention))
            out.append((f"dynamic Attention u8{tag}", dataclasses.replace(attention, weights_dtype="QUInt8")))
            # Per-channel QAttention runs apart from per-tensor's: borrowing its factor predicted MiniLM's (AVX-512
            # VNNI) a quarter too fast, against a few percent for the other kernels.
            out.append((f"dynamic Attention s8 per-channel{tag}", dataclasses.replace(attention, per_channel=True)))
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
                     passes: int = 5, on_probe=None,
                     static_ops: Mapping[str, Sequence[str]] | None = None) -> CostModel:
    """Profile the fp32 graph at each fusion level and every probe, and derive the kinds' factors.

    ``feeds`` are the timed workload's calls (a few dozen suffice: the shapes matter, not the texts). ``probes``
    defaults to ``probe_recipes`` for ``modes`` (static probes only when ``calibration`` is given). ``static_ops``
    ("<fusion>|<format>" -> the operator types a static recipe may quantize there; needs ``calibration``) adds one
    static probe per key, every type quantized, for the static mode's bounds (``static_savings``). The probes'
    quantized models go to ``work_dir`` and are removed at the end; ``cache_dir`` is the study's cache of fused
    graphs. ``on_probe(name)`` hears each probe start (a progress line). The model comes back calibrated on the
    probes' own timings beside fp32 (``CostModel.probe_checks``). It profiles and times: hold the timing lock."""
    from opsearch.measure._machine import fingerprint
    from opsearch.quantize import fused_model

    work_dir = Path(work_dir)
    cache = Path(cache_dir) if cache_dir is not None else work_dir / "cache"
    levels = list(dict.fromkeys(["none", *fusions]))
    paths = {level: fused_model(Path(fp32_path), level, cache_dir=cache) for level in levels}
    graphs = _graph_costs(paths, feeds, threads, passes)
    if probes is None:
        probes = probe_recipes({k: g.classes for k, g in graphs.items()}, modes=modes,
                               static_probes=calibration is not None)
    model = CostModel(graphs, {}, machine=fingerprint(), threads=dataclasses.asdict(threads),
                      workload={"calls": len(feeds), "passes": passes})
    # Each probe is profiled beside the nearest graph whose replaced nodes it all replaces alike (fp32's, or an
    # earlier probe's, kept until the end for that): the kernels both share drop out, and with them their noise.
    done: list[tuple[str, str, dict[str, str], Path]] = [("fp32", level, {}, paths[level]) for level in levels]
    records: list[Probe] = []
    try:
        for i, (name, recipe) in enumerate(probes):
            if on_probe is not None:
                on_probe(name)
            record, path = _run_probe(i, name, recipe, model, done, Path(fp32_path), work_dir, cache, feeds,
                                      threads, calibration, passes)
            records.append(record)
            if path is not None:
                done.append((name, recipe.fusion, record_nodes(recipe, model), path))
            if record.factor is not None:
                model = dataclasses.replace(model, factors={**model.factors, f"{recipe.fusion}|{record.kind}":
                                                            record.factor})
        savings = {}
        if static_ops and calibration is not None:
            rows = {k: v[:STATIC_CALIBRATION_ROWS] for k, v in calibration.items()}  # the ranges do not matter
            for j, (key, ops) in enumerate(static_ops.items()):
                fusion, fmt = key.split("|")
                recipe = QuantRecipe("static", tuple(ops), format=fmt, fusion=fusion,
                                     calibration_samples=STATIC_CALIBRATION_ROWS)
                name = f"static {fmt} every type{'' if fusion == 'none' else '@' + fusion}"
                if on_probe is not None:
                    on_probe(name)
                record, saved = _static_probe(name, recipe, paths[fusion], Path(fp32_path),
                                              work_dir / f"probe-{len(probes) + j}", cache, feeds, threads, rows,
                                              passes)
                records.append(record)
                if saved is not None:
                    savings[f"{fusion}|static/{fmt}"] = saved
        model = dataclasses.replace(model, savings=savings)
    finally:
        for i in range(len(probes) + len(static_ops or {})):
            shutil.rmtree(work_dir / f"probe-{i}", ignore_errors=True)
    # The probes' own timings against fp32 give the model its first bias and band (``CostModel.calibrate``).
    return dataclasses.replace(model, probes=tuple(records)).calibrate()


# The static probes ------------------------------------------------------------------------------------------------

# Calibration rows a static probe quantizes with: its ranges do not change its kernels' speed.
STATIC_CALIBRATION_ROWS = 8
# Kernels that move values between float and int8 at the borders of what a recipe quantizes: a bound leaves them out.
BORDER_KERNELS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
# The integer kernels whose name does not say which operator type they compute, and what it is.
INTEGER_KERNELS = {"MatMulInteger": "MatMul", "DynamicQuantizeMatMul": "MatMul", "MatMulIntegerToFloat": "MatMul",
                   "QGemm": "Gemm", "QAttention": "Attention", "QEmbedLayerNormalization": "EmbedLayerNormalization"}
# ONNX Runtime's fused fp32 kernels and the operator types of the nodes each fuses: quantizing any of them breaks
# the fusion, and the kernel's whole time counts for each (a bound may count a saving twice, never miss one).
FUSED_KERNELS = {"FusedMatMul": ("MatMul", "Mul", "Transpose"), "FusedGemm": ("Gemm",),
                 "BiasGelu": ("Add", "Mul", "Div"), "Gelu": ("Mul", "Add", "Div"), "FastGelu": ("Mul", "Add"),
                 "SkipLayerNormalization": ("Add", "LayerNormalization"),
                 "SkipSimplifiedLayerNormalization": ("Add",), "BiasSoftmax": ("Add", "Softmax"),
                 "BiasAdd": ("Add",), "MatMulAdd": ("MatMul", "Add")}


def static_savings(ops: Sequence[str], base: NodeProfile, probe: NodeProfile) -> dict[str, float]:
    """Per operator type of ``ops``, the most quantizing it saves per call: the fp32 kernels the all-types probe
    removed that compute it (a fused kernel counts for each type it fuses; one of no known type, for every type),
    less the integer kernels of that type it added. The border kernels, and the fp32 pieces of a broken fusion the
    probe added (Erf, Div, ...), are left out: the bound is on what quantizing can save, not what it costs."""
    ops = set(ops)
    before = {(n, base.op_types.get(n)) for n in base.seconds}
    after = {(n, probe.op_types.get(n)) for n in probe.seconds}
    saved = dict.fromkeys(sorted(ops), 0.0)
    for name, seconds in base.seconds.items():
        kind = base.op_types.get(name, "")
        if (name, kind) in after:
            continue
        if kind in ops:
            covers = {kind}
        elif kind in FUSED_KERNELS:
            covers = set(FUSED_KERNELS[kind]) & ops
        else:  # a kernel of no known type (a Shape the quantizer renamed): it may be any type's
            covers = ops
        for op in covers:
            saved[op] += seconds
    for name, seconds in probe.seconds.items():
        kind = probe.op_types.get(name, "")
        if (name, kind) in before or kind in BORDER_KERNELS:
            continue
        op = INTEGER_KERNELS.get(kind) or (kind[len("QLinear"):] if kind.startswith("QLinear") else kind)
        if op in saved:
            saved[op] -= seconds
    return saved


def _static_probe(name: str, recipe: QuantRecipe, fp32_graph: Path, fp32_path: Path, out_dir: Path, cache: Path,
                  feeds: Sequence[Feed], threads: ThreadSettings, calibration: dict[str, np.ndarray],
                  passes: int) -> tuple[Probe, dict[str, float] | None]:
    """The static probe of one (fusion level, format): every type quantized, profiled beside that level's fp32
    graph; its record and the savings it measured (None when it failed to quantize: static stays unpredicted)."""
    from opsearch.quantize import quantize

    stored = json.loads(json.dumps(recipe.to_dict()))
    try:
        quantized = quantize(recipe, fp32_path=fp32_path, out_dir=out_dir, calibration=calibration, cache_dir=cache)
    except TrialFailed as exc:
        return Probe(name, stored, "fp32", "", None, 0.0, 0.0, {}, {}, note=f"quantization failed: {exc}"), None
    base, profile = profile_together([fp32_graph, quantized.path], feeds, threads, passes=passes)
    saved = static_savings(recipe.operators_to_quantize, base, profile)
    note = "static bound; saved per call: " + ", ".join(f"{op} {t * 1e3:.3f} ms" for op, t in saved.items())
    return Probe(name, stored, "fp32", f"static/{recipe.format}", None, 0.0, profile.kernel_s - base.kernel_s, {},
                 dict(quantized.node_counts), profile.wall_s, base.wall_s, note), saved


def _graph_costs(paths: dict[str, Path], feeds: Sequence[Feed], threads: ThreadSettings,
                 passes: int) -> dict[str, GraphCost]:
    """Each fusion level's fp32 graph profiled (all in alternating passes): its nodes' times and classes."""
    import onnx

    graphs: dict[str, GraphCost] = {}
    for level, profile in zip(paths, profile_together(list(paths.values()), feeds, threads, passes=passes),
                              strict=True):
        model = onnx.load(str(paths[level]), load_external_data=False)
        classes = node_classes(model)
        graphs[level] = GraphCost(level, {n: profile.seconds.get(n, 0.0) for n in classes}, classes,
                                  profile.kernel_s, profile.wall_s, find_groups(model).to_dict(),
                                  outside_time(profile))
    return graphs


def record_nodes(recipe: QuantRecipe, model: CostModel) -> dict[str, str]:
    """The fp32 nodes ``recipe`` replaces on its graph, and their kinds."""
    graph = model.graphs[recipe.fusion]
    return replaced_nodes(recipe, graph.classes, GraphGroups.from_dict(graph.groups) if graph.groups else None)


def _run_probe(i: int, name: str, recipe: QuantRecipe, model: CostModel, done: list, fp32_path: Path,
               work_dir: Path, cache: Path, feeds: Sequence[Feed], threads: ThreadSettings,
               calibration: dict[str, np.ndarray] | None, passes: int) -> tuple[Probe, Path | None]:
    """One probe quantized and profiled beside its parent (the nearest graph it extends); its record, and its
    model's path (None when it failed to quantize: the kind stays unmeasured, the other probes go on)."""
    from opsearch.quantize import quantize

    nodes = record_nodes(recipe, model)
    parent, _, parent_nodes, parent_path = max(
        (d for d in done if d[1] == recipe.fusion and d[2].items() <= nodes.items()), key=lambda d: len(d[2]))
    try:
        quantized = quantize(recipe, fp32_path=fp32_path, out_dir=work_dir / f"probe-{i}",
                             calibration=calibration, cache_dir=cache)
    except TrialFailed as exc:
        return Probe(name, json.loads(json.dumps(recipe.to_dict())), parent, "", None, 0.0, 0.0, {}, {},
                     note=f"quantization failed: {exc}"), None
    base, profile = profile_together([parent_path, quantized.path], feeds, threads, passes=passes)
    record = _probe_factor(name, recipe, model, nodes, (parent, parent_nodes, base), profile, quantized.node_counts)
    return record, quantized.path


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
    by_class = {v: k for k, v in CLASS_OF_TYPE.items()}
    return {n: "MatMul" if c in (MATMUL_W, MATMUL_A) else "Gather" if c == GATHER else by_class.get(c, c)
            for n, c in classes.items()}
