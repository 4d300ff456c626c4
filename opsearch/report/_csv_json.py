"""The report for machines: CSV (every completed trial, one row each) and JSON (everything the report knows, or
the front alone as a list of records)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from opsearch.report._effects import StudyEffects
from opsearch.report._report import StudyReport
from opsearch.store import CONSTRAINT_STATES


def render_csv(report: StudyReport) -> str:
    """Every completed trial as one CSV row (the columns of :class:`opsearch.store.TrialRow`)."""
    return report.to_frame(front_only=False).to_csv(index=False)


def write_csv(report: StudyReport, path: str | Path, *, front_only: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.to_frame(front_only=front_only).to_csv(path, index=False)
    return path


def front_records(report: StudyReport) -> list[dict]:
    """The front's rows as plain records, fastest first (what ``--json-log`` ends with)."""
    return report.to_frame().to_dict(orient="records")


def render_front_json(report: StudyReport) -> str:
    """The front alone as a JSON list of records (``opsearch report --json``, as before ``--format``)."""
    return report.to_frame().to_json(orient="records", indent=2)


def render_json(report: StudyReport, effects: StudyEffects) -> str:
    """Everything the report knows as strict JSON (see :func:`report_dict`)."""
    return json.dumps(report_dict(report, effects), indent=2)


def json_ready(value: Any) -> Any:
    """JSON-ready: tuples become lists, NaN and infinities become null (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def report_dict(report: StudyReport, effects: StudyEffects) -> dict:
    """Everything the report knows, JSON-ready: the rows, the front, the baseline, the machine, the settings,
    the effects, the importances and the front's operator matrix."""
    knee, best = report.knee, report.best_feasible
    return json_ready({
        "study": report.study_name,
        "counts": report.counts,
        "baseline": report.baseline,
        "metric": report.metric,  # rows' "accuracy" and "accuracy_loss_pt" are in it
        "max_accuracy_loss": report.max_accuracy_loss,
        "front": [asdict(r) for r in report.front],
        "rows": [asdict(r) for r in report.rows],
        "objectives": list(report.objectives),
        "best_by": {name: row.trial for name, row in report.best_by().items()},
        "knee": None if knee is None else knee.trial,
        "best_feasible": None if best is None else best.trial,
        "faster_uncertain": [r.trial for r in report.faster_uncertain],
        "constraint_counts": {state: sum(r.constraint == state for r in report.front) for state in CONSTRAINT_STATES}
        if report.max_accuracy_loss is not None else {},
        "ties": [[r.trial for r in report.front if r.tie_group == g]
                 for g in sorted({r.tie_group for r in report.front if r.tie_group is not None})],
        "same_graph": [asdict(g) for g in report.same_graph],
        "cost": None if report.cost is None else {**asdict(report.cost), "evaluate_s": report.cost.evaluate_s,
                                                  "timing_s": report.cost.timing_s, "saved_s": report.cost.saved_s},
        "predictions": None if report.predictions is None else {
            **asdict(report.predictions), **({"median_ratio": report.predictions.median_ratio,
                                              "worst_trial": report.predictions.worst.trial}
                                             if report.predictions.checked else {})},
        "remeasured_at": report.remeasured_at,
        "answer": [s._asdict() for s in report.answer],
        "minutes": report.minutes,
        "machine": report.machine,
        "versions": report.versions,
        "settings": report.settings,
        "effects": [{**asdict(e), "label": e.label, "note": e.note} for e in effects.effects],
        "importances": [asdict(i) for i in effects.importances],
        "operator_matrix": asdict(effects.matrix),
        "interactions": effects.interactions,
    })
