"""opsearch.report's text renderer (format_report): the table ``opsearch report`` prints, checked against the study
it came from, and against a report made by hand."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hand_report import BEST, CPU, FRONT, KNEE, SESSION, STUDY, hand_report
from report_study import COMPLETE, EXPECTED_FRONT, LISTED_FRONT, SPECS, STUDY_NAME, make_study

from opsearch.report import StudyReport, build_report, format_report


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    return make_study(tmp_path_factory.mktemp("study") / "study.db")


@pytest.fixture(scope="module")
def report(stored: optuna.Study) -> StudyReport:
    return build_report(stored)


def _table_trials(text: str) -> list[int]:
    """The trial column of the front table in format_report's output, in order."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["trial"])
    out = []
    for line in lines[header + 1 :]:
        first = line.split()[0] if line.split() else ""
        if not first.isdigit():
            break
        out.append(int(first))
    return out


def test_text_report_shows_the_front_and_the_baseline(report: StudyReport) -> None:
    text = format_report(report)
    assert STUDY_NAME in text
    assert "fp32 baseline" in text and "0.9123" in text and "98.7" in text
    assert f"({len(LISTED_FRONT)} of {len(COMPLETE)} completed trials)" in text
    assert _table_trials(text) == [r.trial for r in report.front]
    for i in LISTED_FRONT:
        assert f"{SPECS[i].throughput:.1f}" in text
    for i in set(COMPLETE) - EXPECTED_FRONT:
        assert f"{SPECS[i].throughput:.1f}" not in text
    assert "dynamic: MatMul only" in text
    assert "trials 1, 5: differ in per_channel" in text
    assert "trials 2, 7: differ in reduce_range, weights_dtype" in text
    assert "NOISY" in text


def test_text_report_of_an_empty_study(tmp_path: Path) -> None:
    text = format_report(build_report(make_study(tmp_path / "empty.db", [], baseline=None)))
    assert "no completed trial yet" in text
    assert "fp32 baseline" not in text


def test_text_report_without_noisy_trials_has_no_noise_note(tmp_path: Path) -> None:
    specs = [SPECS[0], SPECS[1]]
    text = format_report(build_report(make_study(tmp_path / "quiet.db", specs)))
    assert "NOISY" not in text
    assert _table_trials(text) == [1, 0]


@pytest.mark.parametrize(("stored", "says"), [({"speedup_estimator": "floor"}, "summed fastest time per text"),
                                              ({"speedup_estimator": "median"}, "median of per-round ratios"),
                                              ({}, "median of per-round ratios")])  # a study from before the setting
def test_the_report_says_how_speedups_were_estimated(tmp_path: Path, stored: dict, says: str) -> None:
    study = make_study(tmp_path / "s.db", [SPECS[0]])
    study.set_user_attr("opsearch_config", {"model": "tiny", **stored})
    footer = [line for line in format_report(build_report(study)).splitlines() if "paired speedup (" in line]
    assert len(footer) == 1 and says in footer[0]


# On a report made by hand -------------------------------------------------------------------------------------


def test_text_of_a_report_made_by_hand() -> None:
    text = format_report(hand_report())
    assert text.startswith(f"study {STUDY!r}: 7 complete, 1 fail")
    assert f"CPU: {CPU} (avx512_vnni), 2 threads" in text
    assert "fp32 baseline: accuracy 0.9000 (batch 1), 100.0 samples/s (timed at batch 1), 90.4 MB" in text
    assert _table_trials(text) == FRONT
    rows = {int(line.split()[0]): line for line in text.splitlines() if line[:6].strip().isdigit()}
    assert "uncertain" in rows[5] and "NOISY" in rows[1] and "front session" in rows[2] and "own trial" in rows[0]
    assert f"knee of the front: trial {KNEE}," in text
    assert f"best within 1.00 pt: trial {BEST}, 1.90x fp32" in text and "tied in speed with trial 1" in text
    assert "faster but uncertain" in text and "trial 5 2.30x" in text
    assert "trials 2, 6: differ in reduce_range" in text
    assert f"in one interleaved session ({SESSION})" in text
    assert "summed fastest time per text" in text  # the floor estimator the settings name
    assert "early stopping cut 0 evaluations and 1 timings short, saving about 15 s" in text
    assert "  trial 3: dominated by trial 2 after 5 rounds (10.0 s evaluating, 5.0 s timing)" in text
    assert "  trial 1 (dynamic s8):" in text and "outside the layers: embeddings S" in text


def test_text_without_a_limit_names_no_best_trial() -> None:
    text = format_report(hand_report(max_accuracy_loss=None))
    assert _table_trials(text) == FRONT and "best within" not in text and "faster but uncertain" not in text


def test_text_of_a_report_without_trials() -> None:
    text = format_report(hand_report(rows=[], same_graph=[], cost=None, counts={}))
    assert "no completed trial yet." in text and "Pareto front" not in text and "cost:" not in text
