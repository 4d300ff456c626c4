"""Opening a study: create it or load it, refuse a stored study whose settings changed, sweep the trials a dead
process left running, queue a new study's first trials, and undo a new study that its inputs refused.

A new study refused for bad input (labels that do not match, a model at chance, ...) leaves nothing behind: its
storage file, the folders made for it and its cache are removed if this process made them (:class:`NewStudy`).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import optuna

from opsearch.config import StudyConfig
from opsearch.errors import StudyError
from opsearch.search._context import StudyContext
from opsearch.search._presets import presets
from opsearch.search._sampling import make_sampler
from opsearch.search._space import SearchSpace
from opsearch.store import (
    StudyRecord,
    TrialRecord,
    fail_orphan,
    file_of,
    objectives_of,
    open_storage,
    queue_retry,
    trial_attrs,
)

Progress = Callable[[str], None]
# Enumerating the space queues every recipe; above this many, sampling it is the only way.
MAX_ENUMERATED = 5000
# A RUNNING trial that never said which process runs it is taken for an orphan only after this long.
ORPHAN_SECONDS = 60


@dataclass
class NewStudy:
    """What opening a study made that was not there before: undone if the new study is refused."""

    storage_file: Path | None
    file: bool
    cache: bool
    folders: list[Path] = field(default_factory=list)  # the storage file's missing folders, innermost first
    study: bool = False

    @classmethod
    def before(cls, context: StudyContext) -> NewStudy:
        path = file_of(context.storage)
        return cls(path, path is not None and not path.exists(), not context.cache_dir.exists(),
                   [f for f in (path.parents if path is not None else ()) if not f.exists()])

    def undo(self, context: StudyContext, backend: optuna.storages.BaseStorage) -> None:
        """Remove the refused new study, and its storage file, folders and cache if this process made them."""
        optuna.delete_study(study_name=context.study_name, storage=backend)
        if self.cache:
            shutil.rmtree(context.cache_dir, ignore_errors=True)
        path = self.storage_file
        if not self.file or path is None or optuna.get_all_study_summaries(backend, include_best_trial=False):
            return
        if hasattr(backend, "engine"):
            backend.engine.dispose()
        for leftover in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + ".lock")):
            leftover.unlink(missing_ok=True)
        for folder in self.folders:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def open_study(context: StudyContext, *, worker: bool) -> tuple[optuna.Study, optuna.storages.BaseStorage, NewStudy]:
    """Load the study ``context`` names (refused if its settings changed; orphans swept) or create it.

    A ``worker`` joins a study another process runs: its sampler is seeded apart, so that workers do not all
    suggest the same next configuration."""
    config = context.config
    made = NewStudy.before(context)
    backend = open_storage(context.storage, patience=config.storage_patience_seconds, say=context.progress)
    sampler = make_sampler(config.replace(seed=config.seed + os.getpid()) if worker else config)
    names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
    made.study = context.study_name not in names
    if not made.study:
        study = optuna.load_study(study_name=context.study_name, storage=backend, sampler=sampler)
        check_same_study(study, config)
        sweep_interrupted(study, context.progress, context.cache_dir)
    else:
        study = optuna.create_study(study_name=context.study_name, storage=backend, sampler=sampler,
                                    directions=[o.direction for o in objectives_of(config.objectives)])
        study.set_metric_names(list(config.objectives))
    return study, backend, made


def check_same_study(study: optuna.Study, config: StudyConfig) -> None:
    """Refuse to add trials to a stored study made with other identity settings: they would not be comparable."""
    record = StudyRecord.of(study)
    if not record.complete:
        return  # created but its baseline never finished: nothing measured to protect
    changed = config.identity_changes(record.opsearch_config)
    if changed:
        raise StudyError(f"study {study.study_name!r} already exists with other settings ({', '.join(changed)}). "
                         "Its trials would not be comparable: pass a new --study-name, or use "
                         "`opsearch resume` to continue it as it was.")


def queue_first_trials(study: optuna.Study, config: StudyConfig, space: SearchSpace, progress: Progress) -> None:
    """A new study's first trials: the presets, then every recipe once when the space is small enough to try whole
    (``enumerate``)."""
    for preset in presets(space, sweep_operators=config.sweep_operators):
        study.enqueue_trial(preset.params, user_attrs=trial_attrs(preset=preset.name, starting=preset.starting),
                            skip_if_exists=True)
    size = space.size()
    if config.enumerate == "off" or (config.enumerate == "auto" and size > config.trials):
        return
    if size > MAX_ENUMERATED:
        raise StudyError(f"enumerate=\"on\" but the space holds {size} recipes (more than {MAX_ENUMERATED}): "
                         "narrow it (modes, fusions, formats, ...) or set enumerate = \"auto\".")
    for params in space.enumerate_params():
        study.enqueue_trial(params, skip_if_exists=True)
    progress(f"search space: all {size} recipes queued, each once")


def process_identity() -> dict:
    """Which process runs a trial: a trial left RUNNING by a dead process on this host can be swept at once."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def sweep_interrupted(study: optuna.Study, progress: Progress, cache_dir: Path) -> None:
    """Trials left RUNNING by a process that died are marked failed and their configuration queued again.

    A trial records the host and pid running it: on this host, a dead pid is proof enough, at once. A trial
    of another host (or one too young to say) is left to the storage's heartbeat, which fails it once its
    process stops beating; a live process's trial is never touched. Processes starting together may both find
    the same dead trial: the first marks it failed and queues it, the others step aside.
    """
    here, now = socket.gethostname(), datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        runs_it = TrialRecord.of(trial).worker
        if runs_it is not None:
            if runs_it.get("host") != here or _alive(int(runs_it.get("pid", -1))):
                continue
        elif trial.datetime_start is None or (now - trial.datetime_start).total_seconds() < ORPHAN_SECONDS:
            continue  # another process may have just asked for it
        if not fail_orphan(study, trial, fail_reason="interrupted: the process running it stopped"):
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
