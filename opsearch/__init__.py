"""opsearch: search the int8 quantization space of a transformer classifier for the Pareto front of
throughput against accuracy loss, with Optuna and ONNX Runtime.

The pipeline, one subpackage per stage: :mod:`opsearch.source` (model and data) -> :mod:`opsearch.quantize`
(graph, fusion, recipes) -> :mod:`opsearch.measure` (sessions, timing, accuracy) -> :mod:`opsearch.search`
(the study) -> :mod:`opsearch.report` (report, plots, export); :mod:`opsearch.config` holds the settings and
:mod:`opsearch.store` what a study keeps. The names below are imported on first use, so ``import opsearch``
loads neither ONNX Runtime, torch, datasets nor Optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the subpackage that defines it.
_EXPORTS = {
    "StudyConfig": "opsearch.config",
    "Candidate": "opsearch.measure",
    "Predictions": "opsearch.measure",
    "Scores": "opsearch.measure",
    "ConfigError": "opsearch.errors",
    "DatasetError": "opsearch.errors",
    "HubUnreachableError": "opsearch.errors",
    "ModelError": "opsearch.errors",
    "OpsearchError": "opsearch.errors",
    "StudyError": "opsearch.errors",
    "TrialFailed": "opsearch.errors",
    "GraphInfo": "opsearch.quantize",
    "QuantRecipe": "opsearch.quantize",
    "inspect_model": "opsearch.quantize",
    "quantize": "opsearch.quantize",
    "resume_study": "opsearch.search",
    "run_study": "opsearch.search",
    "run_worker": "opsearch.search",
    "build_report": "opsearch.report",
    "format_report": "opsearch.report",
    "study_effects": "opsearch.report",
    "export_trial": "opsearch.report",
}

__all__ = sorted(_EXPORTS)

def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'opsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
