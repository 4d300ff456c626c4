"""opsearch.search._presets: optimum's presets translated into the space, duplicates merged under all their names."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from optimum.onnxruntime.configuration import AutoQuantizationConfig

from opsearch.quantize import SMOOTH_ROLES, GraphInfo, OperatorInfo, QuantRecipe
from opsearch.search import SearchSpace, from_optimum, preset_recipes, presets


def _graph() -> GraphInfo:
    def op(name: str, dynamic: bool, static: bool) -> OperatorInfo:
        return OperatorInfo(name, 1, {"dynamic": dynamic, "static_qoperator": static, "static_qdq": static})

    return GraphInfo("x.onnx", [op("MatMul", True, True), op("Gather", True, True), op("Add", False, True),
                                op("Shape", False, False)])


@pytest.mark.parametrize(("cpu", "dtype"), [("arm64", "QInt8"), ("avx2", "QUInt8"), ("avx512", "QInt8"),
                                            ("avx512_vnni", "QInt8")])
@pytest.mark.parametrize("per_channel", [False, True])
def test_optimum_presets_map_to_our_params(cpu: str, dtype: str, per_channel: bool) -> None:
    config = getattr(AutoQuantizationConfig, cpu)(is_static=False, per_channel=per_channel)
    recipe = from_optimum(config, ops=("Gather", "MatMul"))
    assert recipe == QuantRecipe("dynamic", ("Gather", "MatMul"), per_channel=per_channel, reduce_range=False,
                                 weights_symmetric=True, weights_dtype=dtype)


def test_duplicates_merge_and_keep_every_name() -> None:
    space = SearchSpace.from_graph(_graph(), modes=["dynamic", "static"])
    found = {p.name: p for p in presets(space)}
    # a graph without MatMuls of two activations: quantizing the weight MatMuls is quantizing them all
    assert list(found)[:2] == ["dynamic: weight MatMuls only / dynamic: MatMul only",
                               "dynamic: weight MatMuls only, per-channel"]
    # a starting point under any of its names
    assert found["dynamic: weight MatMuls only / dynamic: MatMul only"].starting
    assert not found["avx2"].starting
    assert "dynamic: every quantizable operator / arm64 / avx512 / avx512_vnni" in found
    assert "arm64 per_channel / avx512 per_channel / avx512_vnni per_channel" in found
    assert {"avx2", "avx2 per_channel"} <= set(found)
    assert len(found) == 6
    keys = [tuple(sorted(p.params.items())) for p in found.values()]
    assert len(set(keys)) == len(keys)
    # Each is a point of the space that gives back the recipe it was made from.
    for preset in found.values():
        assert space.suggest(optuna.trial.FixedTrial(preset.params)) == preset.recipe
    assert found["avx2"].recipe.weights_dtype == "QUInt8"


def test_fusion_only_and_sweep() -> None:
    space = SearchSpace.from_graph(_graph(), modes=["dynamic"], fusions=["none", "O2"], fused={"O2": _graph()})
    names = [p.name for p in presets(space, sweep_operators=True)]
    assert "fusion only O2" in names
    assert {"sweep: Gather alone"} <= set(names)
    # "MatMul alone" is the MatMul-only preset: enqueued once, under all its names.
    assert "dynamic: weight MatMuls only / dynamic: MatMul only / sweep: MatMul alone" in names
    assert [n for n, _ in preset_recipes(space)].count("fusion only O2") == 1


def test_weight_only_presets_are_onnxruntimes_defaults_then_the_embeddings_too() -> None:
    def op(name: str) -> OperatorInfo:
        return OperatorInfo(name, 3, {"dynamic": True, "static_qoperator": True, "static_qdq": True,
                                      "weight_only": True})

    space = SearchSpace.from_graph(GraphInfo("x.onnx", [op("MatMul"), op("Gather")]), modes=["dynamic", "weight_only"])
    found = {p.name: p.recipe for p in presets(space)}
    assert found["weight-only: 4-bit MatMul"] == QuantRecipe("weight_only", ("MatMul",), weight_bits=4,
                                                             block_size=128, weights_symmetric=False)
    assert found["weight-only: 4-bit MatMul and embeddings"].operators_to_quantize == ("Gather", "MatMul")
    assert not any(r.mode == "weight_only" for r in (p.recipe for p in presets(
        SearchSpace.from_graph(GraphInfo("x.onnx", [op("MatMul")]), modes=["dynamic"]))))


# Starting points read from the graph -----------------------------------------------------------------------------


def _split(weight: int, activation: int, *, attention: int = 0) -> GraphInfo:
    def op(name: str, count: int, dynamic: bool, static: bool) -> OperatorInfo:
        return OperatorInfo(name, count, {"dynamic": dynamic, "static_qoperator": static, "static_qdq": static,
                                          "weight_only": name in ("MatMul", "Gather")})

    ops = [op("MatMul", weight + activation, True, True), op("Gather", 3, True, True)]
    if attention:
        ops.append(op("Attention", attention, True, False))
    return GraphInfo("x.onnx", ops, weight_matmuls=weight, activation_matmuls=activation)


def _minilm_like(fusions=("none", "O2")) -> SearchSpace:
    """MiniLM's graphs: 36 weight and 12 attention MatMuls exported; at O2 the attention inside 6 Attention nodes."""
    return SearchSpace.from_graph(_split(36, 12), modes=["dynamic", "static", "weight_only"], fusions=list(fusions),
                                  fused={"O2": _split(12, 0, attention=6)})


def test_the_starting_points_read_from_the_graph_come_first_then_optimums_presets() -> None:
    found = presets(_minilm_like())
    names = [p.name for p in found]
    assert names[:4] == ["dynamic: O2 fused attention", "dynamic: weight MatMuls only",
                         "dynamic: O2 fused attention, per-channel", "dynamic: weight MatMuls only, per-channel"]
    assert names[4] == "fusion only O2"  # no accuracy lost by construction: the cost model's first bar
    assert names[5:10] == ["dynamic: every quantizable operator / arm64 / avx512 / avx512_vnni",
                           "arm64 per_channel / avx512 per_channel / avx512_vnni per_channel", "avx2",
                           "avx2 per_channel", "dynamic: MatMul only"]  # optimum's, reachable and labelled as before
    # the starting points run unpredicted and are never pruned; optimum's presets are predicted like a draw
    assert [p.starting for p in found][:6] == [True, True, False, False, False, False]  # per-tensor ones
    recipes = {p.name: p.recipe for p in found}
    assert recipes["dynamic: weight MatMuls only"] == QuantRecipe("dynamic", ("MatMul",), matmul_weights_only=True)
    assert recipes["dynamic: weight MatMuls only, per-channel"] == QuantRecipe("dynamic", ("MatMul",),
                                                                               matmul_weights_only=True,
                                                                               per_channel=True)
    assert recipes["dynamic: O2 fused attention, per-channel"] == QuantRecipe("dynamic", ("Attention", "MatMul"),
                                                                              fusion="O2", per_channel=True)
    assert not recipes["dynamic: MatMul only"].matmul_weights_only  # optimum's: every MatMul
    for preset in found:  # each a point of the space that gives back its recipe
        assert _minilm_like().suggest(optuna.trial.FixedTrial(preset.params)) == preset.recipe


def test_a_study_searching_smoothing_starts_with_the_weight_matmuls_smoothed_too() -> None:
    """Smoothing searched: right after the unsmoothed weight-MatMul starting point, the same with every role
    smoothed at the first strength, a starting point too (never pruned), then its per-channel twin."""
    space = dataclasses.replace(_minilm_like(), smoothing=(0.5, 0.85))
    found = presets(space)
    names = [p.name for p in found]
    smoothed = "dynamic: weight MatMuls only, every role smoothed at 0.5"
    assert names[:3] == ["dynamic: O2 fused attention", "dynamic: weight MatMuls only", smoothed]
    assert f"{smoothed}, per-channel" in names
    preset = found[2]
    assert preset.starting and preset.recipe == QuantRecipe(
        "dynamic", ("MatMul",), matmul_weights_only=True, smoothing=tuple((r, 0.5) for r in SMOOTH_ROLES))
    assert space.suggest(optuna.trial.FixedTrial(preset.params)) == preset.recipe
    assert not any("smoothed" in name for name in (p.name for p in presets(_minilm_like())))  # not searched


def test_the_fused_starting_point_needs_a_fusion_that_made_attention() -> None:
    unfused_attention = SearchSpace.from_graph(_split(36, 12), modes=["dynamic"], fusions=["none", "O2"],
                                               fused={"O2": _split(36, 12)})  # MPNet: O2 leaves attention as is
    for space in (unfused_attention, _minilm_like(fusions=("none",))):
        assert not any("fused attention" in name for name, _ in preset_recipes(space))
    only_fused = [name for name, _ in preset_recipes(_minilm_like(fusions=("O2",)))]
    # the space holds no exported graph: the weight MatMuls of the fused graph are its weights-only recipe
    assert only_fused[:4] == ["dynamic: O2 fused attention", "dynamic: weight MatMuls only",
                              "dynamic: O2 fused attention, per-channel", "dynamic: weight MatMuls only, per-channel"]
    static_only = SearchSpace.from_graph(_split(36, 12), modes=["static"], fusions=["none", "O2"],
                                         fused={"O2": _split(12, 0, attention=6)})
    assert [name for name, _ in preset_recipes(static_only)] == ["fusion only O2"]  # the starting points are dynamic


def test_the_starting_points_of_a_real_graph(tiny_onnx, tmp_path) -> None:
    from opsearch.quantize import fused_model, inspect_model

    fused = {level: inspect_model(fused_model(tiny_onnx.onnx_path, level, cache_dir=tmp_path))
             for level in ("O1", "O2")}
    space = SearchSpace.from_graph(inspect_model(tiny_onnx.onnx_path), modes=["dynamic"],
                                   fusions=["none", "O1", "O2"], fused=fused)
    names = [p.name for p in presets(space)]
    assert names[:4] == ["dynamic: O2 fused attention", "dynamic: weight MatMuls only",
                         "dynamic: O2 fused attention, per-channel", "dynamic: weight MatMuls only, per-channel"]
    assert not any("O1 fused" in name for name in names)  # O1 fuses no attention
    assert "dynamic: MatMul only" in names
