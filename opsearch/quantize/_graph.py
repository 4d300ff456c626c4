"""ONNX graph inspection: which operator types a model holds, which of them ONNX Runtime can quantize
in each mode, which MatMuls multiply by a constant weight and which multiply two activations, and, after
quantization, which nodes actually were."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

# Quantization modes as ONNX Runtime's quantizer names its operator registries.
QUANT_MODES = ("dynamic", "static_qoperator", "static_qdq", "weight_only")
# What MatMulNBitsQuantizer (weight-only, blocked) quantizes: MatMuls with a constant weight, Gathers of a table.
WEIGHT_ONLY_OPS = frozenset({"MatMul", "Gather"})

# Operator types that carry integer arithmetic in a quantized graph (QOperator format and dynamic mode).
_QUANTIZED_OP_PREFIXES = ("QLinear", "QGemm", "QAttention", "QEmbedLayerNormalization", "MatMulInteger",
                          "ConvInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "QOrdered",
                          "MatMulIntegerToFloat", "MatMulNBits", "GatherBlockQuantized")
_QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
# Operators that give a constant when fed constants only: how exporters write a weight (transposed, cast, reshaped).
_CONSTANT_PASSTHROUGH = frozenset({"Identity", "Cast", "Transpose", "Unsqueeze", "Reshape"})


def quantizable_registry() -> dict[str, frozenset[str]]:
    """Operator types ONNX Runtime's quantizer handles, per mode, read from its own registries."""
    from onnxruntime.quantization import registry

    return {
        "dynamic": frozenset(registry.IntegerOpsRegistry),
        "static_qoperator": frozenset(registry.QLinearOpsRegistry),
        "static_qdq": frozenset(registry.QDQRegistry),
        "weight_only": WEIGHT_ONLY_OPS,
    }


@dataclass(frozen=True)
class OperatorInfo:
    op_type: str
    count: int
    quantizable: dict[str, bool]  # mode -> can ONNX Runtime quantize it


@dataclass(frozen=True)
class GraphInfo:
    path: str
    operators: list[OperatorInfo]  # most frequent first
    # The MatMuls with a constant weight, and those of two activations (attention's scores and context): see
    # ``matmul_kinds``. 0 and 0 for an inspection that did not read them.
    weight_matmuls: int = 0
    activation_matmuls: int = 0

    def quantizable_in(self, mode: str) -> list[str]:
        return sorted(op.op_type for op in self.operators if op.quantizable[mode])

    def op_types(self) -> list[str]:
        return sorted(op.op_type for op in self.operators)

    @property
    def mixes_matmuls(self) -> bool:
        """Whether the graph holds both kinds of MatMul, so that quantizing the weight MatMuls only (a recipe's
        ``matmul_weights_only``) gives another graph than quantizing every MatMul."""
        return self.weight_matmuls > 0 and self.activation_matmuls > 0

    def to_dict(self) -> dict:
        return {"path": self.path, "operators": [
            {"op_type": o.op_type, "count": o.count, "quantizable": o.quantizable} for o in self.operators],
            "matmuls": {"weight": self.weight_matmuls, "activation": self.activation_matmuls}}


@dataclass(frozen=True)
class MatMulKinds:
    """A graph's MatMul nodes by what they multiply, each in graph order."""

    weight: tuple[str, ...]  # an input is a constant: a projection, what Intel Neural Compressor quantizes
    activation: tuple[str, ...]  # both inputs are activations: attention's scores (Q x K^T) and context (x V)


def inspect_model(path: str | Path) -> GraphInfo:
    """Count the model's nodes per operator type, mark what each quantization mode can quantize, and count the
    MatMuls of each kind (``matmul_kinds``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = Counter(node.op_type for node in model.graph.node)
    registry = quantizable_registry()
    operators = [OperatorInfo(op, n, {mode: op in registry[mode] for mode in QUANT_MODES})
                 for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    kinds = matmul_kinds(model)
    return GraphInfo(path=str(path), operators=operators, weight_matmuls=len(kinds.weight),
                     activation_matmuls=len(kinds.activation))


def constant_tensors(model: onnx.ModelProto) -> set[str]:
    """The tensors the graph fixes: initializers, Constant outputs, and what Identity, Cast, Transpose, Unsqueeze
    or Reshape make of constants alone (exporters write weights so: transposed, cast to float16, ...)."""
    constants = {init.name for init in model.graph.initializer}
    for node in model.graph.node:  # topological order: a node's inputs are settled before it
        if node.op_type == "Constant" or (node.op_type in _CONSTANT_PASSTHROUGH and node.input
                                          and all(i in constants for i in node.input if i)):
            constants.update(node.output)
    return constants


def matmul_kinds(model: onnx.ModelProto) -> MatMulKinds:
    """The graph's MatMuls with a constant input (a weight), and those whose both inputs are activations.

    Read from the graph's data flow, not from names. A fused graph's ``Attention`` nodes hold their attention
    MatMuls inside: only the MatMuls still standing are listed.
    """
    constants = constant_tensors(model)
    weight: list[str] = []
    activation: list[str] = []
    for node in model.graph.node:
        if node.op_type == "MatMul":
            (weight if any(i in constants for i in node.input[:2]) else activation).append(node.name)
    return MatMulKinds(tuple(weight), tuple(activation))


def quantized_node_counts(fp32: onnx.ModelProto, quantized: onnx.ModelProto, *,
                          operators: list[str] | tuple[str, ...], mode: str = "dynamic",
                          qdq: bool = False) -> dict[str, int]:
    """How many nodes of each fp32 operator type the quantized graph computes in int8 (or fewer bits)."""
    types = {node.name: node.op_type for node in fp32.graph.node}
    counts = Counter(types[name] for name in quantized_nodes(fp32, quantized, operators=operators, mode=mode,
                                                             qdq=qdq))
    return dict(sorted(counts.items()))


def quantized_nodes(fp32: onnx.ModelProto, quantized: onnx.ModelProto, *, operators: list[str] | tuple[str, ...],
                    mode: str = "dynamic", qdq: bool = False) -> dict[str, str]:
    """The fp32 graph's nodes that the quantized graph computes in int8 (or fewer bits), each with how:
    "dynamic", "static" or "weight_only".

    A node counts when the quantizer replaced it by an integer operator (``<name>_quant``, ``QLinear*``; the
    operator says how), or when it still stands, is of a type in ``operators``, and works on quantized data: in QDQ
    format its data inputs (a Gather's table, a MatMul's two operands) are DequantizeLinear outputs; otherwise it
    reads an int8 tensor (an int8 weight, or the output of QuantizeLinear or of another int8 node) or feeds a
    DequantizeLinear. A standing node's kind is ``mode``'s; in a mixed graph (QDQ static parts, dynamic parts) a
    node reading DequantizeLinear outputs is static, one reading an int8 table dynamic.
    """
    import onnx

    original = {node.name: node.op_type for node in fp32.graph.node}
    asked = set(operators)
    int8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    quantized_tensors = {init.name for init in quantized.graph.initializer if init.data_type in int8}
    producers = {out: node.op_type for node in quantized.graph.node for out in node.output}
    consumers: dict[str, set[str]] = {}
    for node in quantized.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    mixed = mode == "mixed"

    kinds: dict[str, str] = {}
    for node in quantized.graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in ("QuantizeLinear", "DynamicQuantizeLinear") or node.op_type.startswith("QLinear"):
            quantized_tensors.add(node.output[0])
        if node.op_type in _QDQ:
            continue
        if node.op_type.startswith(_QUANTIZED_OP_PREFIXES):
            base = _original_name(node.name, original)
            kinds.setdefault(base or node.name, _kind_of(node.op_type))
        elif original.get(node.name) == node.op_type and node.op_type in asked and node.name not in kinds:
            data = node.input[:1] if node.op_type == "Gather" else node.input[:2]  # what an int8 kernel reads
            reads_dq = all(producers.get(i) == "DequantizeLinear" for i in data if i)
            kind = "static" if (qdq or mixed) and reads_dq else None
            if kind is None and not qdq and (any(i in quantized_tensors for i in node.input) or any(
                    "DequantizeLinear" in consumers.get(o, set()) for o in node.output)):
                kind = "dynamic" if mixed else mode
                quantized_tensors.update(node.output)
            if kind is not None:
                kinds[node.name] = kind
    return {name: kinds[name] for name in original if name in kinds}


def _kind_of(quantized_op: str) -> str:
    if quantized_op.startswith(("QLinear", "QGemm", "QOrdered")):
        return "static"
    if quantized_op.startswith(("MatMulNBits", "GatherBlockQuantized")):
        return "weight_only"
    return "dynamic"


def _original_name(name: str, original: dict[str, str]) -> str | None:
    candidate = name
    for suffix in ("_quant", "_MatMul", "_Gemm", "_Q4", "_Q8"):
        if candidate in original:
            return candidate
        if candidate.endswith(suffix):
            candidate = candidate[: -len(suffix)]
    return candidate if candidate in original else None


def _base_type(quantized_op: str) -> str:
    if quantized_op.startswith("QLinear"):
        return quantized_op[len("QLinear"):]
    return {"MatMulInteger": "MatMul", "DynamicQuantizeMatMul": "MatMul", "ConvInteger": "Conv",
            "QAttention": "Attention", "QEmbedLayerNormalization": "EmbedLayerNormalization",
            "QGemm": "Gemm", "DynamicQuantizeLSTM": "LSTM", "MatMulNBits": "MatMul",
            "GatherBlockQuantized": "Gather"}.get(quantized_op, quantized_op)


def graph_hash(model: onnx.ModelProto) -> str:
    """A digest of the computation (nodes and weights), blind to producer metadata: equal graphs, equal hash."""
    digest = hashlib.sha256(model.graph.SerializeToString(deterministic=True))
    for opset in sorted((o.domain, o.version) for o in model.opset_import):
        digest.update(repr(opset).encode())
    return digest.hexdigest()[:16]


def model_file_mb(path: str | Path) -> float:
    """The model's size on disk in MB (10^6 bytes): its ONNX file and the external data files it names."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    files = {path} | {path.parent / entry.value for init in model.graph.initializer
                      for entry in init.external_data if entry.key == "location"}
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6
