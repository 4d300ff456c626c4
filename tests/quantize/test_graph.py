from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest
from onnxruntime.quantization import registry

from opsearch.quantize import (
    QUANT_MODES,
    QuantRecipe,
    graph_hash,
    inspect_model,
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
