"""opsearch.quantize._fragile: nodes left in fp32 by exclude_fragile, found from the graph's structure."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from opsearch.quantize import fragile_nodes, fused_model


def _by_reason(model: onnx.ModelProto) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for node in fragile_nodes(model):
        out.setdefault(node.reason, set()).add(node.name)
    return out


def test_exported_tiny_bert(tiny_onnx) -> None:
    found = _by_reason(onnx.load(str(tiny_onnx.onnx_path)))
    layers = (0, 1)
    assert found["embedding sum"] == {"/bert/embeddings/Add", "/bert/embeddings/Add_1"}
    assert found["attention mask Add before Softmax"] == {f"/bert/encoder/layer.{i}/attention/self/Add" for i in layers}
    assert found["residual Add (two activations)"] == {
        f"/bert/encoder/layer.{i}/{part}/Add" for i in layers for part in ("attention/output", "output")}
    assert found["layer normalization"] == {"/bert/embeddings/LayerNorm/LayerNormalization"} | {
        f"/bert/encoder/layer.{i}/{part}/LayerNorm/LayerNormalization" for i in layers
        for part in ("attention/output", "output")}
    gelu = {f"/bert/encoder/layer.{i}/intermediate/intermediate_act_fn/{n}" for i in layers
            for n in ("Div", "Erf", "Add", "Mul", "Mul_1")}
    assert found["GELU (Erf)"] == gelu
    # The bias Adds (activation + weight) stay quantizable: they follow every MatMul.
    names = {n.name for n in fragile_nodes(onnx.load(str(tiny_onnx.onnx_path)))}
    assert not any(name.endswith("dense/Add") or name.endswith(("query/Add", "key/Add", "value/Add")) for name in names)


def test_fused_tiny_bert(tiny_onnx, tmp_path) -> None:
    model = onnx.load(str(fused_model(tiny_onnx.onnx_path, "O2", cache_dir=tmp_path)))
    ops = {n.op_type for n in fragile_nodes(model)}
    assert {"SkipLayerNormalization", "BiasGelu"} <= ops
    assert "MatMul" not in ops and "Attention" not in ops


def test_decomposed_layer_normalization() -> None:
    """x -> ReduceMean -> Sub -> Pow -> ReduceMean -> Add(eps) -> Sqrt -> Div -> Mul(gamma) -> Add(beta) -> MatMul."""
    def const(name: str, value: float) -> onnx.TensorProto:
        return helper.make_tensor(name, TensorProto.FLOAT, [], [value])

    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], name="ln/ReduceMean", axes=[-1]),
        helper.make_node("Sub", ["x", "mean"], ["centered"], name="ln/Sub"),
        helper.make_node("Pow", ["centered", "two"], ["squared"], name="ln/Pow"),
        helper.make_node("ReduceMean", ["squared"], ["var"], name="ln/ReduceMean_1", axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["var_eps"], name="ln/Add"),
        helper.make_node("Sqrt", ["var_eps"], ["std"], name="ln/Sqrt"),
        helper.make_node("Div", ["centered", "std"], ["normed"], name="ln/Div"),
        helper.make_node("Mul", ["normed", "gamma"], ["scaled"], name="ln/Mul"),
        helper.make_node("Add", ["scaled", "beta"], ["y"], name="ln/Add_1"),
        helper.make_node("MatMul", ["y", "w"], ["out"], name="dense/MatMul"),
    ]
    graph = helper.make_graph(
        nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])],
        initializer=[const("two", 2.0), const("eps", 1e-5), const("gamma", 1.0), const("beta", 0.0),
                     helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.0] * 16)])
    found = {n.name for n in fragile_nodes(helper.make_model(graph))}
    assert found == {n.name for n in nodes[:-1]}


@pytest.mark.parametrize("op", ["Gelu", "FastGelu", "EmbedLayerNormalization"])
def test_fused_kernels_are_fragile(op: str) -> None:
    node = helper.make_node(op, ["x"], ["y"], name=f"the_{op}", domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    assert [n.name for n in fragile_nodes(helper.make_model(graph))] == [f"the_{op}"]
