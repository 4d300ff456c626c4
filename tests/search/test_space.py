from __future__ import annotations

import numpy as np
import optuna
import pytest

from opsearch.quantize import GraphInfo, OperatorInfo, QuantRecipe
from opsearch.search import SearchSpace
from opsearch.store import StudyRecord


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


def test_size_counts_recipes() -> None:
    space = SearchSpace.from_graph(_graph(), modes=["dynamic"])
    # 3 non-empty operator sets (none: the fp32 model), then per_channel, reduce_range, weights_symmetric, 2 types
    assert space.size() == (2**2 - 1) * 2 * 2 * 2 * 2


def _fused() -> GraphInfo:
    def op(name: str, count: int, dynamic: bool, qop: bool, qdq: bool) -> OperatorInfo:
        return OperatorInfo(name, count, {"dynamic": dynamic, "static_qoperator": qop, "static_qdq": qdq})

    return GraphInfo("fused.onnx", [op("MatMul", 4, True, True, True), op("Attention", 2, True, False, False),
                                    op("SkipLayerNormalization", 4, False, False, False)])


def _rich() -> SearchSpace:
    return SearchSpace.from_graph(_graph(), modes=["dynamic", "static"], fusions=["none", "O2"],
                                  fused={"O2": _fused()}, formats=["QOperator", "QDQ"],
                                  activation_types=["QUInt8", "QInt8"], exclude_fragile=[False, True],
                                  calibration_method=["minmax", "percentile"], calibration_samples=[32, 64])


def test_fused_variants_offer_the_fused_graphs_operators() -> None:
    space = _rich()
    assert space.operators_for("O2", "dynamic") == ("Attention", "MatMul")
    assert space.operators_for("none", "dynamic") == ("Gather", "MatMul")
    assert space.operators_for("O2", "static", "QDQ") == ("MatMul",)
    assert space.fusions == ("none", "O2")


@pytest.mark.parametrize("sampler", [optuna.samplers.RandomSampler(seed=3), optuna.samplers.TPESampler(seed=3),
                                     optuna.samplers.NSGAIISampler(seed=3, population_size=6)],
                         ids=["random", "tpe", "nsga2"])
def test_conditional_params_work_with_each_sampler(sampler) -> None:
    space = _rich()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    recipes: list[QuantRecipe] = []
    study.optimize(lambda t: (recipes.append(space.suggest(t)) or float(len(recipes)), 0.0), n_trials=30)
    for trial, recipe in zip(study.trials, recipes, strict=True):
        assert ("op_Attention" in trial.params) == (recipe.fusion == "O2" and recipe.mode == "dynamic")
        assert ("op_Add" in trial.params) == (recipe.fusion == "none" and recipe.mode == "static")
        if recipe.mode == "dynamic":
            assert "format" not in trial.params and "calibration_method" not in trial.params
        if recipe.mode == "static" and recipe.weights_dtype == "QUInt8":
            assert recipe.activations_dtype == "QUInt8" and "activations_dtype" not in trial.params
    assert {r.fusion for r in recipes} == {"none", "O2"}


def test_fusion_alone_is_a_recipe_and_asks_no_flags() -> None:
    space = _rich()
    recipe = space.suggest(optuna.trial.FixedTrial({"fusion": "O2", "mode": "dynamic", "op_Attention": False,
                                                    "op_MatMul": False}))
    assert recipe.fusion == "O2" and recipe.operators_to_quantize == () and not recipe.is_fp32


def test_enumeration_yields_every_recipe_once_and_size_counts_them() -> None:
    for space in (SearchSpace.from_graph(_graph(), modes=["dynamic"]),
                  SearchSpace.from_graph(_graph(), modes=["dynamic", "static"]), _rich()):
        params = list(space.enumerate_params())
        recipes = [space.suggest(optuna.trial.FixedTrial(p)) for p in params]
        assert len(params) == space.size()
        assert len(set(recipes)) == len(recipes)  # no repeats
        assert not any(r.is_fp32 for r in recipes)
    rich = _rich()
    fusion_only = [r for r in (rich.suggest(optuna.trial.FixedTrial(p)) for p in rich.enumerate_params())
                   if not r.operators_to_quantize]
    assert [r.fusion for r in fusion_only] == ["O2"]


def test_speed_classes_partition_the_space_by_what_changes_its_kernels() -> None:
    from opsearch.search._space import NUMBERS_ONLY, speed_key

    for space in (SearchSpace.from_graph(_graph(), modes=["dynamic", "static"]), _rich()):
        classes = list(space.speed_classes())
        assert sum(members for _, _, members in classes) == space.size()
        keys = {speed_key(p): members for p, r, members in classes if r.operators_to_quantize}
        assert len(keys) == len([r for _, r, _ in classes if r.operators_to_quantize])  # each class once
        counts: dict[tuple, int] = {}
        for params in space.enumerate_params():
            if space.recipe_for(params).operators_to_quantize:
                counts[speed_key(params)] = counts.get(speed_key(params), 0) + 1
        assert counts == keys  # every configuration in one class, as many as it says
        for params, _, _ in classes:  # a class stands at the first choice of what changes only the numbers
            assert all(params[name] is False for name in NUMBERS_ONLY & {"reduce_range", "weights_symmetric"}
                       if name in params)
    rich = _rich()
    static = next(p for p, r, _ in rich.speed_classes() if r.mode == "static")
    other = {**static, "reduce_range": True, "weights_symmetric": not static["weights_symmetric"]}
    assert speed_key(other) == speed_key(static)
    assert speed_key({**static, "per_channel": not static["per_channel"]}) != speed_key(static)


def test_params_for_round_trips_and_rejects_what_the_space_lacks() -> None:
    space = _rich()
    recipe = QuantRecipe("static", ("MatMul",), fusion="O2", format="QDQ", activations_dtype="QInt8",
                         calibration_method="percentile", calibration_samples=32, exclude_fragile=True)
    params = space.params_for(recipe)
    assert params is not None and space.suggest(optuna.trial.FixedTrial(params)) == recipe
    assert space.params_for(QuantRecipe("dynamic", ("Conv",))) is None
    assert space.params_for(QuantRecipe("static", ("MatMul",), calibration_method="entropy")) is None


def test_stored_space_round_trips() -> None:
    space = _rich()
    assert SearchSpace.from_dict(space.to_dict()) == space  # a space stored before fusion: tests/store/test_migrate.py


def _graph_with_weight_only() -> GraphInfo:
    def op(name: str, dynamic: bool, static: bool, weight_only: bool) -> OperatorInfo:
        return OperatorInfo(name, 4, {"dynamic": dynamic, "static_qoperator": static, "static_qdq": static,
                                      "weight_only": weight_only})

    return GraphInfo("x.onnx", [op("MatMul", True, True, True), op("Gather", True, True, True),
                                op("Add", False, True, False)])


def test_weight_only_asks_its_own_flags_and_counts_its_recipes() -> None:
    space = SearchSpace.from_graph(_graph_with_weight_only(), modes=["dynamic", "weight_only"])
    assert space.operators["weight_only"] == ("Gather", "MatMul")
    recipes = [space.suggest(optuna.trial.FixedTrial(p)) for p in space.enumerate_params()]
    assert len(recipes) == space.size() == len(set(recipes))
    weight_only = [r for r in recipes if r.mode == "weight_only"]
    # MatMul alone or with Gather: bits x accuracy level x block size x symmetry; Gather alone: block x symmetry.
    assert len(weight_only) == 2 * (2 * 2 * 2 * 2) + 2 * 2
    assert {(r.weight_bits, r.accuracy_level) for r in weight_only if r.operators_to_quantize == ("Gather",)} == {
        (4, 0)}  # embeddings are 4-bit; the accuracy level is MatMulNBits' own
    assert {r.block_size for r in weight_only} == {32, 128} and {r.weight_bits for r in weight_only} == {4, 8}
    recipe = QuantRecipe("weight_only", ("Gather", "MatMul"), weight_bits=8, block_size=32, accuracy_level=4,
                         weights_symmetric=False)
    assert space.suggest(optuna.trial.FixedTrial(space.params_for(recipe))) == recipe
    assert recipe.label() == "weight_only[Gather+MatMul] int8 block32 acc4 asym_w"


# matmul_weights_only: asked where it changes the graph -------------------------------------------------------------


def _split(weight: int, activation: int, *, attention: int = 0) -> GraphInfo:
    """A graph whose MatMuls have a constant weight (``weight``) or two activations (``activation``)."""
    def op(name: str, count: int, dynamic: bool, static: bool) -> OperatorInfo:
        return OperatorInfo(name, count, {"dynamic": dynamic, "static_qoperator": static, "static_qdq": static,
                                          "weight_only": name in ("MatMul", "Gather")})

    ops = [op("MatMul", weight + activation, True, True), op("Gather", 3, True, True), op("Add", 8, False, True)]
    if attention:
        ops.append(op("Attention", attention, True, False))
    return GraphInfo("x.onnx", ops, weight_matmuls=weight, activation_matmuls=activation)


def _minilm_like(**kwargs) -> SearchSpace:
    """MiniLM's shape: 36 weight and 12 attention MatMuls exported; fused at O2, attention inside 6 Attention nodes,
    and at O1 (no attention fusion) both kinds still standing."""
    return SearchSpace.from_graph(_split(36, 12), modes=["dynamic", "static", "weight_only"],
                                  fusions=["none", "O1", "O2"],
                                  fused={"O1": _split(36, 12), "O2": _split(12, 0, attention=6)}, **kwargs)


def test_weights_only_is_asked_where_it_changes_the_graph() -> None:
    space = _minilm_like()
    assert space.matmul_weights_only == ("none", "O1")  # O2's MatMuls all have a weight
    asked = {(f, m): space.asks_weights_only(f, m, ("MatMul",)) for f in space.fusions
             for m in ("dynamic", "static", "weight_only")}
    # a fused dynamic recipe leaves activation MatMuls fp32 anyway; weight-only takes weights only
    assert [k for k, v in asked.items() if v] == [("none", "dynamic"), ("none", "static"), ("O1", "static")]
    assert not space.asks_weights_only("none", "dynamic", ("Gather",))  # only with MatMul chosen
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        params = space.random_params(rng)
        if params is None:
            continue
        recipe = space.suggest(optuna.trial.FixedTrial(params))
        offered = space.asks_weights_only(recipe.fusion, recipe.mode, recipe.operators_to_quantize)
        assert ("matmul_weights_only" in params) == offered, (params, recipe.label())
        if offered:
            assert recipe.matmul_weights_only is params["matmul_weights_only"]
            seen.add(params["matmul_weights_only"])
    assert seen == {False, True}
    # a graph whose MatMuls all have a weight (or all lack one) never asks: the choice would change nothing
    for graph in (_split(12, 0), _split(0, 4), _graph()):
        plain = SearchSpace.from_graph(graph, modes=["dynamic", "static"])
        assert plain.matmul_weights_only == ()
        assert all("matmul_weights_only" not in p for p in plain.enumerate_params())


def test_weights_only_keeps_size_enumeration_and_params_for_consistent() -> None:
    space = SearchSpace.from_graph(_split(36, 12), modes=["dynamic"])
    # 3 operator sets (Gather, MatMul, both), the 2 with MatMul twice; per_channel, reduce_range, symmetric, 2 types
    assert space.size() == (3 + 2) * 2 * 2 * 2 * 2
    without = SearchSpace.from_graph(_split(36, 12), modes=["dynamic"], matmul_weights_only=False)
    assert without.matmul_weights_only == () and without.size() == 3 * 2 * 2 * 2 * 2
    for candidate in (space, SearchSpace.from_graph(_split(36, 12), modes=["dynamic", "static"],
                                                    formats=["QOperator", "QDQ"]), _minilm_like()):
        params = list(candidate.enumerate_params())
        recipes = [candidate.suggest(optuna.trial.FixedTrial(p)) for p in params]
        assert len(params) == candidate.size() == len(set(recipes))
        for p, recipe in zip(params, recipes, strict=True):
            assert candidate.params_for(recipe) == p
            assert candidate.complete(p) == p
    recipe = QuantRecipe("static", ("Add", "MatMul"), matmul_weights_only=True, fusion="O1")
    params = _minilm_like().params_for(recipe)
    assert params is not None and params["matmul_weights_only"] is True
    # where it is not asked, a recipe that sets it is not a point of the space
    assert SearchSpace.from_graph(_split(12, 0), modes=["dynamic"]).params_for(
        QuantRecipe("dynamic", ("MatMul",), matmul_weights_only=True)) is None


@pytest.mark.parametrize("sampler", [optuna.samplers.RandomSampler(seed=3), optuna.samplers.TPESampler(seed=3),
                                     optuna.samplers.NSGAIISampler(seed=3, population_size=6)],
                         ids=["random", "tpe", "nsga2"])
def test_every_sampler_copes_with_weights_only(sampler) -> None:
    space = _minilm_like()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    recipes: list[QuantRecipe] = []
    study.optimize(lambda t: (recipes.append(space.suggest(t)) or float(len(recipes)), 0.0), n_trials=40)
    assert any(r.matmul_weights_only for r in recipes)


def test_a_space_stored_before_weights_only_never_asks_it_and_replays_its_trials() -> None:
    space = _minilm_like()
    stored = space.to_dict()
    assert stored["matmul_weights_only"] == ["none", "O1"]
    assert SearchSpace.from_dict(stored) == space
    older = optuna.create_study()  # a study that stored its space before the choice, read through its record
    older.set_user_attr("search_space", {k: v for k, v in stored.items() if k != "matmul_weights_only"})
    restored = SearchSpace.from_dict(StudyRecord.of(older).search_space)
    assert restored.matmul_weights_only == ()
    assert restored == SearchSpace.from_graph(_split(36, 12), modes=["dynamic", "static", "weight_only"],
                                              fusions=["none", "O1", "O2"],
                                              fused={"O1": _split(36, 12), "O2": _split(12, 0, attention=6)},
                                              matmul_weights_only=False)
    # An older trial's parameters (no matmul_weights_only) replay to the recipe they made: every MatMul quantized.
    old_trial = {"fusion": "none", "mode": "dynamic", "op_Gather": False, "op_MatMul": True, "per_channel": True,
                 "reduce_range": False, "weights_symmetric": True, "weights_dtype": "QInt8"}
    recipe = restored.suggest(optuna.trial.FixedTrial(old_trial))
    assert recipe == QuantRecipe("dynamic", ("MatMul",), per_channel=True)
    assert restored.params_for(recipe) == old_trial
    assert all("matmul_weights_only" not in p for p in restored.enumerate_params())
    with pytest.raises(ValueError):  # the space of today asks it: the old parameters alone do not name a recipe
        space.suggest(optuna.trial.FixedTrial(old_trial))


def test_neighbours_change_one_parameter_each_and_cover_every_other_choice() -> None:
    space = _rich()
    # two operators: turning either off leaves a recipe (turning the only one off would give the fp32 model)
    anchor = next(p for p in space.enumerate_params() if p.get("fusion") == "none" and p.get("mode") == "dynamic"
                  and p.get("op_MatMul") and p.get("op_Gather"))
    neighbours = list(space.neighbours(anchor))
    keys = [tuple(sorted(n.items())) for n in neighbours]
    assert tuple(sorted(anchor.items())) not in keys and len(set(keys)) == len(keys)
    assert all(space.recipe_for(n) == space.suggest(optuna.trial.FixedTrial(n)) for n in neighbours)
    assert not any(space.recipe_for(n).is_fp32 for n in neighbours)
    for n in neighbours:  # within the anchor's own variant, exactly one of its answers changed
        if n.get("fusion") == anchor.get("fusion") and n.get("mode") == anchor.get("mode"):
            assert sum(n[k] != anchor[k] for k in anchor.keys() & n.keys()) == 1, n
    for name in anchor:  # every other choice of every parameter is some neighbour's
        assert any(n.get(name) not in (None, anchor[name]) for n in neighbours), name


def test_smoothing_is_asked_per_role_where_a_projection_is_quantized_and_counted() -> None:
    """Searched at two strengths, each of the four roles asks none/0.5/0.85 when the recipe quantizes MatMul (not
    for Gather alone); the recipes carry what was asked, every one distinct; size, enumeration, params_for and the
    stored space agree."""
    space = SearchSpace.from_graph(_graph(), modes=["dynamic"], smoothing=[0.5, 0.85])
    params = list(space.enumerate_params())
    recipes = [space.suggest(optuna.trial.FixedTrial(p)) for p in params]
    # Gather alone: 1 set; sets with MatMul: 2, each x 3^4 smoothings; flags: per_channel, reduce_range, sym, type
    assert len(params) == space.size() == len(set(recipes)) == (1 + 2 * 3 ** 4) * 2 * 2 * 2 * 2
    assert {r.smoothing for r in recipes if r.operators_to_quantize == ("Gather",)} == {()}
    assert all(not any(k.startswith("smooth_") for k in p) for p, r in zip(params, recipes, strict=True)
               if r.operators_to_quantize == ("Gather",))
    assert {dict(r.smoothing).get("ffn_out", 0.0) for r in recipes} == {0.0, 0.5, 0.85}
    recipe = QuantRecipe("dynamic", ("MatMul",), smoothing=(("qkv", 0.85), ("ffn_out", 0.5)))
    found = space.params_for(recipe)
    assert found is not None and found["smooth_qkv"] == 0.85 and found["smooth_attn_out"] == 0.0
    assert space.suggest(optuna.trial.FixedTrial(found)) == recipe
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert SearchSpace.from_graph(_graph(), modes=["dynamic"]).params_for(recipe) is None  # not searched: absent
    stored = space.to_dict()
    del stored["smoothing"]  # a space stored before smoothing searches none
    assert SearchSpace.from_dict(stored).smoothing == ()
