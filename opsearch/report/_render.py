"""One renderer per format, over the report model: the registry ``opsearch report --format`` dispatches through."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from opsearch.errors import ConfigError
from opsearch.report._csv_json import render_csv, render_json
from opsearch.report._effects import StudyEffects
from opsearch.report._formats import FORMATS
from opsearch.report._html import render_html
from opsearch.report._markdown import format_markdown
from opsearch.report._outputs import REPORT_PAGE
from opsearch.report._report import StudyReport
from opsearch.report._text import format_report


class Renderer(NamedTuple):
    draw: Callable[..., str]  # (report) -> str, or (report, effects) -> str when it needs the effects
    needs_effects: bool  # the page includes the operator effects (opsearch.report.study_effects)
    default_file: str | None = None  # written beside the study when no file is named (None: printed)


# Keyed by FORMATS' names, in their order (a test checks that each format has its renderer).
RENDERERS = {
    "text": Renderer(format_report, needs_effects=False),
    "markdown": Renderer(format_markdown, needs_effects=True),
    "csv": Renderer(render_csv, needs_effects=False),
    "json": Renderer(render_json, needs_effects=True),
    "html": Renderer(render_html, needs_effects=True, default_file=REPORT_PAGE),
}


def render(report: StudyReport, effects: StudyEffects | None, fmt: str) -> str:
    """The report as ``fmt`` (one of :data:`FORMATS`); ``effects`` is needed by markdown, json and html (None: a
    format that needs them is refused, saying how to get them)."""
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise ConfigError(f"format {fmt!r} is not one of {', '.join(FORMATS)}.")
    if not renderer.needs_effects:
        return renderer.draw(report)
    if effects is None:
        raise ConfigError(f"the {fmt} report includes the operator effects: pass effects=study_effects(study).")
    return renderer.draw(report, effects)


def write_report(report: StudyReport, effects: StudyEffects | None, fmt: str, out: str | Path) -> Path:
    """Write :func:`render`'s page to ``out`` (its folder made if missing), as UTF-8."""
    out = Path(out)
    text = render(report, effects, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
