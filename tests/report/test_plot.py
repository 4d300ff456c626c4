"""opsearch.report._plot: the data behind the Pareto and operator-effects plots, and the PNG and HTML drawn from it."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from factorial_study import make_factorial_study
from report_study import BASELINE, COMPLETE, EXPECTED_FRONT, LISTED_FRONT, SPECS, STUDY_NAME, dominates, make_study

from opsearch.errors import ConfigError
from opsearch.report import (
    EffectsPlotInfo,
    ParetoPlotInfo,
    build_report,
    draw_effects,
    draw_pareto,
    effects_figure,
    effects_plot_info,
    pareto_figure,
    pareto_plot_info,
    study_effects,
    write_pareto_html,
)

# Twins (trials that repeated an earlier graph) sit on their original's spot and are drawn once.
DRAWN = [i for i in COMPLETE if SPECS[i].same_graph_as is None]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


REFERENCE = BASELINE["timing"]["throughput"]
LIMIT = 0.03  # three points: some trials are dominated, some infeasible


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    return make_study(tmp_path_factory.mktemp("plot") / "study.db")


@pytest.fixture(scope="module")
def info(study: optuna.Study) -> ParetoPlotInfo:
    return pareto_plot_info(build_report(study))


@pytest.fixture(scope="module")
def limited(study: optuna.Study) -> ParetoPlotInfo:
    """The plot with an accuracy limit of three points."""
    return pareto_plot_info(build_report(study, max_accuracy_loss=LIMIT))


def test_front_holds_the_pareto_trials_sorted_by_accuracy_loss(info: ParetoPlotInfo) -> None:
    assert {p.trial for p in info.front} == LISTED_FRONT
    losses = [p.accuracy_loss_pt for p in info.front]
    assert losses == sorted(losses)
    # Along a maximize/minimize front, more loss must buy more throughput: the line only rises.
    speeds = [p.samples_per_s for p in info.front]
    assert speeds == sorted(speeds)
    assert info.front[0].trial == min(LISTED_FRONT, key=lambda i: SPECS[i].loss)
    assert info.front[-1].trial == max(LISTED_FRONT, key=lambda i: SPECS[i].loss)


def test_dominated_points_are_exactly_the_other_completed_trials(info: ParetoPlotInfo) -> None:
    assert sorted(p.trial for p in info.dominated) == sorted(set(DRAWN) - EXPECTED_FRONT)
    assert len(DRAWN) < len(COMPLETE)  # the study holds twins, and they are not drawn twice
    assert not {p.trial for p in info.dominated} & {p.trial for p in info.front}


def test_points_carry_the_trial_values(info: ParetoPlotInfo, limited: ParetoPlotInfo) -> None:
    for point in info.front + info.dominated + limited.infeasible:
        spec = SPECS[point.trial]
        assert point.samples_per_s == pytest.approx(spec.throughput)
        assert point.accuracy_loss_pt == pytest.approx(100 * spec.loss)
        assert point.speedup == pytest.approx(spec.throughput / BASELINE["timing"]["throughput"])
        assert point.label.startswith(f"#{point.trial} {spec.params['mode']}")


def test_baseline_and_title(info: ParetoPlotInfo) -> None:
    assert info.baseline_samples_per_s == pytest.approx(BASELINE["timing"]["throughput"])
    assert STUDY_NAME in info.title
    assert info.y_axis == "speedup" and info.baseline_y == 1.0 and "speedup" in info.y_label


def test_draw_pareto_writes_a_png(info: ParetoPlotInfo, tmp_path: Path) -> None:
    out = draw_pareto(info, tmp_path / "plots" / "pareto.png")
    assert out == tmp_path / "plots" / "pareto.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1000


def test_draw_pareto_with_everything_on_it(limited: ParetoPlotInfo, tmp_path: Path) -> None:
    assert limited.infeasible and limited.best_feasible and limited.presets  # all drawn
    assert draw_pareto(limited, tmp_path / "p.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("which", [[], [0], [4]], ids=["no-trials", "one-front-trial", "one-trial"])
def test_small_studies_plot_too(tmp_path: Path, which: list[int]) -> None:
    info = pareto_plot_info(build_report(make_study(tmp_path / "s.db", [SPECS[i] for i in which])))
    assert len(info.front) == len(which) and info.dominated == []
    assert draw_pareto(info, tmp_path / "p.png").read_bytes().startswith(PNG_MAGIC)


def test_no_baseline_gives_nan_throughput(tmp_path: Path) -> None:
    info = pareto_plot_info(build_report(make_study(tmp_path / "s.db", [SPECS[0]], baseline=None)))
    assert info.baseline_samples_per_s != info.baseline_samples_per_s  # NaN


# Feasibility, error bars, knee, best point and presets ---------------------------------------------------------


def test_front_dominated_and_infeasible_split_the_drawn_trials(limited: ParetoPlotInfo) -> None:
    feasible = {i for i in DRAWN if SPECS[i].loss <= LIMIT}
    front = {i for i in feasible if not any(dominates(SPECS[j], SPECS[i]) for j in COMPLETE if SPECS[j].loss <= LIMIT)}
    assert {p.trial for p in limited.front} == front
    assert sorted(p.trial for p in limited.dominated) == sorted(feasible - front)
    assert [p.trial for p in limited.infeasible] == sorted(set(DRAWN) - feasible)
    assert limited.dominated and limited.infeasible
    assert all("accuracy loss" in p.infeasible_reason for p in limited.infeasible)
    assert limited.max_accuracy_loss_pt == pytest.approx(100 * LIMIT)


def test_without_a_limit_nothing_is_infeasible_and_nothing_is_best(info: ParetoPlotInfo) -> None:
    assert info.infeasible == [] and info.best_feasible is None and info.max_accuracy_loss_pt is None


def test_best_feasible_is_the_fastest_trial_within_the_limit(limited: ParetoPlotInfo) -> None:
    within = [i for i in DRAWN if SPECS[i].loss <= LIMIT]
    assert limited.best_feasible is not None
    assert limited.best_feasible.trial == max(within, key=lambda i: SPECS[i].throughput)
    assert limited.best_feasible.accuracy_loss_pt <= 100 * LIMIT


def test_the_knee_is_the_reports_knee(info: ParetoPlotInfo, study: optuna.Study) -> None:
    knee = build_report(study).knee
    assert knee is not None and info.knee is not None
    assert info.knee.trial == knee.trial == 1  # (0, 120.5), (0.4, 250.4), (3.1, 333.5): the bend is trial 1
    assert info.knee in info.front


@pytest.mark.parametrize("y_axis", ["speedup", "throughput"])
def test_error_bars_are_the_speedup_interval_scaled_to_the_axis(study: optuna.Study, y_axis: str) -> None:
    info = pareto_plot_info(build_report(study), y_axis=y_axis)
    scale = 1.0 if y_axis == "speedup" else REFERENCE
    assert info.baseline_y == pytest.approx(scale)
    for p in info.front + info.dominated:
        speedup = SPECS[p.trial].throughput / REFERENCE  # the fake trials' CI is speedup * (0.95, 1.05)
        assert p.y == pytest.approx(speedup * scale)
        assert (p.y_low, p.y_high) == pytest.approx((0.95 * speedup * scale, 1.05 * speedup * scale))


def test_an_unknown_y_axis_names_the_choices(study: optuna.Study) -> None:
    with pytest.raises(ConfigError, match="'qps' is not one of speedup, throughput"):
        pareto_plot_info(build_report(study), y_axis="qps")


def test_every_preset_is_labelled_where_its_graph_is_drawn(tmp_path: Path) -> None:
    # Trial 2 ran a preset whose graph repeated trial 1's: its label goes on trial 1's spot.
    specs = [SPECS[0], SPECS[1], replace(SPECS[5], same_graph_as=1, preset="dynamic: every quantizable operator")]
    info = pareto_plot_info(build_report(make_study(tmp_path / "s.db", specs)))
    assert [(name, p.trial) for name, p in info.presets] == [("dynamic: MatMul only", 0),
                                                             ("dynamic: every quantizable operator", 1)]
    assert info.presets[0][1].preset == "dynamic: MatMul only"


def test_plotly_figure_carries_the_info(limited: ParetoPlotInfo) -> None:
    traces = {t.name: t for t in pareto_figure(limited).data}
    assert {"Pareto front", "dominated", "infeasible", "fp32 baseline", "presets"} <= set(traces)
    for name, points in (("Pareto front", limited.front), ("dominated", limited.dominated),
                         ("infeasible", limited.infeasible)):
        trace = traces[name]
        assert list(trace.x) == [p.accuracy_loss_pt for p in points]
        assert list(trace.y) == [p.y for p in points]
        assert list(trace.error_y.array) == pytest.approx([p.y_high - p.y for p in points])
        assert list(trace.error_y.arrayminus) == pytest.approx([p.y - p.y_low for p in points])
    faded = {name: traces[name].opacity for name in ("Pareto front", "dominated", "infeasible")}
    assert faded["Pareto front"] == 1.0 and faded["dominated"] < 1.0 and faded["infeasible"] < 1.0
    assert traces["dominated"].marker.symbol != traces["infeasible"].marker.symbol  # faded differently
    best = traces[f"best within limit (#{limited.best_feasible.trial})"]
    assert (best.x[0], best.y[0]) == (limited.best_feasible.accuracy_loss_pt, limited.best_feasible.y)
    assert list(traces["presets"].text) == [name for name, _ in limited.presets]


def test_plotly_figure_marks_the_knee(info: ParetoPlotInfo) -> None:
    knee = next(t for t in pareto_figure(info).data if t.name.startswith("knee"))
    assert knee.name == f"knee (#{info.knee.trial})" and (knee.x[0], knee.y[0]) == (info.knee.accuracy_loss_pt,
                                                                                     info.knee.y)


def test_interactive_pareto_html_is_self_contained(limited: ParetoPlotInfo, tmp_path: Path) -> None:
    out = write_pareto_html(limited, tmp_path / "nested" / "pareto.html")
    text = out.read_text()
    assert text.startswith("<html>") or text.lower().startswith("<!doctype html") or "<html" in text[:200]
    assert "<script src=" not in text and len(text) > 1_000_000  # plotly.js inlined
    assert "Pareto front" in text and "dynamic: MatMul only" in text


# The operator-effects plot --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def effects_info(tmp_path_factory: pytest.TempPathFactory) -> tuple[EffectsPlotInfo, list]:
    result = study_effects(make_factorial_study(tmp_path_factory.mktemp("effects") / "study.db"))
    return effects_plot_info(result, title="effects"), result.effects


def test_effects_plot_info_holds_every_setting_with_enough_trials(effects_info) -> None:
    info, effects = effects_info
    shown = [e for e in effects if not e.too_few]
    assert [b.label for b in info.speedup] == [b.label for b in info.accuracy_loss_pt] == [e.label for e in shown]
    assert info.too_few == [e.label for e in effects if e.too_few] == ["calibration=entropy", "calibration=percentile"]
    for bar, e in zip(info.speedup, shown, strict=True):
        assert (bar.diff, bar.low, bar.high) == (e.speedup_diff, *e.speedup_ci)
        assert (bar.n_with, bar.n_without) == (e.n_with, e.n_without)
    for bar, e in zip(info.accuracy_loss_pt, shown, strict=True):
        assert (bar.diff, bar.low, bar.high) == (e.loss_diff_pt, *e.loss_ci_pt)
    assert all(not math.isnan(b.diff) for b in info.speedup)


def test_draw_effects_writes_a_png(effects_info, tmp_path: Path) -> None:
    out = draw_effects(effects_info[0], tmp_path / "e" / "effects.png")
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_effects_figure_has_one_panel_per_objective(effects_info) -> None:
    info = effects_info[0]
    speed, loss = effects_figure(info).data
    assert list(speed.y) == list(loss.y) == [b.label for b in info.speedup]
    assert list(speed.x) == [b.diff for b in info.speedup] and list(loss.x) == [b.diff for b in info.accuracy_loss_pt]
    assert speed.xaxis != loss.xaxis


def test_a_cost_on_either_axis_and_the_front_drawn_as_points_over_more_objectives(tmp_path: Path) -> None:
    sizes = {i: 10.0 + i for i in COMPLETE}
    specs = [replace(s, extra_attrs={"size_mb": sizes.get(i, 0.0)}) for i, s in enumerate(SPECS)]
    study = make_study(tmp_path / "sized.db", specs, baseline={**BASELINE, "size_mb": 90.0})
    two = pareto_plot_info(build_report(study), x_axis="size")
    assert two.x_axis == "size" and "MB" in two.x_label and two.baseline_x == 90.0
    assert all(p.x == sizes[p.trial] and p.x_low == p.x_high == p.x for p in two.front + two.dominated)
    assert two.front_is_line is False  # the study optimizes throughput and loss: size is not one of its axes
    assert two.max_accuracy_loss_pt is None and two.knee is None  # the limit and the knee belong to the loss axis
    study.set_user_attr("opsearch_config", {"objectives": ["throughput", "accuracy_loss", "size"]})
    three = pareto_plot_info(build_report(study))
    assert {p.trial for p in three.front} >= {p.trial for p in two.front}  # more objectives, no smaller front
    assert three.front_is_line is False
    sized = pareto_plot_info(build_report(study), y_axis="size", x_axis="accuracy_loss")
    assert all(p.y == sizes[p.trial] for p in sized.front) and sized.baseline_y == 90.0
    draw_pareto(two, tmp_path / "size.png")
    assert (tmp_path / "size.png").stat().st_size > 10_000
    with pytest.raises(ConfigError, match="'tokens' is not one of accuracy_loss, size"):
        pareto_plot_info(build_report(study), x_axis="tokens")
