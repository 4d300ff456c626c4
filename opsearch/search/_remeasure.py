"""Re-measuring the Pareto front: every candidate and fp32 timed again in one interleaved session (with the
fastest trial surely within the accuracy limit, where the front does not hold it).

During a study each trial is paired with fp32 at its own moment; the front's final ranking should not
depend on when each was measured. The candidates are quantized again from their recipes (checked against
the recorded graph hash) and timed round-robin, in an order shuffled per round, so every speedup on the
final front comes from the same rounds.

Because the rounds are shared, the front's members are also compared with each other, not only with fp32
(``measure.tie_groups``: Wilcoxon signed-rank tests, Holm-adjusted): configurations the session cannot tell apart
form a tie group, stored with the session, and the report and ``best_within`` treat them as one speed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import optuna

from opsearch.errors import TrialFailed
from opsearch.measure import (
    LoadMeter,
    PairedTiming,
    TimingProtocol,
    make_session,
    measure_interleaved,
    tie_groups,
    timing_lock,
)
from opsearch.quantize import QuantRecipe, quantize
from opsearch.search._context import Progress, StudyContext
from opsearch.search._drift import reference_model, time_reference_pair
from opsearch.store import StudyRecord, TrialRecord, best_within, set_study_attrs, study_drift, trial_rows

TIE_ALPHA = 0.05


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Pareto trials, one per distinct graph."""
    seen: set[str] = set()
    out = []
    for trial in sorted(study.best_trials, key=lambda t: t.number):
        digest = TrialRecord.of(trial).graph_hash
        if digest and digest not in seen:
            seen.add(digest)
            out.append(trial)
    return out


def session_trials(study: optuna.Study, max_accuracy_loss: float | None) -> list[optuna.trial.FrozenTrial]:
    """What a front session times: the front (:func:`front_trials`), and the fastest trial surely within
    ``max_accuracy_loss`` (by the trials' own speedups) when the front does not hold it. Where the front's members
    within the limit are all uncertain, a slower trial surely within it is the answer to "the fastest within the
    limit", and only a trial timed in the session can be that answer once the session is stored."""
    trials = front_trials(study)
    if max_accuracy_loss is None:
        return trials
    rows = [replace(r, candidate=True, tie_group=None) for r in trial_rows(study, max_accuracy_loss=max_accuracy_loss)]
    best = best_within(rows, max_accuracy_loss)
    if best is None:
        return trials
    answer = study.trials[best.trial]
    if TrialRecord.of(answer).graph_hash in {TrialRecord.of(t).graph_hash for t in trials}:
        return trials
    return sorted([*trials, answer], key=lambda t: t.number)


def front_protocol(protocol: TimingProtocol, candidates: int) -> TimingProtocol:
    """The front session's protocol: the study's, with ``max_seconds`` a budget per candidate (each round of the
    session times every candidate, so a round costs about that many trials' rounds)."""
    if protocol.max_seconds is None:
        return protocol
    return protocol.replace(max_seconds=protocol.max_seconds * max(1, candidates))


def remeasure_front(context: StudyContext, study: optuna.Study, *, max_seconds: float | None = None) -> dict | None:
    """Time the front's candidates again side by side; store and return the session's record (its ``trials``:
    ``{trial number: timing}``), or None when there was nothing to time. ``max_seconds`` caps the session's timed
    rounds (what a study's time budget has left; its minimum rounds always run)."""
    progress = context.progress
    considered = sorted(t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    record = StudyRecord.of(study)
    limit = context.config.accuracy_limit(record.baseline_accuracy) if record.baseline else None
    trials = session_trials(study, limit)
    if not trials:
        return None
    progress(f"re-measuring the front: {len(trials)} configurations and fp32, interleaved in one session ...")
    started = time.perf_counter()
    work = context.cache_dir / "remeasure"
    try:
        measured, sessions = _rebuild(context, trials, work)
        if not measured:
            return None
        timings = _time_session(context, sessions, max_seconds)
        reference = reference_model(study, context)
        check = None if reference is None else time_reference_pair(
            reference, context.model.onnx_path, threads=context.threads, workload=context.workload,
            protocol=context.protocol, lock_path=context.lock_path, holder=context.study_name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    session = _session_record(measured, timings, considered, seconds=round(time.perf_counter() - started, 1),
                              margin=context.config.margin)
    if check is not None:
        session["drift_check"] = check
    set_study_attrs(study, front_remeasured=session)
    _tell(progress, measured, timings, session)
    progress(study_drift(study).describe())
    return session


def _rebuild(context: StudyContext, trials: list[optuna.trial.FrozenTrial],
             work: Path) -> tuple[list[optuna.trial.FrozenTrial], list[list]]:
    """Each trial quantized again from its recipe into ``work``, with the sessions the session rotates over; a trial
    whose recipe no longer gives its recorded graph is left out."""
    measured, sessions = [], []
    for trial in trials:
        stored = TrialRecord.of(trial)
        recipe = QuantRecipe.from_dict(stored.recipe)
        try:
            q = quantize(recipe, fp32_path=context.model.onnx_path, out_dir=work / f"trial-{trial.number}",
                         calibration=context.calibration, cache_dir=context.cache_dir)
        except TrialFailed as exc:
            context.progress(f"  trial {trial.number}: could not be quantized again ({exc}); left out")
            continue
        if q.graph_hash != stored.graph_hash:
            context.progress(f"  trial {trial.number}: its recipe now gives another graph (the quantizer or its "
                             "inputs changed); left out")
            continue
        measured.append(trial)
        sessions.append([make_session(q.path, context.threads) for _ in range(context.protocol.sessions_per_model)])
    return measured, sessions


def _time_session(context: StudyContext, sessions: list[list], max_seconds: float | None = None) -> list[PairedTiming]:
    """Every candidate and fp32, interleaved in one session under the machine's timing lock."""
    workload = context.workload
    protocol = front_protocol(context.protocol, len(sessions))
    if max_seconds is not None:
        protocol = protocol.replace(max_seconds=min(max_seconds, protocol.max_seconds or max_seconds))
    with context.fp32_timing_sessions() as fp32, timing_lock(context.lock_path, holder=context.study_name,
                                                             on_wait=context.progress):
        return measure_interleaved(workload.runner(fp32), [workload.runner(s) for s in sessions],
                                   protocol=protocol,
                                   samples_per_round=workload.samples, load_meter=LoadMeter)


def _session_record(measured: list[optuna.trial.FrozenTrial], timings: list[PairedTiming], considered: list[int],
                    *, seconds: float, margin: float) -> dict:
    """What the study stores of the session: its tie groups (a difference under ``margin`` is none) and each
    candidate's timing."""
    by_speed = sorted(range(len(measured)), key=lambda i: -timings[i].speedup)
    groups, adjusted = tie_groups([timings[i].candidate_s for i in by_speed], alpha=TIE_ALPHA, margin=margin)
    number = [measured[i].number for i in by_speed]
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ties": [[number[k] for k in group] for group in groups],
        "tie_test": {"test": "Wilcoxon signed-rank on per-round log time ratios, Holm-adjusted", "alpha": TIE_ALPHA,
                     "margin": margin,
                     "p_adjusted": {f"{number[int(i)]}-{number[int(j)]}": p
                                    for key, p in adjusted.items() for i, j in [key.split("-")]}},
        "rounds": timings[0].rounds,
        "seconds": seconds,
        "considered": considered,  # the trials it saw: those not on its front stay off the front
        "trials": {str(t.number): {k: v for k, v in timing.to_dict().items() if k not in ("candidate_s", "baseline_s")}
                   for t, timing in zip(measured, timings, strict=True)},
    }


def _tell(progress: Progress, measured: list[optuna.trial.FrozenTrial], timings: list[PairedTiming],
          session: dict) -> None:
    """Each candidate's speedup in the session beside its own trial's, and the tie groups."""
    for trial, timing in zip(measured, timings, strict=True):
        before = TrialRecord.of(trial).timing["speedup"]
        progress(f"  trial {trial.number}: {timing.speedup:.2f}x (+-{timing.ci_halfwidth:.1%}); "
                 f"during the study {before:.2f}x")
    tied = [group for group in session["ties"] if len(group) > 1]
    if tied:
        progress("  cannot be told apart (tie groups): " + "; ".join(" = ".join(f"trial {n}" for n in group)
                                                             for group in tied))
    progress(f"re-measured in {session['seconds']} s, {session['rounds']} rounds")
