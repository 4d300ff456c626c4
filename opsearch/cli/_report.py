"""``opsearch report``: a stored study's report in one of :data:`opsearch.report.FORMATS`, printed or written."""

from __future__ import annotations

import argparse
import sys

from opsearch.cli._flags import add_limit_flag, add_storage_flags, study_limit
from opsearch.report._formats import FORMATS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report",
                              help="the Pareto front of a stored study, as text, markdown, CSV, JSON or HTML")
    add_storage_flags(p)
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--format", choices=FORMATS, default="text",
                       help="text (default), markdown (front, baseline, effects), csv (every completed trial), "
                       "json (everything), html (one self-contained page with interactive plots)")
    shape.add_argument("--json", action="store_true", help="print the front as a JSON list (as before --format)")
    p.add_argument("--out", metavar="FILE", help="write the report here (default: stdout; for html, "
                   "STUDY-report.html next to the study)")
    add_limit_flag(p, "trials losing more than LIMIT accuracy (0.01 is one point; 1%rel: 1% of the fp32 "
                   "accuracy) are infeasible (default: the study's own max_accuracy_loss)")
    p.add_argument("--csv", metavar="PATH", help="also write every completed trial as CSV")
    p.set_defaults(func=take_action)


def take_action(args: argparse.Namespace) -> int:
    from opsearch.report import (
        RENDERERS,
        build_report,
        default_output,
        render,
        render_front_json,
        study_effects,
        write_csv,
        write_report,
    )
    from opsearch.store import load_existing

    study = load_existing(args.storage, args.study_name)
    report = build_report(study, max_accuracy_loss=study_limit(study, args.max_accuracy_loss))
    if args.json:
        print(render_front_json(report))
    else:
        renderer = RENDERERS[args.format]
        effects = study_effects(study, report=report) if renderer.needs_effects else None
        out = args.out or (renderer.default_file and default_output(args.storage, args.study_name,
                                                                    renderer.default_file))
        if out:
            print(f"wrote {write_report(report, effects, args.format, out)}", file=sys.stderr)
        else:
            text = render(report, effects, args.format)
            print(text, end="" if text.endswith("\n") else "\n")
    if args.csv:
        print(f"wrote {write_csv(report, args.csv)}", file=sys.stderr)
    return 0
