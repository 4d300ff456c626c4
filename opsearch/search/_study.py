"""The study's entry points: run a study (new or not), resume a stored one, or join one as another worker.

All three go through :func:`_run`: the study opened (``search._open``), its fp32 baseline measured when new
(``search._baseline``), its trials run by a :class:`~opsearch.search.Runner`, the front re-timed in one session
(``search._remeasure``), and a write of the storage's own that finds the disk full said as such. The study stores
its config, search space, fp32 baseline, machine fingerprint and library versions in its
:class:`~opsearch.store.StudyRecord`, so that ``resume``, ``report`` and ``plot`` need nothing but the storage and
the study name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from opsearch._files import disk_full_error
from opsearch.config import METRIC_TITLES, StudyConfig
from opsearch.errors import OpsearchError, StudyError, TrialFailed
from opsearch.measure import EmbeddingTask, EvaluatorTask, evaluator_name, load_evaluator
from opsearch.search._baseline import measure_baseline, time_fp32_here
from opsearch.search._budget import Budget
from opsearch.search._context import StudyContext, load_config
from opsearch.search._open import open_study, queue_first_trials
from opsearch.search._progress import as_progress
from opsearch.search._runner import Runner
from opsearch.search._stops import stop_on_signals
from opsearch.store import SCHEMA_VERSION, StudyRecord, file_of, set_study_attrs

Progress = Callable[[str], None]
COMPLETE = optuna.trial.TrialState.COMPLETE


def create_runner(config: StudyConfig, *, progress: Progress = print, worker: bool = False) -> Runner:
    """Open or create the study, prepare its inputs, and measure the fp32 baseline if new.

    A ``worker`` joins a study another process runs (its sampler seeded apart). A new study refused for bad input
    (labels that do not match, a model at chance, ...) leaves nothing behind: its storage file and cache are
    removed if this call made them."""
    context = StudyContext(config, progress=as_progress(progress))
    study, backend, made = open_study(context, worker=worker)
    try:
        return _prepare(context, study)
    except OpsearchError:
        if made.study:
            made.undo(context, backend)
        raise


def _prepare(context: StudyContext, study: optuna.Study) -> Runner:
    config, progress = context.config, context.progress
    if not StudyRecord.of(study).complete:
        # First: a study stopped before its baseline is complete can be resumed with these settings.
        set_study_attrs(study, schema=SCHEMA_VERSION, opsearch_config=config.to_dict())
    if config.evaluator is not None:  # a bad name is refused before anything is exported or measured
        load_evaluator(config.evaluator)
    space = context.space  # the model, the data and the fusions are made here, before anything is timed
    task = context.task(study, fit_probe=True)
    runner = Runner(context, study, task)
    if not StudyRecord.of(study).complete:
        queue_first_trials(study, config, space, progress)
        measure_baseline(context, study, task, runner.machine)
        return runner
    # Embedding tasks need the fp32 embeddings again for the cosine, an evaluator its metric (and the check that it
    # still scores fp32 as it did); classifiers need nothing.
    if isinstance(task, EmbeddingTask):
        task.evaluate(context.fp32_session)
    if isinstance(task, EvaluatorTask):
        _evaluate_fp32_again(context, task, StudyRecord.of(study))
    time_fp32_here(context, study, runner.machine)
    record = StudyRecord.of(study)
    metric = METRIC_TITLES.get(record.metric, record.metric)
    progress(f"resuming {context.study_name!r}: {len(study.trials)} trials stored; fp32 {metric} "
             f"{record.baseline_accuracy:.4f}, {record.reference_throughput:.1f} samples/s")
    return runner


@dataclass(frozen=True)
class _Plan:
    """How many trials an entry point runs once its study is open, and what it does after them."""

    trials: Callable[[optuna.Study], int]
    worker: bool = False
    until_complete: int | None = None  # stop once the study holds this many completed trials (every worker's)
    nothing_to_do: str = ""  # said, instead of running, when ``trials`` is 0 (a worker whose study is done)


def _evaluate_fp32_again(context: StudyContext, task: EvaluatorTask, record: StudyRecord) -> None:
    """A resumed study's evaluator scores fp32 again; one that now scores it otherwise has changed since the study
    was made, and its losses would not compare with the stored ones: refused."""
    try:
        evaluation = task.evaluate(context.fp32_session)
    except TrialFailed as exc:
        raise StudyError(f"the study's evaluator fails on the fp32 model now: {exc}") from None
    stored = record.baseline["metrics"].get(record.metric)
    if evaluation.metric != record.metric or stored is None or abs(evaluation.score - stored) > 1e-6:
        raise StudyError(f"evaluator {context.config.evaluator} now scores the fp32 model {evaluation.metric} "
                         f"{evaluation.score:.6f}; the study stored {record.metric} {stored}: the evaluator (or its "
                         "data) changed since the study was made, so new losses would not compare with the stored "
                         "ones. Restore it, or start a new study with `opsearch run --study-name NEW`.")


def run_study(config: StudyConfig, *, n_trials: int | None = None, progress: Progress = print,
              evaluator: Callable | None = None) -> optuna.Study:
    """Create or continue the study ``config`` names, and run ``n_trials`` (default ``config.trials``) more.

    ``evaluator``: your own evaluation (see :mod:`opsearch.measure._evaluator`), a module-level function; the study
    stores its name (``config.evaluator``), so ``resume`` and ``worker`` load it again.

    SIGINT and SIGTERM stop it cleanly (:class:`~opsearch.errors.Interrupted`): the running trial goes back to the
    head of the queue, and :func:`resume_study` continues exactly there, in any phase."""
    if evaluator is not None:
        config = config.replace(evaluator=evaluator_name(evaluator))
    return _run(config, _Plan(lambda study: config.trials if n_trials is None else n_trials), progress=progress)


def resume_study(*, storage: str, study_name: str, n_trials: int | None = None, progress: Progress = print,
                 **overrides) -> optuna.Study:
    """Continue a stored study with the settings it was created with (``overrides``: runtime settings only):
    ``n_trials`` more trials, or (None) until it holds its ``trials`` completed trials, then the front session if
    the front was not re-timed since its last trial. A study stopped before its baseline was measured goes on
    from there."""
    with stop_on_signals():  # a stop while the stored settings are read is a stop too
        config = load_config(storage, study_name, measured=False, **overrides)
        return _run(config, _Plan(lambda study: n_trials if n_trials is not None else
                                  max(0, config.trials - len(_complete(study)))), progress=progress)


def run_worker(*, storage: str, study_name: str, n_trials: int | None = None, progress: Progress = print,
               **overrides) -> optuna.Study:
    """Join a study that `opsearch run` started, as one more worker: run ``n_trials`` trials, or (None) until
    the study holds its ``trials`` completed trials, counting every worker's. Workers never re-measure the
    front (run `opsearch remeasure` once they are done)."""
    config = load_config(storage, study_name, **overrides).replace(remeasure_front=False)
    if n_trials is not None:
        return _run(config, _Plan(lambda study: n_trials, worker=True), progress=progress)
    target = config.trials
    plan = _Plan(lambda study: max(0, target - len(_complete(study))), worker=True, until_complete=target,
                 nothing_to_do=f"study {study_name!r} already holds {{done}} completed trials (its target is "
                               f"{target}): nothing to do; pass --trials to run more.")
    return _run(config, plan, progress=progress)


def _run(config: StudyConfig, plan: _Plan, *, progress: Progress) -> optuna.Study:
    """Every entry point's one path: signals stop it cleanly, and a full disk under the storage is named."""
    try:
        with stop_on_signals():
            return _run_to_the_end(config, plan, progress=progress)
    except Exception as exc:  # the storage's own writes (SQLite: "database or disk is full")
        path = file_of(config.resolved_storage())
        full = disk_full_error(exc, where=path or Path("."), needed_bytes=None)
        if full is None:
            raise
        raise full from exc


def _run_to_the_end(config: StudyConfig, plan: _Plan, *, progress: Progress) -> optuna.Study:
    budget = Budget(config.timeout_seconds)  # the whole run: opening, baseline, trials and front session
    runner = create_runner(config, progress=progress, worker=plan.worker)
    try:
        todo = plan.trials(runner.study)
        if not todo and plan.nothing_to_do:
            runner.progress(plan.nothing_to_do.format(done=len(_complete(runner.study))))
        study = runner.optimize(todo, until_complete=plan.until_complete, budget=budget) if todo else runner.study
    finally:
        runner.close()
    if config.remeasure_front and (todo or _front_session_stale(study)):
        from opsearch.search._remeasure import remeasure_front

        remeasure_front(runner.context, study, max_seconds=None if budget.seconds is None else max(0.0, budget.left))
    return study


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(COMPLETE,))


def _front_session_stale(study: optuna.Study) -> bool:
    """Trials completed since the last front session (or there was none): the front has numbers to re-time."""
    session = StudyRecord.of(study).front_remeasured
    done = {t.number for t in _complete(study)}
    considered = session["considered"] if session else None  # None: every trial counts as seen
    return bool(done) and (not session or considered is not None and not done <= set(considered))
