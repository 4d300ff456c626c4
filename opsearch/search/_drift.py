"""The study's reference pair, re-timed through the study to measure the machine's drift (``store._drift`` says
what the checks mean and how they widen every interval).

The first trial timed becomes the reference: its quantized model is kept in the study's cache (another worker, or a
resumed run, quantizes it again from its recipe and checks the graph). A worker makes a check after the trial it is
measuring when ``DRIFT_EVERY_SECONDS`` have passed since the study's last one; the front session makes one too.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from opsearch.errors import TrialFailed
from opsearch.measure import ThreadSettings, TimingProtocol, Workload, make_session, measure_paired, timing_lock
from opsearch.quantize import QuantRecipe, quantize
from opsearch.store import DRIFT_EVERY_SECONDS, DriftCheck, StudyRecord, TrialRecord, set_study_attrs, study_drift

Reference = tuple[Path, str]  # the reference model's file and its graph hash


def time_reference_pair(reference: Reference, fp32_path: Path, *, threads: ThreadSettings, workload: Workload,
                        protocol: TimingProtocol, lock_path: Path | None, holder: str,
                        phase: Callable[[str], None] = lambda name: None) -> dict:
    """One check: fresh sessions of the reference and fp32, the protocol's minimum rounds, under the machine's
    timing lock; as stored (``DriftCheck`` and the graph it timed)."""
    path, graph_hash = reference
    sessions = [[make_session(p, threads) for _ in range(protocol.sessions_per_model)] for p in (path, fp32_path)]
    with timing_lock(lock_path, holder=holder, on_wait=phase):
        phase("timing the reference pair (drift)")
        timing = measure_paired(workload.runner(sessions[0]), workload.runner(sessions[1]),
                                protocol=protocol.replace(max_rounds=protocol.rounds),
                                samples_per_round=workload.samples)
    return {**DriftCheck(time.time(), timing.speedup, timing.speedup_ci).to_dict(), "graph_hash": graph_hash}


def adopt_reference(study: optuna.Study, trial_number: int, graph_hash: str, model_dir: Path,
                    cache_dir: Path) -> None:
    """Make a just-timed trial the study's reference when it has none: its model folder is kept in the cache."""
    if StudyRecord.of(study).drift_reference:
        return
    _keep(model_dir, _folder(cache_dir, graph_hash))
    set_study_attrs(study, drift_reference={"trial": trial_number, "graph_hash": graph_hash})


def due_reference(study: optuna.Study, context, *, now: float | None = None) -> Reference | None:
    """The reference to time after the next trial, when a check is due (None: no reference yet, or not due).
    ``context``: the study's ``StudyContext`` (its fp32 model, calibration and cache), used only to quantize the
    reference again where this process has no copy."""
    drift = study_drift(study)
    if drift.reference is None:
        return None
    last = max((c.at for c in drift.checks), default=0.0)
    if (time.time() if now is None else now) - last < DRIFT_EVERY_SECONDS:
        return None
    return reference_model(study, context)


def reference_model(study: optuna.Study, context) -> Reference | None:
    """The reference's model file in this process's cache, quantized again from its recipe where missing; None
    (said once) when its recipe no longer gives its graph."""
    reference = StudyRecord.of(study).drift_reference
    if not reference:
        return None
    folder = _folder(context.cache_dir, reference["graph_hash"])
    model = folder / "model.onnx"
    if model.is_file():
        return model, reference["graph_hash"]
    recipe = QuantRecipe.from_dict(TrialRecord.of(study.trials[reference["trial"]]).recipe)
    work = folder.with_name(folder.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    try:
        q = quantize(recipe, fp32_path=context.model.onnx_path, out_dir=work, calibration=context.calibration,
                     cache_dir=context.cache_dir)
    except TrialFailed:
        return None
    if q.graph_hash != reference["graph_hash"]:
        shutil.rmtree(work, ignore_errors=True)
        return None
    _keep(work, folder)
    shutil.rmtree(work, ignore_errors=True)
    return model, reference["graph_hash"]


def _folder(cache_dir: Path, graph_hash: str) -> Path:
    return cache_dir / "drift-reference" / graph_hash[:16]


def _keep(source: Path, folder: Path) -> None:
    """Copy (or move, for a work folder of our own) ``source`` to ``folder`` whole, or not at all."""
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(folder.name + f".partial-{time.time_ns()}")
    shutil.copytree(source, partial)
    try:
        partial.rename(folder)
    except OSError:  # another worker kept it first
        shutil.rmtree(partial, ignore_errors=True)
