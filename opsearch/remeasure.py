"""Re-measuring the Pareto front: every candidate and fp32 timed again in one interleaved session.

During a study each trial is paired with fp32 at its own moment; the front's final ranking should not
depend on when each was measured. The candidates are quantized again from their recipes (checked against
the recorded graph hash) and timed round-robin, in an order shuffled per round, so every speedup on the
final front comes from the same rounds.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone

from opsearch.errors import TrialFailed
from opsearch.machine import LoadMeter, timing_lock
from opsearch.quantize import QuantRecipe, quantize
from opsearch.runtime import make_session
from opsearch.timing import measure_interleaved

STUDY_ATTR = "front_remeasured"


def front_trials(study) -> list:
    """Pareto trials, one per distinct graph."""
    seen: set[str] = set()
    out = []
    for trial in sorted(study.best_trials, key=lambda t: t.number):
        digest = trial.user_attrs.get("graph_hash")
        if digest and digest not in seen:
            seen.add(digest)
            out.append(trial)
    return out


def remeasure_front(runner) -> dict | None:
    """Time the front's candidates again side by side; store and return ``{trial number: timing}``."""
    study, config, progress = runner.study, runner.config, runner.progress
    trials = front_trials(study)
    if not trials:
        return None
    progress(f"re-measuring the front: {len(trials)} configurations and fp32, interleaved in one session ...")
    started = time.perf_counter()
    work = runner.cache_dir / "remeasure"
    measured, sessions = [], []
    try:
        for trial in trials:
            recipe = QuantRecipe.from_dict(trial.user_attrs["recipe"])
            try:
                q = quantize(recipe, fp32_path=runner.model.onnx_path, out_dir=work / f"trial-{trial.number}",
                             calibration=runner.calibration, cache_dir=runner.cache_dir)
            except TrialFailed as exc:
                progress(f"  trial {trial.number}: could not be quantized again ({exc}); left out")
                continue
            if q.graph_hash != trial.user_attrs["graph_hash"]:
                progress(f"  trial {trial.number}: its recipe now gives another graph (the quantizer or its "
                         "inputs changed); left out")
                continue
            measured.append(trial)
            sessions.append([make_session(q.path, runner.threads) for _ in range(config.sessions_per_model)])
        if not measured:
            return None
        workload = runner.workload
        with runner.fp32_timing_sessions() as fp32, timing_lock(runner.lock_path):
            timings = measure_interleaved(
                workload.runner(fp32), [workload.runner(s) for s in sessions],
                samples_per_round=workload.samples, rounds=config.rounds, max_rounds=config.max_rounds,
                warmup_rounds=config.warmup_rounds, ci_target=config.ci_target,
                max_seconds=config.max_seconds * max(1, len(sessions)), seed=config.seed,
                estimator=config.speedup_estimator, load_meter=LoadMeter)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rounds": timings[0].rounds,
        "seconds": round(time.perf_counter() - started, 1),
        "trials": {str(t.number): {k: v for k, v in timing.to_dict().items() if k not in ("candidate_s", "baseline_s")}
                   for t, timing in zip(measured, timings, strict=True)},
    }
    study.set_user_attr(STUDY_ATTR, record)
    for trial, timing in zip(measured, timings, strict=True):
        before = trial.user_attrs["timing"]["speedup"]
        progress(f"  trial {trial.number}: {timing.speedup:.2f}x (+-{timing.ci_halfwidth:.1%}); "
                 f"during the study {before:.2f}x")
    progress(f"re-measured in {record['seconds']} s, {record['rounds']} rounds")
    return record
