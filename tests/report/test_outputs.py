"""opsearch.report's default output files: beside the study, named after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsearch.report import PARETO_HTML, PARETO_PNG, REPORT_PAGE, default_output
from opsearch.store import cache_dir_for


@pytest.mark.parametrize(("name", "file"), [(REPORT_PAGE, "s-report.html"), (PARETO_PNG, "s-pareto.png"),
                                            (PARETO_HTML, "s-pareto.html")])
def test_beside_a_study_file(tmp_path: Path, name: str, file: str) -> None:
    assert default_output(f"sqlite:///{tmp_path / 'runs' / 's.db'}", "s", name) == tmp_path / "runs" / file


def test_a_database_study_writes_where_its_exports_go() -> None:
    storage = "postgresql://u@h/db"
    assert default_output(storage, "s", PARETO_PNG) == cache_dir_for(storage, "s").parent / "s-pareto.png"


def test_a_dotted_study_name_keeps_its_dots(tmp_path: Path) -> None:
    assert default_output(f"sqlite:///{tmp_path / 's.db'}", "v1.2", PARETO_HTML).name == "v1.2-pareto.html"
