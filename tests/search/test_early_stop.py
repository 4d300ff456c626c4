"""Early stopping inside a study (the parent's side): a trial the child stopped for accuracy is stored complete,
untimed, infeasible and off the front, and the report says what it cost; ``--no-early-stop`` sends no screen and
no rivals; inputs are prepared once per study, not per trial; a repeated draw is neither measured nor counted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
from conftest import fast_settings

import opsearch.search._trial as trial_module
from opsearch.config import StudyConfig
from opsearch.measure import NOT_EVALUATED, pack_labels, unpack_labels
from opsearch.report import build_report, format_report
from opsearch.report._plot import pareto_plot_info
from opsearch.search import TrialOutcome, create_runner
from opsearch.store import TrialRecord, trial_rows

COMPLETE = optuna.trial.TrialState.COMPLETE


def _config(tmp_path: Path, model: Path, data: Path, **extra) -> StudyConfig:
    return StudyConfig(model=str(model), dataset=str(data), storage=f"sqlite:///{tmp_path / 'study.db'}",
                       study_name="tiny", modes=["dynamic"], **fast_settings(**extra))


class StopsForAccuracy:
    """An executor whose trials all answer the first 100 rows wrongly and stop there, as a child that found the
    trial surely over the limit (or, ``broken``, at chance) does."""

    def __init__(self, runner, *, broken: bool = False) -> None:
        baseline = runner.record.baseline
        self.labels = unpack_labels(baseline["labels"])
        self.jobs = []
        self.broken = broken

    def run(self, job):
        self.jobs.append(job)
        predictions = np.full(len(self.labels), NOT_EVALUATED)
        predictions[:100] = 1 - self.labels[:100]
        why = "at chance level" if self.broken else "over the limit"
        return TrialOutcome(f"graph-{job.number}", {"MatMul": 3}, 0.1, metrics={}, predictions=pack_labels(predictions),
                            evaluate_seconds=0.5, evaluated_rows=100, broken=self.broken,
                            stopped_early=f"{why} after 100 of {len(self.labels)} rows")

    def close(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_a_trial_stopped_for_accuracy_is_complete_untimed_and_off_the_front(tmp_path, tiny_checkpoint, tiny_csv):
    lines: list[str] = []
    runner = create_runner(_config(tmp_path, tiny_checkpoint, tiny_csv, fit_size=40, max_accuracy_loss=0.01),
                           progress=lines.append)
    assert runner.trial_setup().screen is not None and runner.trial_setup().screen.limit == 0.01
    runner.executor = StopsForAccuracy(runner)
    runner.optimize(1)
    trial = runner.study.get_trials(states=(COMPLETE,))[0]
    record = TrialRecord.of(trial)
    assert record.stopped_early.startswith("over the limit after 100 of") and not record.timing
    assert record.evaluated_rows == 100 and record.speedup is None
    fp32_right = runner.fp32.scores[:100]
    assert trial.values[1] == record.accuracy_loss == float(np.mean(fp32_right.astype(float)))  # all 100 wrong
    assert record.accuracy == 0.0 and record.accuracy_loss_ci[0] > 0.01
    assert record.constraints[0] > 0  # the sampler steers away from it as from any trial over the limit
    row = next(r for r in trial_rows(runner.study, max_accuracy_loss=0.01) if r.trial == trial.number)
    assert not row.timed and math.isnan(row.samples_per_s) and not row.feasible and not row.pareto
    assert "stopped early" in row.infeasible_reason
    report = build_report(runner.study, max_accuracy_loss=0.01)
    assert report.cost.stopped_evaluations[0].trial == trial.number
    text = format_report(report)
    assert f"trial {trial.number}: over the limit after 100 of" in text and "early stopping cut 1 evaluations" in text
    assert trial.number not in [p.trial for p in pareto_plot_info(report).infeasible]  # nothing to draw
    assert any("not timed" in line for line in lines)
    assert any("stopped early: over the limit after 100 of" in line for line in lines)


def test_a_trial_stopped_at_chance_fails_and_its_cost_is_kept(tmp_path, tiny_checkpoint, tiny_csv):
    runner = create_runner(_config(tmp_path, tiny_checkpoint, tiny_csv, fit_size=40), progress=lambda line: None)
    runner.executor = StopsForAccuracy(runner, broken=True)
    runner.optimize(1)
    failed = [t for t in runner.study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1
    record = TrialRecord.of(failed[0])
    assert record.fail_reason.startswith("stopped early: at chance level after 100 of")
    assert record.evaluate_seconds == 0.5 and record.evaluated_rows == 100
    cost = build_report(runner.study).cost
    assert [t.trial for t in cost.stopped_evaluations] == [failed[0].number]


def test_no_early_stop_sends_no_screen_and_no_rivals(tmp_path, tiny_checkpoint, tiny_csv):
    runner = create_runner(_config(tmp_path, tiny_checkpoint, tiny_csv, early_stop=False, max_accuracy_loss=0.01),
                           progress=lambda line: None)
    assert runner.trial_setup().screen is None
    runner.optimize(2)
    jobs = StopsForAccuracy(runner)
    runner.executor = jobs
    runner.optimize(1)
    assert jobs.jobs[0].rivals == ()
    assert all(not TrialRecord.of(t).stopped_early for t in runner.study.get_trials(states=(COMPLETE,))[:2])


def test_rivals_are_the_feasible_trials_timed_here(tmp_path, tiny_checkpoint, tiny_csv):
    runner = create_runner(_config(tmp_path, tiny_checkpoint, tiny_csv), progress=lambda line: None)
    runner.optimize(2)
    timed = runner.study.get_trials(states=(COMPLETE,))
    rivals = runner._rivals()
    assert sorted(r.trial for r in rivals) == sorted(t.number for t in timed)
    for rival in rivals:
        trial = runner.study.trials[rival.trial]
        assert rival.speedup_low <= TrialRecord.of(trial).speedup and rival.accuracy_loss == trial.values[1]


def test_inputs_are_prepared_once_per_study_not_per_trial(tmp_path, tiny_checkpoint, tiny_csv, monkeypatch):
    import opsearch.search._context as context_module

    counts = {"prepare_model": 0, "fp32 sessions in trials": 0}
    prepare, make_session = context_module.prepare_model, trial_module.make_session

    def counted_prepare(*args, **kwargs):
        counts["prepare_model"] += 1
        return prepare(*args, **kwargs)

    def counted_session(path, threads):
        if Path(path) == runner.context.model.onnx_path:
            counts["fp32 sessions in trials"] += 1
        return make_session(path, threads)

    monkeypatch.setattr(context_module, "prepare_model", counted_prepare)
    runner = create_runner(_config(tmp_path, tiny_checkpoint, tiny_csv, sessions_per_model=2),
                           progress=lambda line: None)
    monkeypatch.setattr(trial_module, "make_session", counted_session)
    runner.optimize(3)
    assert len(runner.study.get_trials(states=(COMPLETE,))) == 3
    assert counts == {"prepare_model": 1, "fp32 sessions in trials": 2}  # the export once; fp32 opened once


def test_a_repeated_draw_is_not_measured_nor_counted_and_an_untried_neighbour_runs(tmp_path, tiny_checkpoint,
                                                                                   tiny_csv):
    runner = create_runner(_config(tmp_path, tiny_checkpoint, tiny_csv), progress=lambda line: None)
    runner.optimize(1)
    first = runner.study.get_trials(states=(COMPLETE,))[0]
    waiting = runner.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    for trial in waiting:  # the other presets out of the way: the next trial is the repeat
        runner.study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    runner.study.enqueue_trial(first.params)
    runner.optimize(1)
    repeat = next(t for t in runner.study.trials if TrialRecord.of(t).repeat_of == first.number)
    assert repeat.state == optuna.trial.TrialState.PRUNED and "timing" not in repeat.user_attrs
    instead = next(t for t in runner.study.trials if TrialRecord.of(t).instead_of == repeat.number)
    assert instead.state == COMPLETE
    earlier = [t.params for t in runner.study.trials if t.number < instead.number]
    assert instead.params not in earlier
    assert sum(1 for k in first.params if instead.params.get(k) != first.params[k]) >= 1
    assert len(runner.study.get_trials(states=(COMPLETE,))) == 2  # optimize(1) measured one, the repeat not counted
