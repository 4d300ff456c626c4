"""Predicted speed in the search: the bar a configuration must reach, the prune of one that cannot (untimed, its
reason kept, not counted), the stop when nothing untried can reach the bar, and the model built once per study and
machine. Kernel times are injected where a test needs a prediction on one side of the bar; one study builds the
model for real."""

from __future__ import annotations

import math
from pathlib import Path

import onnx
import optuna
import pytest
from conftest import fast_settings
from report_study import BASELINE, Spec, _params, make_study

from opsearch.config import StudyConfig
from opsearch.measure import CostModel
from opsearch.measure._cost import GraphCost
from opsearch.measure._kernels import GEMM, MATMUL_W, node_classes
from opsearch.quantize import QuantRecipe, find_groups
from opsearch.search import StudyContext, _predict, resume_study, run_study
from opsearch.search._predict import Bar, Predictor
from opsearch.store import TrialRecord, set_study_attrs

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
REFERENCE = BASELINE["timing"]["throughput"]


def _timed(speedup: float, machine: str = "here", **extra) -> dict:
    return {"timing": {"speedup": speedup, "speedup_ci": [speedup - 0.05, speedup + 0.05], "ci_halfwidth": 0.05,
                       "rounds": 10}, "machine_id": machine, **extra}


def test_the_bar_is_the_fastest_trial_timed_here_that_lost_no_accuracy(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s.db", [
        Spec(2.0 * REFERENCE, 0.0, "a", _params(), extra_attrs=_timed(2.0)),  # the bar
        Spec(2.6 * REFERENCE, 0.004, "b", _params(op_Gather=True), extra_attrs=_timed(2.6)),  # faster, lossy
        Spec(1.8 * REFERENCE, -0.001, "c", _params(per_channel=True), extra_attrs=_timed(1.8)),  # slower
        Spec(3.0 * REFERENCE, 0.0, "d", _params(reduce_range=True), extra_attrs=_timed(3.0, "elsewhere")),
    ])
    config = StudyConfig(model="m", dataset="d", storage=f"sqlite:///{tmp_path / 's.db'}")
    predictor = Predictor(StudyContext(config, progress=lambda line: None), study, "here")
    assert predictor.bar() == Bar(0, pytest.approx(1.95))
    # A study that also optimizes size: a slower model may be smaller, so speed alone prunes nothing.
    sized = StudyConfig(model="m", dataset="d", storage=config.storage, objectives=["throughput", "accuracy_loss",
                                                                                    "size"])
    assert Predictor(StudyContext(sized, progress=lambda line: None), study, "here").bar() is None


def _model(path: Path, factor: float, per_channel: float | None = None) -> CostModel:
    """A cost model of the tiny graph with made-up times: 1 ms per quantizable node, 2 ms for the rest; every kind
    of quantized kernel ``factor`` times its fp32 node (``per_channel`` for the per-channel kinds, if given)."""
    graph = onnx.load(str(path))
    classes = node_classes(graph)
    node_s = dict.fromkeys(classes, 1e-3)
    kernel = sum(node_s.values()) + 2e-3
    kinds = [f"dynamic/{MATMUL_W}/{flavor}" for flavor in ("s8", "s8/pc", "u8", "u8/pc")]
    kinds += [f"dynamic/{cls}" for cls in set(classes.values()) - {MATMUL_W, GEMM}]
    g = GraphCost("none", node_s, classes, kernel, kernel, find_groups(graph).to_dict(), 0.0)
    return CostModel({"none": g}, {f"none|{k}": per_channel if per_channel and "/pc" in k else factor
                                   for k in kinds})


def _tiny(tmp_path: Path, model: Path, data: Path, **extra) -> StudyConfig:
    return StudyConfig(model=str(model), dataset=str(data), storage=f"sqlite:///{tmp_path / 'study.db'}",
                       study_name="predict", **fast_settings(modes=["dynamic"], **extra))


def test_the_study_stops_when_no_untried_configuration_can_reach_the_bar_and_not_when_one_can(
        tmp_path, tiny_checkpoint, tiny_csv, monkeypatch) -> None:
    context = StudyContext(_tiny(tmp_path, tiny_checkpoint, tiny_csv), progress=lambda line: None)
    study = optuna.create_study(directions=["maximize", "minimize"])
    predictor = Predictor(context, study, "here")
    predictor.model = _model(context.model.onnx_path, factor=0.5)  # every int8 kernel twice as fast as fp32's
    speeds = [predictor.model.predict(context.space.recipe_for(p)) for p in context.space.enumerate_params()]
    top = max(p.high for p in speeds if p is not None)
    assert all(p is not None for p in speeds) and top > 1  # the injected model covers the whole space
    monkeypatch.setattr(predictor, "bar", lambda: Bar(0, top * 1.01))
    assert "no untried configuration of the space can reach trial 0's" in predictor.why_stop()
    monkeypatch.setattr(predictor, "bar", lambda: Bar(0, top * 0.99))  # the fastest could still reach it
    assert predictor.why_stop() == ""
    # Once every configuration predicted that fast is tried (here: queued), the next fastest decides.
    tops = sorted({p.high for p in speeds})
    assert len(tops) >= 2
    monkeypatch.setattr(predictor, "bar", lambda: Bar(0, (tops[-2] + tops[-1]) / 2))
    assert predictor.why_stop() == ""
    for params, prediction in zip(context.space.enumerate_params(), speeds, strict=True):
        if prediction.high == tops[-1]:
            study.enqueue_trial(params)
    assert f"the highest predicted is {tops[-2]:.2f}x at most" in predictor.why_stop()


def test_the_model_waits_for_a_bar_it_could_prune_below(tmp_path, tiny_checkpoint, tiny_csv, monkeypatch) -> None:
    lines: list[str] = []
    context = StudyContext(_tiny(tmp_path, tiny_checkpoint, tiny_csv), progress=lines.append)
    predictor = Predictor(context, optuna.create_study(directions=["maximize", "minimize"]), "here")
    monkeypatch.setattr(predictor, "bar", lambda: None)  # no trial timed here lost no accuracy yet
    assert not predictor.available(starting=False, trials_left=50)
    assert not predictor.available(starting=False, trials_left=50)
    assert sum("cost model: not built yet" in line for line in lines) == 1  # said once
    monkeypatch.setattr(predictor, "bar", lambda: Bar(0, 1.5))
    assert predictor.available(starting=False, trials_left=50)
    assert not predictor.available(starting=True, trials_left=50)  # the starting points run unpredicted
    assert not predictor.available(starting=False, trials_left=_predict.MIN_TRIALS_LEFT - 1)
    # a time budget that fits the model's build and a few trials after it, or not
    need = (_predict.MIN_TRIALS_LEFT + _predict.BUILD_TRIALS) * 20.0
    assert predictor.available(starting=False, trials_left=50, seconds_left=lambda: (need + 1, 20.0))
    assert not predictor.available(starting=False, trials_left=50, seconds_left=lambda: (need - 1, 20.0))
    assert sum("cost model: not built for" in line for line in lines) == 1


def test_the_model_is_recalibrated_on_the_trials_timed_on_this_machine(tmp_path, tiny_onnx) -> None:
    recipe = {"mode": "dynamic", "operators_to_quantize": ["MatMul"]}
    model = _model(tiny_onnx.onnx_path, factor=0.5)
    raw = model.predict(QuantRecipe.from_dict(recipe)).raw
    # Six trials here measured 1.2x the raw prediction; one elsewhere measured 3x (another machine: left out).
    specs = [Spec(REFERENCE, 0.0, f"h{i}", _params(reduce_range=bool(i % 2), per_channel=i > 2),
                  extra_attrs={**_timed(1.2 * raw), "recipe": recipe, "speedup": 1.2 * raw}) for i in range(6)]
    specs.append(Spec(REFERENCE, 0.0, "h6", _params(op_Gather=True),
                      extra_attrs={**_timed(3 * raw, "elsewhere"), "recipe": recipe, "speedup": 3 * raw}))
    study = make_study(tmp_path / "s.db", specs)
    set_study_attrs(study, cost_models={"here": model.to_dict()})
    config = StudyConfig(model="m", dataset="d", storage=f"sqlite:///{tmp_path / 's.db'}")
    predictor = Predictor(StudyContext(config, progress=lambda line: None), study, "here")
    assert predictor.checks() == [] and predictor.ready() is not None  # read back, not built
    assert predictor.checks() == [pytest.approx((raw, 1.2 * raw))] * 6
    assert predictor.model.bias == pytest.approx(math.log(1.2))
    assert predictor.predict(QuantRecipe.from_dict(recipe)).speedup == pytest.approx(1.2 * raw)


def test_a_larger_space_stops_after_a_run_of_draws_that_could_not_reach_the_bar(
        tmp_path, tiny_checkpoint, tiny_csv, monkeypatch) -> None:
    context = StudyContext(_tiny(tmp_path, tiny_checkpoint, tiny_csv), progress=lambda line: None)
    predictor = Predictor(context, optuna.create_study(directions=["maximize", "minimize"]), "here")
    predictor.model = _model(context.model.onnx_path, factor=0.5)
    monkeypatch.setattr(predictor, "bar", lambda: Bar(3, 1.5))
    monkeypatch.setattr(_predict, "SPEED_INDEX_MAX", 0)  # too large to check whole
    for i in range(_predict.PATIENCE):
        assert predictor.why_stop() == ""
        predictor.counted(TrialRecord(predicted_below=3) if i % 2 else TrialRecord(repeat_of=1))
    assert f"last {_predict.PATIENCE} draws" in predictor.why_stop()
    predictor.counted(TrialRecord())  # a timed trial starts the count again
    assert predictor.why_stop() == ""


def test_a_sampled_configuration_that_cannot_reach_the_bar_is_pruned_untimed_and_the_study_stops(
        tmp_path, tiny_checkpoint, tiny_csv, monkeypatch) -> None:
    built = []

    def build(self):  # the injected model, stored as a built one is
        built.append(1)
        model = _model(self.context.model.onnx_path, factor=20.0)  # every int8 kernel 20x slower: all below 1x
        set_study_attrs(self.study, cost_models={self.machine_id: model.to_dict()})
        return model

    monkeypatch.setattr(Predictor, "_build", build)
    # The tiny model's timings would rightly recalibrate the made-up kernel times away (tested on its own below).
    monkeypatch.setattr(Predictor, "checks", lambda self: [])
    # The bar: the first trial timed, whatever its loss (the bar's rule is tested above on stored trials).
    monkeypatch.setattr(Predictor, "bar", lambda self: next(
        (Bar(t.number, 1.0) for t in self.study.get_trials(states=(COMPLETE,))), None))
    lines: list[str] = []
    study = run_study(_tiny(tmp_path, tiny_checkpoint, tiny_csv, predict=True, remeasure_front=False), n_trials=20,
                      progress=lines.append)
    ran = [t for t in study.trials if t.state != optuna.trial.TrialState.WAITING]
    starting = [t for t in ran if TrialRecord.of(t).starting]
    assert starting and all(t.state == COMPLETE and TrialRecord.of(t).predicted is None for t in starting)
    pruned = [t for t in ran if TrialRecord.of(t).predicted_below is not None]
    assert len(pruned) == 1 and len(ran) == len(starting) + 1  # one configuration pruned, then the stop
    # The first preset after the starting points is predicted like a draw: a dominated preset does not run.
    assert TrialRecord.of(pruned[0]).preset and TrialRecord.of(pruned[0]).starting is False
    assert any(TrialRecord.of(t).preset for t in study.trials if t.state == optuna.trial.TrialState.WAITING)
    record = TrialRecord.of(pruned[0])
    assert pruned[0].state == PRUNED and not record.timing and record.quantize_seconds is None  # never quantized
    assert record.predicted["high"] < 1.0 and record.fail_reason.startswith("predicted ")
    assert "cannot reach trial 0's" in record.fail_reason
    assert any("pruned, not timed" in line for line in lines)
    assert any("no untried configuration of the space can reach" in line for line in lines)
    assert built == [1]
    # Resumed, the stored model is read back, not built again; the new draw is pruned as well, then the stop.
    resumed = resume_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="predict", n_trials=5,
                           progress=lines.append)
    assert built == [1]
    assert len([t for t in resumed.trials if TrialRecord.of(t).predicted_below is not None]) >= 2


def test_a_study_builds_its_cost_model_once_and_predicts_every_trial_after_its_starting_points(
        tmp_path, tiny_checkpoint, tiny_csv) -> None:
    from opsearch.report import build_report, render

    lines: list[str] = []
    queued = run_study(_tiny(tmp_path, tiny_checkpoint, tiny_csv, predict=True, remeasure_front=False),
                       n_trials=0, progress=lines.append).get_trials(states=(optuna.trial.TrialState.WAITING,))
    n_starting = sum(bool(TrialRecord.of(t).starting) for t in queued)
    assert 0 < n_starting < len(queued)  # optimum's presets follow the starting points
    # A run with too few trials left after its starting points goes without: building costs a few trials' time.
    first_run = n_starting + _predict.MIN_TRIALS_LEFT - 1
    study = resume_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="predict",
                         n_trials=first_run, progress=lines.append)
    assert "cost_models" not in study.user_attrs and any("cost model: not built" in line for line in lines)
    assert all(TrialRecord.of(t).predicted is None for t in study.trials)
    study = resume_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="predict",
                         n_trials=_predict.MIN_TRIALS_LEFT, progress=lines.append)
    stored = study.user_attrs["cost_models"]
    assert len(stored) == 1 and sum("cost model: " in line and "probes in" in line for line in lines) == 1
    model = CostModel.from_dict(next(iter(stored.values())))
    assert model.factors and all(f > 0 for f in model.factors.values())
    after = [t for t in study.trials[first_run:] if t.state == COMPLETE
             or TrialRecord.of(t).predicted_below is not None]  # not a repeat nor the fp32 model
    assert after and all(TrialRecord.of(t).predicted is not None for t in after)
    for t in after:
        p = TrialRecord.of(t).predicted
        assert 0 < p["low"] <= p["speedup"] <= p["high"] and math.isfinite(p["high"])
    text = render(build_report(study), None, "text")
    assert "predicted speed" in text and "pruned untimed" in text


def test_after_each_sampled_trial_the_fastest_predicted_neighbour_of_the_answer_runs_next(
        tmp_path, tiny_checkpoint, tiny_csv, monkeypatch) -> None:
    def build(self):  # per-channel kernels predicted ten times faster than fp32's, the others barely faster
        model = _model(self.context.model.onnx_path, factor=0.9, per_channel=0.1)
        set_study_attrs(self.study, cost_models={self.machine_id: model.to_dict()})
        return model

    monkeypatch.setattr(Predictor, "_build", build)
    monkeypatch.setattr(Predictor, "checks", lambda self: [])  # the made-up times stay as they are
    lines: list[str] = []
    config = _tiny(tmp_path, tiny_checkpoint, tiny_csv, predict=True, remeasure_front=False)
    study = run_study(config, n_trials=14, progress=lines.append)
    trials = study.trials
    suggested = [t for t in trials if TrialRecord.of(t).suggested_near is not None]
    assert suggested, [line for line in lines if "cost model" in line]
    space = StudyContext(config, progress=lambda line: None).space
    model = CostModel.from_dict(next(iter(study.user_attrs["cost_models"].values())))
    for t in suggested:
        near = trials[TrialRecord.of(t).suggested_near]
        neighbours = list(space.neighbours(near.params))
        assert t.params in neighbours  # one parameter away from the answer then
        assert TrialRecord.of(t).predicted["speedup"] > TrialRecord.of(near).speedup  # predicted to beat it
        tried = [u.params for u in trials[:t.number]]
        untried = [model.predict(space.recipe_for(n)).speedup for n in neighbours if n not in tried]
        assert TrialRecord.of(t).predicted["speedup"] == pytest.approx(max(untried))  # the fastest predicted of them
        assert TrialRecord.of(trials[t.number - 1]).suggested_near is None  # draws and suggestions take turns
    assert any(line.startswith("next: ") and "untried neighbours" in line for line in lines)
