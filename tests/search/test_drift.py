"""opsearch.search's drift checks: a real study adopts its first timed trial as the reference, re-times the pair
after trials and in the front session, and a process without the reference's model quantizes it again."""

from __future__ import annotations

import shutil

import optuna
from conftest import fast_settings

import opsearch.search._drift as drift_module
from opsearch.config import StudyConfig
from opsearch.report import build_report, format_report
from opsearch.search import StudyContext, run_study
from opsearch.store import StudyRecord, TrialRecord, study_drift, trial_rows

COMPLETE = optuna.trial.TrialState.COMPLETE


def test_a_study_re_times_its_reference_pair_and_every_interval_carries_the_drift(tmp_path, tiny_checkpoint,
                                                                                  tiny_csv, monkeypatch) -> None:
    monkeypatch.setattr(drift_module, "DRIFT_EVERY_SECONDS", 0.0)  # a check after every trial
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=f"sqlite:///{tmp_path / 's.db'}",
                         study_name="drift", modes=["dynamic"], **fast_settings())
    lines: list[str] = []
    study = run_study(config, n_trials=3, progress=lines.append)
    reference = StudyRecord.of(study).drift_reference
    first_timed = min(t.number for t in study.get_trials(states=(COMPLETE,)) if TrialRecord.of(t).timing)
    assert reference["trial"] == first_timed
    assert reference["graph_hash"] == TrialRecord.of(study.trials[first_timed]).graph_hash
    later = [TrialRecord.of(t).drift_check for t in study.get_trials(states=(COMPLETE,)) if t.number > first_timed]
    assert later and all(c and c["graph_hash"] == reference["graph_hash"] and c["speedup"] > 0 for c in later)
    session_check = StudyRecord.of(study).front_remeasured["drift_check"]
    assert session_check["graph_hash"] == reference["graph_hash"]

    drift = study_drift(study)
    assert len(drift.checks) == 1 + len(later) + 1  # the reference's own timing, each later trial's, the session's
    assert any(line.startswith("drift: the reference pair") for line in lines)
    for row in trial_rows(study):
        record = TrialRecord.of(study.trials[row.trial])
        stored = StudyRecord.of(study).front_remeasured["trials"].get(str(row.trial)) or record.timing
        assert (row.speedup_ci_low, row.speedup_ci_high) == drift.widen(tuple(stored["speedup_ci"]),
                                                                         stored["speedup"])
    assert drift.describe() in format_report(build_report(study))

    # Another process, without the kept model (another machine, a cleaned cache), quantizes it again.
    context = StudyContext(config, progress=lambda line: None)
    shutil.rmtree(context.cache_dir / "drift-reference")
    path, graph = drift_module.reference_model(study, context)
    assert path.is_file() and graph == reference["graph_hash"]
