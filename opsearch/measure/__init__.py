"""Stage 3, the measurements: ONNX Runtime sessions, the timed workload, paired timing and its statistics,
the machine, and accuracy (a classifier's head, or an encoder through a probe)."""

from __future__ import annotations

from opsearch.measure._accuracy import ClassificationTask, EmbeddingTask, Evaluation, classification_metrics
from opsearch.measure._bench import BenchResult, bench, synthetic_texts
from opsearch.measure._embedding import LinearProbe, embed, mean_cosine, pool
from opsearch.measure._machine import (
    WAITING_FOR_LOCK,
    Load,
    LoadMeter,
    default_lock_path,
    fingerprint,
    fingerprint_changes,
    library_versions,
    lock_holder,
    machine_id,
    timing_lock,
)
from opsearch.measure._sessions import (
    Feed,
    ThreadSettings,
    encode,
    encode_padded,
    input_names,
    make_session,
    physical_cores,
    run_all,
)
from opsearch.measure._statistics import bootstrap_ci, floor_ci, floor_seconds, mean_difference_ci
from opsearch.measure._timing import (
    PairedTiming,
    SingleTiming,
    load_warnings,
    measure_interleaved,
    measure_paired,
    measure_single,
    stability_warnings,
)
from opsearch.measure._workload import Workload

__all__ = [
    "BenchResult",
    "ClassificationTask",
    "EmbeddingTask",
    "Evaluation",
    "Feed",
    "LinearProbe",
    "Load",
    "LoadMeter",
    "PairedTiming",
    "SingleTiming",
    "ThreadSettings",
    "Workload",
    "bench",
    "bootstrap_ci",
    "classification_metrics",
    "default_lock_path",
    "embed",
    "encode",
    "encode_padded",
    "fingerprint",
    "fingerprint_changes",
    "floor_ci",
    "floor_seconds",
    "input_names",
    "library_versions",
    "load_warnings",
    "machine_id",
    "mean_difference_ci",
    "make_session",
    "mean_cosine",
    "measure_interleaved",
    "measure_paired",
    "measure_single",
    "physical_cores",
    "pool",
    "run_all",
    "stability_warnings",
    "synthetic_texts",
    "timing_lock",
    "WAITING_FOR_LOCK",
    "lock_holder",
]
