"""opsearch.store's rows: one answer to "the fastest trial within a loss limit", whoever asks."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from report_study import BASELINE, Spec, _params, make_study

from opsearch.config import StudyConfig
from opsearch.report import build_report, choose_trial, limit_line
from opsearch.search import Runner, StudyContext
from opsearch.search._progress import Lines
from opsearch.store import StudyRecord, best_within, set_study_attrs, trial_rows

REFERENCE = BASELINE["timing"]["throughput"]
LIMIT = 0.01

# Trial 0 and 1 are the front when measured; trial 2 is dominated by 0 (slower, more loss) and was not re-timed.
SPECS = [Spec(2.50 * REFERENCE, 0.002, "h0", _params()),
         Spec(2.40 * REFERENCE, 0.001, "h1", _params(op_Gather=True)),
         Spec(2.45 * REFERENCE, 0.005, "h2", _params(per_channel=True))]


def _timing(speedup: float) -> dict:
    return {"speedup": speedup, "speedup_ci": [speedup - 0.02, speedup + 0.02], "ci_halfwidth": 0.01, "rounds": 12}


def _study_with_a_front_session(path: Path) -> optuna.Study:
    """The front session re-timed the front in the other order: trial 1 is now the faster of the two."""
    study = make_study(path, SPECS)
    set_study_attrs(study, front_remeasured={"at": "2026-12-01T09:00:00+00:00", "considered": [0, 1, 2],
                                             "trials": {"0": _timing(2.30), "1": _timing(2.42)}})
    return study


class _Events(Lines):
    def __init__(self) -> None:
        super().__init__(lambda line: None)
        self.finished = []

    def trial_finished(self, event) -> None:
        self.finished.append(event)


def _progress_best(study: optuna.Study) -> int:
    """The trial the progress line names best, after the study's last trial."""
    config = StudyConfig(model="m", dataset="d", max_accuracy_loss=LIMIT, storage="sqlite:///unused.db")
    events = _Events()
    runner = Runner(StudyContext(config, progress=events), study, task=None)
    runner._report_trial(study.trials[-1], 1, 1, time.perf_counter())
    return events.finished[-1].best["trial"]


def test_report_export_and_progress_name_the_same_best_trial_after_a_front_session(tmp_path: Path) -> None:
    study = _study_with_a_front_session(tmp_path / "s.db")
    set_study_attrs(study, opsearch_config=StudyConfig(model="m", dataset="d", max_accuracy_loss=LIMIT).to_dict())
    report = build_report(study, max_accuracy_loss=LIMIT)
    # Trial 2's own 2.45x, taken at another moment, must not outrank the session's side-by-side numbers.
    assert report.best_feasible.trial == 1
    assert choose_trial(study, max_accuracy_loss=LIMIT) == 1
    assert _progress_best(study) == 1
    assert {r.trial for r in report.front} == {1}  # re-timed, trial 1 beats trial 0 on both axes


def test_a_trial_completed_after_the_front_session_competes_with_its_own_numbers(tmp_path: Path) -> None:
    study = _study_with_a_front_session(tmp_path / "s.db")
    study.add_trial(optuna.trial.create_trial(
        values=[2.60 * REFERENCE, 0.003], params={}, distributions={},
        user_attrs={"recipe": {"mode": "dynamic", "operators_to_quantize": ["MatMul"]}, "graph_hash": "h3",
                    "timing": _timing(2.60), "accuracy": 0.9}))
    rows = trial_rows(study, max_accuracy_loss=LIMIT)
    assert {r.trial for r in rows if r.pareto} == {1, 3}  # trial 3 is faster than the session's trial 1
    assert best_within(rows, LIMIT).trial == 3
    assert not next(r for r in rows if r.trial == 2).candidate


def test_best_within_respects_the_limit_and_without_one_takes_the_fastest(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db", SPECS)  # no front session: every trial competes with its own numbers
    rows = trial_rows(study)
    assert best_within(rows, None).trial == 0
    assert best_within(rows, 0.0015).trial == 1
    assert best_within(rows, 0.0005) is None


def test_an_old_front_session_without_considered_saw_every_trial(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db", SPECS)
    set_study_attrs(study, front_remeasured={"at": "x", "trials": {"0": _timing(2.30), "1": _timing(2.42)}})
    rows = trial_rows(study)
    assert [r.candidate for r in rows] == [True, True, False]
    assert StudyRecord.of(study).front_remeasured["trials"]["1"]["speedup"] == 2.42


# Loss intervals against a one-point limit: trial 0 is surely within, trial 1 (the fastest) straddles the limit,
# trial 2 is surely over, trial 3 is within but slower than trial 0.
CI_SPECS = [Spec(2.0 * REFERENCE, 0.004, "c0", _params(), extra_attrs={"accuracy_loss_ci": [0.001, 0.008]}),
            Spec(2.6 * REFERENCE, 0.009, "c1", _params(op_Gather=True),
                 extra_attrs={"accuracy_loss_ci": [0.006, 0.013]}),
            Spec(3.0 * REFERENCE, 0.020, "c2", _params(per_channel=True),
                 extra_attrs={"accuracy_loss_ci": [0.015, 0.025]}),
            Spec(1.5 * REFERENCE, 0.000, "c3", _params(reduce_range=True),
                 extra_attrs={"accuracy_loss_ci": [-0.002, 0.002]})]


def test_each_trial_is_within_over_or_uncertain_on_its_loss_interval(tmp_path: Path) -> None:
    rows = {r.trial: r for r in trial_rows(make_study(tmp_path / "s.db", CI_SPECS), max_accuracy_loss=LIMIT)}
    assert {n: r.constraint for n, r in rows.items()} == {0: "within", 1: "uncertain", 2: "over", 3: "within"}
    assert (rows[1].loss_ci_low_pt, rows[1].loss_ci_high_pt) == (0.6, 1.3)
    # Over is infeasible; uncertain stays on the front, as the evidence does not exclude it.
    assert not rows[2].feasible and "95% interval" in rows[2].infeasible_reason
    assert rows[1].feasible and rows[1].pareto
    # A point loss under the limit does not make a trial within: trial 1's 0.9 pt could be 1.3 pt.
    assert rows[1].accuracy_loss_pt < 100 * LIMIT


def test_the_best_within_never_rests_on_an_uncertain_trial_and_names_it(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db", CI_SPECS)
    report = build_report(study, max_accuracy_loss=LIMIT)
    assert report.best_feasible.trial == 0
    assert [r.trial for r in report.faster_uncertain] == [1]
    line = limit_line(report)
    assert "best within 1.00 pt: trial 0" in line and "faster but uncertain" in line and "trial 1 2.60x" in line
    assert choose_trial(study, max_accuracy_loss=LIMIT) == 0  # export --best takes the sure one
    # Without a limit, nothing is uncertain: the fastest feasible trial (2) wins.
    assert best_within(trial_rows(study), None).trial == 2


def test_a_study_without_loss_intervals_decides_on_the_points(tmp_path: Path) -> None:
    rows = {r.trial: r for r in trial_rows(make_study(tmp_path / "s.db", SPECS), max_accuracy_loss=0.003)}
    assert {n: r.constraint for n, r in rows.items()} == {0: "within", 1: "within", 2: "over"}
    assert rows[0].loss_ci_low_pt == rows[0].loss_ci_high_pt == rows[0].accuracy_loss_pt


def test_the_best_within_picks_inside_a_tie_group_by_the_lower_loss(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db", SPECS)
    # The session timed trial 0 (2.50x, loss 0.2 pt) and trial 1 (2.48x, 0.1 pt) and could not tell them apart.
    set_study_attrs(study, front_remeasured={"at": "2026-12-01T09:00:00+00:00", "considered": [0, 1, 2],
                                             "trials": {"0": _timing(2.50), "1": _timing(2.48), "2": _timing(2.1)},
                                             "ties": [[0, 1], [2]]})
    rows = trial_rows(study, max_accuracy_loss=LIMIT)
    by_trial = {r.trial: r for r in rows}
    assert by_trial[0].tie_group == by_trial[1].tie_group == 0 and by_trial[2].tie_group is None
    assert best_within(rows, LIMIT).trial == 1  # the faster one by noise (trial 0) loses to the lower loss
    assert "tied in speed with trial 0" in limit_line(build_report(study, max_accuracy_loss=LIMIT))
    # Without the tie, the faster one wins.
    set_study_attrs(study, front_remeasured={**StudyRecord.of(study).front_remeasured, "ties": [[0], [1], [2]]})
    assert best_within(trial_rows(study, max_accuracy_loss=LIMIT), LIMIT).trial == 0
