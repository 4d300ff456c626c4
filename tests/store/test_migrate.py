"""opsearch.store's migration: what an older opsearch stored reads in today's shape, one step per schema; a record of
today's schema passes through unchanged, one from a newer opsearch is refused, and new studies store the number.

The past shapes are written here as the older code wrote them (each step's docstring in store/_migrate.py names
the change)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import fast_settings

from opsearch.config import StudyConfig
from opsearch.errors import StudyError
from opsearch.measure import PairedTiming, SingleTiming
from opsearch.report import build_report, format_report
from opsearch.search import SearchSpace, run_study
from opsearch.store import SCHEMA_VERSION, StudyRecord, TrialRecord, trial_rows
from opsearch.store._migrate import upgrade_study, upgrade_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)

# The settings of the first release; every setting since was added with a value that reproduces what it searched.
FIRST_SETTINGS = ("model", "dataset", "task", "split", "text_column", "label_column", "label_map", "exclude_labels",
                  "fit_dataset", "fit_split", "fit_size", "max_samples", "max_length", "probe_samples", "trials",
                  "modes", "all_operators", "calibration_method", "calibration_samples", "calibration_max_length",
                  "seed", "storage", "study_name", "rounds", "max_rounds", "warmup_rounds", "timing_samples",
                  "ci_target", "intra_op_threads", "inter_op_threads", "allow_spinning")
CONFIG_0 = {k: v for k, v in StudyConfig(model="m", dataset="d.csv", modes=["dynamic", "static"]).to_dict().items()
            if k in FIRST_SETTINGS}
SPACE_0 = {"operators": {"dynamic": ["Gather", "MatMul"], "static": ["Add", "MatMul"]},
           "calibration_method": "minmax", "calibration_samples": 64}
SINGLE_0 = {"throughput": 100.0, "cv": 0.01, "rounds": 3, "warmup_rounds": 1, "samples_per_round": 10,
            "seconds": [0.1, 0.1, 0.1]}
# A PairedTiming record of the first release: the speedup is the median of per-round ratios (2, 2.5, 3).
PAIRED_0 = {"speedup": 2.5, "speedup_ci": [2.0, 3.0], "ci_halfwidth": 0.2, "ci_target": 0.02, "target_met": False,
            "speedup_cv": 0.2, "throughput": 250.0, "baseline_throughput": 100.0, "candidate_cv": 0.02, "rounds": 3,
            "warmup_rounds": 1, "samples_per_round": 10, "noisy": True, "warnings": [],
            "candidate_s": [0.05, 0.04, 0.0333], "baseline_s": [0.1, 0.1, 0.1]}
TRIAL_0 = {"recipe": {"mode": "dynamic", "operators_to_quantize": ["MatMul"], "per_channel": False,
                      "reduce_range": False, "weights_symmetric": True, "activations_symmetric": False,
                      "weights_dtype": "QInt8", "format": "QOperator", "calibration_method": "minmax",
                      "calibration_samples": 64, "nodes_to_exclude": []},
           "label": "dynamic[MatMul] s8", "graph_hash": "h0", "quantized_nodes": {"MatMul": 6},
           "quantize_seconds": 1.2, "evaluate_seconds": 3.4, "metrics": {"accuracy": 0.89}, "accuracy": 0.89,
           "accuracy_loss": 0.01, "timing": PAIRED_0, "speedup": 2.5}
STUDY_0 = {"opsearch_config": CONFIG_0, "search_space": SPACE_0, "graph": {"operators": {}}, "machine": {"cpu": "x"},
           "versions": {"opsearch": "0.1"}, "threads": {"intra_op_threads": 1}, "task": "classification",
           "data": {"description": "d.csv", "eval_rows": 100, "fit_rows": 60, "labels": ["neg", "pos"],
                    "majority_accuracy": 0.5},
           "baseline": {"metrics": {"accuracy": 0.9}, "timing": SINGLE_0}}
# What the floor estimator's records added (schema 2): both estimators' speedups, floors and the load.
FLOOR = {"estimator": "floor", "floor_speedup": 2.6, "candidate_floor_s": 0.0333, "baseline_floor_s": 0.0866,
         "median_ratio": 2.5, "median_ratio_ci": [2.0, 3.0], "other_cores": 0.01, "steal_cores": 0.0}


def _study(attrs: dict[str, Any], trials: list[dict[str, Any]] = ()) -> optuna.Study:
    study = optuna.create_study(study_name="old", directions=["maximize", "minimize"])
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for attrs_of_trial in trials:
        study.add_trial(optuna.trial.create_trial(values=[250.0, attrs_of_trial.get("accuracy_loss", 0.01)],
                                                  user_attrs=attrs_of_trial))
    return study


# Each step, on a record of the shape just before it --------------------------------------------------------------


def test_1_a_space_stored_before_fusion_was_searched_searched_the_exported_graph_with_qoperator() -> None:
    space = upgrade_study({"search_space": SPACE_0})["search_space"]
    assert space == {**SPACE_0, "calibration_method": ["minmax"], "calibration_samples": [64], "fusions": ["none"],
                     "formats": ["QOperator"], "activation_types": ["QUInt8"], "exclude_fragile": [False],
                     "groups": {}, "sensitivity": {}, "matmul_weights_only": [], "smoothing": []}
    read = SearchSpace.from_dict(space)
    assert read.fusions == ("none",) and read.formats == ("QOperator",) and read.exclude_fragile == (False,)
    assert read.operators_for("none", "static") == ("Add", "MatMul")


def test_2_a_timing_from_before_the_floor_holds_the_median_of_per_round_ratios() -> None:
    timing = upgrade_trial({**TRIAL_0})["timing"]
    assert timing == {**PAIRED_0, "estimator": "median", "median_ratio": 2.5, "median_ratio_ci": [2.0, 3.0],
                      "floor_speedup": None, "candidate_floor_s": None, "baseline_floor_s": None,
                      "other_cores": None, "steal_cores": None, "blocks": 1, "rounds_ci": None,
                      "rounds_halfwidth": 0.2, "raced": "", "latency_ms": None, "baseline_latency_ms": None}
    again = PairedTiming.from_dict(timing)
    assert again.estimator == "median" and again.speedup == pytest.approx(2.5, rel=1e-3)
    assert again.to_dict().keys() == timing.keys()  # every field today's record has


def test_3_a_front_session_that_did_not_list_the_trials_it_saw_counts_every_one_as_seen() -> None:
    session = {"at": "2026-11-30T12:00:00+00:00", "rounds": 3, "seconds": 1.0,
               "trials": {"0": {k: v for k, v in {**PAIRED_0, **FLOOR}.items() if k not in ("candidate_s",
                                                                                        "baseline_s")}}}
    upgraded = upgrade_study({"front_remeasured": session})["front_remeasured"]
    assert upgraded["considered"] is None and upgraded["ties"] == [] and upgraded["tie_test"] is None
    assert upgraded["trials"]["0"]["estimator"] == "floor" and upgraded["trials"]["0"]["blocks"] == 1


def test_3_rows_read_the_trials_a_session_did_not_list_as_seen() -> None:
    study = _study({"baseline": STUDY_0["baseline"], "front_remeasured": {
        "at": "x", "rounds": 3, "seconds": 1.0, "trials": {"0": {**PAIRED_0, "speedup": 2.4}}}}, [TRIAL_0, TRIAL_0])
    rows = trial_rows(study)
    assert [r.candidate for r in rows] == [True, False]  # trial 1 was complete then: it is not compared afresh


def test_4_a_baseline_from_before_intervals_kept_no_answers_and_evaluated_at_batch_1() -> None:
    baseline = upgrade_study({"baseline": {"metrics": {"accuracy": 0.9}, "timing": SINGLE_0}})["baseline"]
    assert baseline == {"metrics": {"accuracy": 0.9}, "timing": {**SINGLE_0, "latency_ms": None},
                        "predictions": None, "labels": None, "accuracy_batch_size": 1, "size_mb": None}
    assert StudyRecord(baseline=baseline).accuracy_batch_size == 1


def test_4_a_trial_evaluated_before_intervals_has_a_point_loss_at_batch_1() -> None:
    timing = {**PAIRED_0, **FLOOR}
    upgraded = upgrade_trial({**TRIAL_0, "timing": timing})
    assert upgraded["accuracy_batch_size"] == 1 and upgraded["accuracy_loss_ci"] is None
    assert upgraded["timing"] == {**timing, "blocks": 1, "rounds_ci": None, "rounds_halfwidth": 0.2, "raced": "",
                                  "latency_ms": None, "baseline_latency_ms": None}
    pruned = upgrade_trial({"recipe": TRIAL_0["recipe"], "fail_reason": "no operator type selected"})
    assert "accuracy_batch_size" not in pruned and "size_mb" not in pruned  # never evaluated nor quantized


def test_5_a_trial_from_before_early_stopping_kept_its_timed_window() -> None:
    windowed = upgrade_trial({**TRIAL_0, "timed_window": [100.0, 112.5]})
    assert windowed["timing_seconds"] == 12.5 and windowed["evaluated_rows"] is None
    assert windowed["timing"]["raced"] == ""
    assert upgrade_trial(TRIAL_0)["timing_seconds"] is None  # timed before the window was kept


def test_6_a_trial_from_before_objectives_has_no_size_and_its_loss_is_its_second_value() -> None:
    upgraded = upgrade_trial({**TRIAL_0, "accuracy_batch_size": 1, "accuracy_loss_ci": [0.0, 0.02],
                              "timing_seconds": 12.5, "evaluated_rows": 100}, [250.0, 0.01])
    assert upgraded["size_mb"] is None and upgraded["timing"]["latency_ms"] is None
    without_loss = {k: v for k, v in TRIAL_0.items() if k != "accuracy_loss"}
    assert upgrade_trial(without_loss, [250.0, 0.03])["accuracy_loss"] == 0.03


def test_6_fp32_timings_from_before_objectives_have_no_latency_nor_size() -> None:
    upgraded = upgrade_study({"baseline": {"metrics": {"accuracy": 0.9}, "timing": SINGLE_0, "predictions": "p",
                                           "labels": "l", "accuracy_batch_size": 1},
                              "baselines": [{"machine_id": "m2", "machine": {}, "timing": SINGLE_0}]})
    assert upgraded["baseline"]["size_mb"] is None and upgraded["baseline"]["timing"]["latency_ms"] is None
    assert upgraded["baseline"]["predictions"] == "p"  # kept: only what is missing is filled
    assert upgraded["baselines"] == [{"machine_id": "m2", "machine": {}, "timing": {**SINGLE_0, "latency_ms": None}}]


def test_7_a_space_and_a_trial_from_before_the_mixed_mode_have_no_groups() -> None:
    space = {**SPACE_0, "calibration_method": ["minmax"], "calibration_samples": [64], "fusions": ["none", "O2"],
             "formats": ["QOperator", "QDQ"], "activation_types": ["QUInt8", "QInt8"], "exclude_fragile": [True]}
    assert upgrade_study({"search_space": space})["search_space"] == {**space, "groups": {}, "sensitivity": {},
                                                                      "matmul_weights_only": [], "smoothing": []}
    assert upgrade_trial({**TRIAL_0, "size_mb": 20.0})["group_precisions"] == {}


def test_8_a_space_from_before_the_weights_only_choice_asked_it_nowhere() -> None:
    space = SearchSpace({"dynamic": ("MatMul",), "static": ("MatMul",)}, fusions=("none",)).to_dict()
    del space["matmul_weights_only"], space["smoothing"]
    upgraded = upgrade_study({"search_space": space})["search_space"]
    assert upgraded == {**space, "matmul_weights_only": [], "smoothing": []}
    assert SearchSpace.from_dict(upgraded).matmul_weights_only == ()


def test_9_a_space_from_before_smoothing_searched_none() -> None:
    space = SearchSpace({"dynamic": ("MatMul",)}, fusions=("none",), smoothing=(0.5,)).to_dict()
    del space["smoothing"]
    upgraded = upgrade_study({"schema": 8, "search_space": space})["search_space"]
    assert upgraded == {**space, "smoothing": []}
    assert SearchSpace.from_dict(upgraded).smoothing == ()


# Settings ------------------------------------------------------------------------------------------------------


def test_a_study_stored_before_a_setting_reads_with_the_value_it_searched() -> None:
    stored = StudyConfig(model="m", dataset="d").to_dict()
    for name in ("fusions", "formats", "speedup_estimator", "sampler", "enumerate"):
        del stored[name]
    config = StudyRecord.of(_study({"opsearch_config": stored})).config("old")
    assert config.fusions == ["none"] and config.formats == ["QOperator"] and config.speedup_estimator == "median"
    assert config.enumerate == "off"


def test_a_study_stored_before_the_choice_optimizes_throughput_and_loss() -> None:
    record = StudyRecord.of(_study({"opsearch_config": {"model": "m", "dataset": "d"}}))
    assert record.objectives == ("throughput", "accuracy_loss")
    assert record.config("old").objectives == ["throughput", "accuracy_loss"]


def test_the_first_releases_config_reads_as_what_it_searched() -> None:
    config = StudyRecord.of(_study(STUDY_0)).config("old")
    assert (config.fusions, config.formats, config.activation_types, config.exclude_fragile) == (
        ["none"], ["QOperator"], ["QUInt8"], False)
    assert (config.speedup_estimator, config.sampler, config.enumerate, config.early_stop) == (
        "median", "tpe", "off", False)
    assert (config.objectives, config.max_accuracy_loss, config.batch_size, config.end_to_end) == (
        ["throughput", "accuracy_loss"], None, 1, False)
    assert config.modes == ["dynamic", "static"]
    # A setting it predates does not read as changed when the study is run again with the same settings.
    assert config.identity_changes(StudyRecord.of(_study(STUDY_0)).opsearch_config) == []


# The schema -----------------------------------------------------------------------------------------------------


def test_a_record_without_a_schema_reads_as_the_oldest() -> None:
    record = StudyRecord.of(_study(STUDY_0, [TRIAL_0]))
    assert record.schema == SCHEMA_VERSION
    assert record.baseline["predictions"] is None and record.search_space["fusions"] == ["none"]
    assert record.config("old").speedup_estimator == "median"
    assert TrialRecord.of(_study(STUDY_0, [TRIAL_0]).trials[0]).timing["estimator"] == "median"
    # The same fields stamped with today's schema are taken as they are: no step runs on them.
    stamped = upgrade_study({**STUDY_0, "schema": SCHEMA_VERSION})
    assert stamped["baseline"] == STUDY_0["baseline"] and stamped["search_space"] == SPACE_0
    assert upgrade_trial({**TRIAL_0, "schema": SCHEMA_VERSION})["timing"] == PAIRED_0


def _todays_study_and_trial() -> tuple[dict[str, Any], dict[str, Any]]:
    """Fields as today's writers produce them."""
    latency = {"p50": 5.0, "p95": 5.0, "p99": 5.0}
    paired = PairedTiming((0.05,) * 3, (0.1,) * 3, 10, 1, 0.02, (1.9, 2.1), estimator="floor", candidate_floor_s=0.05,
                          baseline_floor_s=0.1, other_cores=0.0, steal_cores=0.0, rounds_ci=(1.95, 2.05), blocks=2,
                          latency_ms=latency, baseline_latency_ms=latency).to_dict()
    single = SingleTiming((0.1,) * 3, 10, 1, latency).to_dict()
    space = SearchSpace({"dynamic": ("MatMul",), "static/QDQ": ("MatMul",)}, fusions=("none",)).to_dict()
    session = {"at": "2026-12-02T10:00:00+00:00", "ties": [[0]], "tie_test": {"alpha": 0.05}, "rounds": 3,
               "seconds": 1.0, "considered": [0],
               "trials": {"0": {k: v for k, v in paired.items() if k not in ("candidate_s", "baseline_s")}}}
    study = {"schema": SCHEMA_VERSION, "opsearch_config": StudyConfig(model="m", dataset="d").to_dict(),
             "search_space": space, "baseline": {"metrics": {"accuracy": 0.9}, "timing": single, "predictions": "p",
                                                 "labels": "l", "accuracy_batch_size": 1, "size_mb": 90.0},
             "baselines": [{"machine_id": "m2", "machine": {}, "timing": single}], "front_remeasured": session}
    trial = {**TRIAL_0, "schema": SCHEMA_VERSION, "timing": paired, "accuracy_batch_size": 1,
             "accuracy_loss_ci": [0.0, 0.02], "size_mb": 20.0, "timing_seconds": 1.0, "evaluated_rows": 100,
             "group_precisions": {}}
    return study, trial


def test_a_study_and_a_trial_of_todays_schema_pass_through_unchanged() -> None:
    study, trial = _todays_study_and_trial()
    assert upgrade_study(study) == study
    assert upgrade_trial(trial, [250.0, 0.01]) is trial


def test_the_oldest_records_upgrade_to_the_fields_today_writes() -> None:
    today_study, today_trial = _todays_study_and_trial()
    oldest = upgrade_study({**STUDY_0, "baselines": [{"machine_id": "m2", "machine": {}, "timing": SINGLE_0}],
                            "front_remeasured": {"at": "x", "rounds": 3, "seconds": 1.0, "trials": {
                                "0": {k: v for k, v in PAIRED_0.items() if k not in ("candidate_s", "baseline_s")}}}})
    for key in ("opsearch_config", "search_space", "baseline", "front_remeasured"):
        assert oldest[key].keys() == today_study[key].keys(), key
    assert oldest["baseline"]["timing"].keys() == today_study["baseline"]["timing"].keys()
    assert oldest["baselines"][0]["timing"].keys() == today_study["baselines"][0]["timing"].keys()
    assert oldest["front_remeasured"]["trials"]["0"].keys() == today_study["front_remeasured"]["trials"]["0"].keys()
    trial = upgrade_trial({**TRIAL_0, "timed_window": [0.0, 1.0]}, [250.0, 0.01])
    assert trial.keys() == today_trial.keys() | {"timed_window"}
    assert trial["timing"].keys() == today_trial["timing"].keys()


def test_steps_leave_the_records_they_are_given_alone() -> None:
    study, trial = copy.deepcopy(STUDY_0), copy.deepcopy(TRIAL_0)
    upgrade_study(study), upgrade_trial(trial, [250.0, 0.01])
    assert study == STUDY_0 and trial == TRIAL_0


@pytest.mark.parametrize("schema", [SCHEMA_VERSION + 1, SCHEMA_VERSION + 10])
def test_a_record_from_a_newer_opsearch_is_refused_with_what_to_do(schema) -> None:
    with pytest.raises(StudyError, match=rf"study 'old' was stored in schema {schema!r}.*upgrade opsearch"):
        StudyRecord.of(_study({"schema": schema}))
    with pytest.raises(StudyError, match=r"trial 0 was stored in schema .*upgrade opsearch"):
        TrialRecord.of(_study({}, [{"schema": schema}]).trials[0])


def test_a_report_of_the_oldest_study_says_what_it_measured() -> None:
    study = _study(STUDY_0, [TRIAL_0, {**TRIAL_0, "graph_hash": "h1", "speedup": 2.0,
                                       "timing": {**PAIRED_0, "speedup": 2.0}, "accuracy_loss": 0.0}])
    text = format_report(build_report(study, max_accuracy_loss=0.02))
    footer = [line for line in text.splitlines() if "paired speedup (" in line]
    assert len(footer) == 1 and "median of per-round ratios" in footer[0]
    assert "batch 1" in text and "loss 95% CI" in text
    assert [r.trial for r in build_report(study).front] == [0, 1]


def test_a_new_study_stores_todays_schema_and_so_does_each_trial_it_runs(tmp_path: Path, tiny_checkpoint,
                                                                        tiny_csv) -> None:
    config = StudyConfig.from_dict({"model": str(tiny_checkpoint), "dataset": str(tiny_csv), "modes": ["dynamic"],
                                    "storage": f"sqlite:///{tmp_path / 's.db'}", "study_name": "tiny",
                                    "remeasure_front": False, **fast_settings()})
    study = run_study(config, n_trials=1, progress=lambda line: None)
    assert study.user_attrs["schema"] == SCHEMA_VERSION
    ran = [t for t in study.trials if t.state != optuna.trial.TrialState.WAITING]
    assert ran and all(t.user_attrs["schema"] == SCHEMA_VERSION for t in ran)
