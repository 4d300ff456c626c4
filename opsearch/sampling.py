"""How a study picks its next configuration: the sampler, its seed, and the accuracy constraint it respects."""

from __future__ import annotations

from collections.abc import Sequence

import optuna

from opsearch.config import StudyConfig
from opsearch.sensitivity import EXCLUDE_ATTR

# Where Optuna keeps a trial's constraint values (optuna.study._constrained_optimization._CONSTRAINTS_KEY);
# opsearch stores the same list under this name as a user attribute, for reports.
CONSTRAINTS_KEY = "constraints"


class AccuracyConstraint:
    """``max_accuracy_loss`` as Optuna's constraints function: one value, loss minus limit (> 0: infeasible).

    The limit needs the fp32 accuracy, known once the baseline is measured (``set_baseline``). A trial
    with no measured accuracy (pruned, failed) gets 1.0: infeasible, since nothing shows it is within.
    """

    def __init__(self, config: StudyConfig) -> None:
        self.config = config
        self.limit: float | None = None
        self.study: optuna.Study | None = None

    def set_baseline(self, study: optuna.Study, baseline_accuracy: float) -> None:
        self.study = study
        self.limit = self.config.accuracy_limit(baseline_accuracy)

    def __call__(self, trial: optuna.trial.FrozenTrial) -> Sequence[float]:
        loss = trial.user_attrs.get("accuracy_loss")
        if self.limit is None:
            values = [0.0]
        else:
            values = [float(loss) - self.limit if loss is not None else 1.0]
        if self.study is not None:
            self.study._storage.set_trial_user_attr(trial._trial_id, CONSTRAINTS_KEY, values)
        return values


def make_sampler(config: StudyConfig, constraint: AccuracyConstraint | None = None) -> optuna.samplers.BaseSampler:
    """The sampler ``config.sampler`` names, seeded with ``config.seed``: same seed, same suggestions."""
    constraints_func = constraint if constraint is not None and config.max_accuracy_loss is not None else None
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=config.seed, constraints_func=constraints_func,
                                             population_size=max(4, min(20, config.trials // 2)))
    if config.sampler == "random":
        return _ConstrainedRandomSampler(seed=config.seed, constraints_func=constraints_func)
    return optuna.samplers.TPESampler(seed=config.seed, multivariate=True, group=True,
                                      n_startup_trials=min(10, max(4, config.trials // 2)),
                                      constraints_func=constraints_func)


class _ConstrainedRandomSampler(optuna.samplers.RandomSampler):
    """Random sampling ignores constraints, but the study still records them (feasible fronts, reports)."""

    def __init__(self, *, seed: int | None, constraints_func) -> None:
        super().__init__(seed=seed)
        self._constraints_func = constraints_func

    def after_trial(self, study, trial, state, values) -> None:
        if self._constraints_func is not None and state in (optuna.trial.TrialState.COMPLETE,
                                                            optuna.trial.TrialState.PRUNED):
            study._storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_KEY,
                                                 tuple(self._constraints_func(trial)))
        super().after_trial(study, trial, state, values)


def already_tried(study: optuna.Study, trial: optuna.trial.BaseTrial) -> optuna.trial.FrozenTrial | None:
    """An earlier finished trial with exactly these parameters (and the same extra nodes kept in fp32, see
    ``sensitivity.enqueue_fallbacks``), if any: the hook that prunes sampled repeats."""
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    extra = trial.user_attrs.get(EXCLUDE_ATTR)
    for other in study.get_trials(deepcopy=False, states=finished):
        if (other.number != trial.number and other.params == trial.params
                and other.user_attrs.get(EXCLUDE_ATTR) == extra):
            return other
    return None
