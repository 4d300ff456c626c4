"""A model's graph inspection as ``opsearch inspect`` shows it: its operator types and which each quantization
mode can quantize, the groups found from the graph's structure, and the ranges pass; as a table or as JSON."""

from __future__ import annotations

import importlib.metadata
import json
from typing import NamedTuple

from opsearch.quantize import QUANT_MODES, GraphGroups, GraphInfo, GroupRanges, format_ranges


class Inspection(NamedTuple):
    model: str  # as the user named it
    task: str  # the task the model was prepared for ("classification", "embedding")
    graph: GraphInfo
    groups: GraphGroups | None = None  # None: not asked for (neither --groups nor --ranges)
    ranges: GroupRanges | None = None  # None: no ranges pass ran (no --ranges)


def inspection_json(inspection: Inspection) -> str:
    """Everything the inspection found, as indented JSON."""
    extra = {"groups": inspection.groups.to_dict()} if inspection.groups is not None else {}
    if inspection.ranges is not None:
        extra["ranges"] = inspection.ranges.to_dict()
    return json.dumps({"model": inspection.model, "task": inspection.task, **inspection.graph.to_dict(), **extra},
                      indent=2)


def format_inspection(inspection: Inspection, *, list_groups: bool = False) -> str:
    """The operator table, then the groups' counts (with ``list_groups``, every group and its nodes) and the
    ranges pass, when the inspection holds them."""
    info = inspection.graph
    lines = [f"{inspection.model}: {sum(o.count for o in info.operators)} nodes, {len(info.operators)} operator "
             f"types ({inspection.task} model)",
             f"{'operator':<24}{'nodes':>6}  " + "  ".join(f"{m:>16}" for m in QUANT_MODES)]
    for op in info.operators:
        marks = "  ".join(f"{'yes' if op.quantizable[m] else '-':>16}" for m in QUANT_MODES)
        lines.append(f"{op.op_type:<24}{op.count:>6}  {marks}")
    lines.append("quantizable: read from onnxruntime.quantization.registry (onnxruntime "
                 f"{importlib.metadata.version('onnxruntime')}); weight_only: what its MatMulNBitsQuantizer takes "
                 "(a MatMul or Gather of a constant weight).")
    lines += _matmul_kinds(info)
    groups = inspection.groups
    if groups is not None:
        lines += ["", f"groups found from the graph's structure: {groups.layers} layers; "
                  + ", ".join(f"{role} {n}" for role, n in groups.counts().items())]
        if list_groups:
            lines += [f"  {g.key:<22} {len(g.nodes)} x {'+'.join(g.op_types):<12} {', '.join(g.nodes)}"
                      for g in groups.groups]
    if inspection.ranges is not None:
        lines += ["", format_ranges(inspection.ranges)]
    return "\n".join(lines)


def _matmul_kinds(info: GraphInfo) -> list[str]:
    """The MatMuls with a constant weight and those whose both inputs are activations: the choice
    ``matmul_weights_only`` makes."""
    total = info.weight_matmuls + info.activation_matmuls
    if not total:
        return []
    if not info.activation_matmuls:
        return [f"MatMul {total}: all with a constant weight"]
    return [f"MatMul {total}: {info.weight_matmuls} with a constant weight, {info.activation_matmuls} activation x "
            "activation (attention's scores and context; matmul_weights_only keeps them fp32)"]
