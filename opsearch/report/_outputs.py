"""Where a command writes a study's report or plot when it is given no file: beside the study, named after it
(``STUDY-report.html``, ``STUDY-pareto.png``)."""

from __future__ import annotations

from pathlib import Path

from opsearch.store import cache_dir_for

REPORT_PAGE = "report.html"  # opsearch report --format html
PARETO_PNG = "pareto.png"  # opsearch plot; run, resume, worker and remeasure when they finish
PARETO_HTML = "pareto.html"  # opsearch plot --html
ANSWER_PNG = "answer.png"  # how the answer improved: run, resume, worker and remeasure when they finish


def default_output(storage: str, study_name: str, name: str) -> Path:
    """The file ``STUDY-name`` beside the study's storage (see :func:`opsearch.store.cache_dir_for`), e.g.
    ``default_output(storage, "default", PARETO_PNG)``."""
    return cache_dir_for(storage, study_name).parent / f"{study_name}-{name}"
