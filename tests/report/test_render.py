"""opsearch.report's registry of renderers: every format has one, and render() dispatches to it or says what is
missing."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hand_report import EFFECTS, STUDY, hand_report
from report_study import make_study

from opsearch.errors import ConfigError
from opsearch.report import (
    FORMATS,
    RENDERERS,
    REPORT_PAGE,
    StudyReport,
    build_report,
    format_report,
    render,
    write_report,
)

MACHINE = {"cpu": "Test CPU 9000", "int8_flags": ["avx2"], "physical_cores": 2}
VERSIONS = {"onnxruntime": "1.99.0", "optuna": "9.9"}
CONFIG = {"model": "tiny-bert", "dataset": "tiny.csv", "trials": 11}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    study = make_study(tmp_path_factory.mktemp("formats") / "study.db")
    for key, value in (("machine", MACHINE), ("versions", VERSIONS), ("opsearch_config", CONFIG)):
        study.set_user_attr(key, value)
    return study


@pytest.fixture(scope="module")
def report(study: optuna.Study) -> StudyReport:
    return build_report(study, max_accuracy_loss=0.01)


def test_text_is_format_report(report: StudyReport) -> None:
    text = render(report, None, "text")
    assert text == format_report(report)
    assert "best within 1.00 pt: trial 1" in text and "knee" in text


@pytest.mark.parametrize("fmt", ["markdown", "json", "html"])
def test_formats_with_effects_say_how_to_get_them(report: StudyReport, fmt: str) -> None:
    with pytest.raises(ConfigError, match="study_effects"):
        render(report, None, fmt)


def test_an_unknown_format_lists_the_formats(report: StudyReport) -> None:
    with pytest.raises(ConfigError, match="'xml' is not one of " + ", ".join(FORMATS)):
        render(report, None, "xml")


# The registry, on a report made by hand -----------------------------------------------------------------------

# What each format's page starts with (a renderer that drew another format's page would fail it).
OPENINGS = {"text": f"study {STUDY!r}: 7 complete", "markdown": f"# opsearch report: {STUDY}\n", "csv": "trial,mode,",
            "json": "{\n  \"study\": ", "html": "<!DOCTYPE html>"}


def test_every_format_has_one_renderer() -> None:
    assert tuple(RENDERERS) == FORMATS == tuple(OPENINGS)
    assert [f for f in FORMATS if RENDERERS[f].needs_effects] == ["markdown", "json", "html"]
    # Only the page is written to a file when none is named: beside the study, as the CLI's help says.
    assert {f: RENDERERS[f].default_file for f in FORMATS} == {"text": None, "markdown": None, "csv": None,
                                                               "json": None, "html": REPORT_PAGE}


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_and_write_report_give_the_formats_page(fmt: str, tmp_path: Path) -> None:
    text = render(hand_report(), EFFECTS, fmt)
    assert text.startswith(OPENINGS[fmt])
    assert "190.0" in text  # the best trial's samples/s, in every format
    out = write_report(hand_report(), EFFECTS, fmt, tmp_path / "new" / f"report.{fmt}")
    assert out == tmp_path / "new" / f"report.{fmt}" and out.read_text(encoding="utf-8") == text
