"""opsearch.plot: the data behind the Pareto plot, and the PNG drawn from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report import BASELINE, COMPLETE, EXPECTED_FRONT, LISTED_FRONT, SPECS, STUDY_NAME, make_study

from opsearch.plot import ParetoPlotInfo, draw_pareto, pareto_plot_info
from opsearch.report import build_report

# Twins (trials that repeated an earlier graph) sit on their original's spot and are drawn once.
DRAWN = [i for i in COMPLETE if SPECS[i].same_graph_as is None]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory) -> ParetoPlotInfo:
    return pareto_plot_info(build_report(make_study(tmp_path_factory.mktemp("plot") / "study.db")))


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


def test_points_carry_the_trial_values(info: ParetoPlotInfo) -> None:
    for point in info.front + info.dominated:
        spec = SPECS[point.trial]
        assert point.samples_per_s == pytest.approx(spec.throughput)
        assert point.accuracy_loss_pt == pytest.approx(100 * spec.loss)
        assert point.speedup == pytest.approx(spec.throughput / BASELINE["timing"]["throughput"])
        assert point.label.startswith(f"#{point.trial} {spec.params['mode']}")


def test_baseline_and_title(info: ParetoPlotInfo) -> None:
    assert info.baseline_samples_per_s == pytest.approx(BASELINE["timing"]["throughput"])
    assert STUDY_NAME in info.title


def test_draw_pareto_writes_a_png(info: ParetoPlotInfo, tmp_path: Path) -> None:
    out = draw_pareto(info, tmp_path / "plots" / "pareto.png")
    assert out == tmp_path / "plots" / "pareto.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1000


@pytest.mark.parametrize("which", [[], [0], [4]], ids=["no-trials", "one-front-trial", "one-trial"])
def test_small_studies_plot_too(tmp_path: Path, which: list[int]) -> None:
    info = pareto_plot_info(build_report(make_study(tmp_path / "s.db", [SPECS[i] for i in which])))
    assert len(info.front) == len(which) and info.dominated == []
    assert draw_pareto(info, tmp_path / "p.png").read_bytes().startswith(PNG_MAGIC)


def test_no_baseline_gives_nan_throughput(tmp_path: Path) -> None:
    info = pareto_plot_info(build_report(make_study(tmp_path / "s.db", [SPECS[0]], baseline=None)))
    assert info.baseline_samples_per_s != info.baseline_samples_per_s  # NaN
