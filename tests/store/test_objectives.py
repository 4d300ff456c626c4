"""opsearch.store's objectives: the front over any objectives a study optimizes, read by name, never by position."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from report_study import BASELINE, DISTRIBUTIONS, Spec, _attrs, _params

from opsearch.config import OBJECTIVES, StudyConfig
from opsearch.errors import ConfigError
from opsearch.report import build_report, choose_trial, format_report
from opsearch.store import (
    best_within,
    non_dominated,
    objectives_of,
    study_objectives,
    trial_rows,
)

REFERENCE = BASELINE["timing"]["throughput"]
# (throughput, loss, size MB, p99 ms): 0 fastest; 1 slower and less accurate than 0 but the smallest file;
# 2 beaten by 0 on everything; 3 the shortest tail.
POINTS = [(2.0 * REFERENCE, 0.002, 23.0, 9.0), (1.2 * REFERENCE, 0.004, 12.8, 11.0),
          (1.5 * REFERENCE, 0.003, 24.0, 10.0), (1.9 * REFERENCE, 0.003, 23.5, 6.0)]


def _study(path: Path, objectives: list[str]) -> optuna.Study:
    storage = f"sqlite:///{path}"
    chosen = objectives_of(objectives)
    study = optuna.create_study(study_name="objectives", storage=storage, directions=[o.direction for o in chosen])
    study.set_metric_names(objectives)
    study.set_user_attr("baseline", BASELINE)
    study.set_user_attr("opsearch_config", {"objectives": objectives})
    for i, (throughput, loss, size, p99) in enumerate(POINTS):
        attrs = _attrs(Spec(throughput, loss, f"h{i}", _params(per_channel=bool(i % 2), op_Gather=i > 1)))
        attrs["timing"]["latency_ms"] = {"p50": p99 / 3, "p95": p99 / 1.5, "p99": p99}
        measured = {"throughput": throughput, "accuracy_loss": loss, "size": size, "p50": p99 / 3,
                    "p95": p99 / 1.5, "p99": p99}
        params = _params(per_channel=bool(i % 2), op_Gather=i > 1)
        study.add_trial(optuna.trial.create_trial(
            values=[measured[name] for name in objectives], params=params,
            distributions={k: DISTRIBUTIONS[k] for k in params}, user_attrs={**attrs, "size_mb": size}))
    return optuna.load_study(study_name="objectives", storage=storage)


def test_non_dominated_over_any_number_of_objectives() -> None:
    points = [(2.0, 0.1, 20.0), (1.0, 0.2, 10.0), (1.5, 0.1, 25.0), (2.0, 0.1, 20.0)]
    directions = ("maximize", "minimize", "minimize")
    assert non_dominated(points, directions) == {0, 1, 3}  # 2 is beaten by 0; equal points beat neither
    assert non_dominated([p[:2] for p in points]) == {0, 3}  # (throughput, loss) alone: the small file is beaten


@pytest.mark.parametrize(("objectives", "front"), [
    (["throughput", "accuracy_loss"], {0}),
    (["throughput", "accuracy_loss", "size"], {0, 1}),
    (["size", "accuracy_loss"], {0, 1}),
    (["throughput", "accuracy_loss", "p99"], {0, 3}),
])
def test_the_front_is_taken_over_the_objectives_the_study_optimizes(tmp_path: Path, objectives, front) -> None:
    study = _study(tmp_path / "s.db", objectives)
    assert [o.name for o in study_objectives(study)] == objectives
    rows = trial_rows(study)
    assert {r.trial for r in rows if r.pareto} == front
    # Every row reads its values by name, whatever order Optuna keeps them in.
    for r, (throughput, loss, size, p99) in zip(rows, POINTS, strict=True):
        assert (r.samples_per_s, r.accuracy_loss_pt, r.size_mb, r.latency_p99_ms) == pytest.approx(
            (throughput, 100 * loss, size, p99))


def test_best_within_by_another_objective_and_the_report_says_it(tmp_path: Path) -> None:
    study = _study(tmp_path / "s.db", ["throughput", "accuracy_loss", "size"])
    rows = trial_rows(study, max_accuracy_loss=0.01)
    assert best_within(rows, 0.01).trial == 0
    assert best_within(rows, 0.01, objective="size").trial == 1
    assert best_within(rows, 0.003, objective="size").trial == 0  # trial 1 loses too much: the next smallest
    assert choose_trial(study, max_accuracy_loss=0.01, by="size") == 1  # what `export --best --by size` writes
    text = format_report(build_report(study, max_accuracy_loss=0.01))
    assert "optimizes throughput (samples/s), accuracy loss vs fp32 (points), model file (MB)" in text
    assert "smallest file within 1.00 pt: trial 1, 12.8 MB" in text


def test_the_objectives_a_study_can_optimize() -> None:
    # A study stored before the choice optimizes throughput and accuracy loss: test_migrate.py.
    assert set(OBJECTIVES) == {"throughput", "accuracy_loss", "size", "p50", "p95", "p99"}


@pytest.mark.parametrize("objectives", [["throughput"], ["size", "size"], ["throughput", "speed"]])
def test_one_objective_a_repeat_or_an_unknown_one_is_refused_by_name(objectives) -> None:
    with pytest.raises(ConfigError, match="objectives"):
        StudyConfig(model="m", dataset="d", objectives=objectives)
