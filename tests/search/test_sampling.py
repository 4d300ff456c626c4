"""opsearch.search._sampling: samplers chosen and seeded from the config, and the accuracy constraint."""

from __future__ import annotations

import optuna
import pytest

from opsearch.config import StudyConfig
from opsearch.quantize import GraphInfo, OperatorInfo
from opsearch.search import SearchSpace, already_tried, make_sampler, record_constraint
from opsearch.store import TrialRecord


def _config(**changes) -> StudyConfig:
    return StudyConfig(model="m", dataset="d.csv", **changes)


def _space() -> SearchSpace:
    ops = [OperatorInfo(n, 1, {"dynamic": True, "static_qoperator": True, "static_qdq": True})
           for n in ("MatMul", "Gather", "Attention")]
    return SearchSpace.from_graph(GraphInfo("x", ops), modes=["dynamic", "static"], fusions=["none", "O2"],
                                  fused={"O2": GraphInfo("f", ops)}, formats=["QOperator", "QDQ"],
                                  exclude_fragile=[False, True])


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random"])
def test_same_seed_same_suggestions(name: str) -> None:
    space = _space()

    def first_params(seed: int) -> list[dict]:
        study = optuna.create_study(directions=["maximize", "minimize"],
                                    sampler=make_sampler(_config(sampler=name, seed=seed, trials=8)))
        study.optimize(lambda t: (len(space.suggest(t).operators_to_quantize) + t.number, 0.1 * t.number),
                       n_trials=12)
        return [t.params for t in study.trials]

    assert first_params(7) == first_params(7)
    assert first_params(7) != first_params(8)


def test_constraint_is_loss_minus_limit_and_stored() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    limit = _config(max_accuracy_loss="1%rel").accuracy_limit(0.9)
    measured, unmeasured, unlimited = study.ask(), study.ask(), study.ask()
    record_constraint(measured, 0.02, limit)
    record_constraint(unmeasured, None, limit)  # nothing measured: not shown feasible
    record_constraint(unlimited, 0.02, None)
    trials = study.get_trials()
    assert trials[0].constraints == {"accuracy_loss": pytest.approx(0.011)}
    assert TrialRecord.of(trials[0]).constraints == [pytest.approx(0.011)]
    assert trials[1].constraints == {"accuracy_loss": 1.0}
    assert trials[2].constraints == {} and TrialRecord.of(trials[2]).constraints is None


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random"])
def test_under_every_sampler_optuna_keeps_infeasible_trials_off_its_front(name: str) -> None:
    # The last trial is the fastest and loses the least but one: unconstrained, it would dominate the others.
    config = _config(sampler=name, max_accuracy_loss=0.01, trials=8)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(config))
    losses = [0.0, 0.005, 0.009, 0.011]

    def objective(trial: optuna.Trial):
        trial.suggest_categorical("x", [0, 1, 2, 3])
        loss = losses[trial.number]
        record_constraint(trial, loss, config.accuracy_limit(0.9))
        return 1.0 + trial.number, loss

    study.optimize(objective, n_trials=4)
    assert [t.constraints["accuracy_loss"] for t in study.trials] == pytest.approx([-0.01, -0.005, -0.001, 0.001])
    assert sorted(t.number for t in study.best_trials) == [0, 1, 2]
    unconstrained = optuna.create_study(directions=["maximize", "minimize"])
    unconstrained.add_trials([optuna.trial.create_trial(values=t.values) for t in study.trials])
    assert 3 in [t.number for t in unconstrained.best_trials]  # the constraint, not the values, drops trial 3


def test_already_tried_finds_an_exact_repeat() -> None:
    study = optuna.create_study()
    study.enqueue_trial({"x": 1})
    study.enqueue_trial({"x": 1})
    study.enqueue_trial({"x": 2})
    study.optimize(lambda t: t.suggest_int("x", 0, 3) or 0.0, n_trials=3)
    first, second, third = study.trials
    assert already_tried(study, second).number == first.number
    assert already_tried(study, third) is None


def test_two_workers_that_drew_one_configuration_at_once_store_it_once() -> None:
    """Both passed already_tried before the other's parameters were stored. Checked again once measured: the
    higher number yields to the lower one, running or complete, and a yielded (pruned) twin yields to no one."""
    from opsearch.search._sampling import measured_meanwhile

    study = optuna.create_study()
    x = optuna.distributions.IntDistribution(0, 3)
    low, high, other = study.ask(), study.ask(), study.ask()
    for trial, value in ((low, 1), (high, 1), (other, 2)):
        study._storage.set_trial_param(trial._trial_id, "x", value, x)
    def seen(trial):  # as the worker's own trial reads once its parameters are drawn
        return measured_meanwhile(study, study.trials[trial.number])

    assert seen(low) is None  # the twin runs under a higher number
    assert seen(high).number == low.number
    assert seen(other) is None
    study.tell(high, state=optuna.trial.TrialState.PRUNED)
    assert seen(low) is None  # its twin yielded: it stands
    study.tell(low, 1.0)
    late = study.ask()
    study._storage.set_trial_param(late._trial_id, "x", 1, x)
    assert seen(late).number == low.number  # a completed one stands before anything later
