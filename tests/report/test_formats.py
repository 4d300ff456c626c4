"""opsearch.formats: the report as text, markdown, csv and json, checked against the study it came from."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
from report_study import BASELINE, COMPLETE, SPECS, STUDY_NAME, make_study

from opsearch.errors import ConfigError
from opsearch.report import (
    FORMATS,
    ROW_CELLS,
    StudyEffects,
    StudyReport,
    build_report,
    format_markdown,
    format_report,
    render,
    report_dict,
    study_effects,
)

MACHINE = {"cpu": "Test CPU 9000", "int8_flags": ["avx2"], "physical_cores": 2}
VERSIONS = {"onnxruntime": "1.99.0", "optuna": "9.9"}
CONFIG = {"model": "tiny-bert", "dataset": "tiny.csv", "trials": 11}


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


def _markdown_table(text: str, first_header: str) -> list[list[str]]:
    """The rows (cells stripped) of the markdown table whose header starts with ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_markdown_has_the_baseline_the_front_and_the_effects(report: StudyReport, effects: StudyEffects) -> None:
    text = format_markdown(report, effects)
    assert text.startswith(f"# opsearch report: {STUDY_NAME}")
    assert "fp32 baseline: accuracy 0.9123 (batch 1), 98.7 samples/s (timed at batch 1)" in text
    front = _markdown_table(text, "trial")
    assert [int(row[0]) for row in front] == [r.trial for r in report.front]
    best = report.best_feasible
    assert best is not None and next(row for row in front if int(row[0]) == best.trial)[1] == "best within limit"
    assert "best within 1.00 pt: trial 1" in text
    rows = _markdown_table(text, "setting")
    assert [row[0] for row in rows] == [e.label for e in effects.effects]
    for row, e in zip(rows, effects.effects, strict=True):
        assert row[1:3] == [str(e.n_with), str(e.n_without)]
        if e.too_few:
            assert row[3] == "-" and row[-1].startswith("too few trials")
        else:
            assert float(row[3]) == pytest.approx(e.speedup_diff, abs=5e-4)
            assert float(row[5]) == pytest.approx(e.loss_diff_pt, abs=5e-3)
    matrix = _markdown_table(text, "trial | Gather")
    assert [[int(c) for c in row] for row in matrix] == [[t, *c] for t, c in zip(effects.matrix.trials,
                                                                                  effects.matrix.counts, strict=True)]
    assert "## Parameter importances" in text


def test_markdown_escapes_pipes_in_cells(tmp_path: Path) -> None:
    from dataclasses import replace

    study = make_study(tmp_path / "s.db", [replace(SPECS[0], preset="a | b")])
    report = build_report(study)
    text = format_markdown(report, study_effects(study, report=report))
    assert "a \\| b" in text and len(_markdown_table(text, "trial")[0]) == 3 + len(ROW_CELLS)


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


def test_text_is_format_report(report: StudyReport) -> None:
    text = render(report, None, "text")
    assert text == format_report(report)
    assert "best within 1.00 pt: trial 1" in text and "knee" in text


@pytest.mark.parametrize("fmt", ["markdown", "json", "html"])
def test_formats_with_effects_say_how_to_get_them(report: StudyReport, fmt: str) -> None:
    with pytest.raises(ConfigError, match="study_effects"):
        render(report, None, fmt)


def test_an_unknown_format_lists_the_formats(report: StudyReport) -> None:
    with pytest.raises(ConfigError, match="'xml' is not one of " + ", ".join(FORMATS)):
        render(report, None, "xml")


def test_report_dict_matches_json(report: StudyReport, effects: StudyEffects) -> None:
    data = report_dict(report, effects)
    assert json.loads(json.dumps(data)) == json.loads(render(report, effects, "json"))
    assert not any(isinstance(v, float) and math.isnan(v) for r in data["rows"] for v in r.values())
