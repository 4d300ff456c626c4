"""Study orchestration: prepare the model and data once, measure the fp32 baseline, run Optuna trials.

Each trial quantizes one recipe, measures accuracy once per distinct graph and throughput paired with
the fp32 model, and stores everything it measured as trial attributes. The study itself stores its
config, search space, fp32 baseline, machine fingerprint and library versions, so that ``resume``,
``report`` and ``plot`` need nothing but the storage and the study name.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna

from opsearch.config import DEFAULT_RUN_DIR, LEGACY_DEFAULTS, StudyConfig
from opsearch.data import StudyData, load_study_data
from opsearch.embedding import LinearProbe, embed
from opsearch.errors import StudyError, TrialFailed
from opsearch.fusion import FusionFailed, fused_model
from opsearch.graph import GraphInfo, inspect_model
from opsearch.machine import fingerprint, fingerprint_changes, library_versions, machine_id
from opsearch.model_source import PreparedModel, prepare_model
from opsearch.presets import presets
from opsearch.quantize import quantize
from opsearch.runtime import ThreadSettings, encode, encode_padded, make_session
from opsearch.sampling import AccuracyConstraint, make_sampler
from opsearch.space import SearchSpace
from opsearch.tasks import ClassificationTask, EmbeddingTask, Evaluation
from opsearch.timing import measure_paired, measure_single
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


def cache_dir_for(storage: str, study_name: str) -> Path:
    """Exports and trial models live next to a SQLite study, else under ./opsearch-runs."""
    if storage.startswith("sqlite:///"):
        return Path(storage[len("sqlite:///"):]).expanduser().parent / f"{study_name}.cache"
    return DEFAULT_RUN_DIR / f"{study_name}.cache"


def open_storage(storage: str) -> optuna.storages.BaseStorage:
    if storage.startswith("sqlite:///"):
        db = Path(storage[len("sqlite:///"):]).expanduser()
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            probe = db.parent / f".{db.name}.write-test"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise StudyError(f"storage {storage!r}: cannot write in {str(db.parent)!r} ({exc.strerror}). "
                             "Choose a folder you can write to, e.g. --storage sqlite:///./study.db") from None
        # A busy timeout lets a reader (report, plot) and a running study share the file.
        return optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 60}})
    try:
        return optuna.storages.RDBStorage(storage)
    except Exception as exc:
        raise StudyError(f"storage {storage!r} cannot be opened: {exc}") from exc


def load_existing(storage: str, study_name: str) -> optuna.Study:
    backend = open_storage(storage)
    names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
    if study_name not in names:
        raise StudyError(f"no study {study_name!r} in {storage!r}; the studies there are {names or 'none'}. "
                         "Start one with `opsearch run`.")
    return optuna.load_study(study_name=study_name, storage=backend)


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
    progress: Progress
    timing_sessions: list = field(default_factory=list)  # fp32 sessions the timing rounds rotate over
    machine_id: str = ""  # of the machine timing this process's trials

    def __post_init__(self) -> None:
        self.machine_id = machine_id(fingerprint(self.threads.__dict__))
        extra = [make_session(self.model.onnx_path, self.threads) for _ in range(self.config.sessions_per_model - 1)]
        self.timing_sessions = [self.baseline_session, *extra]

    # Trials ---------------------------------------------------------------------------------------------

    def optimize(self, n_trials: int) -> optuna.Study:
        waiting = optuna.trial.TrialState.WAITING
        first = len([t for t in self.study.get_trials(deepcopy=False) if t.state != waiting])
        started = time.perf_counter()
        self.study.optimize(self._objective, n_trials=n_trials, catch=(TrialFailed,),
                            callbacks=[lambda study, trial: self._report_trial(trial, first, n_trials, started)])
        return self.study

    def _objective(self, trial: optuna.Trial) -> tuple[float, float]:
        recipe = self.space.suggest(trial)
        trial.set_user_attr("recipe", recipe.to_dict())
        trial.set_user_attr("label", recipe.label())
        if recipe.is_fp32:
            trial.set_user_attr("fail_reason", "no operator type selected: the model would be the fp32 model")
            raise optuna.TrialPruned("no operator type selected")
        self.progress(f"trial {trial.number}: {recipe.label()} ...")
        out_dir = self.cache_dir / "trials" / f"trial-{trial.number}"
        try:
            try:
                quantized = quantize(recipe, fp32_path=self.model.onnx_path, out_dir=out_dir,
                                     calibration=self.calibration, cache_dir=self.cache_dir)
            except TrialFailed as exc:
                trial.set_user_attr("fail_reason", f"quantization failed: {exc}")
                raise
            trial.set_user_attr("graph_hash", quantized.graph_hash)
            trial.set_user_attr("quantized_nodes", quantized.node_counts)
            trial.set_user_attr("quantize_seconds", round(quantized.seconds, 2))

            twin = self._same_graph(quantized.graph_hash, trial.number)
            if twin is not None:
                for key in ("metrics", "accuracy", "accuracy_loss", "timing", "speedup"):
                    trial.set_user_attr(key, twin.user_attrs[key])
                trial.set_user_attr("same_graph_as", twin.number)
                return tuple(twin.values)

            session = make_session(quantized.path, self.threads)
            started = time.perf_counter()
            try:
                evaluation = self.task.evaluate(session)
            except TrialFailed as exc:
                trial.set_user_attr("fail_reason", str(exc))
                raise
            except Exception as exc:  # ONNX Runtime cannot run some quantized graphs
                trial.set_user_attr("fail_reason", f"running the quantized model failed: {exc}")
                raise TrialFailed(str(exc)) from exc
            trial.set_user_attr("evaluate_seconds", round(time.perf_counter() - started, 2))
            loss = self.baseline_accuracy - evaluation.accuracy
            trial.set_user_attr("metrics", evaluation.metrics)
            trial.set_user_attr("accuracy", evaluation.accuracy)
            trial.set_user_attr("accuracy_loss", loss)

            timing = self._time(quantized.path, session)
            throughput = self.reference_throughput * timing.speedup
            trial.set_user_attr("timing", timing.to_dict())
            trial.set_user_attr("machine_id", self.machine_id)
            trial.set_user_attr("speedup", timing.speedup)
            return throughput, loss
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def _time(self, path: Path, session):
        """Paired timing; ``session`` (already open for accuracy) is the first of the candidate's sessions."""
        cfg = self.config
        sessions = [session, *(make_session(path, self.threads) for _ in range(cfg.sessions_per_model - 1))]
        return measure_paired(self.workload.runner(sessions), self.workload.runner(self.timing_sessions),
                              samples_per_round=self.workload.samples, rounds=cfg.rounds, max_rounds=cfg.max_rounds,
                              warmup_rounds=cfg.warmup_rounds, ci_target=cfg.ci_target, max_seconds=cfg.max_seconds,
                              seed=cfg.seed)

    def _same_graph(self, digest: str, number: int) -> optuna.trial.FrozenTrial | None:
        for other in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if other.number != number and other.user_attrs.get("graph_hash") == digest:
                return other
        return None

    def _report_trial(self, trial: optuna.trial.FrozenTrial, first: int, n_trials: int, started: float) -> None:
        done = trial.number + 1 - first
        elapsed = time.perf_counter() - started
        remaining = elapsed / max(done, 1) * (n_trials - done)
        head = f"[{done}/{n_trials} {_clock(elapsed)} elapsed, ~{_clock(remaining)} left] trial {trial.number}"
        if trial.state == optuna.trial.TrialState.COMPLETE:
            timing = trial.user_attrs.get("timing", {})
            twin = trial.user_attrs.get("same_graph_as")
            note = f" (same graph as trial {twin}: measured once)" if twin is not None else ""
            noisy = "  NOISY" if timing.get("noisy") else ""
            self.progress(
                f"{head} {trial.user_attrs['label']}: {trial.values[0]:.1f} samples/s, "
                f"{timing.get('speedup', float('nan')):.2f}x fp32 (+-{timing.get('ci_halfwidth', 0):.1%}, "
                f"{timing.get('rounds', 0)} rounds), accuracy loss {100 * trial.values[1]:+.2f} pt{noisy}{note}")
            # Pairing cancels most drift; the stability warnings matter when the interval stayed wide.
            for warning in timing.get("warnings", []) if twin is None and timing.get("noisy") else []:
                self.progress(f"        warning: {warning}")
        else:
            reason = trial.user_attrs.get("fail_reason", "")
            self.progress(f"{head} {trial.user_attrs.get('label', '')}: {trial.state.name.lower()}: {reason}")
        best = _best_under(self.study, max_loss=0.01)
        if best is not None:
            self.progress(f"        best within 1 pt: trial {best.number}, {best.user_attrs['speedup']:.2f}x, "
                          f"loss {100 * best.values[1]:+.2f} pt")

    @property
    def baseline_accuracy(self) -> float:
        return float(self.study.user_attrs["baseline"]["metrics"]["accuracy"])

    @property
    def reference_throughput(self) -> float:
        return float(self.study.user_attrs["baseline"]["timing"]["throughput"])


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _best_under(study: optuna.Study, *, max_loss: float) -> optuna.trial.FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.values[1] <= max_loss]
    return max(done, key=lambda t: t.values[0]) if done else None


def create_runner(config: StudyConfig, *, progress: Progress = print) -> Runner:
    """Open or create the study, prepare the model and data, and measure the fp32 baseline if new."""
    study_name, storage = config.resolved_study_name(), config.resolved_storage()
    backend = open_storage(storage)
    constraint = AccuracyConstraint(config)
    sampler = make_sampler(config, constraint)
    names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
    if study_name in names:
        study = optuna.load_study(study_name=study_name, storage=backend, sampler=sampler)
        _check_same_study(study, config)
        _sweep_interrupted(study, progress)
    else:
        study = optuna.create_study(study_name=study_name, storage=backend, sampler=sampler,
                                    directions=list(DIRECTIONS))
        study.set_metric_names(list(OBJECTIVES))
    cache_dir = cache_dir_for(storage, study_name)
    threads = ThreadSettings.resolve(config.intra_op_threads, config.inter_op_threads, config.allow_spinning)

    started = time.perf_counter()
    model = prepare_model(config.model, cache_dir=cache_dir, task=config.task)
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
    constraint.set_baseline(study, runner.baseline_accuracy)
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
    if evaluation.accuracy <= majority + 0.02:
        progress(f"WARNING: the fp32 model scores {evaluation.accuracy:.4f}, no better than always answering "
                 f"the majority class ({majority:.4f}): check the label mapping (--label-map).")
    progress("fp32 baseline: timing ...")
    timing = measure_single(runner.workload.runner(runner.timing_sessions), samples_per_round=runner.workload.samples,
                            rounds=config.rounds, warmup_rounds=config.warmup_rounds)
    study.set_user_attr("opsearch_config", config.to_dict())
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
    timing = measure_single(runner.workload.runner(runner.timing_sessions), samples_per_round=runner.workload.samples,
                            rounds=config.rounds, warmup_rounds=config.warmup_rounds)
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


def _sweep_interrupted(study: optuna.Study, progress: Progress) -> None:
    """Trials left RUNNING by a process that died are marked failed, so they count for nothing."""
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", "interrupted: the process running it stopped")
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        if trial.params:  # its configuration is tried again first
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, **(
                {"preset": trial.user_attrs["preset"]} if "preset" in trial.user_attrs else {})})
        progress(f"trial {trial.number} was left running by a stopped process: marked failed, queued again")


def run_study(config: StudyConfig, *, n_trials: int | None = None, progress: Progress = print) -> optuna.Study:
    """Create or continue the study ``config`` names, and run ``n_trials`` (default ``config.trials``) more."""
    runner = create_runner(config, progress=progress)
    study = runner.optimize(config.trials if n_trials is None else n_trials)
    if config.remeasure_front:
        from opsearch.remeasure import remeasure_front

        remeasure_front(runner)
    return study


def resume_study(*, storage: str, study_name: str, n_trials: int | None = None,
                 progress: Progress = print) -> optuna.Study:
    """Continue a stored study with the settings it was created with."""
    study = load_existing(storage, study_name)
    if "opsearch_config" not in study.user_attrs:
        raise StudyError(f"study {study_name!r} in {storage!r} was not made by opsearch (or its baseline never "
                         "finished): start it again with `opsearch run`.")
    config = stored_config(study).replace(storage=storage, study_name=study_name)
    return run_study(config, n_trials=n_trials, progress=progress)
