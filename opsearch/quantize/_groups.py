"""A transformer graph's quantizable nodes in groups, found from the graph's structure (never from node names).

Each attention core (a Softmax, or a fused ``Attention``/``MultiHeadAttention``) starts a layer; the layer's index
is how many cores lie before it on the data path. From each core the walk finds, by data flow alone: the score
MatMul (into the Softmax), the context MatMul (out of it), the Q/K/V projections (back from those; a fused
``Attention`` is the three at once), the attention output projection (forward from the context), and the FFN
input and output (the nearest weighted MatMuls forward of the attention output, then of the FFN input). Outside
the layers: the embeddings (lookup tables, a fused ``EmbedLayerNormalization``, and projections before the first
layer), and after the last one the pooler and the classifier head (the last weighted node before an output).
The same walk reads unfused and fused graphs (``Gemm`` or ``MatMul``, a layer fused or not), so BERT, DistilBERT,
RoBERTa, ALBERT, ELECTRA, MPNet and MiniLM graphs all give the same roles. A graph with no attention core, or a
quantizable node the walk does not place, gets one group per node.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opsearch.quantize._graph import constant_tensors

if TYPE_CHECKING:
    import onnx

# The roles of a layer, in the order reports draw them, then the roles outside the layers.
LAYER_ROLES = ("qkv", "scores", "context", "attn_out", "ffn_in", "ffn_out")
OUTER_ROLES = ("embeddings", "pooler", "head")
ROLES = LAYER_ROLES + OUTER_ROLES
NODE_ROLE = "node"  # the fallback: one node of a graph (or a part of it) the walk does not recognise

# Operator types a group may hold: what ONNX Runtime's quantizers take in transformer graphs.
GROUPED_OPS = frozenset({"MatMul", "Gemm", "Gather", "Attention", "EmbedLayerNormalization", "Conv"})
_CORES = frozenset({"Softmax", "Attention", "MultiHeadAttention"})
# Operators between a projection and the attention core that only move, scale or bias data.
_PASSTHROUGH = frozenset({"Add", "Sub", "Mul", "Div", "Reshape", "Transpose", "Cast", "Identity", "Squeeze",
                          "Unsqueeze", "Split", "Slice", "Expand", "Where", "Dropout"})


@dataclass(frozen=True)
class Group:
    key: str  # "layer.3/ffn_in", "embeddings", "node:/classifier/Gemm"
    role: str  # one of ROLES, or NODE_ROLE
    layer: int | None  # None outside the layers
    nodes: tuple[str, ...]  # node names, in graph order
    node_types: tuple[str, ...]  # each node's operator type

    @property
    def op_types(self) -> tuple[str, ...]:
        """The nodes' operator types, sorted, each once."""
        return tuple(sorted(set(self.node_types)))

    def to_dict(self) -> dict:
        return {"key": self.key, "role": self.role, "layer": self.layer, "nodes": list(self.nodes),
                "node_types": list(self.node_types)}


@dataclass(frozen=True)
class GraphGroups:
    groups: tuple[Group, ...]
    layers: int  # how many transformer layers the walk found (0: none, every group is one node)

    def by_key(self) -> dict[str, Group]:
        return {g.key: g for g in self.groups}

    def roles(self) -> list[str]:
        """The roles present, in ROLES order (the fallback's single nodes last)."""
        present = {g.role for g in self.groups}
        return [r for r in (*ROLES, NODE_ROLE) if r in present]

    def counts(self) -> dict[str, int]:
        """How many groups of each role: a layer's role appears once per layer."""
        out: dict[str, int] = {}
        for g in self.groups:
            out[g.role] = out.get(g.role, 0) + 1
        return out

    def group_of(self) -> dict[str, str]:
        """Node name -> the key of its group."""
        return {node: g.key for g in self.groups for node in g.nodes}

    def to_dict(self) -> dict:
        return {"layers": self.layers, "groups": [g.to_dict() for g in self.groups]}

    @classmethod
    def from_dict(cls, data: dict) -> GraphGroups:
        return cls(tuple(Group(g["key"], g["role"], g["layer"], tuple(g["nodes"]), tuple(g["node_types"]))
                         for g in data["groups"]), int(data["layers"]))


def find_groups(model: onnx.ModelProto) -> GraphGroups:
    """The model's groups (see the module's docstring), every node of GROUPED_OPS in exactly one."""
    return _Walk(model).groups()


def group_key(role: str, layer: int | None) -> str:
    return role if layer is None else f"layer.{layer}/{role}"


class _Walk:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.order = {n.name: i for i, n in enumerate(self.nodes)}
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.constants = constant_tensors(model)
        self.tables = {init.name for init in model.graph.initializer if len(init.dims) == 2}
        self.outputs = {o.name for o in model.graph.output}

    # What a node is ------------------------------------------------------------------------------------------

    def weighted(self, node) -> bool:
        """A projection: a MatMul or Gemm with a constant weight, or a fused Attention."""
        if node.op_type == "Attention":
            return True
        return node.op_type in ("MatMul", "Gemm", "Conv") and any(i in self.constants for i in node.input[:2])

    def activation_matmul(self, node) -> bool:
        return node.op_type == "MatMul" and not any(i in self.constants for i in node.input[:2])

    def grouped(self, node) -> bool:
        if node.op_type == "Gather":
            return bool(node.input) and node.input[0] in self.tables
        return node.op_type in GROUPED_OPS

    # Walks -------------------------------------------------------------------------------------------------

    def back(self, tensor: str, want, through=_PASSTHROUGH):
        """The nearest producer upstream of ``tensor`` that ``want`` accepts, passing only ``through``."""
        queue, seen = deque([tensor]), set()
        while queue:
            name = queue.popleft()
            node = self.producer.get(name)
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if want(node):
                return node
            if node.op_type in through:
                queue.extend(i for i in node.input if i and i not in self.constants)
        return None

    def forward(self, tensor: str, want, *, stop=lambda node: False):
        """Nodes ``want`` accepts downstream of ``tensor``, nearest first, not walking past one (nor ``stop``)."""
        found, queue, seen = [], deque([tensor]), set()
        while queue:
            name = queue.popleft()
            for node in self.consumers.get(name, []):
                if node.name in seen:
                    continue
                seen.add(node.name)
                if want(node):
                    found.append(node)
                elif not stop(node):
                    queue.extend(node.output)
        return found

    def core_depth(self) -> dict[str, int]:
        """Node name -> the most attention cores on any path from the inputs to it (the core itself excluded)."""
        depth: dict[str, int] = {}
        for n in self.nodes:
            d = 0
            for i in n.input:
                p = self.producer.get(i)
                if p is not None:
                    d = max(d, depth.get(p.name, 0) + (p.op_type in _CORES))
            depth[n.name] = d
        return depth

    # The groups --------------------------------------------------------------------------------------------

    def groups(self) -> GraphGroups:
        depth = self.core_depth()
        cores = sorted((n for n in self.nodes if n.op_type in _CORES),
                       key=lambda n: (depth[n.name], self.order[n.name]))
        placed: dict[str, tuple[str, int | None]] = {}  # node -> (role, layer)

        def place(node, role: str, layer: int | None) -> None:
            if node is not None and self.grouped(node) and node.name not in placed:
                placed[node.name] = (role, layer)

        layers = 0
        if cores and len({depth[c.name] for c in cores}) == len(cores):  # one core per layer
            layers = len(cores)
            contexts = [self._place_attention(core, layer, place) for layer, core in enumerate(cores)]
            for layer, context in enumerate(contexts):  # once every layer's attention is placed
                self._place_rest(context, layer, place, placed)
        for n in self.nodes:
            if n.name in placed or not self.grouped(n):
                continue
            if layers and (n.op_type in ("Gather", "EmbedLayerNormalization") or depth[n.name] == 0):
                place(n, "embeddings", None)
            elif layers and depth[n.name] >= layers and n.op_type != "Attention":
                place(n, "head" if self._last_projection(n) else "pooler", None)
        members: dict[str, list] = {}
        for n in self.nodes:
            if not self.grouped(n):
                continue
            role, layer = placed.get(n.name, (NODE_ROLE, None))
            key = f"node:{n.name}" if role == NODE_ROLE else group_key(role, layer)
            members.setdefault(key, []).append(n)
        built = []
        for key, ns in members.items():
            role, layer = placed.get(ns[0].name, (NODE_ROLE, None))
            built.append(Group(key, role, layer, tuple(x.name for x in ns), tuple(x.op_type for x in ns)))
        rank = {role: i for i, role in enumerate((*ROLES, NODE_ROLE))}
        built.sort(key=lambda g: (0 if g.role == "embeddings" else 2 if g.layer is None else 1, g.layer or 0,
                                  rank[g.role], self.order[g.nodes[0]]))
        return GraphGroups(tuple(built), layers)

    def _place_attention(self, core, layer: int, place) -> str | None:
        """Place the layer's Q/K/V, score and context nodes; the tensor the attention's heads leave by."""
        if core.op_type == "Attention":
            place(core, "qkv", layer)
            return core.output[0]
        if core.op_type == "MultiHeadAttention":  # query, key, value as its first three inputs
            sources, context_out = [i for i in core.input[:3] if i], core.output[0]
        else:
            scores = self.back(core.input[0], self.activation_matmul)
            context = next(iter(self.forward(core.output[0], self.activation_matmul,
                                             stop=lambda n: n.op_type not in _PASSTHROUGH)), None)
            place(scores, "scores", layer)
            place(context, "context", layer)
            sources = list(scores.input[:2]) if scores is not None else []
            if context is not None:  # the value: the context's input that does not come from the Softmax
                sources += [i for i in context.input[:2] if self.back(i, lambda n: n is core) is None]
            context_out = context.output[0] if context is not None else None
        for tensor in sources:
            place(self.back(tensor, self.weighted), "qkv", layer)
        return context_out

    def _place_rest(self, context_out: str | None, layer: int, place, placed) -> None:
        """The attention output projection, then the FFN's input and output projections."""
        if context_out is None:
            return
        out = next(iter(self.forward(context_out, self.weighted)), None)
        if out is None or out.name in placed:
            return
        place(out, "attn_out", layer)
        ffn_in = next((n for n in self.forward(out.output[0], self.weighted) if n.name not in placed), None)
        if ffn_in is None:
            return
        place(ffn_in, "ffn_in", layer)
        ffn_out = next((n for n in self.forward(ffn_in.output[0], self.weighted) if n.name not in placed), None)
        place(ffn_out, "ffn_out", layer)

    def _last_projection(self, node) -> bool:
        """True when no other projection lies between ``node`` and a graph output."""
        return not self.forward(node.output[0], self.weighted)


# Precisions ------------------------------------------------------------------------------------------------------

# ONNX Runtime's dynamic quantizer takes every group (the attention scores and context too, as optimum's
# quantizer asks it to); its static quantizer takes no fused Attention or EmbedLayerNormalization.
_STATIC_OPS_NOT = frozenset({"Attention", "EmbedLayerNormalization"})


def precisions_for(group: Group) -> tuple[str, ...]:
    """The precisions a group can take, fp32 first."""
    out = ["fp32", "dynamic"]
    if not _STATIC_OPS_NOT & set(group.op_types):
        out.append("static")
    return tuple(out)


def plan(recipe, groups: GraphGroups) -> dict[str, str]:
    """Group key -> the precision a mixed recipe gives it: its role's precision, fp32 when its layer is among the
    first ``fp32_first`` or last ``fp32_last`` or its key is in ``fp32_groups``."""
    by_role = dict(recipe.precisions)
    keep = set(recipe.fp32_groups)
    out = {}
    for g in groups.groups:
        precision = by_role.get(g.role, "fp32")
        if g.layer is not None and (g.layer < recipe.fp32_first or g.layer >= groups.layers - recipe.fp32_last):
            precision = "fp32"
        if g.key in keep:
            precision = "fp32"
        if precision not in precisions_for(g):
            raise ValueError(f"group {g.key} ({'+'.join(g.op_types)}) cannot be {precision}: it takes "
                             f"{', '.join(precisions_for(g))}")
        out[g.key] = precision
    return out


def realized(groups: GraphGroups, kinds: dict[str, str]) -> dict[str, str]:
    """Group key -> the precision the quantized graph gives it, read from its nodes' kinds (``quantized_nodes``):
    "fp32", one kind when every node has it, else the kinds with their node counts ("dynamic 2/3")."""
    out = {}
    for g in groups.groups:
        found = [kinds[n] for n in g.nodes if n in kinds]
        if not found:
            out[g.key] = "fp32"
        elif len(found) == len(g.nodes) and len(set(found)) == 1:
            out[g.key] = found[0]
        else:
            out[g.key] = " ".join(f"{k} {found.count(k)}/{len(g.nodes)}" for k in sorted(set(found)))
    return out
