"""opsearch.store's records: every stored key is named once, a misspelled one is refused (older studies read in
today's shape: test_migrate.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest

from opsearch.config import StudyConfig
from opsearch.errors import StudyError
from opsearch.store import StudyRecord, TrialRecord, set_study_attrs, set_trial_attrs, trial_attrs

REPO = Path(__file__).resolve().parents[2]


def test_a_key_the_records_do_not_name_is_refused() -> None:
    with pytest.raises(KeyError, match="graph_hsh"):
        trial_attrs(graph_hsh="abc")
    study = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(KeyError, match="baselin"):
        set_study_attrs(study, baselin={})
    trial = study.ask()
    set_trial_attrs(trial, graph_hash="abc", preset="p")
    assert TrialRecord.of(trial).graph_hash == "abc" and TrialRecord.of(trial).preset == "p"


def test_a_record_reads_missing_keys_as_defaults_and_ignores_unknown_ones() -> None:
    trial = optuna.trial.create_trial(values=[1.0, 0.0], user_attrs={"graph_hash": "h", "someone_elses": 1})
    record = TrialRecord.of(trial)
    assert record.graph_hash == "h" and record.timing == {} and record.same_graph_as is None


def test_a_study_reads_its_config_and_one_opsearch_did_not_make_is_refused() -> None:
    # A study stored before a setting existed: test_migrate.py.
    stored = StudyConfig(model="m", dataset="d", fusions=["O2"]).to_dict()
    assert StudyRecord(opsearch_config=stored).config("new") == StudyConfig(model="m", dataset="d", fusions=["O2"])
    with pytest.raises(StudyError, match="not made by opsearch"):
        StudyRecord().config("foreign")


def test_only_the_records_touch_user_attributes() -> None:
    # Elsewhere the package writes and reads stored fields through the records, so each key is spelled once.
    found = subprocess.run(["git", "grep", "-n", "-E", r"user_attrs\[|user_attrs\.get|set_user_attr\(|"
                            r"set_trial_user_attr\(|\.user_attrs\b", "--", "opsearch"], cwd=REPO,
                           capture_output=True, text=True).stdout.splitlines()
    assert [line for line in found if not line.startswith("opsearch/store/_records.py:")] == []
