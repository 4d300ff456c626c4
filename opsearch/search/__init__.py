"""Stage 4, the search: the space, presets and sampler; the study that prepares its inputs once, runs each trial
in an isolated process and re-times the front; sensitivity; what a running study shows."""

from __future__ import annotations

from opsearch.search._context import StudyContext, load_config
from opsearch.search._isolation import ChildProcess, InProcess, Limits
from opsearch.search._presets import Preset, from_optimum, preset_recipes, presets
from opsearch.search._progress import Bar, JsonLog, Lines, Quiet, TrialEvent, as_progress, describe, trial_event
from opsearch.search._remeasure import front_trials, remeasure_front
from opsearch.search._runner import Runner
from opsearch.search._sampling import (
    CONSTRAINT_NAME,
    already_tried,
    make_sampler,
    record_constraint,
    untried_configuration,
)
from opsearch.search._sensitivity import (
    Sensitivity,
    enqueue_fallbacks,
    format_sensitivity,
    measure_sensitivity,
    study_sensitivity,
    units_of,
)
from opsearch.search._space import SearchSpace
from opsearch.search._stops import stop_on_signals
from opsearch.search._study import create_runner, resume_study, run_study, run_worker
from opsearch.search._trial import Rival, TrialJob, TrialMeasurer, TrialOutcome, TrialSetup

__all__ = [
    "Bar",
    "CONSTRAINT_NAME",
    "ChildProcess",
    "InProcess",
    "JsonLog",
    "Limits",
    "Lines",
    "Preset",
    "Rival",
    "Quiet",
    "SearchSpace",
    "Sensitivity",
    "TrialSetup",
    "TrialEvent",
    "TrialJob",
    "TrialOutcome",
    "TrialMeasurer",
    "already_tried",
    "as_progress",
    "create_runner",
    "describe",
    "enqueue_fallbacks",
    "format_sensitivity",
    "from_optimum",
    "front_trials",
    "load_config",
    "make_sampler",
    "untried_configuration",
    "measure_sensitivity",
    "preset_recipes",
    "presets",
    "record_constraint",
    "remeasure_front",
    "resume_study",
    "run_study",
    "run_worker",
    "stop_on_signals",
    "trial_event",
    "Runner",
    "StudyContext",
    "study_sensitivity",
    "units_of",
]
