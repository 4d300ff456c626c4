"""Where a study lives and what it keeps: storage URLs, the typed records of its trials and of itself, and
its completed trials read back as rows, with the Pareto front and the best trial within a limit."""

from __future__ import annotations

from opsearch.store._drift import DRIFT_EVERY_SECONDS, Drift, DriftCheck, study_drift
from opsearch.store._migrate import SCHEMA_VERSION
from opsearch.store._objectives import (
    BY_NAME as OBJECTIVES,
)
from opsearch.store._objectives import (
    Objective,
    objectives_of,
    study_objectives,
)
from opsearch.store._pareto import knee, non_dominated
from opsearch.store._patience import connection_lost
from opsearch.store._records import (
    DEFAULT_OBJECTIVES,
    StudyRecord,
    TrialRecord,
    configuration_of,
    set_study_attrs,
    set_trial_attrs,
    set_trial_attrs_by_id,
    trial_attrs,
)
from opsearch.store._rows import (
    CONSTRAINT_STATES,
    SameGraphGroup,
    TrialRow,
    best_within,
    check_limit,
    constraint_state,
    constraint_values,
    faster_uncertain,
    front_rows,
    loss_interval_pt,
    rows_timed_on,
    same_graph_groups,
    trial_loss,
    trial_rows,
)
from opsearch.store._states import fail_orphan, queue_again
from opsearch.store._storage import cache_dir_for, file_of, load_existing, open_storage, queue_retry

__all__ = [
    "connection_lost",
    "configuration_of",
    "DRIFT_EVERY_SECONDS",
    "Drift",
    "DriftCheck",
    "study_drift",
    "CONSTRAINT_STATES",
    "DEFAULT_OBJECTIVES",
    "OBJECTIVES",
    "SCHEMA_VERSION",
    "Objective",
    "SameGraphGroup",
    "StudyRecord",
    "TrialRecord",
    "TrialRow",
    "best_within",
    "rows_timed_on",
    "cache_dir_for",
    "check_limit",
    "constraint_state",
    "constraint_values",
    "fail_orphan",
    "faster_uncertain",
    "file_of",
    "front_rows",
    "knee",
    "load_existing",
    "loss_interval_pt",
    "non_dominated",
    "objectives_of",
    "open_storage",
    "queue_again",
    "queue_retry",
    "same_graph_groups",
    "set_study_attrs",
    "set_trial_attrs",
    "set_trial_attrs_by_id",
    "study_objectives",
    "trial_attrs",
    "trial_loss",
    "trial_rows",
]
