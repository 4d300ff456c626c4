"""Mixed mode's part of the search space: parameters the samplers handle on fused and unfused graphs alike,
recipes that round-trip through their parameters, and presets warm-started by the ranges pass."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import optuna
import pytest

from opsearch.quantize import find_groups, fused_model, inspect_model, plan
from opsearch.search import SearchSpace
from opsearch.search._presets import presets


@pytest.fixture(scope="module")
def space(tiny_onnx, tmp_path_factory) -> SearchSpace:
    cache = tmp_path_factory.mktemp("mixed-space")
    fused = fused_model(tiny_onnx.onnx_path, "O2", cache_dir=cache)
    groups = {"none": find_groups(onnx.load(str(tiny_onnx.onnx_path))), "O2": find_groups(onnx.load(str(fused)))}
    # a made-up ranking: the later a group, the worse
    sensitivity = {g.key: {"dynamic": i / 100, "static": i / 50} for i, g in enumerate(groups["none"].groups)}
    return SearchSpace.from_graph(inspect_model(tiny_onnx.onnx_path), modes=["dynamic", "static", "mixed"],
                                  fusions=["none", "O2"], fused={"O2": inspect_model(fused)}, groups=groups,
                                  sensitivity=sensitivity)


@pytest.mark.parametrize("sampler", [optuna.samplers.RandomSampler, optuna.samplers.TPESampler,
                                     optuna.samplers.NSGAIISampler])
def test_every_sampler_walks_the_mixed_space_on_both_graphs(space, sampler) -> None:
    study = optuna.create_study(sampler=sampler(seed=0), directions=["maximize", "minimize"])
    seen = set()
    for _ in range(60):
        trial = study.ask()
        recipe = space.suggest(trial)  # a distribution that changed between variants would raise here
        seen.add((recipe.fusion, recipe.mode))
        if recipe.mode == "mixed" and recipe.operators_to_quantize:
            assigned = plan(recipe, space.groups[recipe.fusion])  # every precision valid on its graph
            assert any(p != "fp32" for p in assigned.values())
        study.tell(trial, [float(np.random.default_rng(trial.number).random()), 0.0])
    assert ("none", "mixed") in seen and ("O2", "mixed") in seen


def test_mixed_recipes_round_trip_through_their_parameters(space) -> None:
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(200):
        params = space.random_params(rng)
        if params is None or params.get("mode") != "mixed":
            continue
        recipe = space.suggest(optuna.trial.FixedTrial(params))
        again = space.params_for(recipe)
        assert again is not None, recipe.label()
        assert space.suggest(optuna.trial.FixedTrial(again)) == recipe
        checked += 1
    assert checked > 20


def test_the_worst_ranked_groups_are_the_ones_kept_fp32(space) -> None:
    params = space.complete({"fusion": "none", "mode": "mixed", "mixed_qkv": "dynamic", "mixed_ffn_in": "dynamic",
                             "mixed_ffn_out": "dynamic", "fp32_top": 2})
    recipe = space.suggest(optuna.trial.FixedTrial(params))
    quantized = [k for k, p in plan(replace(recipe, fp32_groups=()), space.groups["none"]).items() if p != "fp32"]
    worst = sorted(quantized, key=lambda k: -space.sensitivity[k]["dynamic"])[:2]
    assert set(recipe.fp32_groups) == set(worst)
    assert all(plan(recipe, space.groups["none"])[k] == "fp32" for k in worst)


def test_a_static_choice_for_a_fused_attention_falls_back_to_dynamic(space) -> None:
    params = space.complete({"fusion": "O2", "mode": "mixed", "mixed_qkv": "static"})
    recipe = space.suggest(optuna.trial.FixedTrial(params))
    assert dict(recipe.precisions)["qkv"] == "dynamic"


def test_the_mixed_mode_sets_attention_matmuls_by_role_not_by_matmul_weights_only(space) -> None:
    # the exported graph has both kinds of MatMul: dynamic and static ask the flag there, mixed never does (its
    # mixed_scores and mixed_context choose those MatMuls' precision already: one recipe, one set of parameters)
    assert space.matmul_weights_only == ("none",)
    assert {"mixed_scores", "mixed_context"} <= set(space.complete({"fusion": "none", "mode": "mixed"}))
    rng = np.random.default_rng(1)
    modes = set()
    for _ in range(300):
        params = space.random_params(rng)
        if params is None:
            continue
        recipe = space.suggest(optuna.trial.FixedTrial(params))
        asked = "matmul_weights_only" in params
        assert asked == (recipe.fusion == "none" and recipe.mode in ("dynamic", "static")
                         and "MatMul" in recipe.operators_to_quantize)
        if recipe.mode == "mixed":
            assert not recipe.matmul_weights_only
        modes.add((recipe.mode, asked))
    assert {("mixed", False), ("dynamic", True), ("static", True)} <= modes


def test_the_ranges_pass_warm_starts_mixed_presets(space) -> None:
    mixed = [p for p in presets(space) if p.recipe.mode == "mixed"]
    names = [p.name for p in mixed]
    graph = space.groups["none"]
    errors: dict = {}
    for g in graph.groups:
        errors.setdefault(g.role, []).append(space.sensitivity[g.key]["dynamic"])
    worst = max((r for r in space.roles("none")), key=lambda r: np.mean(errors[r]))
    assert names == [f"mixed: all dynamic but the worst role ({worst}) fp32",
                     "mixed: all dynamic but the 2 worst groups", "mixed: all dynamic but the 4 worst groups",
                     "mixed: static FFN, dynamic attention, 2 worst groups fp32",
                     "mixed: static projections, 2 worst groups fp32"]
    assert [len(p.recipe.fp32_groups) for p in mixed] == [0, 2, 4, 2, 2]
    assert dict(mixed[3].recipe.precisions)["ffn_in"] == "static" and mixed[3].recipe.float_output


def test_the_role_the_ranges_pass_finds_worst_stays_fp32_in_every_layer(space) -> None:
    # an outlier in every layer's FFN output (the base-size encoders' case): that role, and only it, stays fp32
    graph = space.groups["none"]
    sensitivity = {g.key: {"dynamic": 0.2 if g.role == "ffn_out" else 0.01 * (i % 5), "static": 0.3}
                   for i, g in enumerate(graph.groups)}
    preset = next(p for p in presets(replace(space, sensitivity=sensitivity)) if "worst role" in p.name)
    assert preset.name == "mixed: all dynamic but the worst role (ffn_out) fp32"
    planned = plan(preset.recipe, graph)
    assert {g.role for g in graph.groups if planned[g.key] == "fp32"} >= {"ffn_out"}
    assert all(planned[g.key] == ("fp32" if g.role == "ffn_out" else "dynamic")
               for g in graph.groups if g.role in space.roles("none"))


def test_the_space_stores_and_restores_its_groups(space) -> None:
    again = SearchSpace.from_dict(space.to_dict())
    assert again.groups == space.groups and again.sensitivity == space.sensitivity
    assert again.size() == space.size() > 0


def test_a_mixed_study_records_each_groups_precision_and_reports_the_grid(tmp_path, tiny_checkpoint,
                                                                          tiny_csv) -> None:
    from conftest import fast_settings

    from opsearch.config import StudyConfig
    from opsearch.quantize import QuantRecipe
    from opsearch.report import build_report, format_report
    from opsearch.search import run_study
    from opsearch.store import TrialRecord, cache_dir_for

    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), study_name="mixed",
                         storage=f"sqlite:///{tmp_path / 'study.db'}",
                         **fast_settings(modes=["dynamic", "static", "mixed"], enumerate="off"))
    lines: list[str] = []
    study = run_study(config, n_trials=10, progress=lines.append)  # 7 dynamic presets, then mixed warm starts
    assert any(line.startswith("ranges: ") and "groups in" in line for line in lines)
    assert (cache_dir_for(config.resolved_storage(), "mixed") / "ranges.json").is_file()
    space = SearchSpace.from_dict(study.user_attrs["search_space"])
    assert space.sensitivity and space.groups["none"].layers == 2
    mixed = [t for t in study.trials if t.state.name == "COMPLETE" and t.params.get("mode") == "mixed"]
    assert len(mixed) >= 3  # the warm-start presets ran
    for t in mixed:
        record = TrialRecord.of(t)
        wanted = plan(QuantRecipe.from_dict(record.recipe), space.groups["none"])
        assert record.group_precisions == wanted  # what the graph holds is what the recipe asked
    text = format_report(build_report(study))
    assert "Precision per layer and role of the front's configurations" in text
    assert "outside the layers: embeddings" in text
    # a trial with static groups exports (quantized again with the study's calibration rows, same graph)
    from opsearch.report import TRIAL_FILE, export_trial

    def static_ffn(t) -> bool:  # the warm start's "static FFN, dynamic attention", queued or measured
        return TrialRecord.of(t).preset.startswith("mixed: static FFN")

    waiting = [t for t in study.trials if t.state.name == "WAITING"]  # the warm start not yet run
    ahead = next(i for i, t in enumerate(waiting) if static_ffn(t))
    study = run_study(config, n_trials=ahead + 1, progress=lines.append)  # the same study, on
    static = next(t for t in study.trials if static_ffn(t) and t.state.name == "COMPLETE")
    assert "static" in TrialRecord.of(static).group_precisions.values()
    out = export_trial(study, static.number, tmp_path / "exported", storage=config.resolved_storage())
    assert json.loads((out / TRIAL_FILE).read_text())["graph_hash"] == TrialRecord.of(static).graph_hash


def test_a_mixed_recipe_asks_smoothing_only_of_the_roles_it_quantizes(space) -> None:
    smoothing = replace(space, smoothing=(0.5,))
    params = smoothing.complete({"fusion": "none", "mode": "mixed", "mixed_qkv": "dynamic", "mixed_ffn_out": "static",
                                 "smooth_qkv": 0.5, "smooth_ffn_out": 0.5, "smooth_ffn_in": 0.5})
    assert {k for k in params if k.startswith("smooth_")} == {"smooth_qkv", "smooth_ffn_out"}
    recipe = smoothing.suggest(optuna.trial.FixedTrial(params))
    assert recipe.smoothing == (("ffn_out", 0.5), ("qkv", 0.5))
    assert smoothing.params_for(recipe) == params
    assert not any(k.startswith("smooth_") for k in space.complete(params))  # not searched: never asked
