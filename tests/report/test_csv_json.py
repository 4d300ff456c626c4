"""opsearch.report's CSV and JSON renderers, checked against the study they came from, and against a report made
by hand."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
from hand_report import BEST, CPU, EFFECTS, FRONT, KNEE, ROWS, SESSION, STUDY, hand_report
from report_study import BASELINE, COMPLETE, EXPECTED_FRONT, LISTED_FRONT, SPECS, STUDY_NAME, make_study

from opsearch.config import StudyConfig
from opsearch.report import (
    StudyEffects,
    StudyReport,
    build_report,
    front_records,
    render,
    render_front_json,
    report_dict,
    study_effects,
    write_csv,
)

MACHINE = {"cpu": "Test CPU 9000", "int8_flags": ["avx2"], "physical_cores": 2}
VERSIONS = {"onnxruntime": "1.99.0", "optuna": "9.9"}
CONFIG = StudyConfig(model="tiny-bert", dataset="tiny.csv", trials=11).to_dict()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    study = make_study(tmp_path_factory.mktemp("formats") / "study.db")
    for key, value in (("machine", MACHINE), ("versions", VERSIONS), ("opsearch_config", CONFIG)):
        study.set_user_attr(key, value)
    return study


@pytest.fixture(scope="module")
def report(study: optuna.Study) -> StudyReport:
    return build_report(study, max_accuracy_loss=0.01)


@pytest.fixture(scope="module")
def effects(study: optuna.Study, report: StudyReport) -> StudyEffects:
    return study_effects(study, report=report)


@pytest.fixture(scope="module")
def plain_report(tmp_path_factory: pytest.TempPathFactory) -> StudyReport:
    """The study's report without a limit (every trial feasible)."""
    return build_report(make_study(tmp_path_factory.mktemp("plain") / "study.db"))


def test_json_holds_everything(report: StudyReport, effects: StudyEffects) -> None:
    data = json.loads(render(report, effects, "json"))  # strict JSON: NaN would not parse in other readers
    assert data["study"] == STUDY_NAME and data["baseline"] == BASELINE
    assert [r["trial"] for r in data["rows"]] == COMPLETE
    assert [r["trial"] for r in data["front"]] == [r.trial for r in report.front]
    assert data["machine"] == MACHINE and data["versions"] == VERSIONS
    assert data["settings"] == {"opsearch_config": CONFIG}
    assert data["max_accuracy_loss"] == 0.01 and data["best_feasible"] == report.best_feasible.trial
    assert [e["label"] for e in data["effects"]] == [e.label for e in effects.effects]
    for got, e in zip(data["effects"], effects.effects, strict=True):
        assert (got["n_with"], got["n_without"]) == (e.n_with, e.n_without)
        if e.too_few:
            assert got["speedup_diff"] is None and got["speedup_ci"] == [None, None] and got["note"]
        else:
            assert got["speedup_diff"] == pytest.approx(e.speedup_diff)
    assert [i["objective"] for i in data["importances"]] == ["throughput", "accuracy_loss"]
    assert data["operator_matrix"] == {"trials": effects.matrix.trials, "op_types": effects.matrix.op_types,
                                       "counts": effects.matrix.counts}
    rows = {r["trial"]: r for r in data["rows"]}
    assert rows[3]["feasible"] is False and "accuracy loss" in rows[3]["infeasible_reason"]


def test_json_turns_nan_into_null(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db", [SPECS[0]], baseline=None)
    report = build_report(study)
    text = render(report, study_effects(study, report=report), "json")
    assert "NaN" not in text
    assert json.loads(text)["knee"] is None


def test_csv_is_every_completed_trial(report: StudyReport) -> None:
    frame = pd.read_csv(io.StringIO(render(report, None, "csv")))
    assert sorted(frame["trial"]) == COMPLETE
    assert {"feasible", "infeasible_reason", "speedup_ci_low"} <= set(frame.columns)
    assert set(frame.loc[frame["pareto"], "trial"]) <= {r.trial for r in report.rows if r.feasible}


def test_report_dict_matches_json(report: StudyReport, effects: StudyEffects) -> None:
    data = report_dict(report, effects)
    assert json.loads(json.dumps(data)) == json.loads(render(report, effects, "json"))
    assert not any(isinstance(v, float) and math.isnan(v) for r in data["rows"] for v in r.values())


@pytest.mark.parametrize("front_only", [False, True])
def test_csv_has_one_row_per_trial(plain_report: StudyReport, tmp_path: Path, front_only: bool) -> None:
    out = write_csv(plain_report, tmp_path / "nested" / "trials.csv", front_only=front_only)
    frame = pd.read_csv(out)
    expected = LISTED_FRONT if front_only else set(COMPLETE)
    assert len(frame) == len(expected)
    assert set(frame["trial"]) == expected
    assert {int(t) for t in frame.loc[frame["pareto"], "trial"]} == EXPECTED_FRONT & expected
    by_trial = frame.set_index("trial")
    for i in expected:
        assert by_trial.loc[i, "samples_per_s"] == pytest.approx(SPECS[i].throughput)
        assert by_trial.loc[i, "accuracy_loss_pt"] == pytest.approx(100 * SPECS[i].loss)


def test_csv_by_default_holds_every_completed_trial(plain_report: StudyReport, tmp_path: Path) -> None:
    frame = pd.read_csv(write_csv(plain_report, tmp_path / "all.csv"))
    assert sorted(frame["trial"]) == COMPLETE


# On a report made by hand -------------------------------------------------------------------------------------


def test_json_of_a_report_made_by_hand() -> None:
    data = json.loads(render(hand_report(), EFFECTS, "json"))
    assert data["study"] == STUDY and data["machine"]["cpu"] == CPU and data["remeasured_at"] == SESSION
    assert [r["trial"] for r in data["front"]] == FRONT
    assert [r["trial"] for r in data["rows"]] == [r.trial for r in ROWS]
    assert (data["knee"], data["best_feasible"], data["faster_uncertain"]) == (KNEE, BEST, [5])
    assert data["ties"] == [[1, 2]] and data["constraint_counts"] == {"within": 3, "over": 0, "uncertain": 1}
    assert data["same_graph"] == [{"trials": [2, 6], "differing": ["reduce_range"]}]
    assert data["cost"]["saved_s"] == pytest.approx(15.0) and len(data["cost"]["trials"]) == 3
    assert data["effects"][0]["speedup_diff"] == pytest.approx(0.512)
    assert data["effects"][1]["speedup_diff"] is None and data["effects"][1]["note"].startswith("too few")
    assert data["importances"][1] == {"objective": "accuracy_loss", "values": {},
                                      "reason": "fANOVA needs two distinct values"}
    assert data["operator_matrix"]["counts"][1] == [3, 48]


def test_csv_of_a_report_made_by_hand() -> None:
    frame = pd.read_csv(io.StringIO(render(hand_report(), None, "csv")))
    assert list(frame["trial"]) == [r.trial for r in ROWS]
    by_trial = frame.set_index("trial")
    assert not by_trial.loc[4, "feasible"] and "over the limit" in by_trial.loc[4, "infeasible_reason"]
    assert by_trial.loc[6, "same_graph_as"] == 2 and by_trial.loc[5, "constraint"] == "uncertain"
    assert by_trial.loc[1, "samples_per_s"] == pytest.approx(220.0)


def test_the_front_alone_as_records() -> None:
    report = hand_report()
    assert [r["trial"] for r in front_records(report)] == FRONT
    listed = json.loads(render_front_json(report))
    assert [r["trial"] for r in listed] == FRONT and all(r["pareto"] for r in listed)
