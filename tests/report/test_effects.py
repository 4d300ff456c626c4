"""opsearch.report._effects on a designed study: a full factorial over the operator and flag parameters whose speedups
and losses follow known rules, so every effect can be checked against the table it came from."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from factorial_study import (
    MATMUL,
    PER_CHANNEL_LOSS,
    UINT8_LOSS,
    factorial_table,
    make_factorial_study,
)

from opsearch.report import Effect, StudyEffects, build_report, effects, importances, interaction_hints, study_effects


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    return make_factorial_study(tmp_path_factory.mktemp("effects") / "study.db")


@pytest.fixture(scope="module")
def result(study: optuna.Study) -> StudyEffects:
    return study_effects(study)


def _by_label(result: StudyEffects) -> dict[str, Effect]:
    return {e.label: e for e in result.effects}


def _expected(table: list[dict[str, Any]], param: str, value: Any, key: str) -> tuple[float, int, int]:
    having = [r for r in table if param in r["params"]]
    on = [r[key] for r in having if r["params"][param] == value]
    off = [r[key] for r in having if r["params"][param] != value]
    return float(np.mean(on) - np.mean(off)) if min(len(on), len(off)) >= 2 else math.nan, len(on), len(off)


def test_one_effect_per_boolean_and_per_value_of_other_categoricals(result: StudyEffects) -> None:
    labels = [e.label for e in result.effects]
    assert labels == ["op_Gather", "op_MatMul", "activations_symmetric", "calibration=minmax",
                      "calibration=entropy", "calibration=percentile", "mode=dynamic", "mode=static", "per_channel",
                      "reduce_range", "weights_dtype=QInt8", "weights_dtype=QUInt8"]


@pytest.mark.parametrize(
    ("param", "value"),
    [("op_MatMul", True), ("op_Gather", True), ("per_channel", True), ("reduce_range", True),
     ("weights_dtype", "QUInt8"), ("weights_dtype", "QInt8"), ("mode", "static"), ("activations_symmetric", True),
     ("calibration", "minmax")],
)
def test_differences_are_the_differences_of_the_means_in_the_table(result: StudyEffects, param: str,
                                                                   value: Any) -> None:
    table = factorial_table()
    effect = next(e for e in result.effects if e.param == param and e.value == str(value))
    speed, n_on, n_off = _expected(table, param, value, "speedup")
    loss, _, _ = _expected(table, param, value, "loss_pt")
    assert (effect.n_with, effect.n_without) == (n_on, n_off)
    assert effect.speedup_diff == pytest.approx(speed)
    assert effect.loss_diff_pt == pytest.approx(loss)
    for diff, (low, high) in ((effect.speedup_diff, effect.speedup_ci), (effect.loss_diff_pt, effect.loss_ci_pt)):
        assert low <= diff <= high


def test_conditional_parameters_count_only_trials_that_have_them(result: StudyEffects) -> None:
    by = _by_label(result)
    # activations_symmetric exists in static trials only (4 of 36); op_MatMul in every trial.
    assert (by["activations_symmetric"].n_with, by["activations_symmetric"].n_without) == (2, 2)
    assert by["op_MatMul"].n_with + by["op_MatMul"].n_without == 36


def test_real_effects_are_found_and_a_null_one_is_not(result: StudyEffects) -> None:
    by = _by_label(result)
    matmul = by["op_MatMul"]
    assert matmul.speedup_diff == pytest.approx(MATMUL, abs=0.15)
    assert matmul.speedup_ci[0] > 0.5  # clearly above zero
    per_channel = by["per_channel"]
    assert per_channel.loss_diff_pt == pytest.approx(PER_CHANNEL_LOSS, abs=0.1)
    assert per_channel.loss_ci_pt[0] > 0
    assert by["weights_dtype=QUInt8"].loss_diff_pt == pytest.approx(UINT8_LOSS, abs=0.1)
    null = by["reduce_range"]
    assert null.speedup_ci[0] < 0 < null.speedup_ci[1]
    assert null.loss_ci_pt[0] < 0 < null.loss_ci_pt[1]
    assert abs(null.speedup_diff) < 0.2


def test_the_two_values_of_a_binary_categorical_mirror_each_other(result: StudyEffects) -> None:
    by = _by_label(result)
    assert by["weights_dtype=QInt8"].speedup_diff == pytest.approx(-by["weights_dtype=QUInt8"].speedup_diff)
    assert by["weights_dtype=QInt8"].n_with == by["weights_dtype=QUInt8"].n_without


def test_a_side_with_fewer_than_two_trials_says_too_few(result: StudyEffects) -> None:
    by = _by_label(result)
    for label in ("calibration=entropy", "calibration=percentile"):  # 1 trial against 3
        effect = by[label]
        assert effect.too_few and effect.note.startswith("too few trials")
        assert math.isnan(effect.speedup_diff) and math.isnan(effect.loss_diff_pt)
        assert all(math.isnan(v) for v in (*effect.speedup_ci, *effect.loss_ci_pt))
        assert (effect.n_with, effect.n_without) == (1, 3)
    assert not by["calibration=minmax"].too_few and by["calibration=minmax"].note == ""


def test_the_bootstrap_is_seeded(study: optuna.Study) -> None:
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    first, again, other = effects(trials, seed=0), effects(trials, seed=0), effects(trials, seed=1)
    assert [e.speedup_ci for e in first] == [e.speedup_ci for e in again]
    assert [e.speedup_ci for e in first if not e.too_few] != [e.speedup_ci for e in other if not e.too_few]
    assert [e.speedup_diff for e in first if not e.too_few] == [e.speedup_diff for e in other if not e.too_few]


def test_sides_without_spread_give_a_point_interval(tmp_path: Path) -> None:
    table = [{"params": {"mode": "dynamic", "op_MatMul": mm}, "speedup": 2.0 if mm else 1.0, "loss_pt": 0.5}
             for mm in (True, True, True, False, False)]
    (effect,) = [e for e in effects(make_factorial_study(tmp_path / "s.db", table).trials) if e.param == "op_MatMul"]
    assert effect.speedup_diff == pytest.approx(1.0) and effect.speedup_ci == pytest.approx((1.0, 1.0))
    assert effect.loss_diff_pt == pytest.approx(0.0) and effect.loss_ci_pt == pytest.approx((0.0, 0.0))


def test_importances_rank_the_parameters_that_drive_each_objective(result: StudyEffects) -> None:
    throughput, loss = result.importances
    assert (throughput.objective, loss.objective) == ("throughput", "accuracy_loss")
    assert next(iter(throughput.values)) == "op_MatMul"  # most important first
    assert next(iter(loss.values)) == "per_channel"
    for imp in (throughput, loss):
        assert imp.reason == "" and sum(imp.values.values()) == pytest.approx(1.0)
        assert list(imp.values.values()) == sorted(imp.values.values(), reverse=True)


@pytest.mark.parametrize("n_trials", [0, 1])
def test_importances_explain_why_they_are_missing(tmp_path: Path, n_trials: int) -> None:
    study = make_factorial_study(tmp_path / "s.db", factorial_table()[:n_trials])
    result = importances(study)
    assert [i.objective for i in result] == ["throughput", "accuracy_loss"]
    for imp in result:
        assert imp.values == {} and f"at least 2 completed trials; the study has {n_trials}" in imp.reason


def test_importances_without_shared_parameters_say_so(tmp_path: Path) -> None:
    table = [{"params": {}, "speedup": 1.0 + i, "loss_pt": 0.1 * i} for i in range(3)]
    for imp in importances(make_factorial_study(tmp_path / "s.db", table)):
        assert imp.values == {} and imp.reason


def test_operator_matrix_rows_are_the_front_with_node_counts(study: optuna.Study, result: StudyEffects) -> None:
    front = build_report(study).front
    matrix = result.matrix
    assert matrix.trials == [r.trial for r in front] and matrix.trials
    assert matrix.op_types == ["Gather", "MatMul"]
    table = factorial_table()
    for number, row in zip(matrix.trials, matrix.counts, strict=True):
        p = table[number]["params"]
        assert row == [1 if p["op_Gather"] else 0, 6 if p["op_MatMul"] else 0]


def test_operator_matrix_reads_zero_where_a_trial_recorded_no_nodes(tmp_path: Path) -> None:
    table = [{"params": {"mode": "dynamic", "op_MatMul": True, "op_Gather": True}, "speedup": 2.0, "loss_pt": 0.1,
              "attrs": {"quantized_nodes": {"MatMul": 4, "Attention": 2}}},
             {"params": {"mode": "dynamic", "op_MatMul": False, "op_Gather": False}, "speedup": 1.2, "loss_pt": 0.0,
              "attrs": {"quantized_nodes": {}}}]
    result = study_effects(make_factorial_study(tmp_path / "s.db", table))
    assert result.matrix.trials == [0, 1]
    assert result.matrix.op_types == ["Attention", "Gather", "MatMul"]  # offered or quantized
    assert result.matrix.counts == [[2, 0, 4], [0, 0, 0]]


def test_interaction_hint_names_operators_that_work_together(study: optuna.Study, tmp_path: Path) -> None:
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert interaction_hints(done) == []  # the rules add up
    # The MatMul x Gather cells, two trials each (the two weight types), are enough for the hint.
    table = [r for r in factorial_table(interaction=0.5)
             if r["params"]["mode"] == "dynamic" and not r["params"]["per_channel"] and not r["params"]["reduce_range"]]
    assert len(table) == 8
    joint = make_factorial_study(tmp_path / "s.db", table)
    (hint,) = interaction_hints(joint.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert hint.startswith("op_Gather and op_MatMul: together +") and "x more speedup" in hint
    assert float(hint.split("together ")[1].split("x")[0]) == pytest.approx(0.5, abs=0.05)  # the rule's 0.5x
