"""An opsearch study as optuna-dashboard shows it: its WSGI app, run in-process on a fake study in SQLite, must
serve the objective names, the trials' user attrs and the Pareto front through its JSON API."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest
from report_study import EXPECTED_FRONT, SPECS, STUDY_NAME, make_study

optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed: "
                                       "pip install 'opsearch[dashboard]'")


def _get(app, path: str) -> tuple[str, dict]:
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update({"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "wsgi.input": io.BytesIO(b""),
                    "wsgi.errors": sys.stderr})
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], json.loads(body)


@pytest.fixture(scope="module")
def detail(tmp_path_factory: pytest.TempPathFactory) -> dict:
    db = tmp_path_factory.mktemp("dashboard") / "study.db"
    make_study(db)
    app = optuna_dashboard.wsgi(f"sqlite:///{db}")
    status, studies = _get(app, "/api/studies")
    assert status.startswith("200")
    (summary,) = [s for s in studies["study_summaries"] if s["study_name"] == STUDY_NAME]
    status, detail = _get(app, f"/api/studies/{summary['study_id']}")
    assert status.startswith("200")
    return detail


def test_objectives_are_named_and_directed(detail: dict) -> None:
    assert detail["name"] == STUDY_NAME
    assert detail["objective_names"] == ["throughput", "accuracy_loss"]
    assert detail["directions"] == ["maximize", "minimize"]


def test_trials_carry_opsearchs_user_attrs(detail: dict) -> None:
    trials = {t["number"]: t for t in detail["trials"]}
    assert set(trials) == set(range(len(SPECS)))
    attrs = {a["key"]: a["value"] for a in trials[0]["user_attrs"]}
    assert attrs["label"] == "dynamic[MatMul]" and attrs["preset"] == "dynamic: MatMul only"
    assert float(attrs["speedup"]) == pytest.approx(SPECS[0].throughput / 98.7)
    assert json.loads(attrs["timing"])["speedup_ci"][0] < float(attrs["speedup"])
    keys = {a["key"] for a in detail["union_user_attrs"]}
    assert {"label", "speedup", "accuracy", "quantized_nodes", "timing"} <= keys


def test_the_dashboards_pareto_front_is_the_reports(detail: dict) -> None:
    assert {t["number"] for t in detail["best_trials"]} == EXPECTED_FRONT


def test_the_study_attrs_are_shown(detail: dict) -> None:
    assert "baseline" in {a["key"] for a in detail["user_attrs"]}


def test_a_missing_study_is_a_404(tmp_path: Path) -> None:
    make_study(tmp_path / "s.db", [])
    status, body = _get(optuna_dashboard.wsgi(f"sqlite:///{tmp_path / 's.db'}"), "/api/studies/999")
    assert status.startswith("404") and "999" in body["reason"]
