"""Stage 2, the graph: inspect it, fuse it, and quantize it as a recipe says."""

from __future__ import annotations

from opsearch.quantize._apply import QuantizationFailed, QuantizedModel, quantize
from opsearch.quantize._fragile import FragileNode, fragile_nodes
from opsearch.quantize._fusion import FUSION_LEVELS, FusionFailed, fused_model
from opsearch.quantize._graph import (
    QUANT_MODES,
    GraphInfo,
    MatMulKinds,
    OperatorInfo,
    graph_hash,
    inspect_model,
    matmul_kinds,
    model_file_mb,
    quantizable_registry,
    quantized_node_counts,
    quantized_nodes,
)
from opsearch.quantize._groups import (
    LAYER_ROLES,
    OUTER_ROLES,
    ROLES,
    GraphGroups,
    Group,
    find_groups,
    plan,
    precisions_for,
    realized,
)
from opsearch.quantize._ranges import GroupRange, GroupRanges, format_ranges, measure_ranges
from opsearch.quantize._recipe import QuantRecipe
from opsearch.quantize._smooth import SMOOTH_ROLES, SMOOTHED_OPS, smoothed_model

__all__ = [
    "FUSION_LEVELS",
    "FragileNode",
    "FusionFailed",
    "GraphInfo",
    "MatMulKinds",
    "OperatorInfo",
    "QUANT_MODES",
    "QuantRecipe",
    "QuantizationFailed",
    "QuantizedModel",
    "fragile_nodes",
    "fused_model",
    "graph_hash",
    "inspect_model",
    "matmul_kinds",
    "model_file_mb",
    "quantizable_registry",
    "quantize",
    "quantized_node_counts",
    "quantized_nodes",
    "LAYER_ROLES",
    "OUTER_ROLES",
    "ROLES",
    "Group",
    "GraphGroups",
    "GroupRange",
    "GroupRanges",
    "find_groups",
    "format_ranges",
    "measure_ranges",
    "plan",
    "precisions_for",
    "realized",
    "SMOOTH_ROLES",
    "SMOOTHED_OPS",
    "smoothed_model",
]
