"""opsearch.search._presets: optimum's presets translated into the space, duplicates merged under all their names."""

from __future__ import annotations

import optuna
import pytest
from optimum.onnxruntime.configuration import AutoQuantizationConfig

from opsearch.quantize import GraphInfo, OperatorInfo, QuantRecipe
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
    assert list(found)[0] == "dynamic: MatMul only"
    assert "dynamic: every quantizable operator / arm64 / avx512 / avx512_vnni" in found
    assert "arm64 per_channel / avx512 per_channel / avx512_vnni per_channel" in found
    assert {"avx2", "avx2 per_channel"} <= set(found)
    assert len(found) == 5
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
    # "MatMul alone" is the MatMul-only preset: enqueued once, under both names.
    assert "dynamic: MatMul only / sweep: MatMul alone" in names
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
