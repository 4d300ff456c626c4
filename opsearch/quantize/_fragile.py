"""Nodes of a transformer graph known to break under static quantization, found from the graph's structure.

Static quantization fixes each activation's range from calibration data. That fails where ranges are
wide or where small differences matter: layer normalization (its statistics), GELU's Erf, the residual
Adds (outliers accumulate along the residual stream), the Add of the attention mask before Softmax
(-inf-like values crush every other score to one int8 step), and the embedding sums. Names and node
order come from the graph itself, so the function works on exported and fused graphs alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

# Fused normalization and activation kernels (ONNX Runtime contrib operators and ONNX's own).
_FUSED_FRAGILE = {
    "LayerNormalization": "layer normalization",
    "SkipLayerNormalization": "layer normalization (fused with the residual Add)",
    "SimplifiedLayerNormalization": "layer normalization",
    "SkipSimplifiedLayerNormalization": "layer normalization (fused with the residual Add)",
    "EmbedLayerNormalization": "embedding sum and layer normalization",
    "Gelu": "GELU",
    "BiasGelu": "GELU",
    "FastGelu": "GELU",
}
_LAYERNORM_OPS = {"ReduceMean", "Sub", "Pow", "Add", "Sqrt", "Div", "Mul"}


@dataclass(frozen=True)
class FragileNode:
    name: str
    op_type: str
    reason: str


def fragile_nodes(model: onnx.ModelProto) -> list[FragileNode]:
    """Every node that static quantization should leave in fp32, in graph order, each with why."""
    graph = _Graph(model)
    reasons: dict[str, str] = {}

    def mark(node: onnx.NodeProto, reason: str) -> None:
        reasons.setdefault(node.name, reason)

    for node in model.graph.node:
        if node.op_type in _FUSED_FRAGILE:
            mark(node, _FUSED_FRAGILE[node.op_type])
        elif node.op_type == "ReduceMean":
            for part in graph.decomposed_layernorm(node):
                mark(part, "layer normalization (decomposed)")
        elif node.op_type == "Erf":
            for part in graph.erf_gelu(node):
                mark(part, "GELU (Erf)")
    for node in model.graph.node:
        if node.op_type != "Add" or node.name in reasons:
            continue
        if any(c.op_type == "Softmax" for c in graph.consumers(node.output[0])):
            mark(node, "attention mask Add before Softmax")
        elif graph.is_embedding_add(node):
            mark(node, "embedding sum")
        elif all(not graph.is_constant(i) for i in node.input):
            mark(node, "residual Add (two activations)")
    return [FragileNode(n.name, n.op_type, reasons[n.name]) for n in model.graph.node if n.name in reasons]


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.producer = {out: node for node in model.graph.node for out in node.output}
        self._consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in model.graph.node:
            for name in node.input:
                self._consumers.setdefault(name, []).append(node)
        self.constants = {init.name for init in model.graph.initializer}
        for node in model.graph.node:  # topological order: a node's inputs are settled before it
            if node.op_type == "Constant" or (
                    node.op_type in ("Identity", "Cast", "Unsqueeze", "Reshape")
                    and node.input and all(i in self.constants for i in node.input if i)):
                self.constants.update(node.output)
        self._embedding: dict[str, bool] = {}

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return self._consumers.get(tensor, [])

    def is_constant(self, tensor: str) -> bool:
        return tensor in self.constants

    def is_embedding_add(self, node: onnx.NodeProto) -> bool:
        """An Add of embedding-table lookups (Gather on a weight table), or of such a sum and another lookup."""
        if node.name not in self._embedding:
            found = False
            for name in node.input:
                source = self.producer.get(name)
                if source is None:
                    continue
                if source.op_type == "Gather" and source.input and self.is_constant(source.input[0]):
                    found = True
                elif source.op_type == "Add" and self.is_embedding_add(source):
                    found = True
            self._embedding[node.name] = found
        return self._embedding[node.name]

    def decomposed_layernorm(self, mean: onnx.NodeProto) -> list[onnx.NodeProto]:
        """ReduceMean(x) -> Sub(x, mean) -> Pow -> ReduceMean -> Add(eps) -> Sqrt -> Div -> Mul(gamma) -> Add(beta).

        The nodes of that pattern starting at ``mean``, or nothing when ``mean`` does not start one.
        """
        x = mean.input[0]
        subs = [c for c in self.consumers(mean.output[0]) if c.op_type == "Sub" and x in c.input]
        if not subs:
            return []
        found = [mean]
        frontier = list(subs)
        seen = {mean.name}
        while frontier:
            node = frontier.pop()
            if node.name in seen or node.op_type not in _LAYERNORM_OPS:
                continue
            seen.add(node.name)
            found.append(node)
            ends = node.op_type == "Add" and any(
                self.producer.get(i) is not None and self.producer[i].op_type == "Mul" for i in node.input)
            if not ends:
                frontier.extend(self.consumers(node.output[0]))
        return found if any(n.op_type == "Sqrt" for n in found) else []

    def erf_gelu(self, erf: onnx.NodeProto) -> list[onnx.NodeProto]:
        """x -> Div(x, sqrt2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(0.5): the exported exact GELU."""
        parts = [erf]
        source = self.producer.get(erf.input[0])
        if source is not None and source.op_type in ("Div", "Mul"):
            parts.append(source)
        frontier, depth = [erf], 0
        while frontier and depth < 3:
            following = [c for n in frontier for c in self.consumers(n.output[0]) if c.op_type in ("Add", "Mul")]
            parts.extend(following)
            frontier, depth = following, depth + 1
        return parts
