"""How a study picks its next configuration: the sampler, its seed, and the accuracy constraint it respects."""

from __future__ import annotations

import numpy as np
import optuna

from opsearch.config import StudyConfig
from opsearch.search._space import params_key
from opsearch.store import TrialRecord, set_trial_attrs

# The accuracy constraint's name: Optuna stores it as the system attr "constraints:accuracy_loss", and opsearch
# copies its value to the trial record's ``constraints`` (a list, as Optuna's own key was), where people look.
CONSTRAINT_NAME = "accuracy_loss"


def record_constraint(trial: optuna.Trial, loss: float | None, limit: float | None) -> None:
    """``max_accuracy_loss`` as an Optuna constraint on the trial: loss minus limit (> 0: infeasible). The caller
    passes the lower end of the loss's interval where it has one: only a trial surely over the limit is steered
    away from; an uncertain one stays in play (see ``store.constraint_state``).

    Every sampler reads it back from the stored trials to steer away from configurations over the limit.
    A trial with no measured accuracy (a pruned repeat) gets 1.0: infeasible, since nothing shows it is
    within. Without a limit (``limit`` None) nothing is stored and the search is unconstrained.
    """
    if limit is None:
        return
    value = float(loss) - limit if loss is not None else 1.0
    trial.set_constraint(CONSTRAINT_NAME, value)
    set_trial_attrs(trial, constraints=[value])


def make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The sampler ``config.sampler`` names, seeded with ``config.seed``: same seed, same suggestions."""
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=config.seed, population_size=max(4, min(20, config.trials // 2)))
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=config.seed)
    return optuna.samplers.TPESampler(seed=config.seed, multivariate=True, group=True,
                                      n_startup_trials=min(10, max(4, config.trials // 2)))


def already_tried(study: optuna.Study, trial: optuna.trial.BaseTrial) -> optuna.trial.FrozenTrial | None:
    """A trial with exactly these parameters (and the same extra nodes kept in fp32, see
    ``sensitivity.enqueue_fallbacks``) that finished, or that another worker is measuring under a lower number, if
    any: the hook that prunes sampled repeats. (Two workers that sample at one moment from one history draw the same
    configuration; the lower number measures it, the other is pruned.)"""
    return _same_configuration(study, trial, (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))


def measured_meanwhile(study: optuna.Study, trial: optuna.trial.BaseTrial) -> optuna.trial.FrozenTrial | None:
    """After measuring: a trial with exactly these parameters (and extra fp32 nodes) that completed, or that another
    worker is measuring under a lower number. Two workers can pass ``already_tried`` at one moment, each before the
    other's parameters are all stored; checked again once measured, the higher number yields, so no configuration
    is stored measured twice. (A pruned twin does not count: it yielded already.)"""
    return _same_configuration(study, trial, (optuna.trial.TrialState.COMPLETE,))


def _same_configuration(study: optuna.Study, trial: optuna.trial.BaseTrial,
                        finished: tuple[optuna.trial.TrialState, ...]) -> optuna.trial.FrozenTrial | None:
    """The first other trial with ``trial``'s parameters and extra fp32 nodes that is in one of the ``finished``
    states, or RUNNING under a lower number."""
    running = optuna.trial.TrialState.RUNNING
    extra = TrialRecord.of(trial).nodes_to_exclude
    for other in study.get_trials(deepcopy=False, states=(*finished, running)):
        if other.state == running and other.number > trial.number:
            continue
        if (other.number != trial.number and other.params == trial.params
                and TrialRecord.of(other).nodes_to_exclude == extra):
            return other
    return None


def untried_configuration(study: optuna.Study, space, params: dict, *, seed: int,
                          attempts: int = 400) -> dict | None:
    """A configuration of ``space`` no trial of the study has run, is running or waits to run: first one parameter
    away from ``params`` (the sampler's repeated draw, where it believes the best lies), then anywhere. None when
    ``attempts`` draws found none (the space is, or nearly is, measured whole). The study queues it in place of a
    repeat, so that no finished configuration is measured, or drawn for nothing, twice."""
    tried = tried_keys(study)
    rng = np.random.default_rng(seed)
    for attempt in range(attempts):
        candidate = space.neighbour(params, rng) if attempt < attempts // 2 else space.random_params(rng)
        if candidate is not None and params_key(candidate) not in tried:
            return candidate
    return None


def tried_keys(study: optuna.Study) -> set[tuple]:
    """Every configuration the study has run, is running or waits to run, as sorted (name, value) pairs."""
    return {params_key(p) for p in _all_params(study)}


def _all_params(study: optuna.Study):
    for trial in study.get_trials(deepcopy=False):
        yield trial.params if trial.params else trial.system_attrs.get("fixed_params", {})


