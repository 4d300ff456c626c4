"""Groups found from a graph's structure on tiny models of several encoder families, fused and unfused; mixed
recipes that quantize exactly the groups they name; the ranges pass that ranks an injected outlier first."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import onnx
import pytest
from conftest import VOCAB
from families import FAMILIES, LAYERS

from opsearch.quantize import (
    LAYER_ROLES,
    GroupRanges,
    QuantRecipe,
    find_groups,
    format_ranges,
    measure_ranges,
    plan,
    quantize,
)


@pytest.mark.parametrize("fusion", ["none", "O2"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_gives_each_layer_its_roles(family_graphs, family, fusion) -> None:
    model = onnx.load(str(family_graphs[family, fusion]), load_external_data=False)
    groups = find_groups(model)
    assert groups.layers == LAYERS
    counts = groups.counts()
    for role in ("qkv", "attn_out", "ffn_in", "ffn_out"):
        assert counts[role] == LAYERS, (role, counts)
    assert counts["embeddings"] == counts["pooler"] == counts["head"] == 1
    assert "node" not in counts  # nothing fell back to one group per node
    by_key = groups.by_key()
    for layer in range(LAYERS):
        qkv = by_key[f"layer.{layer}/qkv"].node_types
        # the three projections, or one fused Attention (ALBERT and MPNet graphs keep some layers unfused)
        assert qkv in (("MatMul",) * 3, ("Attention",)), qkv
        if qkv == ("MatMul",) * 3:
            assert by_key[f"layer.{layer}/scores"].node_types == by_key[f"layer.{layer}/context"].node_types \
                == ("MatMul",)
        for role in ("attn_out", "ffn_in", "ffn_out"):
            assert by_key[f"layer.{layer}/{role}"].node_types == ("MatMul",)
    # every node a quantizer takes is in exactly one group
    members = Counter(n for g in groups.groups for n in g.nodes)
    assert set(members.values()) == {1}
    weighted = {n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Attention")}
    assert weighted <= set(members)


@pytest.mark.parametrize("family", ["bert", "roberta", "electra", "mpnet", "distilbert"])
def test_layer_indices_follow_the_data_path(family_graphs, family) -> None:
    """Found without reading names, the layers still match the exporter's own numbering."""
    groups = find_groups(onnx.load(str(family_graphs[family, "none"]), load_external_data=False))
    for g in groups.groups:
        if g.layer is not None:
            assert all(f"layer.{g.layer}/" in n for n in g.nodes), (g.key, g.nodes)
    ffn_out = [g for g in groups.groups if g.role == "ffn_out"]
    assert [g.layer for g in ffn_out] == list(range(LAYERS))


def test_a_graph_without_attention_falls_back_to_one_group_per_node(tmp_path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.normal(size=s).astype(np.float32), name=n)
              for s, n in (((4, 8), "w1"), ((8, 2), "w2")))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"], name="second")], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w1, w2])
    groups = find_groups(helper.make_model(graph))
    assert groups.layers == 0
    assert [(g.key, g.role, g.nodes) for g in groups.groups] == [
        ("node:first", "node", ("first",)), ("node:second", "node", ("second",))]


def _calibration(n: int = 8, length: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(5, len(VOCAB), (n, length)).astype(np.int64),
            "attention_mask": np.ones((n, length), np.int64), "token_type_ids": np.zeros((n, length), np.int64)}


@pytest.mark.parametrize("family,fusion", [("bert", "none"), ("bert", "O2"), ("mpnet", "none"),
                                           ("albert", "O2"), ("distilbert", "O2")])
def test_a_mixed_recipe_quantizes_exactly_the_groups_it_names(family_graphs, tmp_path, family, fusion) -> None:
    fp32 = family_graphs[family, "none"]
    recipe = QuantRecipe(mode="mixed", operators_to_quantize=("Gather", "Gemm", "MatMul"), fusion=fusion,
                         precisions=(("qkv", "dynamic"), ("ffn_in", "static"), ("ffn_out", "static"),
                                     ("head", "dynamic"), ("embeddings", "dynamic")),
                         fp32_last=1, fp32_groups=("layer.0/ffn_out",), float_output=True)
    graph = onnx.load(str(family_graphs[family, fusion]), load_external_data=False)
    wanted = plan(recipe, find_groups(graph))
    assert wanted["layer.0/ffn_in"] == "static" and wanted["layer.0/ffn_out"] == "fp32"  # kept by key
    assert all(p == "fp32" for k, p in wanted.items() if k.startswith("layer.1/"))  # the last layer, kept whole
    result = quantize(recipe, fp32_path=fp32, out_dir=tmp_path / "q", calibration=_calibration(),
                      cache_dir=fp32.parent.parent)
    assert result.groups == wanted
    # the quantized graph itself: one integer node per dynamic projection, QDQ around the static ones
    quantized = onnx.load(str(result.path))
    integer = [n for n in quantized.graph.node if n.op_type in ("MatMulInteger", "QAttention",
                                                                 "DynamicQuantizeMatMul")]
    by_key = find_groups(graph).by_key()
    dynamic_projections = [n for k, p in wanted.items() if p == "dynamic"
                           for n, t in zip(by_key[k].nodes, by_key[k].node_types, strict=True) if t != "Gather"]
    assert len(integer) == len(dynamic_projections)
    assert any(n.op_type == "QuantizeLinear" for n in quantized.graph.node)


def test_static_is_refused_for_a_fused_attention(family_graphs) -> None:
    graph = onnx.load(str(family_graphs["bert", "O2"]), load_external_data=False)
    recipe = QuantRecipe(mode="mixed", operators_to_quantize=("Attention",), fusion="O2",
                         precisions=(("qkv", "static"),))
    with pytest.raises(ValueError, match="layer.0/qkv .*Attention.* cannot be static"):
        plan(recipe, find_groups(graph))


def test_the_ranges_pass_ranks_an_injected_outlier_first(family_graphs, tmp_path) -> None:
    """One channel of layer 1's FFN input scaled 200x (a Mul inserted before it): a per-tensor int8 scale set by
    that channel crushes the others, and the pass must rank that group worst and show its channel ratio."""
    from onnx import helper, numpy_helper

    source = family_graphs["bert", "none"]
    model = onnx.load(str(source))
    ffn_in = next(n for n in model.graph.node if n.name == find_groups(model).by_key()["layer.1/ffn_in"].nodes[0])
    width = next(numpy_helper.to_array(i).shape[0] for i in model.graph.initializer if i.name == ffn_in.input[1])
    scale = np.ones(width, np.float32)
    scale[0] = 200.0
    model.graph.initializer.append(numpy_helper.from_array(scale, "outlier_scale"))
    model.graph.node.insert(list(model.graph.node).index(ffn_in),
                            helper.make_node("Mul", [ffn_in.input[0], "outlier_scale"], ["outlier_x"], name="outlier"))
    ffn_in.input[0] = "outlier_x"
    onnx.save(model, str(tmp_path / "outlier.onnx"))

    plain = measure_ranges(source, _calibration(), rows=8)
    injected = measure_ranges(tmp_path / "outlier.onnx", _calibration(), rows=8)
    assert plain.ranking("static")[0] != "layer.1/ffn_in"
    for precision in ("dynamic", "static"):
        assert injected.ranking(precision)[0] == "layer.1/ffn_in"
    worst = {g.key: g for g in injected.groups}["layer.1/ffn_in"]
    assert worst.channel_ratio > 50 and worst.outlier > 20
    # smoothing moves the outlier channel into the weight: the pass says how far that brings the error down
    alpha, smoothed = worst.best_smoothed
    assert smoothed < 0.6 * worst.error["dynamic"] and alpha in (0.5, 0.75, 0.85)
    assert set(worst.smoothed) == {"0.5", "0.75", "0.85"}
    assert {g.key for g in injected.groups if g.smoothed} == {
        f"layer.{i}/{r}" for i in range(LAYERS) for r in ("qkv", "attn_out", "ffn_in", "ffn_out")}
    text = format_ranges(injected, precision="dynamic")
    assert f"{smoothed:.2%} @{alpha:g}" in next(line for line in text.splitlines() if line.startswith("layer.1/ffn_in"))
    assert GroupRanges.from_dict(injected.to_dict()) == injected
    assert {g.key for g in injected.groups} >= {f"layer.{i}/{r}" for i in range(LAYERS) for r in LAYER_ROLES}


def test_the_ranges_pass_gives_a_lone_group_its_own_range_and_a_channelless_one_no_ratio(family_graphs) -> None:
    """A group alone in its role is its own typical range (outlier 1); a table, or a product of two activations,
    has no input channels to compare (NaN), and saying so raises no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ranges = measure_ranges(family_graphs["bert", "none"], _calibration(), rows=8)
    by_key = {g.key: g for g in ranges.groups}
    for key in ("embeddings", "pooler", "head"):
        assert by_key[key].typical == by_key[key].abs_max and by_key[key].outlier == 1.0
    for key in ("embeddings", "layer.0/scores", "layer.0/context"):
        assert np.isnan(by_key[key].channel_ratio)
    assert np.isfinite(by_key["layer.0/qkv"].channel_ratio) and by_key["layer.0/qkv"].typical != by_key[
        "layer.0/qkv"].abs_max
