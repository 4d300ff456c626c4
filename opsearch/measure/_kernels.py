"""Which fp32 nodes a recipe replaces, and by what kind of quantized kernel: node classes read from the graph (MatMuls
with a constant weight or of two activations, embedding Gathers, fused Attention), and the kernel kind a recipe's
flags give each (the cost model's vocabulary)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsearch.quantize import GraphGroups, QuantRecipe, plan

if TYPE_CHECKING:
    import onnx

# Node classes: what a recipe can quantize in an fp32 graph, told apart by what changes the kernel.
MATMUL_W = "matmul_w"  # a MatMul with a constant weight
MATMUL_A = "matmul_a"  # a MatMul of two activations (attention scores, context)
GEMM = "gemm"  # ONNX Runtime's dynamic quantizer rewrites it as a weighted MatMul
GATHER = "gather"  # an embedding table's lookup
ATTENTION = "attention"  # a fused Attention
EMBED_LN = "embed_ln"  # a fused EmbedLayerNormalization
CLASS_OF_TYPE = {"Gemm": GEMM, "Attention": ATTENTION, "EmbedLayerNormalization": EMBED_LN, "Conv": "conv",
                  "LSTM": "lstm", "Transpose": "transpose"}


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
        elif node.op_type in CLASS_OF_TYPE:
            out[node.name] = CLASS_OF_TYPE[node.op_type]
    return out


class NotPredicted(ValueError):
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
    nodes gain Q/DQ pairs depends on which neighbours are quantized too). A recipe's ``matmul_weights_only`` keeps
    every MatMul of two activations fp32.
    """
    if not recipe.operators_to_quantize:
        return {}
    excluded = set(recipe.nodes_to_exclude)
    weights_only = recipe.matmul_weights_only
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
            raise NotPredicted("a mixed recipe needs the graph's groups")
        members = groups.by_key()
        try:
            precisions = plan(recipe, groups)
        except ValueError as exc:  # a precision a group cannot take: the quantizer would refuse it too
            raise NotPredicted(str(exc)) from exc
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
    raise NotPredicted(f"{recipe.mode} mode is not predicted: which nodes gain quantize/dequantize pairs depends "
                        "on which neighbours are quantized too")


def borrowed_kinds(fusion: str, kind: str) -> list[tuple[str, str]]:
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
