"""opsearch.report's model (StudyReport, build_report) on a real multi-objective Optuna study stored in SQLite,
filled with trials that carry the attributes opsearch.search stores."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from report_study import (
    BASELINE,
    COMPLETE,
    EXPECTED_FRONT,
    LISTED_FRONT,
    SPECS,
    STUDY_NAME,
    dominates,
    make_study,
)

from opsearch.config import StudyConfig
from opsearch.report import StudyReport, build_report, format_report
from opsearch.store import constraint_values


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    return make_study(tmp_path_factory.mktemp("study") / "study.db")


@pytest.fixture(scope="module")
def report(stored: optuna.Study) -> StudyReport:
    return build_report(stored)


def test_the_expectation_is_meaningful() -> None:
    assert EXPECTED_FRONT == {0, 1, 3, 5}  # the hand-made table exercises both front and dominated trials


def test_rows_cover_every_completed_trial(report: StudyReport) -> None:
    assert [r.trial for r in report.rows] == COMPLETE
    assert report.study_name == STUDY_NAME
    assert report.baseline == BASELINE
    assert report.counts == {"complete": len(COMPLETE), "fail": 1, "pruned": 1}


def test_pareto_flags(report: StudyReport) -> None:
    assert {r.trial for r in report.rows if r.pareto} == EXPECTED_FRONT


def test_front_is_fastest_first(report: StudyReport) -> None:
    front = report.front
    assert LISTED_FRONT < EXPECTED_FRONT  # the table has a twin on the front
    assert {r.trial for r in front} == LISTED_FRONT
    assert {r.trial for r in report.rows if r.pareto} == EXPECTED_FRONT
    speeds = [r.samples_per_s for r in front]
    assert speeds == sorted(speeds, reverse=True)
    assert front[0].trial == max(LISTED_FRONT, key=lambda i: SPECS[i].throughput)


def test_row_values_come_from_the_trial(report: StudyReport) -> None:
    rows = {r.trial: r for r in report.rows}
    for i in COMPLETE:
        spec, row = SPECS[i], rows[i]
        assert row.samples_per_s == pytest.approx(spec.throughput)
        assert row.accuracy_loss_pt == pytest.approx(100 * spec.loss)
        assert row.accuracy == pytest.approx(BASELINE["metrics"]["accuracy"] - spec.loss)
        assert row.speedup == pytest.approx(spec.throughput / BASELINE["timing"]["throughput"])
        assert row.speedup_ci_low < row.speedup < row.speedup_ci_high
        assert row.noisy is spec.noisy
        assert row.same_graph_as == spec.same_graph_as
        assert row.mode == spec.params["mode"]
    assert rows[3].rounds == 30 and rows[0].rounds == 10
    assert rows[0].preset == "dynamic: MatMul only" and rows[1].preset == ""
    assert "MatMul" in rows[0].operators and "Gather" not in rows[0].operators
    assert "Gather" in rows[4].operators and "MatMul" not in rows[4].operators


@pytest.mark.parametrize(
    ("trial", "present", "absent"),
    [
        (0, {"s8"}, {"per_channel", "reduce_range", "asym_w", "u8", "sym_act"}),
        (2, {"asym_w", "s8"}, {"u8"}),
        (3, {"sym_act"}, {"asym_w"}),
        (7, {"reduce_range", "asym_w", "u8"}, {"s8"}),
        (9, {"per_channel"}, {"reduce_range"}),
    ],
)
def test_flags_describe_the_recipe(report: StudyReport, trial: int, present: set[str], absent: set[str]) -> None:
    flags = set(next(r for r in report.rows if r.trial == trial).flags.split())
    assert present <= flags
    assert not absent & flags


def test_same_graph_groups_list_the_differing_params(report: StudyReport) -> None:
    groups = {tuple(g.trials): g.differing for g in report.same_graph}
    # Expected: trials sharing a recorded graph hash, with the params whose values differ between them.
    by_hash: dict[str, list[int]] = {}
    for i in COMPLETE:
        if SPECS[i].graph is not None:
            by_hash.setdefault(SPECS[i].graph, []).append(i)
    expected = {}
    for members in by_hash.values():
        if len(members) > 1:
            keys = {k for i in members for k in SPECS[i].params}
            expected[tuple(members)] = sorted(
                k for k in keys if len({repr(SPECS[i].params.get(k)) for i in members}) > 1
            )
    assert groups == expected
    assert groups == {(0, 10): ["per_channel"], (1, 5): ["per_channel"], (2, 7): ["reduce_range", "weights_dtype"]}
    assert [g.trials[0] for g in report.same_graph] == sorted(g.trials[0] for g in report.same_graph)


# Feasibility: an accuracy limit from the caller, or a constraint stored with the trial ------------------------


@pytest.mark.parametrize("limit", [0.0, 0.004, 0.01, 0.03, 0.5])
def test_an_accuracy_limit_marks_infeasible_trials_and_the_front_keeps_feasible_ones(stored: optuna.Study,
                                                                                      limit: float) -> None:
    report = build_report(stored, max_accuracy_loss=limit)
    feasible = {i for i in COMPLETE if SPECS[i].loss <= limit}
    assert {r.trial for r in report.rows if r.feasible} == feasible
    for r in report.rows:
        assert ("accuracy loss" in r.infeasible_reason) is (r.trial not in feasible)
    expected = {i for i in feasible if not any(dominates(SPECS[j], SPECS[i]) for j in feasible)}
    assert {r.trial for r in report.rows if r.pareto} == expected
    best = report.best_feasible
    assert best is not None and best.trial == max(expected - {5}, key=lambda i: SPECS[i].throughput)
    assert best.accuracy_loss_pt <= 100 * limit


def test_without_a_limit_every_trial_is_feasible_and_there_is_no_best(report: StudyReport) -> None:
    assert all(r.feasible and not r.infeasible_reason for r in report.rows)
    assert report.max_accuracy_loss is None and report.best_feasible is None


def test_a_limit_nothing_meets_leaves_an_empty_front_and_says_so(tmp_path: Path) -> None:
    specs = [SPECS[2], SPECS[4]]  # losses 1.2 and 2 points
    report = build_report(make_study(tmp_path / "s.db", specs), max_accuracy_loss=0.01)
    assert report.front == [] and report.best_feasible is None
    assert "no trial loses at most 1.00 pt" in format_report(report)


CONSTRAINTS = [([0.0], True), ([-0.5, 0.0], True), ([0.2], False), ([-1.0, 0.3], False), ([0.7], False), ([-0.1], True)]


def test_a_stored_constraint_above_zero_makes_a_trial_infeasible(tmp_path: Path) -> None:
    # Each trial carries constraints as Optuna stores them; all share one spot.
    specs = [replace(SPECS[1], system_attrs={"constraints": c}) for c, _ in CONSTRAINTS]
    rows = build_report(make_study(tmp_path / "s.db", specs)).rows
    assert [r.feasible for r in rows] == [feasible for _, feasible in CONSTRAINTS]
    for r in rows:
        assert ("constraint" in r.infeasible_reason) is not r.feasible
        assert r.pareto is r.feasible  # the front is taken over feasible trials only


@pytest.mark.parametrize("system_attrs", [
    {"constraints": [-0.5, 0.2]},  # Optuna's list, as studies stored before Optuna 5 (constraints_func) hold it
    {"constraints:accuracy_loss": 0.2, "constraints:other": -0.5},  # Trial.set_constraint, as opsearch stores it
])
def test_constraints_optuna_stored_are_read_in_either_format(system_attrs: dict) -> None:
    trial = optuna.trial.create_trial(values=[1.0, 0.0], system_attrs=system_attrs)
    assert sorted(constraint_values(trial)) == [-0.5, 0.2]
    assert constraint_values(optuna.trial.create_trial(values=[1.0, 0.0])) == []


def test_an_infeasible_trial_leaves_the_front_to_the_trials_it_dominated(tmp_path: Path) -> None:
    specs = [SPECS[0], replace(SPECS[1], system_attrs={"constraints": [0.2]}), SPECS[2], SPECS[3]]
    rows = {r.trial: r for r in build_report(make_study(tmp_path / "s.db", specs)).rows}
    assert {t for t, r in rows.items() if r.pareto} == {0, 2, 3}  # trial 2 was dominated by trial 1 only


def test_optunas_constraints_system_attr_counts_too(tmp_path: Path) -> None:
    specs = [SPECS[0], replace(SPECS[1], system_attrs={"constraints": [0.5]})]
    rows = {r.trial: r for r in build_report(make_study(tmp_path / "s.db", specs)).rows}
    assert not rows[1].feasible and rows[0].feasible


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf")])
def test_a_bad_limit_is_refused_with_the_fix(stored: optuna.Study, bad: float) -> None:
    from opsearch.errors import ConfigError

    with pytest.raises(ConfigError, match=r"max_accuracy_loss=.*e\.g\. 0\.01"):
        build_report(stored, max_accuracy_loss=bad)


def test_knee_of_the_listed_front(report: StudyReport) -> None:
    from opsearch.store import knee

    front = report.front
    assert len(front) == 3
    expected = knee([(r.samples_per_s, r.accuracy_loss_pt) for r in front])
    assert report.knee == (None if expected is None else front[expected])
    # Front (loss pt, samples/s): (0, 120.5), (0.4, 250.4), (3.1, 333.5): trial 1 is the bend.
    assert report.knee is not None and report.knee.trial == 1
    assert "knee of the front: trial 1" in format_report(report)


def test_the_report_carries_the_machine_versions_and_settings(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db", [SPECS[0]])
    study.set_user_attr("machine", {"cpu": "Test CPU 9000", "physical_cores": 2})
    study.set_user_attr("versions", {"onnxruntime": "1.99.0"})
    config = StudyConfig(model="tiny", dataset="d.csv", trials=3).to_dict()
    study.set_user_attr("opsearch_config", config)
    study.set_user_attr("threads", {"intra_op": 2})
    report = build_report(study)
    assert report.machine == {"cpu": "Test CPU 9000", "physical_cores": 2}
    assert report.versions == {"onnxruntime": "1.99.0"}
    assert report.settings == {"opsearch_config": config, "threads": {"intra_op": 2}}


def test_the_cost_estimate_adds_what_each_stopped_trial_left_out():
    from opsearch.report import StudyCost, TrialCost

    whole = [TrialCost(0, "complete", 10.0, 20.0, 10, 1000), TrialCost(1, "complete", 10.0, 40.0, 20, 1000)]
    stopped = TrialCost(2, "complete", 2.0, 0.0, 0, 250, "over the limit after 250 of 1000 rows", untimed=True)
    broken = TrialCost(3, "fail", 1.0, 0.0, 0, 125, "stopped early: at chance level after 125 of 1000 rows",
                       untimed=True)
    raced = TrialCost(4, "complete", 10.0, 10.0, 5, 1000, "dominated by trial 0 after 5 rounds")
    cost = StudyCost([*whole, stopped, broken, raced], eval_rows=1000, early_stop=True)
    # stopped: 2 s x (1000/250 - 1) more evaluating + the median whole timing (30 s); broken: 1 s x 7, never timed;
    # raced: (median 15 rounds - 5) x 2 s a round.
    assert cost.saved_s == pytest.approx(6.0 + 30.0 + 7.0 + 20.0)
    assert [t.trial for t in cost.stopped_evaluations] == [2, 3] and [t.trial for t in cost.raced] == [4]
    assert StudyCost(whole, eval_rows=1000, early_stop=True).saved_s == 0.0
    assert math.isnan(StudyCost([stopped], eval_rows=1000, early_stop=True).saved_s)  # nothing ran whole
