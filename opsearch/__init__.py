"""opsearch: search the int8 quantization space of a transformer classifier for the Pareto front of
throughput against accuracy loss, with Optuna and ONNX Runtime."""

from opsearch.config import StudyConfig
from opsearch.effects import study_effects
from opsearch.errors import (
    ConfigError,
    DatasetError,
    HubUnreachableError,
    ModelError,
    OpsearchError,
    StudyError,
    TrialFailed,
)
from opsearch.graph import GraphInfo, inspect_model
from opsearch.quantize import QuantRecipe, quantize
from opsearch.report import build_report, format_report
from opsearch.study import resume_study, run_study, run_worker

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DatasetError",
    "GraphInfo",
    "HubUnreachableError",
    "ModelError",
    "OpsearchError",
    "QuantRecipe",
    "StudyConfig",
    "StudyError",
    "TrialFailed",
    "build_report",
    "format_report",
    "inspect_model",
    "quantize",
    "resume_study",
    "run_study",
    "run_worker",
    "study_effects",
]
