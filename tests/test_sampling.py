"""opsearch.sampling: samplers chosen and seeded from the config, and the accuracy constraint."""

from __future__ import annotations

import optuna
import pytest

from opsearch.config import StudyConfig
from opsearch.graph import GraphInfo, OperatorInfo
from opsearch.sampling import CONSTRAINTS_KEY, AccuracyConstraint, already_tried, make_sampler
from opsearch.space import SearchSpace


def _config(**changes) -> StudyConfig:
    return StudyConfig(model="m", dataset="d.csv", **changes)


def _space() -> SearchSpace:
    ops = [OperatorInfo(n, 1, {"dynamic": True, "static_qoperator": True, "static_qdq": True})
           for n in ("MatMul", "Gather", "Attention")]
    return SearchSpace.from_graph(GraphInfo("x", ops), modes=["dynamic", "static"], fusions=["none", "O2"],
                                  fused={"O2": GraphInfo("f", ops)}, formats=["QOperator", "QDQ"],
                                  exclude_fragile=[False, True])


def test_optuna_constraints_key_is_ours() -> None:
    from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

    assert CONSTRAINTS_KEY == _CONSTRAINTS_KEY


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
    constraint = AccuracyConstraint(_config(max_accuracy_loss="1%rel"))
    constraint.set_baseline(study, 0.9)
    assert constraint.limit == pytest.approx(0.009)
    trial = study.ask()
    trial.set_user_attr("accuracy_loss", 0.02)
    frozen = study.trials[trial.number]
    assert constraint(frozen) == [pytest.approx(0.011)]
    assert study.trials[trial.number].user_attrs[CONSTRAINTS_KEY] == [pytest.approx(0.011)]
    unmeasured = study.ask().number
    assert constraint(study.trials[unmeasured]) == [1.0]  # nothing measured: not shown feasible


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random"])
def test_sampler_records_feasibility(name: str) -> None:
    config = _config(sampler=name, max_accuracy_loss=0.01)
    constraint = AccuracyConstraint(config)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(config, constraint))
    constraint.set_baseline(study, 0.9)

    def objective(trial: optuna.Trial):
        trial.suggest_categorical("x", [0, 1, 2, 3])
        loss = 0.005 * trial.number
        trial.set_user_attr("accuracy_loss", loss)
        return 1.0, loss

    study.optimize(objective, n_trials=4)
    assert [t.user_attrs[CONSTRAINTS_KEY][0] for t in study.trials] == pytest.approx([-0.01, -0.005, 0.0, 0.005])
    assert study.trials[3].system_attrs[CONSTRAINTS_KEY] == pytest.approx((0.005,))


def test_already_tried_finds_an_exact_repeat() -> None:
    study = optuna.create_study()
    study.enqueue_trial({"x": 1})
    study.enqueue_trial({"x": 1})
    study.enqueue_trial({"x": 2})
    study.optimize(lambda t: t.suggest_int("x", 0, 3) or 0.0, n_trials=3)
    first, second, third = study.trials
    assert already_tried(study, second).number == first.number
    assert already_tried(study, third) is None
