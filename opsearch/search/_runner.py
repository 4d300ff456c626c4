"""The trial loop of one opened study: ask Optuna for a trial, run it where the executor puts it, record what it
measured (``search._outcome``), and tell the progress lines. A stop (a signal, a full disk) puts the running trial
back at the head of the queue, its number kept."""

from __future__ import annotations

import dataclasses
import math
import shutil
import statistics
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import optuna

from opsearch.config import StudyConfig
from opsearch.errors import StorageUnreachable, StudyStopped, TrialFailed
from opsearch.measure import WAITING_FOR_LOCK, EvaluatorTask, Fp32Answers, fingerprint, machine_id, metric_named
from opsearch.quantize import QuantRecipe
from opsearch.search._budget import Budget, front_session_seconds, trial_seconds
from opsearch.search._context import StudyContext, Task
from opsearch.search._drift import adopt_reference, due_reference
from opsearch.search._isolation import ChildProcess, Executor, InProcess, Limits
from opsearch.search._open import process_identity
from opsearch.search._outcome import OutcomeRecorder
from opsearch.search._predict import Predictor, prediction_attrs
from opsearch.search._progress import Lines, trial_event
from opsearch.search._sampling import (
    already_tried,
    measured_meanwhile,
    record_constraint,
    untried_configuration,
)
from opsearch.search._stops import deliver_stops, hold_stops, release_stops, stop_on_signals
from opsearch.search._trial import Rival, TrialJob, TrialSetup
from opsearch.store import (
    SCHEMA_VERSION,
    StudyRecord,
    TrialRecord,
    objectives_of,
    queue_again,
    rows_timed_on,
    set_trial_attrs,
    trial_attrs,
    trial_rows,
)

COMPLETE = optuna.trial.TrialState.COMPLETE


@dataclass
class Runner:
    """One study opened in this process, its inputs prepared (``context``); ``optimize`` runs its trials."""

    context: StudyContext
    study: optuna.Study
    task: Task
    machine: dict = field(default_factory=dict)  # fingerprint of the machine timing this process's trials
    machine_id: str = ""
    predictor: Predictor | None = None  # the cost model's use in the search (None: ``predict`` is off)
    _executor: Executor | None = None
    _running: optuna.Trial | None = None  # the trial this process measures now, put back on the queue on a stop
    _last: optuna.Trial | None = None  # the trial this process measured last, until Optuna has stored it
    _trials_left: int = 0  # of this run's n_trials, not yet counted
    _budget: Budget | None = None  # this run's time budget, if any
    _durations: list[float] = field(default_factory=list)  # this run's trials' durations so far
    _phase: str = "preparing the trial"

    def __post_init__(self) -> None:
        self.machine = fingerprint(self.context.threads.__dict__)
        self.machine_id = machine_id(self.machine)
        if self.context.config.predict:
            self.predictor = Predictor(self.context, self.study, self.machine_id)

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
    def accuracy_limit(self) -> float | None:
        return self.config.accuracy_limit(self.record.baseline_accuracy)

    @cached_property
    def fp32(self) -> Fp32Answers:
        """fp32's answers, read once the baseline is stored."""
        record = self.record
        # The task's metric (an evaluator's is known once it scored fp32); a runner without a task, the stored one's.
        metric = self.task.metric if self.task is not None else metric_named(
            record.metric, record.task, tuple(record.data.get("labels") or ()))
        return Fp32Answers.of_baseline(record.baseline, majority=record.data.get("majority_accuracy"), metric=metric)

    @property
    def executor(self) -> Executor:
        """Made on the first trial, once the task holds everything a trial needs (fp32 embeddings included)."""
        if self._executor is None:
            if self.config.isolation == "none":
                self._executor = InProcess(self.trial_setup(), on_phase=self._on_phase)
            else:
                memory = self.config.trial_memory_mb or _half_of_memory_mb()
                self._executor = ChildProcess(self.trial_setup(), limits=Limits(self.config.trial_timeout, memory),
                                              on_phase=self._on_phase)
        return self._executor

    @executor.setter
    def executor(self, value: Executor) -> None:
        if self._executor is not None:
            self._executor.close()
        self._executor = value

    def trial_setup(self) -> TrialSetup:
        cfg, ctx = self.config, self.context
        # An evaluator answers all its rows at once: nothing to stop early.
        early = cfg.early_stop and not isinstance(self.task, EvaluatorTask)
        screen = self.fp32.screen(self.accuracy_limit, seed=cfg.seed) if early else None
        return TrialSetup(ctx.model.onnx_path, ctx.threads, self.task, ctx.workload, ctx.calibration, ctx.protocol,
                          ctx.lock_path, ctx.cache_dir, ctx.study_name, screen=screen,
                          objectives=tuple(cfg.objectives))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    # The loop ---------------------------------------------------------------------------------------------

    def optimize(self, n_trials: int, *, until_complete: int | None = None,
                 budget: Budget | None = None) -> optuna.Study:
        """Run ``n_trials`` trials; with ``until_complete``, stop early once the study holds that many completed
        trials (other processes' included); with ``budget``, once another trial and the front session would not fit
        in what is left of it."""
        started, finished, durations = time.perf_counter(), [0], []
        self._trials_left, self._budget, self._durations = n_trials, budget, durations
        if n_trials <= 0:
            return self.study
        why = self.fp32.metric.why_no_early_stop()
        if self.config.early_stop and self.accuracy_limit is not None and why:
            self.progress(f"early stopping for the limit: off: {why}")

        def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            deliver_stops()  # Optuna has stored the trial: a stop asked for meanwhile happens now
            durations.extend(trial_seconds([trial]))
            record = TrialRecord.of(trial)
            if self.predictor is not None:
                self.predictor.counted(record)
            if record.repeat_of is not None or record.predicted_below is not None:
                self._stop_if_settled(study)  # a repeated draw, or one pruned by prediction: not counted
                return
            finished[0] += 1
            self._trials_left = n_trials - finished[0]
            self._report_trial(trial, finished[0], n_trials, started)
            if finished[0] >= n_trials:
                study.stop()
            elif budget is not None and budget.seconds is not None and not budget.room_for_trial(
                    durations, front := self.front_session_seconds()):
                self.progress(budget.why_stopped(durations, front))
                study.stop()
            elif not self._stop_if_settled(study) and record.suggested_near is None:
                self._queue_suggestion(study)

        callbacks = [report]
        if until_complete is not None:
            callbacks.append(optuna.study.MaxTrialsCallback(until_complete, states=(COMPLETE,)))
        self.progress.start(n_trials)
        try:
            with stop_on_signals():
                while True:
                    try:
                        # Repeated draws are not counted (see _queue_instead): the callback stops after n_trials
                        # others.
                        self.study.optimize(self._objective, n_trials=None, catch=(TrialFailed,),
                                            callbacks=callbacks)
                        break
                    except ValueError as exc:  # Optuna's "Cannot tell a FAIL trial": see _taken_over
                        if not self._taken_over(exc):
                            raise
        except StudyStopped as stop:
            if self._executor is not None:
                self._executor.stop()
            self._put_back(stop)
            raise
        finally:
            release_stops()  # never left held once optimize ends
            self.progress.close()
        return self.study

    def _taken_over(self, exc: ValueError) -> bool:
        """Whether the trial this process last measured was finished by another process meanwhile (Optuna then
        refuses to store it). That happens when the database was away longer than the heartbeat's grace: another
        worker's sweep took the trial for dead and queued its configuration again, so the copy runs in its place
        and nothing is stored twice. Said, and the study goes on."""
        trial, self._last = self._last, None
        if trial is None or not str(exc).startswith("Cannot tell a"):
            return False
        stored = self.study.get_trials(deepcopy=False)[trial.number]
        if not stored.state.is_finished():
            return False
        self._running = None
        release_stops()
        self.progress(f"trial {trial.number} was marked {stored.state.name.lower()} by another worker while the "
                      "storage was away (its heartbeats stopped): its configuration is queued again and runs in "
                      "its place; this worker goes on")
        return True

    def _stop_if_settled(self, study: optuna.Study) -> bool:
        """Stop (and say True) when the cost model, checked on every trial timed so far, says nothing untried can
        move the front."""
        if self.predictor is None:
            return False
        self.predictor.recalibrate()
        why = self.predictor.why_stop()
        if why:
            self.progress(why)
            study.stop()
        return bool(why)

    def _queue_suggestion(self, study: optuna.Study) -> None:
        """After a trial the sampler chose, the untried neighbour of the answer so far that the cost model predicts
        fastest runs next, if it is predicted faster than that answer: draws and predictions take turns."""
        if self.predictor is None or any(TrialRecord.of(t).suggested_near is not None for t in study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.WAITING,))):
            return  # one waits already (behind the presets): they take turns
        suggestion = self.predictor.suggestion()
        if suggestion is None:
            return
        study.enqueue_trial(suggestion.params, user_attrs=trial_attrs(suggested_near=suggestion.near))
        self.progress(f"next: {self.context.space.recipe_for(suggestion.params).label()}: {suggestion.describe()}")

    def _seconds_for_trials(self) -> tuple[float, float]:
        """What this run's budget leaves for trials once the front session is set aside, and a typical trial's
        seconds (inf, 0 without a budget or before any trial ran)."""
        if self._budget is None or self._budget.seconds is None or not self._durations:
            return math.inf, 0.0
        return self._budget.left - self.front_session_seconds(), statistics.median(self._durations)

    def front_session_seconds(self) -> float:
        """What the front session would cost now, at least (0 when the study does not re-time its front)."""
        if not self.config.remeasure_front:
            return 0.0
        from opsearch.search._remeasure import session_trials

        candidates = session_trials(self.study, self.accuracy_limit)
        return front_session_seconds(self.study, candidates, self.context.protocol, self.context.workload.samples)

    def _objective(self, trial: optuna.Trial) -> tuple[float, ...]:
        self._running, self._last, self._phase = trial, trial, "preparing the trial"
        try:
            measured = self._measure(trial)
        except optuna.exceptions.UpdateFinishedTrialError:  # another process finished it: see _taken_over
            raise optuna.TrialPruned("finished by another process meanwhile") from None
        except (optuna.TrialPruned, TrialFailed) as exc:
            if isinstance(exc, optuna.TrialPruned):
                record_constraint(trial, None, self.accuracy_limit)
            self._done_measuring()
            raise
        interval = TrialRecord.of(trial).accuracy_loss_ci
        loss = measured["accuracy_loss"]
        record_constraint(trial, loss if interval is None else interval[0], self.accuracy_limit)
        self._done_measuring()
        return tuple(measured[o.name] for o in objectives_of(self.config.objectives))

    def _done_measuring(self) -> None:
        """Nothing left to put back on a stop; what is left is Optuna's (storing the outcome), and a stop waits for it
        (see the callback). A stop while measuring (``StudyStopped``) never comes here: the trial is put back."""
        self._running = None
        hold_stops()

    def _measure(self, trial: optuna.Trial) -> dict[str, float]:
        """Every objective's value, by name (``store.objectives``); the study returns those it optimizes."""
        set_trial_attrs(trial, schema=SCHEMA_VERSION, worker=process_identity())  # first: a sweep reads it
        recipe = self._recipe(trial)
        self._predict(trial, recipe)
        self.progress.trial_started(trial.number, recipe.label())
        out_dir = self.cache_dir / "trials" / f"trial-{trial.number}"
        completed = self._completed()
        known = frozenset(TrialRecord.of(t).graph_hash for t in completed) - {""}
        rivals = self._rivals() if self.config.early_stop else ()
        drift = due_reference(self.study, self.context)
        try:
            outcome = self.executor.run(TrialJob(trial.number, recipe, out_dir, known, rivals, drift))
            if outcome.timing is not None:  # the first trial timed becomes the study's drift reference
                adopt_reference(self.study, trial.number, outcome.graph_hash, out_dir, self.cache_dir)
        except TrialFailed as exc:
            set_trial_attrs(trial, fail_reason=str(exc))
            raise
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        twin = next((t for t in completed if t.number != trial.number
                     and TrialRecord.of(t).graph_hash == outcome.graph_hash), None)
        earlier = measured_meanwhile(self.study, trial)
        if earlier is not None:  # another worker drew it at the same moment: the lower number's measurement stands
            reason = f"same configuration as trial {earlier.number} (drawn by another worker at the same moment)"
            set_trial_attrs(trial, fail_reason=reason, repeat_of=earlier.number)
            raise optuna.TrialPruned(reason)
        return self._recorder().record(trial, outcome, twin if outcome.repeats_known_graph else None)

    def _recipe(self, trial: optuna.Trial) -> QuantRecipe:
        """The trial's recipe from its parameters (and a queued fallback's extra exclusions); pruned when it is the
        fp32 model or repeats a finished trial's configuration."""
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
        return recipe

    def _predict(self, trial: optuna.Trial, recipe: QuantRecipe) -> None:
        """Store the trial's predicted speedup; prune it untimed when it cannot reach the front (search._predict).
        The starting points run before the cost model is built, and are never pruned by it; the other presets are
        predicted like a draw."""
        record = TrialRecord.of(trial)
        starting = bool(record.preset) and record.starting is not False  # None: a study from before the difference
        if self.predictor is None or not self.predictor.available(starting=starting, trials_left=self._trials_left,
                                                                  seconds_left=self._seconds_for_trials):
            return
        prediction = self.predictor.predict(recipe)
        set_trial_attrs(trial, **prediction_attrs(prediction))
        bar = None if starting else self.predictor.below(prediction)
        if bar is not None:
            reason = f"{prediction.describe()}: cannot reach {bar.describe()}"
            set_trial_attrs(trial, predicted_below=bar.trial, fail_reason=reason)
            self.progress(f"trial {trial.number}: {recipe.label()}: {reason}; pruned, not timed")
            raise optuna.TrialPruned(reason)

    def _recorder(self) -> OutcomeRecorder:
        record = self.record
        return OutcomeRecorder(self.fp32, record.reference_throughput, record.accuracy_batch_size, self.machine,
                               self.machine_id, self.config.seed)

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

    def _rivals(self) -> tuple[Rival, ...]:
        """Trials timed on this machine that stand against the limit (not over it): what racing compares with."""
        return tuple(Rival(r.trial, r.speedup_ci_low, r.accuracy_loss_pt / 100, r.size_mb)
                     for r in rows_timed_on(self.study, self.machine_id, max_accuracy_loss=self.accuracy_limit)
                     if r.feasible)

    def _completed(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(COMPLETE,))

    # Stops and progress -----------------------------------------------------------------------------------

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
        if isinstance(stop, StorageUnreachable):  # nothing can be written: its missed heartbeats will say it
            stop.reason += (f"; trial {trial.number} was {self._phase}: once the database is back, it is found stale "
                            "and queued again")
            self._running = None
            return
        record = TrialRecord.of(trial)
        set_trial_attrs(trial, interrupted=[*record.interrupted, f"{stop.reason} while {self._phase}"])
        queue_again(self.study, trial)
        shutil.rmtree(self.cache_dir / "trials" / f"trial-{trial.number}", ignore_errors=True)
        stop.reason += f"; trial {trial.number} was {self._phase} and is queued again, first"
        self._running = None

    def _report_trial(self, trial: optuna.trial.FrozenTrial, done: int, n_trials: int, started: float) -> None:
        rows = trial_rows(self.study, max_accuracy_loss=self.accuracy_limit)
        self.progress.trial_finished(trial_event(trial, rows, self.accuracy_limit, done=done, total=n_trials,
                                                 elapsed=time.perf_counter() - started,
                                                 metric=self.fp32.metric.title))


def _half_of_memory_mb() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**20 / 2
