"""opsearch.report's "how the answer improved": the fastest trial surely within the limit after each trial, by the
trials' own timings, against the study's busy minutes; and its plot."""

from __future__ import annotations

from datetime import datetime, timedelta

import optuna
import pytest

from opsearch.report import AnswerStep, answer_lines, answer_over_time, draw_answer
from opsearch.store import trial_rows

T0 = datetime(2026, 12, 1, 12, 0, 0)
Distribution = optuna.distributions.CategoricalDistribution


def _study(trials: list[tuple[float, float, float, float, list[float]]]) -> optuna.Study:
    """Trials of (start minute, end minute, own speedup, loss, loss interval), timed at their own moment."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["throughput", "accuracy_loss"])
    study.set_user_attr("baseline", {"metrics": {"accuracy": 0.9}, "timing": {"throughput": 100.0}})
    study.set_user_attr("opsearch_config", {"model": "m", "dataset": "d"})
    for i, (start, end, speedup, loss, ci) in enumerate(trials):
        study.add_trial(optuna.trial.FrozenTrial(
            number=i, state=optuna.trial.TrialState.COMPLETE, value=None, values=[100 * speedup, loss],
            datetime_start=T0 + timedelta(minutes=start), datetime_complete=T0 + timedelta(minutes=end),
            params={"x": i}, distributions={"x": Distribution(list(range(len(trials))))},
            user_attrs={"speedup": speedup, "accuracy_loss": loss, "accuracy_loss_ci": ci,
                        "timing": {"speedup": speedup, "speedup_ci": [speedup * 0.95, speedup * 1.05]}},
            system_attrs={}, intermediate_values={}, trial_id=i))
    return study


def test_the_answer_steps_up_only_when_a_faster_trial_is_surely_within() -> None:
    study = _study([
        (0, 1, 1.40, 0.000, [-0.002, 0.002]),  # within: the first answer, after 1 minute
        (1, 2, 1.90, 0.020, [0.015, 0.025]),  # faster but over the limit: not an answer
        (2, 3, 1.45, 0.005, [-0.001, 0.012]),  # faster, uncertain (straddles 1 point): not an answer
        (3, 4, 1.30, 0.000, [0.000, 0.000]),  # within but slower: the answer stays
        (4, 5, 1.60, 0.004, [0.000, 0.008]),  # within and faster: the answer after 5 minutes
    ])
    steps = answer_over_time(study, trial_rows(study, max_accuracy_loss=0.01))
    assert steps == [AnswerStep(pytest.approx(1.0), 0, 1.40, 0.0), AnswerStep(pytest.approx(5.0), 4, 1.60, 0.4)]
    lines = answer_lines(steps, 1.0)
    assert lines[0].startswith("how the answer improved (the fastest surely within 1.00 pt")
    assert "1.0 min  trial 0: 1.40x at +0.00 pt" in lines[1] and "5.0 min  trial 4: 1.60x at +0.40 pt" in lines[2]


def test_minutes_are_busy_time_a_pause_adds_nothing_and_overlaps_count_once() -> None:
    study = _study([
        (0, 2, 1.2, 0.0, [0.0, 0.0]),
        (1, 3, 1.3, 0.0, [0.0, 0.0]),  # a second worker, overlapping: 3 busy minutes so far, not 4
        (60, 62, 1.5, 0.0, [0.0, 0.0]),  # after an hour's pause: 5 busy minutes, not 62
    ])
    steps = answer_over_time(study, trial_rows(study, max_accuracy_loss=0.01))
    assert [(round(s.minutes, 6), s.trial) for s in steps] == [(2.0, 0), (3.0, 1), (5.0, 2)]


def test_without_an_answer_there_is_no_section_and_the_plot_still_draws(tmp_path) -> None:
    study = _study([(0, 1, 1.9, 0.05, [0.04, 0.06])])
    steps = answer_over_time(study, trial_rows(study, max_accuracy_loss=0.01))
    assert steps == [] and answer_lines(steps, 1.0) == []
    out = draw_answer([AnswerStep(1.0, 0, 1.4, 0.0), AnswerStep(4.5, 3, 1.7, 0.2)], tmp_path / "answer.png")
    assert out.stat().st_size > 1000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_study_minutes_count_every_finished_trial() -> None:
    from opsearch.report._anytime import study_minutes

    study = _study([(0, 2, 1.9, 0.05, [0.04, 0.06]), (1, 4, 1.2, 0.0, [0.0, 0.0]), (10, 11, 1.1, 0.0, [0.0, 0.0])])
    assert study_minutes(study) == pytest.approx(5.0)


def test_the_report_and_its_renderings_carry_the_answer() -> None:
    from opsearch.report import build_report, format_markdown, format_report, report_dict
    from opsearch.report._effects import study_effects

    study = _study([(0, 1, 1.40, 0.000, [-0.002, 0.002]), (1, 3, 1.60, 0.004, [0.000, 0.008])])
    report = build_report(study, max_accuracy_loss=0.01)
    assert [s.trial for s in report.answer] == [0, 1] and report.minutes == pytest.approx(3.0)
    text = format_report(report)
    assert "how the answer improved (the fastest surely within 1.00 pt" in text and "trial 1: 1.60x" in text
    assert "## How the answer improved" in format_markdown(report, study_effects(study))
    assert [s["trial"] for s in report_dict(report, study_effects(study))["answer"]] == [0, 1]
    # Without a limit there is no one answer, only the front: no section.
    unlimited = build_report(study)
    assert unlimited.answer == [] and "how the answer improved" not in format_report(unlimited)
