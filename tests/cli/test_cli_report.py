"""``opsearch report``: a stored study's report in each format, printed or written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest

from opsearch.cli import main


# A stored (fake) study that the command reads: no model needed.
@pytest.fixture(scope="module")
def fake_storage(tmp_path_factory) -> list[str]:
    from report_study import STUDY_NAME, make_study

    db = tmp_path_factory.mktemp("fake") / "study.db"
    make_study(db)
    return ["--storage", f"sqlite:///{db}", "--study-name", STUDY_NAME]


def test_report_json_flag_still_prints_the_front_as_a_list(fake_storage, capsys) -> None:
    from report_study import LISTED_FRONT

    assert main(["report", *fake_storage, "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert isinstance(front, list) and {r["trial"] for r in front} == LISTED_FRONT


@pytest.mark.parametrize("fmt", ["text", "markdown", "csv", "json"])
def test_report_formats_go_to_stdout_or_out(fake_storage, fmt, tmp_path, capsys) -> None:
    assert main(["report", *fake_storage, "--format", fmt, "--max-accuracy-loss", "0.01"]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "sub" / f"report.{fmt}"
    assert main(["report", *fake_storage, "--format", fmt, "--max-accuracy-loss", "0.01", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and str(out) in captured.err
    written = out.read_text()
    assert written.rstrip("\n") == printed.rstrip("\n")
    if fmt == "json":
        data = json.loads(written)
        assert data["best_feasible"] == 1 and data["effects"] and data["operator_matrix"]["trials"]
    elif fmt == "csv":
        assert len(list(csv.DictReader(written.splitlines()))) == 9
    elif fmt == "markdown":
        assert "## Operator and flag effects" in written and "best within 1.00 pt: trial 1" in written
    else:
        assert "best within 1.00 pt: trial 1" in written


def test_report_html_defaults_next_to_the_study(fake_storage, capsys) -> None:
    assert main(["report", *fake_storage, "--format", "html"]) == 0
    db = Path(fake_storage[1][len("sqlite:///"):])
    page = db.parent / f"{fake_storage[3]}-report.html"
    assert str(page) in capsys.readouterr().err
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_report_json_and_format_exclude_each_other(fake_storage, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["report", *fake_storage, "--json", "--format", "markdown"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_report_takes_a_limit_relative_to_the_fp32_accuracy(fake_storage, capsys) -> None:
    # the run setting's own forms: a share of the study's fp32 accuracy names the same best trial as its fraction
    from opsearch.store import StudyRecord

    storage, name = fake_storage[1], fake_storage[3]
    baseline = StudyRecord.of(optuna.load_study(study_name=name, storage=storage)).baseline_accuracy
    assert main(["report", *fake_storage, "--format", "json", "--max-accuracy-loss", "0.01"]) == 0
    absolute = json.loads(capsys.readouterr().out)
    share = f"{100 * 0.01 / baseline:.6f}%rel"
    assert main(["report", *fake_storage, "--format", "json", "--max-accuracy-loss", share]) == 0
    relative = json.loads(capsys.readouterr().out)
    assert relative["best_feasible"] == absolute["best_feasible"] == 1
    assert relative["max_accuracy_loss"] == pytest.approx(0.01, rel=1e-5)


def test_report_offers_every_format_the_report_renders(fake_storage, capsys) -> None:
    from opsearch.cli._main import _parser
    from opsearch.report import RENDERERS

    for fmt in RENDERERS:
        assert _parser().parse_args(["report", *fake_storage, "--format", fmt]).format == fmt
    with pytest.raises(SystemExit):
        _parser().parse_args(["report", *fake_storage, "--format", "xml"])
    assert "invalid choice: 'xml'" in capsys.readouterr().err
