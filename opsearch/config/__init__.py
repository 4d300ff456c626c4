"""The study's settings: one validated dataclass that a study file and command-line flags compile into, each
setting declared once (default, help, choices, check, flag, role), and the vocabularies settings choose from."""

from __future__ import annotations

from opsearch.config._choices import (
    ACTIVATION_TYPES,
    CALIBRATION_METHODS,
    ENUMERATE,
    ESTIMATORS,
    EXCLUDE_FRAGILE,
    FORMATS,
    FUSIONS,
    ISOLATION,
    MODES,
    SAMPLERS,
    TASKS,
    WEIGHT_TYPES,
)
from opsearch.config._setting import (
    IDENTITY,
    RUN,
    RUNTIME,
    Setting,
    default_of,
    flag_of,
    legacy_values,
    settings_of,
)
from opsearch.config._study_config import DEFAULT_RUN_DIR, RUNTIME_FIELDS, StudyConfig, as_list, resolve_relative

__all__ = [
    "ACTIVATION_TYPES",
    "CALIBRATION_METHODS",
    "DEFAULT_RUN_DIR",
    "ENUMERATE",
    "ESTIMATORS",
    "EXCLUDE_FRAGILE",
    "FORMATS",
    "FUSIONS",
    "IDENTITY",
    "ISOLATION",
    "MODES",
    "RUN",
    "RUNTIME",
    "RUNTIME_FIELDS",
    "SAMPLERS",
    "Setting",
    "StudyConfig",
    "TASKS",
    "WEIGHT_TYPES",
    "as_list",
    "default_of",
    "flag_of",
    "legacy_values",
    "resolve_relative",
    "settings_of",
]
