"""Study orchestration: prepare the model and data once, measure the fp32 baseline, run Optuna trials.

Each trial quantizes one recipe, measures accuracy once per distinct graph and throughput paired with
the fp32 model, and stores everything it measured as trial attributes. The study itself stores its
config, search space, fp32 baseline, machine fingerprint and library versions, so that ``resume``,
``report`` and ``plot`` need nothing but the storage and the study name.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna

from opsearch.config import LEGACY_DEFAULTS, StudyConfig
from opsearch.data import StudyData, load_study_data
from opsearch.embedding import LinearProbe, embed
from opsearch.errors import StudyError, TrialFailed
from opsearch.fusion import FusionFailed, fused_model
from opsearch.graph import GraphInfo, inspect_model
from opsearch.isolation import ChildProcess, Executor, InProcess, Limits
from opsearch.machine import (
    default_lock_path,
    fingerprint,
    fingerprint_changes,
    library_versions,
    machine_id,
    timing_lock,
)
from opsearch.model_source import PreparedModel, prepare_model
from opsearch.presets import presets
from opsearch.progress import Lines, TrialEvent, as_progress
from opsearch.runtime import ThreadSettings, encode, encode_padded, make_session
from opsearch.sampling import already_tried, make_sampler, record_constraint
from opsearch.sensitivity import EXCLUDE_ATTR
from opsearch.space import SearchSpace
from opsearch.storage import cache_dir_for, load_existing, open_storage, queue_retry
from opsearch.tasks import ClassificationTask, EmbeddingTask, Evaluation
from opsearch.timing import measure_single
from opsearch.trial import TimingSettings, TrialBench, TrialJob
from opsearch.workload import Workload

logger = logging.getLogger(__name__)

OBJECTIVES = ("throughput", "accuracy_loss")
DIRECTIONS = ("maximize", "minimize")
# Settings that define what a study searches; an existing study may not be continued with others.
IDENTITY_FIELDS = ("model", "dataset", "task", "split", "text_column", "label_column", "label_map",
                   "exclude_labels", "fit_dataset", "fit_split", "fit_size", "max_samples", "seed",
                   "max_length", "modes", "all_operators", "calibration_method", "calibration_samples",
                   "calibration_max_length", "probe_samples", "batch_size", "end_to_end", "fusions", "formats",
                   "activation_types", "exclude_fragile")
# Enumerating the space queues every recipe; above this many, sampling it is the only way.
MAX_ENUMERATED = 5000

Progress = Callable[[str], None]
# A quantized model whose accuracy is within this of always answering the majority class is broken.
CHANCE_MARGIN = 0.005
# An fp32 model must beat the majority class by this much for accuracy losses to mean anything.
BASELINE_MARGIN = 0.02
# A RUNNING trial that never said which process runs it is taken for an orphan only after this long.
ORPHAN_SECONDS = 60


def stored_config(study: optuna.Study) -> StudyConfig:
    """The config a study was made with; settings it predates take the values that reproduce its search."""
    return StudyConfig.from_dict({**LEGACY_DEFAULTS, **study.user_attrs["opsearch_config"]},
                                 source=f"study {study.study_name!r}")


@dataclass
class Runner:
    """Everything prepared once per process for one study; ``optimize`` runs its trials."""

    config: StudyConfig
    study: optuna.Study
    model: PreparedModel
    data: StudyData
    graph: GraphInfo
    space: SearchSpace
    threads: ThreadSettings
    cache_dir: Path
    task: ClassificationTask | EmbeddingTask
    workload: Workload
    calibration: dict[str, np.ndarray] | None
    baseline_session: object
    progress: Lines
    machine: dict = field(default_factory=dict)  # fingerprint of the machine timing this process's trials
    machine_id: str = ""
    lock_path: Path | None = None  # the machine-wide lock that timed sections take in turn
    _executor: Executor | None = None

    def __post_init__(self) -> None:
        self.machine = fingerprint(self.threads.__dict__)
        self.machine_id = machine_id(self.machine)
        self.lock_path = default_lock_path()

    @contextmanager
    def fp32_timing_sessions(self) -> Iterator[list]:
        """The fp32 sessions timing rounds rotate over (``sessions_per_model``), open only while this process
        times fp32: trials open fp32 sessions of their own (in a child process by default), so holding these
        through a search would only double the fp32 model's memory."""
        sessions = [self.baseline_session, *(make_session(self.model.onnx_path, self.threads)
                                             for _ in range(self.config.sessions_per_model - 1))]
        try:
            yield sessions
        finally:
            sessions.clear()  # a caller still holding the list holds no session

    @property
    def executor(self) -> Executor:
        """Made on the first trial, once the task holds everything a trial needs (fp32 embeddings included)."""
        if self._executor is None:
            if self.config.isolation == "none":
                self._executor = InProcess(self.bench(), on_phase=self.progress.phase)
            else:
                memory = self.config.trial_memory_mb or _half_of_memory_mb()
                self._executor = ChildProcess(self.bench(), limits=Limits(self.config.trial_timeout, memory),
                                              on_phase=self.progress.phase)
        return self._executor

    @executor.setter
    def executor(self, value: Executor) -> None:
        if self._executor is not None:
            self._executor.close()
        self._executor = value

    def bench(self) -> TrialBench:
        cfg = self.config
        timing = TimingSettings(rounds=cfg.rounds, max_rounds=cfg.max_rounds, warmup_rounds=cfg.warmup_rounds,
                                ci_target=cfg.ci_target, max_seconds=cfg.max_seconds, seed=cfg.seed,
                                sessions_per_model=cfg.sessions_per_model, estimator=cfg.speedup_estimator)
        return TrialBench(self.model.onnx_path, self.threads, self.task, self.workload, self.calibration, timing,
                          self.lock_path, self.cache_dir)

    # Trials ---------------------------------------------------------------------------------------------

    def optimize(self, n_trials: int, *, until_complete: int | None = None) -> optuna.Study:
        """Run ``n_trials`` trials; with ``until_complete``, stop early once the study holds that many completed
        trials (other workers' included)."""
        started, finished = time.perf_counter(), [0]

        def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            finished[0] += 1
            self._report_trial(trial, finished[0], n_trials, started)

        callbacks = [report]
        if until_complete is not None:
            callbacks.append(optuna.study.MaxTrialsCallback(until_complete, states=(optuna.trial.TrialState.COMPLETE,)))
        self.progress.start(n_trials)
        try:
            self.study.optimize(self._objective, n_trials=n_trials, catch=(TrialFailed,), callbacks=callbacks)
        finally:
            self.progress.close()
        return self.study

    def _objective(self, trial: optuna.Trial) -> tuple[float, float]:
        limit = self.config.accuracy_limit(self.baseline_accuracy)
        try:
            values = self._measure(trial)
        except optuna.TrialPruned:
            record_constraint(trial, None, limit)
            raise
        record_constraint(trial, values[1], limit)
        return values

    def _measure(self, trial: optuna.Trial) -> tuple[float, float]:
        trial.set_user_attr("worker", worker_identity())  # first: a sweep after a crash reads it
        recipe = self.space.suggest(trial)
        extra = trial.user_attrs.get(EXCLUDE_ATTR)  # a fallback queued by `opsearch sensitivity --enqueue`
        if extra:
            recipe = dataclasses.replace(recipe, nodes_to_exclude=(*recipe.nodes_to_exclude, *extra))
        trial.set_user_attr("recipe", recipe.to_dict())
        trial.set_user_attr("label", recipe.label())
        if recipe.is_fp32:
            trial.set_user_attr("fail_reason", "no operator type selected: the model would be the fp32 model")
            raise optuna.TrialPruned("no operator type selected")
        earlier = already_tried(self.study, trial)
        if earlier is not None:  # a sampler may draw a finished configuration again: measuring it adds nothing
            trial.set_user_attr("fail_reason", f"same configuration as trial {earlier.number}")
            raise optuna.TrialPruned(f"same configuration as trial {earlier.number}")
        self.progress.trial_started(trial.number, recipe.label())
        out_dir = self.cache_dir / "trials" / f"trial-{trial.number}"
        known = frozenset(t.user_attrs["graph_hash"] for t in self._completed() if "graph_hash" in t.user_attrs)
        try:
            outcome = self.executor.run(TrialJob(trial.number, recipe, out_dir, known))
        except TrialFailed as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        trial.set_user_attr("graph_hash", outcome.graph_hash)
        trial.set_user_attr("quantized_nodes", outcome.node_counts)
        trial.set_user_attr("quantize_seconds", outcome.quantize_seconds)
        if outcome.repeats_known_graph:
            twin = self._same_graph(outcome.graph_hash, trial.number)
            for key in ("metrics", "accuracy", "accuracy_loss", "timing", "speedup"):
                trial.set_user_attr(key, twin.user_attrs[key])
            trial.set_user_attr("same_graph_as", twin.number)
            return tuple(twin.values)

        accuracy = float(outcome.metrics["accuracy"])
        trial.set_user_attr("evaluate_seconds", outcome.evaluate_seconds)
        trial.set_user_attr("metrics", outcome.metrics)
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("accuracy_loss", self.baseline_accuracy - accuracy)
        majority = self.study.user_attrs.get("data", {}).get("majority_accuracy")
        if majority is not None and accuracy <= majority + CHANCE_MARGIN:
            reason = (f"accuracy {accuracy:.4f} is at chance level (always answering the majority class scores "
                      f"{majority:.4f}): the quantized model is broken, not merely less accurate")
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(reason)
        trial.set_user_attr("timing", outcome.timing)
        trial.set_user_attr("timed_window", list(outcome.timed_window))
        trial.set_user_attr("machine_id", self.machine_id)
        trial.set_user_attr("machine", self.machine)
        speedup = float(outcome.timing["speedup"])
        trial.set_user_attr("speedup", speedup)
        return self.reference_throughput * speedup, self.baseline_accuracy - accuracy

    def _completed(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))

    def _same_graph(self, digest: str, number: int) -> optuna.trial.FrozenTrial | None:
        for other in self._completed():
            if other.number != number and other.user_attrs.get("graph_hash") == digest:
                return other
        return None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def _report_trial(self, trial: optuna.trial.FrozenTrial, done: int, n_trials: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        attrs = trial.user_attrs
        common = {"trial": trial.number, "state": trial.state.name.lower(), "label": attrs.get("label", ""),
                  "done": done, "total": n_trials, "elapsed_s": round(elapsed, 1),
                  "remaining_s": round(elapsed / done * (n_trials - done), 1)}
        best = _best_under(self.study, max_loss=0.01)
        best_point = None if best is None else {"trial": best.number, "speedup": best.user_attrs["speedup"],
                                                "accuracy_loss_pt": 100 * best.values[1]}
        if trial.state != optuna.trial.TrialState.COMPLETE:
            self.progress.trial_finished(TrialEvent(**common, reason=attrs.get("fail_reason", ""), best=best_point))
            return
        timing = attrs.get("timing", {})
        twin = attrs.get("same_graph_as")
        # Pairing cancels most drift; the stability warnings matter when the interval stayed wide.
        warnings = timing.get("warnings", []) if twin is None and timing.get("noisy") else []
        self.progress.trial_finished(TrialEvent(
            **common, speedup=timing.get("speedup"), ci_halfwidth=timing.get("ci_halfwidth"),
            rounds=timing.get("rounds"), samples_per_s=trial.values[0], accuracy_loss_pt=100 * trial.values[1],
            noisy=bool(timing.get("noisy")), same_graph_as=twin, warnings=warnings, best=best_point))

    @property
    def baseline_accuracy(self) -> float:
        return float(self.study.user_attrs["baseline"]["metrics"]["accuracy"])

    @property
    def reference_throughput(self) -> float:
        return float(self.study.user_attrs["baseline"]["timing"]["throughput"])


def _half_of_memory_mb() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**20 / 2


def worker_identity() -> dict:
    """Which process runs a trial: a trial left RUNNING by a dead process on this host can be swept at once."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _best_under(study: optuna.Study, *, max_loss: float) -> optuna.trial.FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.values[1] <= max_loss]
    return max(done, key=lambda t: t.values[0]) if done else None


def create_runner(config: StudyConfig, *, progress: Progress = print, worker: bool = False) -> Runner:
    """Open or create the study, prepare the model and data, and measure the fp32 baseline if new.

    A ``worker`` joins a study another process runs: its sampler is seeded apart, so that workers do not
    all suggest the same next configuration."""
    progress = as_progress(progress)
    study_name, storage = config.resolved_study_name(), config.resolved_storage()
    backend = open_storage(storage)
    # Workers draw apart: with one seed they would all suggest the same next configuration.
    sampler = make_sampler(config.replace(seed=config.seed + os.getpid()) if worker else config)
    names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
    if study_name in names:
        study = optuna.load_study(study_name=study_name, storage=backend, sampler=sampler)
        _check_same_study(study, config)
        _sweep_interrupted(study, progress, cache_dir_for(storage, study_name))
    else:
        study = optuna.create_study(study_name=study_name, storage=backend, sampler=sampler,
                                    directions=list(DIRECTIONS))
        study.set_metric_names(list(OBJECTIVES))
    cache_dir = cache_dir_for(storage, study_name)
    threads = ThreadSettings.resolve(config.intra_op_threads, config.inter_op_threads, config.allow_spinning)

    started = time.perf_counter()
    model = prepare_model(config.model, cache_dir=cache_dir, task=config.task, notify=progress)
    progress(f"model: {model.onnx_path} ({model.task}), ready in {time.perf_counter() - started:.1f} s")
    data = load_study_data(config, id2label=model.id2label, task=model.task)
    progress(f"data: {data.description}")
    graph = inspect_model(model.onnx_path)
    space = _search_space(config, model, graph, cache_dir, progress)
    progress("search space: " + "; ".join(f"{m}: {', '.join(ops)}" for m, ops in space.operators.items())
             + f" ({space.size()} recipes)")

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.folder)
    eval_feeds = encode(tokenizer, data.eval.texts, max_length=config.max_length)
    workload = Workload(data.eval.texts[: config.timing_samples], tokenizer, batch_size=config.batch_size,
                        max_length=config.max_length, end_to_end=config.end_to_end)
    calibration = None
    if "static" in config.modes:
        calibration = encode_padded(tokenizer, data.fit.texts[: config.calibration_rows],
                                    length=config.calibration_max_length)
    baseline_session = make_session(model.onnx_path, threads)

    if model.task == "classification":
        task: ClassificationTask | EmbeddingTask = ClassificationTask(eval_feeds, data.eval.labels)
    else:
        task = _embedding_task(study, config, model, data, tokenizer, eval_feeds, baseline_session, progress)

    runner = Runner(config, study, model, data, graph, space, threads, cache_dir, task, workload,
                    calibration, baseline_session, progress)
    if "baseline" not in study.user_attrs:
        _measure_baseline(runner)
        for preset in presets(space, sweep_operators=config.sweep_operators):
            study.enqueue_trial(preset.params, user_attrs={"preset": preset.name}, skip_if_exists=True)
        _enumerate(study, config, space, progress)
    else:
        # Embedding tasks need the fp32 embeddings again for the cosine; classifiers need nothing.
        if isinstance(task, EmbeddingTask):
            task.evaluate(baseline_session)
        _check_machine(runner)
        base = study.user_attrs["baseline"]
        progress(f"resuming {study_name!r}: {len(study.trials)} trials stored; fp32 accuracy "
                 f"{base['metrics']['accuracy']:.4f}, {base['timing']['throughput']:.1f} samples/s")
    return runner


def _search_space(config: StudyConfig, model: PreparedModel, graph: GraphInfo, cache_dir: Path,
                  progress: Progress) -> SearchSpace:
    """The space over the exported graph and each fusion level the optimizer can make of it (made once)."""
    fused: dict[str, GraphInfo] = {}
    for level in config.fusions:
        if level == "none":
            continue
        started = time.perf_counter()
        try:
            fused[level] = inspect_model(fused_model(model.onnx_path, level, cache_dir=cache_dir))
        except FusionFailed as exc:
            progress(f"WARNING: {exc}; fusion {level} is left out of the search")
            continue
        progress(f"fusion {level}: {sum(o.count for o in fused[level].operators)} nodes (from "
                 f"{sum(o.count for o in graph.operators)}), made in {time.perf_counter() - started:.1f} s")
    levels = [level for level in config.fusions if level == "none" or level in fused]
    if not levels:
        raise StudyError(f"no fusion level of {config.fusions} could be made for this model: add \"none\" to "
                         "fusions to search the exported graph.")
    exclude = [False, True] if config.exclude_fragile == "search" else [bool(config.exclude_fragile)]
    return SearchSpace.from_graph(graph, modes=config.modes, all_operators=config.all_operators,
                                  calibration_method=config.calibration_method,
                                  calibration_samples=config.calibration_samples, fusions=levels, fused=fused,
                                  formats=config.formats, activation_types=config.activation_types,
                                  exclude_fragile=exclude)


def _enumerate(study: optuna.Study, config: StudyConfig, space: SearchSpace, progress: Progress) -> None:
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


def _embedding_task(study, config, model, data, tokenizer, eval_feeds, baseline_session, progress) -> EmbeddingTask:
    if "probe" in study.user_attrs:
        probe = LinearProbe.from_dict(study.user_attrs["probe"])
        progress(f"probe: reusing the study's frozen probe (fitted on {probe.n_fit} fp32 embeddings)")
    else:
        fit = data.fit.take(config.probe_samples)
        if len(set(fit.labels.tolist())) < 2:
            raise StudyError("the probe's fit rows hold one class only: raise fit_size or probe_samples.")
        progress(f"probe: embedding {len(fit)} fit rows with the fp32 model ...")
        started = time.perf_counter()
        x = embed(baseline_session, encode(tokenizer, fit.texts, max_length=config.max_length),
                  pooling=model.pooling, normalize=model.normalize)
        probe = LinearProbe.fit(x, fit.labels, seed=config.seed)
        study.set_user_attr("probe", probe.to_dict())
        progress(f"probe: fitted in {time.perf_counter() - started:.1f} s (accuracy on its fit rows "
                 f"{probe.fit_accuracy:.4f}), frozen with the study")
    return EmbeddingTask(eval_feeds, data.eval.labels, probe=probe, pooling=model.pooling,
                         normalize=model.normalize)


def _measure_baseline(runner: Runner) -> None:
    config, study, progress = runner.config, runner.study, runner.progress
    model, data, space, threads = runner.model, runner.data, runner.space, runner.threads
    progress("fp32 baseline: accuracy on the evaluation split ...")
    evaluation: Evaluation = runner.task.evaluate(runner.baseline_session)
    majority = float(np.bincount(data.eval.labels).max() / len(data.eval))
    if evaluation.accuracy <= majority + BASELINE_MARGIN:
        raise StudyError(
            f"the fp32 model scores {evaluation.accuracy:.4f} on {len(data.eval)} evaluation rows, no better than "
            f"always answering the majority class ({majority:.4f}): accuracy losses against it would mean nothing. "
            "Check that the dataset's labels match the model's classes (--label-map, --label-column), and that "
            "the model is trained for this task.")
    progress("fp32 baseline: timing ...")
    with runner.fp32_timing_sessions() as fp32, timing_lock(runner.lock_path):
        timing = measure_single(runner.workload.runner(fp32),
                                samples_per_round=runner.workload.samples, rounds=config.rounds,
                                warmup_rounds=config.warmup_rounds)
    study.set_user_attr("search_space", space.to_dict())
    study.set_user_attr("graph", runner.graph.to_dict())
    study.set_user_attr("machine", fingerprint(threads.__dict__))
    study.set_user_attr("versions", library_versions())
    study.set_user_attr("threads", threads.__dict__)
    study.set_user_attr("workload", runner.workload.describe())
    study.set_user_attr("task", model.task)
    study.set_user_attr("data", {"description": data.description, "eval_rows": len(data.eval),
                                 "fit_rows": len(data.fit), "labels": data.label_names,
                                 "majority_accuracy": majority})
    study.set_user_attr("baseline", {"metrics": evaluation.metrics, "timing": timing.to_dict()})
    # Last: workers and resumes take a study with its config for one whose baseline is complete.
    study.set_user_attr("opsearch_config", config.to_dict())
    progress(f"fp32 baseline: accuracy {evaluation.accuracy:.4f} (majority class {majority:.4f}), "
             f"{timing.throughput:.1f} samples/s (cv {timing.cv:.1%} over {len(timing.seconds)} rounds)")


def _check_machine(runner: Runner) -> None:
    """Resuming elsewhere (another CPU, ONNX Runtime or thread setting) warns and times fp32 here first.

    Speedups stay comparable, since each is paired with fp32 on the machine that measured it; the new
    baseline is stored beside the first, and each trial records the id of the machine it ran on.
    """
    study, config = runner.study, runner.config
    stored = study.user_attrs.get("machine", {})
    current = fingerprint(runner.threads.__dict__)
    known = {b["machine_id"] for b in study.user_attrs.get("baselines", [])} | {machine_id(stored)}
    if machine_id(current) in known:
        return
    runner.progress("WARNING: this study was measured on another machine or setting ("
                    + "; ".join(fingerprint_changes(stored, current))
                    + "). Speedups are paired with fp32 on each machine, so they stay comparable; "
                    "timing fp32 here before any new trial ...")
    with runner.fp32_timing_sessions() as fp32, timing_lock(runner.lock_path):
        timing = measure_single(runner.workload.runner(fp32),
                                samples_per_round=runner.workload.samples, rounds=config.rounds,
                                warmup_rounds=config.warmup_rounds)
    baselines = [*study.user_attrs.get("baselines", []),
                 {"machine_id": machine_id(current), "machine": current, "timing": timing.to_dict()}]
    study.set_user_attr("baselines", baselines)
    runner.progress(f"fp32 here: {timing.throughput:.1f} samples/s (the study's reference: "
                    f"{runner.reference_throughput:.1f})")


def _check_same_study(study: optuna.Study, config: StudyConfig) -> None:
    stored = study.user_attrs.get("opsearch_config")
    if stored is None:
        return  # created but its baseline never finished: nothing measured to protect
    new = config.to_dict()
    stored = {**LEGACY_DEFAULTS, **stored}
    changed = [k for k in IDENTITY_FIELDS if stored.get(k) != new.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise StudyError(f"study {study.study_name!r} already exists with other settings ({detail}). "
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
        worker = trial.user_attrs.get("worker")
        if worker is not None:
            if worker.get("host") != here or _alive(int(worker.get("pid", -1))):
                continue
        elif trial.datetime_start is None or (now - trial.datetime_start).total_seconds() < ORPHAN_SECONDS:
            continue  # another worker may have just asked for it
        try:
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", "interrupted: the process running it stopped")
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
    """Create or continue the study ``config`` names, and run ``n_trials`` (default ``config.trials``) more."""
    runner = create_runner(config, progress=progress)
    try:
        study = runner.optimize(config.trials if n_trials is None else n_trials)
    finally:
        runner.close()
    if config.remeasure_front:
        from opsearch.remeasure import remeasure_front

        remeasure_front(runner)
    return study


# Settings a resumed study or a worker may change: how trials run here, not what the study measures.
RUNTIME_FIELDS = ("isolation", "trial_timeout", "trial_memory_mb")


def load_config(storage: str, study_name: str, **overrides) -> StudyConfig:
    """The config a stored study was made with, pointed at ``storage`` (``overrides``: RUNTIME_FIELDS only)."""
    study = load_existing(storage, study_name)
    if "opsearch_config" not in study.user_attrs:
        raise StudyError(f"study {study_name!r} in {storage!r} was not made by opsearch (or its baseline never "
                         "finished): start it again with `opsearch run`.")
    bad = sorted(set(overrides) - set(RUNTIME_FIELDS))
    if bad:
        raise StudyError(f"{bad} cannot change in a stored study (only {list(RUNTIME_FIELDS)} can): start a new "
                         "study with `opsearch run --study-name NEW` instead.")
    return stored_config(study).replace(storage=storage, study_name=study_name, **overrides)


def resume_study(*, storage: str, study_name: str, n_trials: int | None = None, progress: Progress = print,
                 **overrides) -> optuna.Study:
    """Continue a stored study with the settings it was created with (``overrides``: RUNTIME_FIELDS only)."""
    return run_study(load_config(storage, study_name, **overrides), n_trials=n_trials, progress=progress)


def run_worker(*, storage: str, study_name: str, n_trials: int | None = None, progress: Progress = print,
               **overrides) -> optuna.Study:
    """Join a study that `opsearch run` started, as one more worker: run ``n_trials`` trials, or (None) until
    the study holds its ``trials`` completed trials, counting every worker's. Workers never re-measure the
    front (run `opsearch remeasure` once they are done)."""
    config = load_config(storage, study_name, **overrides).replace(remeasure_front=False)
    runner = create_runner(config, progress=progress, worker=True)
    try:
        done = len(runner.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        if n_trials is None:
            if done >= config.trials:
                runner.progress(f"study {study_name!r} already holds {done} completed trials (its target is "
                                f"{config.trials}): nothing to do; pass --trials to run more.")
                return runner.study
            return runner.optimize(config.trials - done, until_complete=config.trials)
        return runner.optimize(n_trials)
    finally:
        runner.close()
