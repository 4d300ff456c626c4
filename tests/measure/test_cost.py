"""The cost model: per-node profiles of a real (tiny) graph, predictions monotone where the kernel factors say so,
calibration that widens the interval over what was measured, and a model that round-trips through its stored form.
Timing enters only through injected numbers or as ratios: no assertion rests on how fast this machine is."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import onnx
import pytest
from conftest import sentiment_rows

from opsearch.measure import ThreadSettings, encode, encode_padded
from opsearch.measure._cost import (
    BAND_PAIRS,
    BORROW_ERROR,
    ERROR_MARGIN,
    MIN_PAIRS,
    PRIOR_ERROR,
    CostModel,
    GraphCost,
    Prediction,
)
from opsearch.measure._kernels import ATTENTION, GATHER, GEMM, MATMUL_A, MATMUL_W, node_classes, replaced_nodes
from opsearch.measure._probes import build_cost_model, probe_recipes
from opsearch.measure._profile import profile_nodes
from opsearch.quantize import QuantRecipe, find_groups

W8 = "dynamic/matmul_w/s8"


@pytest.fixture(scope="module")
def graph(tiny_onnx) -> onnx.ModelProto:
    return onnx.load(str(tiny_onnx.onnx_path))


@pytest.fixture(scope="module")
def classes(graph) -> dict[str, str]:
    return node_classes(graph)


@pytest.fixture(scope="module")
def feeds(tiny_onnx):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_onnx.folder)
    # batches of long texts: the tiny graph's MatMuls then last long enough for the profiler's microseconds
    texts = [" ".join(r["sentence"] for r in sentiment_rows(12, seed=i)) for i in range(8)]
    return encode(tokenizer, texts, max_length=60, batch_size=4)


def _injected(graph: onnx.ModelProto, classes: dict[str, str], factors: dict[str, float], *,
              seconds: dict[str, float] | None = None, rest_s: float = 2e-3, outside_s: float = 5e-4) -> CostModel:
    """A model of the tiny graph with made-up times (1 ms per quantizable node unless ``seconds`` says) and
    factors (keyed by kind, on the export's graph)."""
    node_s = {n: (seconds or {}).get(n, 1e-3) for n in classes}
    kernel = sum(node_s.values()) + rest_s
    g = GraphCost("none", node_s, classes, kernel, kernel + outside_s, find_groups(graph).to_dict(), outside_s)
    return CostModel({"none": g}, {f"none|{k}": v for k, v in factors.items()})


def _names(classes: dict[str, str], *kinds: str) -> list[str]:
    return sorted(n for n, c in classes.items() if c in kinds)


def test_the_tiny_graph_has_every_class_the_tests_need(classes, graph) -> None:
    matmuls = [n.name for n in graph.graph.node if n.op_type == "MatMul"]
    assert sorted(_names(classes, MATMUL_W, MATMUL_A)) == sorted(matmuls)
    # two layers: Q, K, V, attention output, FFN in and out each; scores and context of two activations
    assert len(_names(classes, MATMUL_W)) == 12 and len(_names(classes, MATMUL_A)) == 4
    assert _names(classes, GATHER) and _names(classes, GEMM)


def test_profile_lists_every_matmul_of_the_graph_with_a_positive_time(tiny_onnx, graph, feeds) -> None:
    profile = profile_nodes(tiny_onnx.onnx_path, feeds, ThreadSettings(1), passes=2)
    matmuls = [n.name for n in graph.graph.node if n.op_type == "MatMul"]
    assert all(profile.seconds.get(n, 0) > 0 for n in matmuls), {n: profile.seconds.get(n) for n in matmuls}
    assert all(profile.op_types[n] == "MatMul" for n in matmuls)
    assert profile.calls == len(feeds) and profile.passes == 2
    assert profile.wall_s > 0 and profile.kernel_s == pytest.approx(sum(profile.seconds.values()))


def test_what_each_recipe_replaces_is_read_from_the_graph(classes) -> None:
    weights, activations = _names(classes, MATMUL_W, GEMM), _names(classes, MATMUL_A)
    every = replaced_nodes(QuantRecipe("dynamic", ("MatMul",)), classes)
    assert sorted(every) == sorted(weights + activations)
    assert {every[n] for n in activations} == {"dynamic/matmul_a"} and {every[n] for n in weights} == {W8}
    assert sorted(replaced_nodes(QuantRecipe("dynamic", ("MatMul",), matmul_weights_only=True), classes)) == weights
    # a fused graph goes through ONNX Runtime's quantizer, which leaves the activations' MatMuls fp32
    assert sorted(replaced_nodes(QuantRecipe("dynamic", ("MatMul",), fusion="O2"), classes)) == weights
    excluded = replaced_nodes(QuantRecipe("dynamic", ("MatMul",), nodes_to_exclude=tuple(weights[:3])), classes)
    assert not set(weights[:3]) & set(excluded)
    per_channel_u8 = replaced_nodes(QuantRecipe("dynamic", ("MatMul",), per_channel=True, weights_dtype="QUInt8"),
                                    classes)
    assert per_channel_u8[weights[0]] == "dynamic/matmul_w/u8/pc"
    weight_only = replaced_nodes(QuantRecipe("weight_only", ("MatMul",), weight_bits=8, accuracy_level=4), classes)
    assert set(weight_only) == set(_names(classes, MATMUL_W))  # MatMulNBits: constant weights, no Gemm
    assert set(weight_only.values()) == {"weight_only/matmul_w/8bit/block128/acc4"}


def test_a_mixed_recipe_replaces_its_groups_nodes(graph, classes) -> None:
    groups = find_groups(graph)
    recipe = QuantRecipe("mixed", ("MatMul",), precisions=(("qkv", "dynamic"), ("ffn_in", "static")),
                         float_output=True)
    nodes = replaced_nodes(recipe, classes, groups)
    qkv = {n for g in groups.groups if g.role == "qkv" for n in g.nodes}
    ffn_in = {n for g in groups.groups if g.role == "ffn_in" for n in g.nodes}
    assert set(nodes) == qkv | ffn_in
    assert {nodes[n] for n in qkv} == {W8}
    assert {nodes[n] for n in ffn_in} == {"static/matmul_w/s8/float_out"}


@pytest.mark.parametrize("seed", range(8))
def test_quantizing_a_superset_of_nodes_whose_factors_are_below_one_predicts_at_least_as_fast(graph, classes,
                                                                                              seed) -> None:
    rng = random.Random(seed)
    factors = {W8: rng.uniform(0.1, 0.99), "dynamic/matmul_a": rng.uniform(0.1, 0.99),
               "dynamic/gather": rng.uniform(0.1, 0.99)}
    seconds = {n: rng.uniform(1e-5, 2e-3) for n in classes}
    model = _injected(graph, classes, factors, seconds=seconds)
    weights = _names(classes, MATMUL_W, GEMM)
    rng.shuffle(weights)
    # fewer and fewer weighted MatMuls excluded, then the activations' MatMuls, then the tables
    chain = [QuantRecipe("dynamic", ("MatMul",), nodes_to_exclude=tuple(weights[:k]), matmul_weights_only=True)
             for k in range(len(weights), -1, -1)]
    chain += [QuantRecipe("dynamic", ("MatMul",)), QuantRecipe("dynamic", ("Gather", "MatMul"))]
    speedups = [model.predict(r).speedup for r in chain]
    assert speedups[0] == pytest.approx(1.0)  # every node excluded: the fp32 graph
    assert all(b >= a for a, b in zip(speedups, speedups[1:], strict=False)), speedups


@pytest.mark.parametrize(("kind", "recipe", "without"), [
    ("dynamic/gather", QuantRecipe("dynamic", ("Gather", "MatMul")), QuantRecipe("dynamic", ("MatMul",))),
    ("dynamic/matmul_a", QuantRecipe("dynamic", ("MatMul",)),
     QuantRecipe("dynamic", ("MatMul",), matmul_weights_only=True)),
])
def test_adding_a_kind_whose_factor_is_above_one_predicts_slower(graph, classes, kind, recipe, without) -> None:
    model = _injected(graph, classes, {W8: 0.4, "dynamic/matmul_a": 0.5, "dynamic/gather": 0.5} | {kind: 3.0})
    assert model.predict(recipe).speedup < model.predict(without).speedup


def test_a_faster_kernel_predicts_a_faster_recipe(graph, classes) -> None:
    model = _injected(graph, classes, {W8: 0.4, "dynamic/matmul_w/u8": 0.6, "dynamic/matmul_w/s8/pc": 0.4})
    s8 = model.predict(QuantRecipe("dynamic", ("MatMul",), matmul_weights_only=True))
    u8 = model.predict(QuantRecipe("dynamic", ("MatMul",), weights_dtype="QUInt8", matmul_weights_only=True))
    assert s8.speedup > u8.speedup > 1.0
    pc = model.predict(QuantRecipe("dynamic", ("MatMul",), per_channel=True, matmul_weights_only=True))
    assert pc.speedup == pytest.approx(s8.speedup)


def test_the_prediction_is_fp32s_time_over_the_replaced_nodes_times_their_factors(graph, classes) -> None:
    model = _injected(graph, classes, {W8: 0.25}, rest_s=3e-3, outside_s=1e-3)
    weights = _names(classes, MATMUL_W, GEMM)
    fp32 = 1e-3 * len(classes) + 3e-3 + 1e-3
    expected = fp32 / (fp32 - 0.75 * 1e-3 * len(weights))
    p = model.predict(QuantRecipe("dynamic", ("MatMul",), matmul_weights_only=True))
    assert p.speedup == pytest.approx(expected) and p.raw == pytest.approx(expected)
    assert p.low == pytest.approx(expected * math.exp(-PRIOR_ERROR))
    assert p.high == pytest.approx(expected * math.exp(PRIOR_ERROR))


def test_borrowed_and_unmeasured_kinds_widen_the_interval_and_a_large_unknown_is_not_predicted(graph,
                                                                                                classes) -> None:
    tables = _names(classes, GATHER)
    small = {n: 1e-6 for n in tables}  # the tables' lookups: a sliver of the time
    model = _injected(graph, classes, {W8: 0.4}, seconds=small)
    pc = model.predict(QuantRecipe("dynamic", ("MatMul",), per_channel=True, matmul_weights_only=True))
    assert pc.borrowed == ("dynamic/matmul_w/s8/pc",)
    assert math.log(pc.high / pc.speedup) == pytest.approx(PRIOR_ERROR + BORROW_ERROR)
    plain = model.predict(QuantRecipe("dynamic", ("MatMul",), matmul_weights_only=True))
    with_tables = model.predict(QuantRecipe("dynamic", ("Gather", "MatMul"), matmul_weights_only=True))
    assert with_tables.unmeasured == ("dynamic/gather",)
    assert with_tables.low < plain.low and with_tables.high > plain.high
    large = _injected(graph, classes, {W8: 0.4}, seconds={n: 5e-3 for n in tables})
    recipe = QuantRecipe("dynamic", ("Gather", "MatMul"), matmul_weights_only=True)
    assert large.predict(recipe) is None and "dynamic/gather" in large.unpredictable(recipe)


def test_what_the_model_does_not_cover_gets_no_prediction_and_a_reason(graph, classes) -> None:
    model = _injected(graph, classes, {W8: 0.4})
    static = QuantRecipe("static", ("MatMul",))
    assert model.predict(static) is None and "static mode in the QOperator format was not probed" in \
        model.unpredictable(static)
    fused = QuantRecipe("dynamic", ("MatMul",), fusion="O2")
    assert model.predict(fused) is None and "'O2' was not profiled" in model.unpredictable(fused)
    assert model.unpredictable(QuantRecipe("dynamic", ("MatMul",), matmul_weights_only=True)) == ""


@pytest.mark.parametrize("modes", [("dynamic",), ("dynamic", "weight_only", "mixed")])
def test_each_default_probe_adds_one_kind_and_together_they_cover_the_modes_kinds(graph, classes, modes) -> None:
    groups = find_groups(graph)
    probes = probe_recipes({"none": classes}, modes=modes, static_probes=True)
    known: set[str] = set()
    for name, recipe in probes:
        kinds = set(replaced_nodes(recipe, classes, groups).values())
        assert len(kinds - known) == 1, (name, kinds - known)
        known |= kinds
    assert {W8, "dynamic/matmul_a", "dynamic/gather", "dynamic/matmul_w/u8", "dynamic/matmul_w/s8/pc"} <= known
    if "weight_only" in modes:
        assert {"weight_only/matmul_w/4bit/block128/acc0", "weight_only/gather/block128"} <= known
        assert "static/matmul_w/s8/float_out" in known
    else:
        assert not any(k.startswith(("weight_only", "static")) for k in known)


def test_a_fused_graph_gets_its_own_weight_and_attention_probes() -> None:
    fused = {"Attention_0": ATTENTION, "/ffn/MatMul": MATMUL_W, "/classifier/Gemm": GEMM}
    probes = probe_recipes({"none": {"/q/MatMul": MATMUL_W}, "O2": fused}, modes=("dynamic",))
    on_o2 = [(name, r) for name, r in probes if r.fusion == "O2"]
    kinds = [set(replaced_nodes(r, fused).values()) for _, r in on_o2]
    assert kinds == [{W8}, {"dynamic/attention/s8"}, {"dynamic/attention/u8"}, {"dynamic/attention/s8/pc"}], [
        n for n, _ in on_o2]


def test_calibrate_widens_the_interval_over_the_measured_speedups(graph, classes) -> None:
    model = _injected(graph, classes, {W8: 0.4, "dynamic/matmul_a": 0.8, "dynamic/gather": 0.9})
    recipes = [QuantRecipe("dynamic", ("MatMul",), matmul_weights_only=True, nodes_to_exclude=tuple(_names(
        classes, MATMUL_W)[:k])) for k in range(6)] + [QuantRecipe("dynamic", ("Gather", "MatMul"))]
    off = [0.6, 1.5, 1.1, 0.95, 1.3, 0.7, 1.05]  # measured over predicted: some well outside the prior
    predictions = [model.predict(r) for r in recipes]
    measured = [p.raw * k for p, k in zip(predictions, off, strict=True)]
    assert not all(p.low <= m <= p.high for p, m in zip(predictions, measured, strict=True))
    calibrated = model.calibrate(zip(predictions, measured, strict=True))
    assert calibrated.error > model.error
    for recipe, m in zip(recipes, measured, strict=True):
        p = calibrated.predict(recipe)
        assert p.low <= m <= p.high
    # a few pairs that agree never narrow the band below the prior, nor shift the predictions
    few = model.calibrate([(p, p.raw * 1.01) for p in predictions[:MIN_PAIRS - 1]])
    assert few.error == pytest.approx(PRIOR_ERROR) and few.bias == 0.0
    # enough of them set a bias, and more still the band
    biased = model.calibrate([(p.raw, p.raw * 1.2) for p in predictions[:MIN_PAIRS]])
    assert biased.bias == pytest.approx(math.log(1.2)) and biased.error == pytest.approx(PRIOR_ERROR)
    assert biased.predict(recipes[0]).speedup == pytest.approx(predictions[0].raw * 1.2)
    many = model.calibrate([(p.raw, p.raw * 1.2) for p in predictions] * 2)
    assert len(many.residuals) >= BAND_PAIRS and many.error == pytest.approx(ERROR_MARGIN)
    assert model.calibrate([]).error == PRIOR_ERROR


def test_a_built_model_measures_its_probes_and_round_trips_through_its_dict(tiny_onnx, feeds, tmp_path) -> None:
    from transformers import AutoTokenizer

    classes = node_classes(onnx.load(str(tiny_onnx.onnx_path)))
    activations = tuple(_names(classes, MATMUL_A))
    static = QuantRecipe("mixed", ("MatMul",), precisions=(("ffn_in", "static"), ("ffn_out", "static")),
                         float_output=True, calibration_samples=8)
    probes = [("weights", QuantRecipe("dynamic", ("MatMul",), nodes_to_exclude=activations)),
              ("all", QuantRecipe("dynamic", ("MatMul",))), ("static", static)]
    tokenizer = AutoTokenizer.from_pretrained(tiny_onnx.folder)
    calibration = encode_padded(tokenizer, [r["sentence"] for r in sentiment_rows(8)], length=16)
    model = build_cost_model(tiny_onnx.onnx_path, feeds, ThreadSettings(1), work_dir=tmp_path / "work",
                             probes=probes, passes=2, calibration=calibration)
    weights, every, static_probe = model.probes
    assert (weights.kind, every.kind, static_probe.kind) == (W8, "dynamic/matmul_a", "static/matmul_w/s8/float_out")
    assert (weights.compared_with, every.compared_with) == ("fp32", "weights")  # the weights' kernels drop out
    for probe in model.probes:  # what the model expected each recipe to quantize, the quantizer did
        assert probe.expected_counts == probe.quantized_counts and probe.note == "", probe
    assert set(model.factors) == {f"none|{k.kind}" for k in model.probes}
    assert all(math.isfinite(f) and f > 0 for f in model.factors.values())
    assert not list((tmp_path / "work").glob("probe-*"))  # the probes' models are removed
    assert isinstance(model.predict(QuantRecipe("dynamic", ("MatMul",))), Prediction)
    # the probes timed beside fp32 itself check the model from the start; the one beside another probe does not
    checks = model.probe_checks()
    assert len(checks) == 2 and all(p > 0 and m > 0 for p, m in checks)
    assert model.residuals == tuple(pytest.approx(math.log(m / p)) for p, m in checks)
    assert model.error >= PRIOR_ERROR  # two checks are fewer than MIN_PAIRS: the prior still holds
    calibrated = model.calibrate([(model.predict(QuantRecipe("dynamic", ("MatMul",))), 1.3)])
    assert len(calibrated.residuals) == 3
    # once enough trials are timed, their paired rounds alone check the model
    trials = [(model.predict(QuantRecipe("dynamic", ("MatMul",))), 1.3)] * MIN_PAIRS
    assert len(model.calibrate(trials).residuals) == MIN_PAIRS
    assert len(model.calibrate(trials, with_probes=True).residuals) == MIN_PAIRS + 2
    stored = json.loads(json.dumps(calibrated.to_dict()))
    assert CostModel.from_dict(stored) == calibrated
    with pytest.raises(ValueError, match="version"):
        CostModel.from_dict({**stored, "version": 0})
    assert dataclasses.replace(calibrated, residuals=()) != calibrated


# The static mode's bound ---------------------------------------------------------------------------------------------


def _profile(kernels: dict[str, tuple[str, float]]):
    from opsearch.measure._profile import NodeProfile

    return NodeProfile({n: t for n, (_, t) in kernels.items()}, {n: k for n, (k, _) in kernels.items()},
                       sum(t for _, t in kernels.values()), 1, 1)


def test_static_savings_count_what_each_type_replaced_and_leave_the_borders_out() -> None:
    from opsearch.measure._probes import static_savings

    base = _profile({"mm": ("MatMul", 4.0), "gelu": ("BiasGelu", 1.0), "sm": ("Softmax", 0.5),
                     "ln": ("LayerNormalization", 0.7), "shape": ("Shape", 0.1)})
    probe = _profile({"mm_quant": ("QLinearMatMul", 1.5), "add_quant": ("QLinearAdd", 0.3), "erf": ("Erf", 0.4),
                      "sm_quant": ("QLinearSoftmax", 0.9), "q": ("QuantizeLinear", 0.2),
                      "dq": ("DequantizeLinear", 0.2), "ln": ("LayerNormalization", 0.7), "s": ("Shape", 0.1)})
    saved = static_savings(("Add", "MatMul", "Mul", "Softmax", "Unsqueeze"), base, probe)
    assert saved["MatMul"] == pytest.approx(4.0 - 1.5 + 0.1)  # the renamed Shape may be any type's
    assert saved["Add"] == pytest.approx(1.0 - 0.3 + 0.1)  # the fused Add+Gelu counts for Add and for Mul
    assert saved["Mul"] == pytest.approx(1.0 + 0.1)  # the broken fusion's Erf and the borders are left out
    assert saved["Softmax"] == pytest.approx(0.5 - 0.9 + 0.1)  # an integer kernel slower than fp32's: negative
    assert saved["Unsqueeze"] == pytest.approx(0.1)
    assert "LayerNormalization" not in saved  # unchanged kernels and types the probe did not quantize


def test_a_static_recipe_gets_an_upper_bound_that_holds_and_grows_with_its_operator_types(
        tiny_onnx, feeds, tmp_path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_onnx.folder)
    calibration = encode_padded(tokenizer, [r["sentence"] for r in sentiment_rows(8)], length=16)
    ops = ("Add", "Gather", "MatMul", "Mul", "Softmax")
    model = build_cost_model(tiny_onnx.onnx_path, feeds, ThreadSettings(1), work_dir=tmp_path / "work",
                             probes=[], passes=2, calibration=calibration, static_ops={"none|QOperator": ops})
    probe = model.probes[-1]
    assert probe.kind == "static/QOperator" and probe.quantized_counts.get("MatMul", 0) > 0
    assert set(model.savings["none|static/QOperator"]) == set(ops)
    every = model.predict(QuantRecipe("static", ops))
    assert every.bound_only and every.low == 0 and every.describe().startswith("predicted at most ")
    # it bounds what the probe itself ran at, unprofiled, beside fp32 (the borders' cost is real, so below)
    assert probe.compared_wall_s / probe.wall_s <= every.high
    matmul = model.predict(QuantRecipe("static", ("MatMul",)))
    assert matmul.high <= every.high or model.savings["none|static/QOperator"]["MatMul"] <= 0
    per_channel = model.predict(QuantRecipe("static", ("MatMul",), per_channel=True))
    assert per_channel.high == pytest.approx(matmul.high * math.exp(BORROW_ERROR))  # the probe ran per-tensor
    assert model.predict(QuantRecipe("static", ("MatMul",), format="QDQ")) is None  # not probed
    assert "QDQ" in model.unpredictable(QuantRecipe("static", ("MatMul",), format="QDQ"))
    # a bound is no point estimate: the probes' checks and the trials' calibration leave it out
    assert all(p.kind != "static/QOperator" for p in model.probes if p.factor is not None)
    assert CostModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model
