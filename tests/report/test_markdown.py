"""opsearch.report's markdown renderer, checked against the study it came from, and against a report made by
hand."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hand_report import BEST, CPU, EFFECTS, FRONT, KNEE, STUDY, hand_report
from report_study import SPECS, STUDY_NAME, make_study

from opsearch.report import ROW_CELLS, StudyEffects, StudyReport, build_report, format_markdown, study_effects

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


# On a report made by hand -------------------------------------------------------------------------------------


def test_markdown_of_a_report_made_by_hand() -> None:
    text = format_markdown(hand_report(), EFFECTS)
    assert text.startswith(f"# opsearch report: {STUDY}\n\n7 complete, 1 fail")
    assert f"CPU: {CPU}" in text and f"best within 1.00 pt: trial {BEST}" in text
    front = _markdown_table(text, "trial")
    assert [int(row[0]) for row in front] == FRONT
    marks = {int(row[0]): row[1] for row in front}
    assert marks[KNEE] == "knee" and marks[BEST] == "best within limit"
    # trial 1's precision grid: its smoothed FFN input marked; its FFN output, fp32, is not smoothed at all
    assert _markdown_table(text, "layer") == [["0", "D~", "-"]]
    assert "- trial 3: dominated by trial 2 after 5 rounds (10.0 s evaluating, 5.0 s timing)" in text
    effects = _markdown_table(text, "setting")
    assert effects[0][:6] == ["op_MatMul", "4", "3", "+0.512", "+0.301 to +0.723", "+0.25"]
    assert effects[1][0] == "weights_dtype=QUInt8" and effects[1][3] == "-" and effects[1][-1].startswith("too few")
    assert "- op_Gather with op_MatMul: faster together than apart" in text
    assert "throughput: op_MatMul 0.80, per_channel 0.20" in text
    assert "accuracy_loss: not available (fANOVA needs two distinct values)" in text
    assert _markdown_table(text, "trial | Gather") == [["5", "0", "48"], ["1", "3", "48"], ["2", "0", "48"],
                                                       ["0", "0", "0"]]


def test_markdown_of_an_empty_front_says_so() -> None:
    text = format_markdown(hand_report(rows=[], same_graph=[], cost=None), EFFECTS)
    assert "No completed feasible trial yet." in text and "## Precision per layer" not in text
    assert "## Cost" not in text and "## Operator and flag effects" in text
