from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import sentiment_rows
from transformers import AutoTokenizer

from opsearch.errors import TrialFailed
from opsearch.measure import ThreadSettings, encode_padded, make_session
from opsearch.quantize import QuantizationFailed, QuantRecipe, graph_hash, matmul_kinds, quantize


@pytest.fixture(scope="module")
def calibration(tiny_onnx) -> dict[str, np.ndarray]:
    tokenizer = AutoTokenizer.from_pretrained(tiny_onnx.folder)
    return encode_padded(tokenizer, [r["sentence"] for r in sentiment_rows(16)], length=16)


def _logits(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = make_session(path, ThreadSettings(1))
    names = {i.name for i in session.get_inputs()}
    return session.run(["logits"], {k: v for k, v in feed.items() if k in names})[0]


@pytest.mark.parametrize(
    "recipe",
    [
        QuantRecipe("dynamic", ("MatMul",)),
        QuantRecipe("dynamic", ("Gather", "MatMul"), per_channel=True, weights_dtype="QUInt8"),
        QuantRecipe("static", ("MatMul", "Add"), calibration_samples=8, exclude_fragile=True),
        QuantRecipe("static", ("MatMul",), format="QDQ", calibration_samples=8, calibration_method="percentile"),
    ],
    ids=lambda r: r.label(),
)
def test_recipe_quantizes_and_keeps_outputs_close(tiny_onnx, calibration, tmp_path: Path, recipe) -> None:
    result = quantize(recipe, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "q", calibration=calibration)
    assert result.path.is_file() and result.path.name == "model.onnx"
    assert result.node_counts.get("MatMul", 0) > 0
    model = onnx.load(str(result.path))
    int8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    assert any(init.data_type in int8 for init in model.graph.initializer)
    feed = {k: v[:1] for k, v in calibration.items()}
    fp32, q = _logits(tiny_onnx.onnx_path, feed), _logits(result.path, feed)
    assert not np.array_equal(fp32, q)
    assert np.max(np.abs(fp32 - q)) < 0.5 * (np.max(np.abs(fp32)) + 1e-3) + 0.1
    # Nothing half-written is left next to the result.
    assert [p.name for p in (tmp_path).iterdir()] == ["q"]
    assert QuantRecipe.from_dict(json.loads((result.path.parent / "opsearch-recipe.json").read_text())) == recipe


def test_same_recipe_same_graph(tiny_onnx, tmp_path: Path) -> None:
    recipe = QuantRecipe("dynamic", ("MatMul",))
    a = quantize(recipe, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "a")
    b = quantize(recipe, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "b")
    c = quantize(QuantRecipe("dynamic", ("MatMul",), per_channel=True), fp32_path=tiny_onnx.onnx_path,
                 out_dir=tmp_path / "c")
    assert a.graph_hash == b.graph_hash != c.graph_hash


def test_static_without_calibration_is_a_failed_trial(tiny_onnx, tmp_path: Path) -> None:
    with pytest.raises(QuantizationFailed, match="calibration"):
        quantize(QuantRecipe("static", ("MatMul",)), fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "q")
    assert issubclass(QuantizationFailed, TrialFailed)
    assert not (tmp_path / "q").exists()


def test_broken_model_is_a_failed_trial_not_a_crash(tmp_path: Path, tiny_onnx) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not onnx")
    for name in ("config.json", "tokenizer.json", "vocab.txt"):
        (broken / name).write_bytes((tiny_onnx.folder / name).read_bytes())
    with pytest.raises(QuantizationFailed):
        quantize(QuantRecipe("dynamic", ("MatMul",)), fp32_path=broken / "model.onnx", out_dir=tmp_path / "q")


@pytest.mark.parametrize(("field", "value"), [("mode", "fast"), ("weights_dtype", "QInt4"), ("format", "QXX")])
def test_recipe_rejects_unknown_values(field: str, value: str) -> None:
    kwargs = {"mode": "dynamic", "operators_to_quantize": ("MatMul",), field: value}
    with pytest.raises(ValueError, match=field):
        QuantRecipe(**kwargs)


def test_recipe_maps_to_optimum_config() -> None:
    from onnxruntime.quantization import QuantFormat, QuantType

    cfg = QuantRecipe("static", ("MatMul", "Add"), per_channel=True, reduce_range=True, weights_dtype="QUInt8",
                      activations_symmetric=True, format="QDQ").to_optimum()
    assert cfg.is_static and cfg.format == QuantFormat.QDQ and cfg.per_channel and cfg.reduce_range
    assert cfg.weights_dtype == QuantType.QUInt8 and cfg.activations_symmetric
    assert sorted(cfg.operators_to_quantize) == ["Add", "MatMul"]


# Fusion, fusion-only and fragile nodes --------------------------------------------------------------------


def _count(path: Path, op_type: str) -> int:
    return sum(node.op_type == op_type for node in onnx.load(str(path)).graph.node)


def test_fused_attention_is_quantized(tiny_onnx, calibration, tmp_path: Path) -> None:
    recipe = QuantRecipe("dynamic", ("Attention", "MatMul"), fusion="O2")
    result = quantize(recipe, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "q", cache_dir=tmp_path / "cache")
    assert result.node_counts["Attention"] == 2 and result.node_counts["MatMul"] > 0
    assert _count(result.path, "QAttention") == 2 and _count(result.path, "Attention") == 0
    feed = {k: v[:1] for k, v in calibration.items()}
    fp32, q = _logits(tiny_onnx.onnx_path, feed), _logits(result.path, feed)
    assert np.max(np.abs(fp32 - q)) < 0.5 * (np.max(np.abs(fp32)) + 1e-3) + 0.1
    # The model folder says how it was made, fusion included, as optimum would read it.
    ort_config = json.loads((result.path.parent / "ort_config.json").read_text())
    assert ort_config["optimization"]["optimization_level"] >= 1 and ort_config["quantization"]["per_channel"] is False
    assert (tmp_path / "cache" / "fused" / "O2" / "model.onnx").is_file()  # fused once, kept for the next trial


def test_fusion_only_recipe_is_the_fused_fp32_graph(tiny_onnx, calibration, tmp_path: Path) -> None:
    recipe = QuantRecipe("dynamic", (), fusion="O2")
    assert not recipe.is_fp32 and QuantRecipe("dynamic", ()).is_fp32
    assert recipe.label() == "fp32 fused O2"
    result = quantize(recipe, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "q", cache_dir=tmp_path / "cache")
    assert result.node_counts == {} and _count(result.path, "Attention") == 2
    feed = {k: v[:1] for k, v in calibration.items()}
    np.testing.assert_allclose(_logits(result.path, feed), _logits(tiny_onnx.onnx_path, feed), atol=1e-4)


@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
def test_static_on_a_fused_graph(tiny_onnx, calibration, tmp_path: Path, fmt: str) -> None:
    recipe = QuantRecipe("static", ("MatMul",), fusion="O2", format=fmt, calibration_samples=8,
                         calibration_method="percentile", activations_dtype="QInt8")
    result = quantize(recipe, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "q", calibration=calibration,
                      cache_dir=tmp_path / "cache")
    assert result.node_counts["MatMul"] > 0


def test_exclude_fragile_keeps_those_nodes_in_fp32(tiny_onnx, calibration, tmp_path: Path) -> None:
    from opsearch.quantize import fragile_nodes

    fragile_adds = {n.name for n in fragile_nodes(onnx.load(str(tiny_onnx.onnx_path))) if n.op_type == "Add"}
    plain = QuantRecipe("static", ("Add", "MatMul"), calibration_samples=8)
    kept = QuantRecipe("static", ("Add", "MatMul"), calibration_samples=8, exclude_fragile=True)
    a = quantize(plain, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "a", calibration=calibration)
    b = quantize(kept, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "b", calibration=calibration)
    assert a.node_counts["Add"] - b.node_counts["Add"] == len(fragile_adds) > 0
    still_fp32 = {n.name for n in onnx.load(str(b.path)).graph.node if n.op_type == "Add"}
    assert fragile_adds <= still_fp32
    assert b.node_counts["MatMul"] == a.node_counts["MatMul"]
    assert "fp32_fragile" in kept.flags()


def test_recipe_from_older_or_newer_records() -> None:
    old = {"mode": "dynamic", "operators_to_quantize": ["MatMul"], "per_channel": True}
    assert QuantRecipe.from_dict(old) == QuantRecipe("dynamic", ("MatMul",), per_channel=True, fusion="none")
    assert QuantRecipe.from_dict({**old, "some_future_field": 3}).per_channel


def test_static_int8_activations_need_int8_weights() -> None:
    with pytest.raises(ValueError, match="activations_dtype"):
        QuantRecipe("static", ("MatMul",), activations_dtype="QInt8", weights_dtype="QUInt8")


@pytest.mark.parametrize("recipe", [
    QuantRecipe("weight_only", ("Gather", "MatMul"), weight_bits=4, block_size=32, accuracy_level=4),
    QuantRecipe("weight_only", ("MatMul",), weight_bits=8, block_size=32, weights_symmetric=False),
    QuantRecipe("weight_only", ("Gather",), block_size=32),
], ids=lambda r: r.label())
def test_weight_only_recipe_writes_matmulnbits_and_gatherblockquantized(tiny_onnx, calibration, tmp_path: Path,
                                                                          recipe) -> None:
    from collections import Counter

    from opsearch.quantize import model_file_mb

    result = quantize(recipe, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "q")
    graph = onnx.load(str(result.path))
    ops = Counter(node.op_type for node in graph.graph.node)
    fp32_ops = Counter(node.op_type for node in onnx.load(str(tiny_onnx.onnx_path)).graph.node)
    if "MatMul" in recipe.operators_to_quantize:
        nbits = [n for n in graph.graph.node if n.op_type == "MatMulNBits"]
        assert len(nbits) == result.node_counts["MatMul"] > 0
        assert ops["MatMul"] == fp32_ops["MatMul"] - len(nbits)  # the rest multiply activations by activations
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nbits[0].attribute}
        assert attrs["bits"] == recipe.weight_bits and attrs["block_size"] == recipe.block_size
        assert attrs.get("accuracy_level", 0) == recipe.accuracy_level
    else:
        assert "MatMulNBits" not in ops and "MatMul" not in result.node_counts
    if "Gather" in recipe.operators_to_quantize:
        assert ops["GatherBlockQuantized"] == result.node_counts["Gather"] > 0
    else:
        assert "GatherBlockQuantized" not in ops
    assert result.size_mb == pytest.approx(model_file_mb(result.path)) and result.size_mb < model_file_mb(
        tiny_onnx.onnx_path)
    feed = {k: v[:1] for k, v in calibration.items()}
    fp32, q = _logits(tiny_onnx.onnx_path, feed), _logits(result.path, feed)
    assert not np.array_equal(fp32, q)
    assert np.max(np.abs(fp32 - q)) < 0.5 * (np.max(np.abs(fp32)) + 1e-3) + 0.1
    assert QuantRecipe.from_dict(json.loads((result.path.parent / "opsearch-recipe.json").read_text())) == recipe


def test_model_file_size_counts_its_external_data(tiny_onnx, tmp_path: Path) -> None:
    from opsearch.quantize import model_file_mb

    model = onnx.load(str(tiny_onnx.onnx_path))
    onnx.save_model(model, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    parts = (tmp_path / "m.onnx").stat().st_size + (tmp_path / "m.onnx.data").stat().st_size
    assert (tmp_path / "m.onnx.data").stat().st_size > 0  # the weights are outside the file
    assert model_file_mb(tmp_path / "m.onnx") == pytest.approx(parts / 1e6)
    assert model_file_mb(tmp_path / "m.onnx") > (tmp_path / "m.onnx").stat().st_size / 1e6


# Weight MatMuls only -------------------------------------------------------------------------------------------


def _fp32_matmuls(path: Path) -> set[str]:
    """The MatMuls a quantized graph still computes in float: their names are the fp32 graph's, and no input is a
    quantized tensor's DequantizeLinear output."""
    model = onnx.load(str(path))
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node if n.op_type == "MatMul" and not dequantized & set(n.input[:2])}


@pytest.mark.parametrize("recipe", [
    QuantRecipe("dynamic", ("MatMul",)),
    QuantRecipe("dynamic", ("Gather", "MatMul"), per_channel=True),
    QuantRecipe("static", ("MatMul",), calibration_samples=8),
    QuantRecipe("static", ("MatMul",), format="QDQ", calibration_samples=8),
], ids=lambda r: r.label())
def test_weight_matmuls_only_leaves_exactly_the_activation_matmuls_fp32(tiny_onnx, calibration, tmp_path: Path,
                                                                        recipe) -> None:
    kinds = matmul_kinds(onnx.load(str(tiny_onnx.onnx_path)))
    assert len(kinds.weight) == 12 and len(kinds.activation) == 4  # 2 layers of the tiny BERT
    every = quantize(recipe, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "every", calibration=calibration)
    flagged = replace(recipe, matmul_weights_only=True)
    weights = quantize(flagged, fp32_path=tiny_onnx.onnx_path, out_dir=tmp_path / "weights", calibration=calibration)
    assert every.node_counts["MatMul"] == len(kinds.weight) + len(kinds.activation)
    assert weights.node_counts["MatMul"] == len(kinds.weight)
    assert _fp32_matmuls(weights.path) == set(kinds.activation)
    assert every.graph_hash != weights.graph_hash
    # What made it is said beside it: the recipe, and the nodes it kept fp32 in optimum's ORT config.
    folder = weights.path.parent
    assert QuantRecipe.from_dict(json.loads((folder / "opsearch-recipe.json").read_text())) == flagged
    ort_config = json.loads((folder / "ort_config.json").read_text())
    assert set(ort_config["quantization"]["nodes_to_exclude"]) == set(kinds.activation)
    feed = {k: v[:1] for k, v in calibration.items()}
    fp32, q = _logits(tiny_onnx.onnx_path, feed), _logits(weights.path, feed)
    assert np.max(np.abs(fp32 - q)) < 0.5 * (np.max(np.abs(fp32)) + 1e-3) + 0.1


def test_the_flag_shows_in_label_dict_and_optimum_config() -> None:
    recipe = QuantRecipe("dynamic", ("MatMul",), per_channel=True, matmul_weights_only=True)
    assert recipe.label() == "dynamic[MatMul] per_channel matmul_weights_only s8"
    assert recipe.to_dict()["matmul_weights_only"] is True
    assert QuantRecipe.from_dict(recipe.to_dict()) == recipe
    assert recipe.to_optimum(nodes_to_exclude=["/attn/MatMul"]).nodes_to_exclude == ["/attn/MatMul"]
    assert "matmul_weights_only" not in QuantRecipe("dynamic", ("MatMul",)).label()


@pytest.mark.parametrize(("recipe", "expected"), [
    (QuantRecipe("dynamic", ("Gather",), matmul_weights_only=True), False),  # no MatMul quantized
    (QuantRecipe("dynamic", (), fusion="O2", matmul_weights_only=True), False),  # fusion alone
    (QuantRecipe("weight_only", ("MatMul",), matmul_weights_only=True), False),  # MatMulNBits takes weights anyway
    (QuantRecipe("mixed", ("MatMul",), precisions=(("qkv", "dynamic"),), matmul_weights_only=True), False),
    (QuantRecipe("dynamic", ("MatMul",), fusion="O2"), True),  # ONNX Runtime's dynamic quantizer: const B only
    (QuantRecipe("dynamic", ("Attention", "MatMul"), fusion="O1"), True),
    (QuantRecipe("static", ("MatMul",), fusion="O2"), False),
    (QuantRecipe("static", ("Add", "MatMul"), matmul_weights_only=True), True),
], ids=lambda x: x.label() if isinstance(x, QuantRecipe) else str(x))
def test_the_flag_is_kept_only_where_it_decides_the_graph(recipe, expected: bool) -> None:
    assert recipe.matmul_weights_only is expected
    assert QuantRecipe.from_dict({k: v for k, v in recipe.to_dict().items() if k != "matmul_weights_only"}) == \
        replace(recipe, matmul_weights_only=False)


@pytest.fixture(scope="module")
def mpnet(family_graphs) -> dict[tuple[str, str], Path]:
    """A tiny MPNet, exported and O2-fused: the optimizer leaves its attention unfused, activation MatMuls stand."""
    return {key: path for key, path in family_graphs.items() if key[0] == "mpnet"}


def test_a_fused_dynamic_recipe_keeps_the_graph_it_always_gave(mpnet, tmp_path: Path) -> None:
    """ONNX Runtime's dynamic quantizer (the fused graphs') leaves MatMuls of two activations fp32: the flag names
    what it did, and the graph stays the one studies stored before the flag measured."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fused = mpnet["mpnet", "O2"]
    kinds = matmul_kinds(onnx.load(str(fused)))
    assert kinds.activation  # left standing by the optimizer
    recipe = QuantRecipe("dynamic", ("MatMul",), fusion="O2")
    assert recipe.matmul_weights_only and "matmul_weights_only" in recipe.label()
    result = quantize(recipe, fp32_path=mpnet["mpnet", "none"], out_dir=tmp_path / "q",
                      cache_dir=fused.parents[2])  # where the fusion was made: reused
    assert result.node_counts["MatMul"] == len(kinds.weight)
    assert _fp32_matmuls(result.path) == set(kinds.activation)
    before = tmp_path / "before.onnx"  # the call of before the flag: ONNX Runtime's defaults, nothing excluded
    quantize_dynamic(str(fused), str(before), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "WeightSymmetric": True,
                                    "ActivationSymmetric": False, "ForceSymmetric": False})
    assert graph_hash(onnx.load(str(before))) == result.graph_hash


def test_static_on_a_fused_graph_keeps_its_activation_matmuls_fp32_when_asked(mpnet, tmp_path: Path) -> None:
    fused = mpnet["mpnet", "O2"]
    kinds = matmul_kinds(onnx.load(str(fused)))
    rng = np.random.default_rng(0)
    calibration = {"input_ids": rng.integers(5, 20, (8, 12)).astype(np.int64),
                   "attention_mask": np.ones((8, 12), np.int64)}
    results = {flag: quantize(QuantRecipe("static", ("MatMul",), fusion="O2", calibration_samples=8,
                                          matmul_weights_only=flag),
                              fp32_path=mpnet["mpnet", "none"], out_dir=tmp_path / str(flag), calibration=calibration,
                              cache_dir=fused.parents[2])  # where the fusion was made: reused
               for flag in (False, True)}
    assert results[False].node_counts["MatMul"] == len(kinds.weight) + len(kinds.activation)
    assert results[True].node_counts["MatMul"] == len(kinds.weight)
    ort_config = json.loads((results[True].path.parent / "ort_config.json").read_text())
    assert set(ort_config["quantization"]["nodes_to_exclude"]) == set(kinds.activation)
