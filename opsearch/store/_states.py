"""Moving a trial between Optuna's states where Optuna's public API has no call for it: a trial a stop cut off goes
back to the queue, and a dead process's trial is marked failed. The two private names these need (the study's
storage, the trial's id) are read here and nowhere else."""

from __future__ import annotations

from typing import Any

import optuna

from opsearch.store._records import set_trial_attrs_by_id

TrialState = optuna.trial.TrialState


def queue_again(study: optuna.Study, trial: optuna.Trial) -> None:
    """Put a RUNNING trial back to WAITING, its number, parameters and attributes kept: it runs next."""
    study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)


def fail_orphan(study: optuna.Study, trial: optuna.trial.FrozenTrial, **attrs: Any) -> bool:
    """Mark a trial another process left RUNNING as failed, with ``attrs`` recorded on it. False when another
    process finished or swept it first."""
    storage = study._storage
    try:
        set_trial_attrs_by_id(storage, trial._trial_id, **attrs)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True
