"""Smoothing (quantize._smooth): the smoothed fp32 graph computes the same function, its factors follow
SmoothQuant's formula, the division lands in a LayerNorm or one inserted Mul exactly where it should, and an
injected outlier channel that per-tensor dynamic int8 cannot hold is recovered by smoothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import sentiment_rows
from families import LAYERS
from onnx import TensorProto, helper, numpy_helper

from opsearch.quantize import QuantRecipe, find_groups, quantize
from opsearch.quantize._smooth import (
    SMOOTH_ROLES,
    channel_maxima,
    smooth,
    smooth_targets,
    smoothed_model,
    smoothing_factors,
)

ALL = {role: 0.5 for role in SMOOTH_ROLES}


@pytest.fixture(scope="module")
def graphs(family_graphs) -> dict[tuple[str, str], Path]:
    return family_graphs


def _calibration(rows: int = 16, length: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 30, size=(rows, length)).astype(np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _run(path_or_model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    data = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


@pytest.mark.parametrize("family", ["bert", "distilbert"])
@pytest.mark.parametrize("fusion", ["none", "O2"])
def test_the_smoothed_fp32_graph_computes_the_same_function(graphs, family, fusion) -> None:
    """Every role smoothed at a strong alpha: outputs within 1e-4 of the original's largest output (float
    rounding of the factors), on rows the maxima were not taken from."""
    source = graphs[family, fusion]
    model = onnx.load(str(source))
    tensors = sorted({t.tensor for t in smooth_targets(model)})
    maxima = channel_maxima(source, _calibration(), tensors)
    smoothed = smooth(model, {role: 0.85 for role in SMOOTH_ROLES}, maxima)
    onnx.checker.check_model(smoothed)
    feeds = _calibration(rows=6, seed=1)
    before, after = _run(source, feeds), _run(smoothed, feeds)
    assert np.abs(after - before).max() <= 1e-4 * max(1.0, np.abs(before).max())
    assert any(i.name.endswith("/smoothed/" + n.name) for n in smoothed.graph.node for i in smoothed.graph.initializer
               if n.op_type in ("MatMul", "Gemm", "Attention")), "no weight was smoothed"


def test_the_factors_follow_smoothquants_formula() -> None:
    """s_j = max|X_j|^a / max|W_j|^(1-a); a dead channel keeps 1; a strength outside (0, 1) is refused."""
    s = smoothing_factors(np.array([8.0, 1.0, 0.0, 4.0]), np.array([0.5, 2.0, 1.0, 0.0]), 0.5)
    np.testing.assert_allclose(s, [np.sqrt(8.0) / np.sqrt(0.5), 1.0 / np.sqrt(2.0), 1.0, 1.0], rtol=1e-6)
    s = smoothing_factors(np.array([27.0]), np.array([0.25]), 0.75)
    np.testing.assert_allclose(s, [27.0 ** 0.75 / 0.25 ** 0.25], rtol=1e-6)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match=r"not in \(0, 1\)"):
            smoothing_factors(np.ones(2), np.ones(2), bad)


def _hand_made(residual: bool) -> onnx.ModelProto:
    """x -> LayerNorm -> MatMul(W) -> y; with ``residual`` the LayerNorm's output also feeds an Add (post-LN)."""
    w = np.array([[0.5, -0.25, 0.1], [2.0, 1.0, -1.5]], np.float32)  # rows: the activation's 2 channels
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["h"], name="norm", axis=-1),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="proj")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])]
    if residual:
        nodes.append(helper.make_node("Add", ["h", "h"], ["r"], name="residual"))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [None, 2]))
    graph = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              outputs, [numpy_helper.from_array(np.array([3.0, 0.5], np.float32), "gamma"),
                                        numpy_helper.from_array(np.array([0.2, -0.1], np.float32), "beta"),
                                        numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("residual", [False, True])
def test_the_division_is_folded_into_a_layernorm_only_when_nothing_else_reads_it(residual) -> None:
    """The projection read alone: the LayerNorm's scale and bias are divided by s and no node is added. The
    LayerNorm also read by a residual: it is left as it was, and one Mul by 1/s feeds the projection alone. Either
    way the weight's rows are multiplied by s, and the outputs are unchanged."""
    model = _hand_made(residual)
    x = np.array([[1.0, -2.0], [0.3, 0.9], [4.0, 1.0]], np.float32)
    maxima = {"h": np.abs(_run(_with_output(model, "h"), {"x": x})).max(axis=0)}
    # A graph without attention: the projection is a group of its own, of the fallback role "node".
    smoothed = smooth(model, {"node": 0.5}, maxima)
    s = smoothing_factors(maxima["h"], np.abs(numpy_helper.to_array(model.graph.initializer[2])).max(axis=1), 0.5)
    inits = {i.name: numpy_helper.to_array(i) for i in smoothed.graph.initializer}
    proj = next(n for n in smoothed.graph.node if n.name == "proj")
    np.testing.assert_allclose(inits[proj.input[1]], numpy_helper.to_array(model.graph.initializer[2]) * s[:, None],
                               rtol=1e-6)
    norm = next(n for n in smoothed.graph.node if n.name == "norm")
    muls = [n for n in smoothed.graph.node if n.op_type == "Mul"]
    if residual:
        assert [n.name for n in smoothed.graph.node] == ["norm", muls[0].name, "proj", "residual"]
        assert list(norm.input) == ["x", "gamma", "beta"]
        assert proj.input[0] == muls[0].output[0] and muls[0].input[0] == "h"
        np.testing.assert_allclose(inits[muls[0].input[1]], 1 / s, rtol=1e-6)
    else:
        assert not muls and [n.name for n in smoothed.graph.node] == ["norm", "proj"]
        np.testing.assert_allclose(inits[norm.input[1]], [3.0, 0.5] / s, rtol=1e-6)
        np.testing.assert_allclose(inits[norm.input[2]], [0.2, -0.1] / s, rtol=1e-6)
    used = {i for n in smoothed.graph.node for i in n.input}
    assert {i.name for i in smoothed.graph.initializer} <= used  # the replaced weight (and norm) dropped
    for before, after in zip(_run_all(model, {"x": x}), _run_all(smoothed, {"x": x}), strict=True):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


def _with_output(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.output[:]
    out.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    return out


def _run_all(model: onnx.ModelProto, feeds) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_a_post_ln_encoder_gets_one_mul_per_smoothed_role_and_layer_and_nothing_else(graphs) -> None:
    """BERT's LayerNorms also feed the residual, so nothing is folded: each layer gains one Mul per role smoothed
    (Q, K and V share theirs), every original node keeps its name and inputs but the projections', and the roles
    not asked for are untouched."""
    source = graphs["bert", "none"]
    model = onnx.load(str(source))
    maxima = channel_maxima(source, _calibration(), sorted({t.tensor for t in smooth_targets(model)}))
    smoothed = smooth(model, {"qkv": 0.5, "ffn_out": 0.75}, maxima)
    groups = find_groups(model).by_key()
    added = [n for n in smoothed.graph.node if n.name not in {m.name for m in model.graph.node}]
    assert len(added) == 2 * LAYERS and {n.op_type for n in added} == {"Mul"}
    projections = {name for layer in range(LAYERS) for role in ("qkv", "ffn_out")
                   for name in groups[f"layer.{layer}/{role}"].nodes}
    fed = {c.name for n in added for c in smoothed.graph.node if n.output[0] in c.input}
    assert fed == projections
    before = {n.name: list(n.input) for n in model.graph.node}
    for node in smoothed.graph.node:
        if node.name in before and node.name not in projections:
            assert list(node.input) == before[node.name], node.name
    assert find_groups(smoothed).by_key().keys() == groups.keys()


def test_an_injected_outlier_channel_is_recovered_by_smoothing(tiny_onnx, tmp_path) -> None:
    """Three input channels of every projection of the trained tiny classifier made 300x larger (a Mul before
    the projection, the weight's rows divided back: the fp32 function is unchanged). Per-tensor dynamic int8 then
    loses accuracy; the same recipe with every role smoothed at 0.5 recovers most of the loss."""
    from transformers import AutoTokenizer

    from opsearch.measure import encode_padded

    source = _inject_outliers(tiny_onnx.onnx_path, tmp_path / "outlier" / "model.onnx", factor=300.0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_onnx.folder)
    rows = sentiment_rows(200, seed=7)
    feeds = encode_padded(tokenizer, [r["sentence"] for r in rows], length=16)
    labels = np.array([r["label"] for r in rows])

    def accuracy(path: Path) -> float:
        return float((_run(path, feeds).argmax(axis=1) == labels).mean())

    fp32 = accuracy(tiny_onnx.onnx_path)
    assert fp32 > 0.9 and accuracy(source) == fp32  # the injection changes no answer in fp32
    base = dict(mode="dynamic", operators_to_quantize=("MatMul",), weights_dtype="QInt8")
    calibration = {k: v[:32] for k, v in feeds.items()}
    plain = quantize(QuantRecipe(**base), fp32_path=source, out_dir=tmp_path / "plain", calibration=calibration,
                     cache_dir=tmp_path / "cache")
    smoothed = quantize(QuantRecipe(**base, smoothing=tuple(ALL.items())), fp32_path=source,
                        out_dir=tmp_path / "smoothed", calibration=calibration, cache_dir=tmp_path / "cache")
    lost_plain, lost_smoothed = fp32 - accuracy(plain.path), fp32 - accuracy(smoothed.path)
    assert lost_plain >= 0.2, f"the injected outliers cost per-tensor int8 only {lost_plain:.1%}"
    assert lost_smoothed <= lost_plain / 3, f"smoothing recovered too little: {lost_plain:.1%} -> {lost_smoothed:.1%}"
    assert plain.graph_hash != smoothed.graph_hash


def _inject_outliers(source: Path, target: Path, *, factor: float, channels: int = 3) -> Path:
    """``channels`` input channels of every projection of SMOOTH_ROLES made ``factor`` times larger, the fp32
    function kept: a Mul before each projection, its weight's rows divided by the same factors."""
    model = onnx.load(str(source))
    groups = find_groups(model).by_key()
    inits = {i.name: i for i in model.graph.initializer}
    for layer in range(LAYERS):
        for role in SMOOTH_ROLES:
            for node in [n for n in model.graph.node if n.name in groups[f"layer.{layer}/{role}"].nodes]:
                w = numpy_helper.to_array(inits[node.input[1]])
                scale = np.ones(w.shape[0], np.float32)
                scale[:channels] = factor
                name = f"outlier/{node.name}"
                model.graph.initializer.extend([numpy_helper.from_array(scale, f"{name}/scale"),
                                                numpy_helper.from_array(w / scale[:, None], f"{name}/weight")])
                model.graph.node.insert(list(model.graph.node).index(node), helper.make_node(
                    "Mul", [node.input[0], f"{name}/scale"], [f"{name}/x"], name=name))
                node.input[0], node.input[1] = f"{name}/x", f"{name}/weight"
    target.parent.mkdir(parents=True)
    onnx.save(model, str(target))
    return target


def test_the_smoothed_graph_is_made_once_and_remade_when_its_source_changes(graphs, tmp_path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(graphs["bert", "none"].read_bytes())
    first = smoothed_model(source, ALL, _calibration(), cache_dir=tmp_path / "cache")
    stamp = first.stat().st_mtime_ns
    assert smoothed_model(source, ALL, _calibration(), cache_dir=tmp_path / "cache").stat().st_mtime_ns == stamp
    other = smoothed_model(source, {"qkv": 0.75}, _calibration(), cache_dir=tmp_path / "cache")
    assert other != first
    source.write_bytes(source.read_bytes())  # same bytes, a new file: made again
    assert smoothed_model(source, ALL, _calibration(), cache_dir=tmp_path / "cache") != first


def test_a_recipe_keeps_smoothing_only_where_a_role_is_quantized() -> None:
    r = QuantRecipe(mode="dynamic", operators_to_quantize=("MatMul",), smoothing=(("qkv", 0.5), ("ffn_out", 0.85)))
    assert r.smoothing == (("ffn_out", 0.85), ("qkv", 0.5)) and r.needs_rows
    assert "smooth:ffn_out@0.85,qkv@0.5" in r.label()
    assert QuantRecipe.from_dict(r.to_dict()) == r
    assert QuantRecipe(mode="dynamic", operators_to_quantize=("Gather",), smoothing=(("qkv", 0.5),)).smoothing == ()
    mixed = QuantRecipe(mode="mixed", operators_to_quantize=("MatMul",), precisions=(("qkv", "dynamic"),),
                        smoothing=(("qkv", 0.5), ("ffn_in", 0.5)))
    assert mixed.smoothing == (("qkv", 0.5),)
    with pytest.raises(ValueError, match="smoothing role 'head'"):
        QuantRecipe(mode="dynamic", operators_to_quantize=("MatMul",), smoothing=(("head", 0.5),))
    with pytest.raises(ValueError, match=r"strength 1.0 for qkv is not in \(0, 1\)"):
        QuantRecipe(mode="dynamic", operators_to_quantize=("MatMul",), smoothing=(("qkv", 1.0),))
