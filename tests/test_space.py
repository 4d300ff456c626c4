from __future__ import annotations

import optuna
import pytest

from opsearch.graph import GraphInfo, OperatorInfo
from opsearch.quantize import QuantRecipe
from opsearch.space import SearchSpace


def _graph() -> GraphInfo:
    def op(name: str, count: int, dynamic: bool, static: bool) -> OperatorInfo:
        return OperatorInfo(name, count, {"dynamic": dynamic, "static_qoperator": static, "static_qdq": static})

    return GraphInfo("x.onnx", [op("MatMul", 10, True, True), op("Add", 8, False, True), op("Gather", 3, True, True),
                                op("Shape", 5, False, False)])


def test_space_offers_what_each_mode_can_quantize() -> None:
    space = SearchSpace.from_graph(_graph(), modes=["dynamic", "static"])
    assert space.operators == {"dynamic": ("Gather", "MatMul"), "static": ("Add", "Gather", "MatMul")}


def test_all_operators_offers_every_type() -> None:
    space = SearchSpace.from_graph(_graph(), modes=["dynamic"], all_operators=True)
    assert space.operators["dynamic"] == ("Add", "Gather", "MatMul", "Shape")


def _sampled(space: SearchSpace, n: int) -> list[optuna.trial.FrozenTrial]:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: (space.suggest(t) and 0.0, 0.0), n_trials=n)
    return study.trials


def test_operator_params_are_conditional_on_mode() -> None:
    space = SearchSpace.from_graph(_graph(), modes=["dynamic", "static"])
    trials = _sampled(space, 40)
    modes = {t.params["mode"] for t in trials}
    assert modes == {"dynamic", "static"}
    for t in trials:
        if t.params["mode"] == "dynamic":
            assert "op_Add" not in t.params  # dynamic mode cannot quantize Add: never sampled
            assert "activations_symmetric" not in t.params
        else:
            assert "op_Add" in t.params and "activations_symmetric" in t.params


def test_suggest_builds_the_recipe_from_params() -> None:
    space = SearchSpace.from_graph(_graph(), modes=["dynamic", "static"], calibration_samples=33)
    trial = optuna.trial.FixedTrial({"mode": "static", "op_Add": True, "op_Gather": False, "op_MatMul": True,
                                     "per_channel": True, "reduce_range": False, "weights_symmetric": True,
                                     "activations_symmetric": True, "weights_dtype": "QUInt8"})
    recipe = space.suggest(trial)
    assert recipe == QuantRecipe("static", ("Add", "MatMul"), per_channel=True, activations_symmetric=True,
                                 weights_dtype="QUInt8", calibration_samples=33)


def test_single_mode_has_no_mode_param() -> None:
    space = SearchSpace.from_graph(_graph(), modes=["dynamic"])
    assert all("mode" not in t.params for t in _sampled(space, 5))


@pytest.mark.parametrize("modes", [["dynamic"], ["dynamic", "static"]])
def test_presets_are_valid_points_of_the_space(modes: list[str]) -> None:
    space = SearchSpace.from_graph(_graph(), modes=modes)
    presets = space.presets()
    assert [name for name, _ in presets] == ["dynamic: MatMul only", "dynamic: every quantizable operator"]
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _, params in presets:
        study.enqueue_trial(params)
    recipes: list[QuantRecipe] = []
    study.optimize(lambda t: (recipes.append(space.suggest(t)) or 0.0, 0.0), n_trials=len(presets))
    assert [r.operators_to_quantize for r in recipes] == [("MatMul",), ("Gather", "MatMul")]
    assert all(r.mode == "dynamic" for r in recipes)


def test_size_counts_recipes() -> None:
    space = SearchSpace.from_graph(_graph(), modes=["dynamic"])
    # 2 operators, then per_channel, reduce_range, weights_symmetric and 2 weight types
    assert space.size() == 2**2 * 2 * 2 * 2 * 2
