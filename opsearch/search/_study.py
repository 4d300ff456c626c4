"""Study orchestration: open or create the study, measure the fp32 baseline once, run Optuna trials.

Each trial quantizes one recipe, measures accuracy once per distinct graph and throughput paired with
the fp32 model, and stores everything it measured in its :class:`~opsearch.store.TrialRecord`. The study
stores its config, search space, fp32 baseline, machine fingerprint and library versions in its
:class:`~opsearch.store.StudyRecord`, so that ``resume``, ``report`` and ``plot`` need nothing but the
storage and the study name. The inputs come from one :class:`~opsearch.search.StudyContext`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna

from opsearch._files import disk_full_error
from opsearch.config import StudyConfig
from opsearch.errors import OpsearchError, StudyError, StudyStopped, TrialFailed
from opsearch.measure import (
    NOT_EVALUATED,
    WAITING_FOR_LOCK,
    AccuracyScreen,
    EmbeddingTask,
    Evaluation,
    accuracy_loss_ci,
    fingerprint,
    fingerprint_changes,
    library_versions,
    machine_id,
    pack_labels,
    unpack_labels,
)
from opsearch.quantize import model_file_mb
from opsearch.search._context import StudyContext, Task, load_config
from opsearch.search._isolation import ChildProcess, Executor, InProcess, Limits
from opsearch.search._presets import presets
from opsearch.search._progress import Lines, TrialEvent, as_progress
from opsearch.search._sampling import already_tried, make_sampler, record_constraint, untried_configuration
from opsearch.search._stops import deliver_stops, hold_stops, release_stops, stop_on_signals
from opsearch.search._trial import Rival, TimingSettings, TrialBench, TrialJob
from opsearch.store import (
    OBJECTIVES,
    StudyRecord,
    TrialRecord,
    best_within,
    file_of,
    objectives_of,
    open_storage,
    queue_retry,
    set_study_attrs,
    set_trial_attrs,
    set_trial_attrs_by_id,
    trial_attrs,
    trial_rows,
)

# Enumerating the space queues every recipe; above this many, sampling it is the only way.
MAX_ENUMERATED = 5000

Progress = Callable[[str], None]
# A quantized model whose accuracy is within this of always answering the majority class is broken.
CHANCE_MARGIN = 0.005
# An fp32 model must beat the majority class by this much for accuracy losses to mean anything.
BASELINE_MARGIN = 0.02
# A RUNNING trial that never said which process runs it is taken for an orphan only after this long.
ORPHAN_SECONDS = 60


@dataclass
class Runner:
    """One study opened in this process, its inputs prepared (``context``); ``optimize`` runs its trials."""

    context: StudyContext
    study: optuna.Study
    task: Task
    machine: dict = field(default_factory=dict)  # fingerprint of the machine timing this process's trials
    machine_id: str = ""
    _executor: Executor | None = None
    _running: optuna.Trial | None = None  # the trial this process measures now, put back on the queue on a stop
    _phase: str = "preparing the trial"
    _fp32_right: np.ndarray | None = None  # fp32's right answers per evaluation row, unpacked once
    _labels: np.ndarray | None = None  # the evaluation rows' labels, unpacked once

    def __post_init__(self) -> None:
        self.machine = fingerprint(self.context.threads.__dict__)
        self.machine_id = machine_id(self.machine)

    @property
    def config(self) -> StudyConfig:
        return self.context.config

    @property
    def progress(self) -> Lines:
        return self.context.progress

    @property
    def cache_dir(self) -> Path:
        return self.context.cache_dir

    @property
    def record(self) -> StudyRecord:
        return StudyRecord.of(self.study)

    @property
    def executor(self) -> Executor:
        """Made on the first trial, once the task holds everything a trial needs (fp32 embeddings included)."""
        if self._executor is None:
            if self.config.isolation == "none":
                self._executor = InProcess(self.bench(), on_phase=self._on_phase)
            else:
                memory = self.config.trial_memory_mb or _half_of_memory_mb()
                self._executor = ChildProcess(self.bench(), limits=Limits(self.config.trial_timeout, memory),
                                              on_phase=self._on_phase)
        return self._executor

    @executor.setter
    def executor(self, value: Executor) -> None:
        if self._executor is not None:
            self._executor.close()
        self._executor = value

    def bench(self) -> TrialBench:
        cfg, ctx = self.config, self.context
        timing = TimingSettings(rounds=cfg.rounds, max_rounds=cfg.max_rounds, warmup_rounds=cfg.warmup_rounds,
                                ci_target=cfg.ci_target, max_seconds=cfg.max_seconds, seed=cfg.seed,
                                sessions_per_model=cfg.sessions_per_model, estimator=cfg.speedup_estimator)
        return TrialBench(ctx.model.onnx_path, ctx.threads, self.task, ctx.workload, ctx.calibration, timing,
                          ctx.lock_path, ctx.cache_dir, ctx.study_name, screen=self._screen(),
                          objectives=tuple(cfg.objectives))

    def _screen(self) -> AccuracyScreen | None:
        """What early stopping checks a trial's evaluation against (None: ``--no-early-stop``, or a study made before
        its baseline kept fp32's answers)."""
        baseline = self.record.baseline
        if not self.config.early_stop or "predictions" not in baseline:
            return None
        majority = self.record.data.get("majority_accuracy")
        return AccuracyScreen(self._fp32_correct(), self.accuracy_limit,
                              None if majority is None else majority + CHANCE_MARGIN, seed=self.config.seed)

    def _fp32_correct(self) -> np.ndarray:
        if self._fp32_right is None:
            self._fp32_right = unpack_labels(self.record.baseline["predictions"]) == self._eval_labels()
        return self._fp32_right

    def _eval_labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = unpack_labels(self.record.baseline["labels"])
        return self._labels

    def _rivals(self) -> tuple[Rival, ...]:
        """Trials timed on this machine that stand against the limit (not over it): what racing compares with."""
        rows = {r.trial: r for r in trial_rows(self.study, max_accuracy_loss=self.accuracy_limit)}
        rivals = []
        for trial in self._completed():
            row, record = rows.get(trial.number), TrialRecord.of(trial)
            if (row is not None and row.feasible and record.timing and record.machine_id == self.machine_id
                    and math.isfinite(row.speedup_ci_low)):
                rivals.append(Rival(row.trial, row.speedup_ci_low, row.accuracy_loss_pt / 100, row.size_mb))
        return tuple(rivals)

    # Trials ---------------------------------------------------------------------------------------------

    def optimize(self, n_trials: int, *, until_complete: int | None = None) -> optuna.Study:
        """Run ``n_trials`` trials; with ``until_complete``, stop early once the study holds that many completed
        trials (other workers' included)."""
        started, finished = time.perf_counter(), [0]
        if n_trials <= 0:
            return self.study

        def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            deliver_stops()  # Optuna has stored the trial: a stop asked for meanwhile happens now
            if TrialRecord.of(trial).repeat_of is not None:
                return  # a repeated draw: nothing measured, not counted
            finished[0] += 1
            self._report_trial(trial, finished[0], n_trials, started)
            if finished[0] >= n_trials:
                study.stop()

        callbacks = [report]
        if until_complete is not None:
            callbacks.append(optuna.study.MaxTrialsCallback(until_complete, states=(optuna.trial.TrialState.COMPLETE,)))
        self.progress.start(n_trials)
        try:
            with stop_on_signals():
                # Repeated draws are not counted (see _queue_instead): the callback stops after n_trials others.
                self.study.optimize(self._objective, n_trials=None, catch=(TrialFailed,), callbacks=callbacks)
        except StudyStopped as stop:
            if self._executor is not None:
                self._executor.stop()
            self._put_back(stop)
            raise
        finally:
            release_stops()  # never left held once optimize ends
            self.progress.close()
        return self.study

    def _on_phase(self, name: str) -> None:
        self._phase = name
        self.progress.phase(name)
        if name.startswith(WAITING_FOR_LOCK):  # a wait of minutes must not look like a hang
            self.progress(f"trial {self._running.number if self._running else '?'}: {name}")

    def _put_back(self, stop: StudyStopped) -> None:
        """The trial a stop cut off goes back to the queue, its number, parameters and preset kept, so that it runs
        first when the study goes on; the stop's reason and phase are recorded with it."""
        trial = self._running
        if trial is None:
            return
        record = TrialRecord.of(trial)
        set_trial_attrs(trial, interrupted=[*record.interrupted, f"{stop.reason} while {self._phase}"])
        self.study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.WAITING)
        shutil.rmtree(self.cache_dir / "trials" / f"trial-{trial.number}", ignore_errors=True)
        stop.reason += f"; trial {trial.number} was {self._phase} and is queued again, first"
        self._running = None

    @property
    def accuracy_limit(self) -> float | None:
        return self.config.accuracy_limit(self.record.baseline_accuracy)

    def _objective(self, trial: optuna.Trial) -> tuple[float, ...]:
        self._running, self._phase = trial, "preparing the trial"
        try:
            measured = self._measure(trial)
        except optuna.TrialPruned:
            record_constraint(trial, None, self.accuracy_limit)
            self._running = None
            hold_stops()
            raise
        except TrialFailed:
            self._running = None
            hold_stops()
            raise
        interval = TrialRecord.of(trial).accuracy_loss_ci
        loss = measured["accuracy_loss"]
        record_constraint(trial, loss if interval is None else interval[0], self.accuracy_limit)
        self._running = None
        hold_stops()  # what is left is Optuna's: storing the outcome; a stop waits for it (see the callback)
        return tuple(measured[o.name] for o in objectives_of(self.config.objectives))

    def _measure(self, trial: optuna.Trial) -> dict[str, float]:
        """Every objective's value, by name (``store.objectives``); the study returns those it optimizes."""
        set_trial_attrs(trial, worker=worker_identity())  # first: a sweep after a crash reads it
        recipe = self.context.space.suggest(trial)
        extra = TrialRecord.of(trial).nodes_to_exclude  # a fallback queued by `opsearch sensitivity --enqueue`
        if extra:
            recipe = dataclasses.replace(recipe, nodes_to_exclude=(*recipe.nodes_to_exclude, *extra))
        set_trial_attrs(trial, recipe=recipe.to_dict(), label=recipe.label())
        if recipe.is_fp32:
            set_trial_attrs(trial, fail_reason="no operator type selected: the model would be the fp32 model")
            raise optuna.TrialPruned("no operator type selected")
        earlier = already_tried(self.study, trial)
        if earlier is not None:  # a sampler may draw a finished configuration again: measuring it adds nothing
            set_trial_attrs(trial, fail_reason=f"same configuration as trial {earlier.number}",
                            repeat_of=earlier.number)
            self._queue_instead(trial, earlier.number)
            raise optuna.TrialPruned(f"same configuration as trial {earlier.number}")
        self.progress.trial_started(trial.number, recipe.label())
        out_dir = self.cache_dir / "trials" / f"trial-{trial.number}"
        known = frozenset(TrialRecord.of(t).graph_hash for t in self._completed()) - {""}
        rivals = self._rivals() if self.config.early_stop else ()
        try:
            outcome = self.executor.run(TrialJob(trial.number, recipe, out_dir, known, rivals))
        except TrialFailed as exc:
            set_trial_attrs(trial, fail_reason=str(exc))
            raise
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        set_trial_attrs(trial, graph_hash=outcome.graph_hash, quantized_nodes=outcome.node_counts,
                        group_precisions=outcome.group_precisions, quantize_seconds=outcome.quantize_seconds,
                        size_mb=outcome.size_mb)
        if outcome.repeats_known_graph:
            twin = self._same_graph(outcome.graph_hash, trial.number)
            measured = TrialRecord.of(twin)
            set_trial_attrs(trial, metrics=measured.metrics, accuracy=measured.accuracy,
                            accuracy_loss=measured.accuracy_loss, accuracy_loss_ci=measured.accuracy_loss_ci,
                            accuracy_batch_size=measured.accuracy_batch_size, timing=measured.timing,
                            speedup=measured.speedup, evaluated_rows=measured.evaluated_rows,
                            stopped_early=measured.stopped_early, same_graph_as=twin.number)
            return _values(measured, self.record.reference_throughput, outcome.size_mb)

        baseline = self.record
        set_trial_attrs(trial, evaluate_seconds=outcome.evaluate_seconds, evaluated_rows=outcome.evaluated_rows,
                        accuracy_batch_size=baseline.accuracy_batch_size, predictions=outcome.predictions,
                        accuracy_loss_ci=self._loss_ci(outcome.predictions))
        if outcome.timing is None:  # stopped early, surely over the limit or broken: its partial accuracy, untimed
            accuracy, loss = self._partial_accuracy(outcome.predictions)
            set_trial_attrs(trial, metrics={"accuracy": accuracy}, accuracy=accuracy, accuracy_loss=loss,
                            stopped_early=outcome.stopped_early)
            if outcome.broken:
                reason = f"stopped early: {outcome.stopped_early}: the quantized model is broken"
                set_trial_attrs(trial, fail_reason=reason)
                raise TrialFailed(reason)
            return _values(TrialRecord.of(trial), baseline.reference_throughput, outcome.size_mb)
        accuracy = float(outcome.metrics["accuracy"])
        loss = baseline.baseline_accuracy - accuracy
        set_trial_attrs(trial, metrics=outcome.metrics, accuracy=accuracy, accuracy_loss=loss)
        majority = baseline.data.get("majority_accuracy")
        if majority is not None and accuracy <= majority + CHANCE_MARGIN:
            reason = (f"accuracy {accuracy:.4f} is at chance level (always answering the majority class scores "
                      f"{majority:.4f}): the quantized model is broken, not merely less accurate")
            set_trial_attrs(trial, fail_reason=reason)
            raise TrialFailed(reason)
        speedup = float(outcome.timing["speedup"])
        window = outcome.timed_window
        set_trial_attrs(trial, timing=outcome.timing, timed_window=list(window), timing_seconds=round(
                        window[1] - window[0], 2), machine_id=self.machine_id, machine=self.machine, speedup=speedup,
                        stopped_early=outcome.stopped_early, dominated_by=outcome.dominated_by)
        return _values(TrialRecord.of(trial), baseline.reference_throughput, outcome.size_mb)

    def _partial_accuracy(self, predictions: str) -> tuple[float, float]:
        """Accuracy on the rows evaluated, and the loss paired with fp32's answers on the same rows."""
        ids = unpack_labels(predictions)
        seen = ids != NOT_EVALUATED
        right = ids[seen] == self._eval_labels()[seen]
        return float(right.mean()), float(np.mean(self._fp32_correct()[seen].astype(float) - right))

    def _loss_ci(self, predictions: str) -> list[float] | None:
        """The accuracy loss's paired 95% interval against fp32's answers on the same rows, those evaluated (None: a
        study made before its baseline kept them)."""
        if not predictions or "predictions" not in self.record.baseline:
            return None
        ids = unpack_labels(predictions)
        seen = ids != NOT_EVALUATED
        labels = self._eval_labels()
        return list(accuracy_loss_ci(self._fp32_correct()[seen], ids[seen] == labels[seen], seed=self.config.seed))

    def _queue_instead(self, trial: optuna.Trial, earlier: int) -> None:
        """Queue an untried configuration near a repeated draw, to run next; stop the study when none is left."""
        params = untried_configuration(self.study, self.context.space, trial.params,
                                       seed=self.config.seed + trial.number)
        if params is None:
            self.progress(f"trial {trial.number}: the sampler drew trial {earlier}'s configuration again and no "
                          "untried configuration is left near it or elsewhere: the space is measured; stopping")
            self.study.stop()
            return
        self.study.enqueue_trial(params, user_attrs=trial_attrs(instead_of=trial.number))
        self.progress(f"trial {trial.number}: the sampler drew trial {earlier}'s configuration again: not measured "
                      "nor counted; an untried configuration near it runs next")

    def _completed(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))

    def _same_graph(self, digest: str, number: int) -> optuna.trial.FrozenTrial | None:
        for other in self._completed():
            if other.number != number and TrialRecord.of(other).graph_hash == digest:
                return other
        return None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def _report_trial(self, trial: optuna.trial.FrozenTrial, done: int, n_trials: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        record = TrialRecord.of(trial)
        common = {"trial": trial.number, "state": trial.state.name.lower(), "label": record.label,
                  "done": done, "total": n_trials, "elapsed_s": round(elapsed, 1),
                  "remaining_s": round(elapsed / done * (n_trials - done), 1)}
        limit = self.accuracy_limit
        rows = trial_rows(self.study, max_accuracy_loss=limit)
        best = best_within(rows, limit)
        best_point = None if best is None else {"trial": best.trial, "speedup": best.speedup,
                                                "accuracy_loss_pt": best.accuracy_loss_pt,
                                                "limit_pt": None if limit is None else 100 * limit}
        if trial.state != optuna.trial.TrialState.COMPLETE:
            self.progress.trial_finished(TrialEvent(**common, reason=record.fail_reason, best=best_point))
            return
        timing = record.timing
        twin = record.same_graph_as
        row = next((r for r in rows if r.trial == trial.number), None)
        # Pairing cancels most drift; the stability warnings matter when the interval stayed wide.
        warnings = timing.get("warnings", []) if twin is None and timing.get("noisy") else []
        self.progress.trial_finished(TrialEvent(
            **common, speedup=timing.get("speedup"), ci_halfwidth=timing.get("ci_halfwidth"),
            rounds=timing.get("rounds"), samples_per_s=row.samples_per_s if row is not None else None,
            accuracy_loss_pt=100 * float(record.accuracy_loss),
            loss_ci_pt=None if record.accuracy_loss_ci is None else [100 * v for v in record.accuracy_loss_ci],
            constraint=row.constraint if row is not None else "",
            noisy=bool(timing.get("noisy")), same_graph_as=twin, warnings=warnings, best=best_point,
            stopped_early=record.stopped_early if twin is None else "",
            evaluate_s=record.evaluate_seconds if twin is None else None,
            timing_s=record.timing_seconds if twin is None else None, size_mb=record.size_mb,
            latency_p99_ms=(timing.get("latency_ms") or {}).get("p99")))


def _values(record: TrialRecord, reference_throughput: float, size_mb: float) -> dict[str, float]:
    """Every objective's value for a measured trial's record; a trial never timed gets each timed objective's worst
    (Optuna needs a value; such a trial is infeasible and never stands on a front)."""
    values = {"accuracy_loss": float(record.accuracy_loss), "size": float(size_mb)}
    latency = record.timing.get("latency_ms") or {}
    for objective in OBJECTIVES.values():
        if not objective.timed:
            continue
        if not record.timing:
            values[objective.name] = objective.untimed_value
        elif objective.name == "throughput":
            values[objective.name] = reference_throughput * float(record.speedup)
        else:  # a timing recorded before latencies were kept (a repeated graph's twin): the worst, as untimed
            values[objective.name] = float(latency.get(objective.name, objective.untimed_value))
    return values


def _half_of_memory_mb() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**20 / 2


def worker_identity() -> dict:
    """Which process runs a trial: a trial left RUNNING by a dead process on this host can be swept at once."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def create_runner(config: StudyConfig, *, progress: Progress = print, worker: bool = False) -> Runner:
    """Open or create the study, prepare its inputs, and measure the fp32 baseline if new.

    A ``worker`` joins a study another process runs: its sampler is seeded apart, so that workers do not
    all suggest the same next configuration. A new study refused for bad input (labels that do not match, a
    model at chance, ...) leaves nothing behind: its storage file and cache are removed if this call made them."""
    context = StudyContext(config, progress=as_progress(progress))
    progress = context.progress
    storage_file = file_of(context.storage)
    made = {"file": storage_file is not None and not storage_file.exists(), "cache": not context.cache_dir.exists(),
            "folders": [f for f in (storage_file.parents if storage_file is not None else ()) if not f.exists()]}
    backend = open_storage(context.storage)
    # Workers draw apart: with one seed they would all suggest the same next configuration.
    sampler = make_sampler(config.replace(seed=config.seed + os.getpid()) if worker else config)
    names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
    made["study"] = context.study_name not in names
    if not made["study"]:
        study = optuna.load_study(study_name=context.study_name, storage=backend, sampler=sampler)
        _check_same_study(study, config)
        _sweep_interrupted(study, progress, context.cache_dir)
    else:
        study = optuna.create_study(study_name=context.study_name, storage=backend, sampler=sampler,
                                    directions=[o.direction for o in objectives_of(config.objectives)])
        study.set_metric_names(list(config.objectives))
    try:
        return _prepare(context, study)
    except OpsearchError:
        if made["study"]:
            _remove_new_study(context, backend, made)
        raise


def _prepare(context: StudyContext, study: optuna.Study) -> Runner:
    config, progress = context.config, context.progress
    if not StudyRecord.of(study).complete:
        # First: a study stopped before its baseline is complete can be resumed with these settings.
        set_study_attrs(study, opsearch_config=config.to_dict())
    space = context.space  # the model, the data and the fusions are made here, before anything is timed
    task = context.task(study, fit_probe=True)
    runner = Runner(context, study, task)
    if not StudyRecord.of(study).complete:
        for preset in presets(space, sweep_operators=config.sweep_operators):
            study.enqueue_trial(preset.params, user_attrs=trial_attrs(preset=preset.name), skip_if_exists=True)
        _enumerate(study, config, space, progress)
        _measure_baseline(runner)
    else:
        # Embedding tasks need the fp32 embeddings again for the cosine; classifiers need nothing.
        if isinstance(task, EmbeddingTask):
            task.evaluate(context.fp32_session)
        _check_machine(runner)
        record = StudyRecord.of(study)
        progress(f"resuming {context.study_name!r}: {len(study.trials)} trials stored; fp32 accuracy "
                 f"{record.baseline_accuracy:.4f}, {record.reference_throughput:.1f} samples/s")
    return runner


def _remove_new_study(context: StudyContext, backend, made: dict) -> None:
    """Undo what a refused new study wrote: the study, and the storage file and cache folder if they are new."""
    optuna.delete_study(study_name=context.study_name, storage=backend)
    if made["cache"]:
        shutil.rmtree(context.cache_dir, ignore_errors=True)
    path = file_of(context.storage)
    if made["file"] and path is not None and not optuna.get_all_study_summaries(backend, include_best_trial=False):
        if hasattr(backend, "engine"):
            backend.engine.dispose()
        for leftover in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + ".lock")):
            leftover.unlink(missing_ok=True)
        for folder in made["folders"]:  # the folders it made for the file, innermost first, if empty now
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _enumerate(study: optuna.Study, config: StudyConfig, space, progress: Progress) -> None:
    """Queue every recipe once when the space is small enough to try whole (``enumerate``), after the presets."""
    size = space.size()
    if config.enumerate == "off" or (config.enumerate == "auto" and size > config.trials):
        return
    if size > MAX_ENUMERATED:
        raise StudyError(f"enumerate=\"on\" but the space holds {size} recipes (more than {MAX_ENUMERATED}): "
                         "narrow it (modes, fusions, formats, ...) or set enumerate = \"auto\".")
    for params in space.enumerate_params():
        study.enqueue_trial(params, skip_if_exists=True)
    progress(f"search space: all {size} recipes queued, each once")


def _measure_baseline(runner: Runner) -> None:
    context, study, progress = runner.context, runner.study, runner.progress
    data = context.data
    progress("fp32 baseline: accuracy on the evaluation split ...")
    evaluation: Evaluation = runner.task.evaluate(context.fp32_session)
    majority = float(np.bincount(data.eval.labels).max() / len(data.eval))
    if evaluation.accuracy <= majority + BASELINE_MARGIN:
        raise StudyError(
            f"the fp32 model scores {evaluation.accuracy:.4f} on {len(data.eval)} evaluation rows, no better than "
            f"always answering the majority class ({majority:.4f}): accuracy losses against it would mean nothing. "
            "Check that the dataset's labels match the model's classes (--label-map, --label-column), and that "
            "the model is trained for this task.")
    progress("fp32 baseline: timing ...")
    timing = context.time_fp32()
    set_study_attrs(study, search_space=context.space.to_dict(), graph=context.graph.to_dict(),
                    machine=runner.machine, versions=library_versions(), threads=context.threads.__dict__,
                    workload=context.workload.describe(), task=context.model.task,
                    data={"description": data.description, "eval_rows": len(data.eval), "fit_rows": len(data.fit),
                          "labels": data.label_names, "majority_accuracy": majority})
    # Last: workers take a study with its baseline for one whose baseline is complete.
    set_study_attrs(study, baseline={"metrics": evaluation.metrics, "timing": timing.to_dict(),
                                     "predictions": pack_labels(evaluation.predictions),
                                     "labels": pack_labels(data.eval.labels),
                                     "accuracy_batch_size": context.accuracy_batch_size(study),
                                     "size_mb": model_file_mb(context.model.onnx_path)})
    progress(f"fp32 baseline: accuracy {evaluation.accuracy:.4f} (majority class {majority:.4f}), "
             f"{timing.throughput:.1f} samples/s (cv {timing.cv:.1%} over {len(timing.seconds)} rounds)")


def _check_machine(runner: Runner) -> None:
    """Resuming elsewhere (another CPU, ONNX Runtime or thread setting) warns and times fp32 here first.

    Speedups stay comparable, since each is paired with fp32 on the machine that measured it; the new
    baseline is stored beside the first, and each trial records the id of the machine it ran on.
    """
    record = runner.record
    current = runner.machine
    known = {b["machine_id"] for b in record.baselines} | {machine_id(record.machine)}
    if runner.machine_id in known:
        return
    runner.progress("WARNING: this study was measured on another machine or setting ("
                    + "; ".join(fingerprint_changes(record.machine, current))
                    + "). Speedups are paired with fp32 on each machine, so they stay comparable; "
                    "timing fp32 here before any new trial ...")
    timing = runner.context.time_fp32()
    set_study_attrs(runner.study, baselines=[*record.baselines, {"machine_id": runner.machine_id, "machine": current,
                                                                "timing": timing.to_dict()}])
    runner.progress(f"fp32 here: {timing.throughput:.1f} samples/s (the study's reference: "
                    f"{record.reference_throughput:.1f})")


def _check_same_study(study: optuna.Study, config: StudyConfig) -> None:
    record = StudyRecord.of(study)
    if not record.complete:
        return  # created but its baseline never finished: nothing measured to protect
    stored = record.opsearch_config
    changed = config.identity_changes(stored)
    if changed:
        raise StudyError(f"study {study.study_name!r} already exists with other settings ({', '.join(changed)}). "
                         "Its trials would not be comparable: pass a new --study-name, or use "
                         "`opsearch resume` to continue it as it was.")


def _sweep_interrupted(study: optuna.Study, progress: Progress, cache_dir: Path) -> None:
    """Trials left RUNNING by a process that died are marked failed and their configuration queued again.

    A trial records the host and pid running it: on this host, a dead pid is proof enough, at once. A trial
    of another host (or one too young to say) is left to the storage's heartbeat, which fails it once its
    worker stops beating; a live worker's trial is never touched. Workers starting together may both find
    the same dead trial: the first marks it failed and queues it, the others step aside.
    """
    storage = study._storage
    here = socket.gethostname()
    now = datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = TrialRecord.of(trial).worker
        if worker is not None:
            if worker.get("host") != here or _alive(int(worker.get("pid", -1))):
                continue
        elif trial.datetime_start is None or (now - trial.datetime_start).total_seconds() < ORPHAN_SECONDS:
            continue  # another worker may have just asked for it
        try:
            set_trial_attrs_by_id(storage, trial._trial_id, fail_reason="interrupted: the process running it stopped")
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process starting at the same moment swept it first, and queued it again
        shutil.rmtree(cache_dir / "trials" / f"trial-{trial.number}", ignore_errors=True)
        queue_retry(study, trial, "the process running it stopped")
        progress(f"trial {trial.number} was left running by a stopped process: marked failed, queued again")


def _alive(pid: int) -> bool:
    import psutil

    try:
        return pid > 0 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_study(config: StudyConfig, *, n_trials: int | None = None, progress: Progress = print) -> optuna.Study:
    """Create or continue the study ``config`` names, and run ``n_trials`` (default ``config.trials``) more.

    SIGINT and SIGTERM stop it cleanly (:class:`~opsearch.errors.Interrupted`): the running trial goes back to the
    head of the queue, and :func:`resume_study` continues exactly there, in any phase."""
    with stop_on_signals():
        return _run(config, lambda study: config.trials if n_trials is None else n_trials, progress=progress)


def resume_study(*, storage: str, study_name: str, n_trials: int | None = None, progress: Progress = print,
                 **overrides) -> optuna.Study:
    """Continue a stored study with the settings it was created with (``overrides``: runtime settings only):
    ``n_trials`` more trials, or (None) until it holds its ``trials`` completed trials, then the front session if
    the front was not re-timed since its last trial. A study stopped before its baseline was measured goes on
    from there."""
    with stop_on_signals():
        config = load_config(storage, study_name, measured=False, **overrides)
        return _run(config, lambda study: n_trials if n_trials is not None else
                    max(0, config.trials - len(_complete(study))), progress=progress)


def _run(config: StudyConfig, how_many: Callable[[optuna.Study], int], *, progress: Progress) -> optuna.Study:
    try:
        return _run_to_the_end(config, how_many, progress=progress)
    except Exception as exc:  # the storage's own writes (SQLite: "database or disk is full")
        path = file_of(config.resolved_storage())
        full = disk_full_error(exc, where=path or Path("."), needed_bytes=None)
        if full is None:
            raise
        raise full from exc


def _run_to_the_end(config: StudyConfig, how_many: Callable[[optuna.Study], int], *,
                    progress: Progress) -> optuna.Study:
    runner = create_runner(config, progress=progress)
    try:
        todo = how_many(runner.study)
        study = runner.optimize(todo) if todo else runner.study
    finally:
        runner.close()
    if config.remeasure_front and (todo or _front_session_stale(study)):
        from opsearch.search._remeasure import remeasure_front

        remeasure_front(runner.context, study)
    return study


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _front_session_stale(study: optuna.Study) -> bool:
    """Trials completed since the last front session (or there was none): the front has numbers to re-time."""
    session = StudyRecord.of(study).front_remeasured
    done = {t.number for t in _complete(study)}
    return bool(done) and (not session or not done <= set(session.get("considered", done)))


def run_worker(*, storage: str, study_name: str, n_trials: int | None = None, progress: Progress = print,
               **overrides) -> optuna.Study:
    """Join a study that `opsearch run` started, as one more worker: run ``n_trials`` trials, or (None) until
    the study holds its ``trials`` completed trials, counting every worker's. Workers never re-measure the
    front (run `opsearch remeasure` once they are done)."""
    config = load_config(storage, study_name, **overrides).replace(remeasure_front=False)
    with stop_on_signals():
        runner = create_runner(config, progress=progress, worker=True)
        try:
            done = len(_complete(runner.study))
            if n_trials is None:
                if done >= config.trials:
                    runner.progress(f"study {study_name!r} already holds {done} completed trials (its target is "
                                    f"{config.trials}): nothing to do; pass --trials to run more.")
                    return runner.study
                return runner.optimize(config.trials - done, until_complete=config.trials)
            return runner.optimize(n_trials)
        finally:
            runner.close()
