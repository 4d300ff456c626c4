"""Counting a search space's recipes without enumerating them: what decides whether a study enumerates its space
(``enumerate = "auto"``) or samples it, and what the progress line says of its size."""

from __future__ import annotations

from opsearch.config import ACCURACY_LEVELS, BLOCK_SIZES, FP32_ENDS, FP32_TOP, WEIGHT_BITS, WEIGHT_TYPES
from opsearch.quantize import SMOOTH_ROLES, SMOOTHED_OPS


def space_size(space) -> int:
    """How many distinct recipes ``space`` (a ``SearchSpace``; this module is its helper and does not import it)
    holds (what ``enumerate_params`` yields, counted without it)."""
    total = 0
    for fusion in space.fusions:
        if fusion != "none":
            total += 1  # the fused graph alone
        for mode in space.modes:
            if mode == "mixed":
                total += _mixed_size(space, fusion)
                continue
            for fmt in space._formats_of(fusion, mode):
                n = len(space.operators_for(fusion, mode, fmt))
                if mode == "weight_only":  # block size and symmetry; MatMul adds bits and accuracy level
                    with_matmul = 2 ** (n - 1) if "MatMul" in space.operators_for(fusion, mode, fmt) else 0
                    total += 2 * len(BLOCK_SIZES) * ((2 ** n - 1 - with_matmul)
                                                      + with_matmul * len(WEIGHT_BITS) * len(ACCURACY_LEVELS))
                    continue
                ops = space.operators_for(fusion, mode, fmt)
                # A set with a projection chooses each role's smoothing too (when searched).
                with_projection = 2 ** n - 2 ** (n - len(SMOOTHED_OPS & set(ops))) if space.smoothing else 0
                smoothings = (len(space.smoothing) + 1) ** len(SMOOTH_ROLES)
                sets = 2 ** n - 1 + with_projection * (smoothings - 1)
                if space.asks_weights_only(fusion, mode, ops):
                    # the sets with MatMul (each with a projection), once more with matmul_weights_only
                    sets += 2 ** (n - 1) * (smoothings if space.smoothing else 1)
                flags = 2 * 2 * 2  # per_channel, reduce_range, weights_symmetric
                if mode == "static":
                    flags *= 2 * (len(space.activation_types) + 1)  # activations_symmetric; s8 (x acts) or u8
                    flags *= len(space.calibration_method) * len(space.calibration_samples)
                    flags *= len(space.exclude_fragile)
                else:
                    flags *= len(WEIGHT_TYPES)
                total += sets * flags
    return total

def _mixed_size(space, fusion: str) -> int:
    """Mixed mode's parameter combinations on ``fusion``'s graph (an upper bound on its distinct recipes: two
    combinations that leave the same groups fp32 give one recipe)."""
    roles = space.roles(fusion)
    every = len(space.precisions()) ** len(roles)
    no_static = len([p for p in space.precisions() if p != "static"]) ** len(roles)
    graph = space.groups[fusion]
    ends = len([n for n in FP32_ENDS if 2 * n < graph.layers]) or 1
    tops = len(FP32_TOP) if space.sensitivity else 1
    flags = 2 * 2 * len(WEIGHT_TYPES)
    static_flags = 2 * 2 * 2 * len(space.calibration_method) * len(space.calibration_samples) * (
        len(space.activation_types) + 1) // 2
    smoothings = (len(space.smoothing) + 1) ** len(set(SMOOTH_ROLES) & set(roles))
    return ((no_static - 1) * flags + (every - no_static) * static_flags) * ends * ends * tops * smoothings
