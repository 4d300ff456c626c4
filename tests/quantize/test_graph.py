from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from families import LAYERS
from onnxruntime.quantization import registry

from opsearch.quantize import (
    QUANT_MODES,
    QuantRecipe,
    find_groups,
    graph_hash,
    inspect_model,
    matmul_kinds,
    quantizable_registry,
    quantize,
    quantized_node_counts,
)


def test_inspect_counts_every_node_by_type(tiny_onnx) -> None:
    model = onnx.load(str(tiny_onnx.onnx_path))
    expected = Counter(node.op_type for node in model.graph.node)
    info = inspect_model(tiny_onnx.onnx_path)
    assert {op.op_type: op.count for op in info.operators} == dict(expected)
    counts = [op.count for op in info.operators]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize(
    ("mode", "ort_registry"),
    [("dynamic", registry.IntegerOpsRegistry), ("static_qoperator", registry.QLinearOpsRegistry),
     ("static_qdq", registry.QDQRegistry)],
)
def test_quantizable_marks_follow_onnxruntime_registry(tiny_onnx, mode: str, ort_registry: dict) -> None:
    info = inspect_model(tiny_onnx.onnx_path)
    for op in info.operators:
        assert op.quantizable[mode] == (op.op_type in ort_registry), op.op_type
    assert set(info.quantizable_in(mode)) == {op.op_type for op in info.operators} & set(ort_registry)


def test_registry_covers_each_mode() -> None:
    reg = quantizable_registry()
    assert set(reg) == set(QUANT_MODES)
    assert "MatMul" in reg["dynamic"] and "Add" not in reg["dynamic"]
    assert "Add" in reg["static_qoperator"]


def test_json_shape(tiny_onnx) -> None:
    data = inspect_model(tiny_onnx.onnx_path).to_dict()
    matmul = next(o for o in data["operators"] if o["op_type"] == "MatMul")
    assert matmul["quantizable"] == {"dynamic": True, "static_qoperator": True, "static_qdq": True,
                                     "weight_only": True}


def test_dynamic_matmul_counts_every_matmul(tiny_onnx, tmp_path: Path) -> None:
    fp32 = onnx.load(str(tiny_onnx.onnx_path))
    n_matmul = sum(node.op_type == "MatMul" for node in fp32.graph.node)
    result = quantize(QuantRecipe("dynamic", ("MatMul",)), fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "q")
    quantized = onnx.load(str(result.path))
    assert result.node_counts["MatMul"] == n_matmul
    assert quantized_node_counts(fp32, quantized, operators=["MatMul"]) == result.node_counts
    # No int8 MatMul existed before; one integer MatMul per counted node now.
    integer_ops = sum(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for node in quantized.graph.node)
    assert integer_ops >= n_matmul


def test_operator_that_changes_nothing_counts_nothing(tiny_onnx, tmp_path: Path) -> None:
    result = quantize(QuantRecipe("dynamic", ("Transpose",)), fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "q")
    assert result.node_counts == {}


def test_graph_hash_equal_for_equal_graphs_and_blind_to_metadata(tiny_onnx) -> None:
    model = onnx.load(str(tiny_onnx.onnx_path))
    digest = graph_hash(model)
    model.producer_name = "someone else"
    assert graph_hash(model) == digest
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))
    assert graph_hash(model) != digest


# MatMuls of a constant weight, MatMuls of two activations --------------------------------------------------------

READ_FAMILIES = ("bert", "distilbert", "roberta", "mpnet")


@pytest.fixture(scope="module")
def families(family_graphs) -> dict[tuple[str, str], Path]:
    return {key: path for key, path in family_graphs.items() if key[0] in READ_FAMILIES}


@pytest.mark.parametrize("family", READ_FAMILIES)
def test_matmul_kinds_split_each_family_into_projections_and_attention(families, family) -> None:
    model = onnx.load(str(families[family, "none"]), load_external_data=False)
    kinds = matmul_kinds(model)
    # a layer: Q, K, V, attention output, FFN in, FFN out of a weight; scores and context of two activations
    assert (len(kinds.weight), len(kinds.activation)) == (6 * LAYERS, 2 * LAYERS)
    assert set(kinds.weight) | set(kinds.activation) == {n.name for n in model.graph.node if n.op_type == "MatMul"}
    # the activation MatMuls are attention's, as the groups find them from the data path
    attention = {n for g in find_groups(model).groups if g.role in ("scores", "context") for n in g.nodes}
    assert set(kinds.activation) == attention
    info = inspect_model(families[family, "none"])
    assert (info.weight_matmuls, info.activation_matmuls) == (6 * LAYERS, 2 * LAYERS) and info.mixes_matmuls
    assert info.to_dict()["matmuls"] == {"weight": 6 * LAYERS, "activation": 2 * LAYERS}


@pytest.mark.parametrize("family", READ_FAMILIES)
def test_a_fused_attention_holds_its_activation_matmuls(families, family) -> None:
    fused = inspect_model(families[family, "O2"])
    counts = {op.op_type: op.count for op in fused.operators}
    if counts.get("Attention"):  # BERT, DistilBERT, RoBERTa: Q, K, V and both attention MatMuls inside
        assert counts["Attention"] == LAYERS
        assert (fused.weight_matmuls, fused.activation_matmuls) == (3 * LAYERS, 0) and not fused.mixes_matmuls
    else:  # the optimizer does not fuse MPNet's attention (its relative position bias): all stay standing
        assert family == "mpnet"
        assert (fused.weight_matmuls, fused.activation_matmuls) == (6 * LAYERS, 2 * LAYERS)


def test_a_weight_written_through_transpose_cast_or_constant_is_a_weight() -> None:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), name="w")
    w16 = numpy_helper.from_array(np.ones((4, 4), np.float16), name="w16")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="plain"),
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("MatMul", ["a", "wt"], ["b"], name="transposed"),
        helper.make_node("Cast", ["w16"], ["w32"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["b", "w32"], ["c"], name="cast"),
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.ones((4, 4), np.float32))),
        helper.make_node("MatMul", ["c", "k"], ["d"], name="constant"),
        helper.make_node("Transpose", ["d"], ["dt"], perm=[1, 0]),
        helper.make_node("MatMul", ["d", "dt"], ["y"], name="activations"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], [w, w16])
    kinds = matmul_kinds(helper.make_model(graph))
    assert kinds.weight == ("plain", "transposed", "cast", "constant")
    assert kinds.activation == ("activations",)
