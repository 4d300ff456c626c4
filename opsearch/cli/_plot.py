"""``opsearch plot``: draw a stored study's Pareto front (PNG, or interactive HTML) and its operator effects."""

from __future__ import annotations

import argparse
from pathlib import Path

from opsearch.cli._flags import add_limit_flag, add_storage_flags, study_limit
from opsearch.config import PLOT_X_AXES, PLOT_Y_AXES
from opsearch.errors import OpsearchError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plot", help="draw the Pareto front of a stored study (PNG, or interactive HTML)")
    add_storage_flags(p)
    p.add_argument("--out", metavar="PNG|HTML", help="where to write it (default: next to the study); a .html "
                   "name writes the interactive plot")
    p.add_argument("--html", action="store_true", help="write the interactive plot as self-contained HTML")
    p.add_argument("--effects", metavar="PNG", help="also draw the operator-effects plot here")
    add_limit_flag(p, "fade trials losing more than LIMIT accuracy (0.01 is one point; 1%rel: 1% of the fp32 "
                   "accuracy) and mark the best within it")
    p.add_argument("--y", choices=PLOT_Y_AXES, default="speedup", dest="y_axis",
                   help="y axis: speedup over fp32 (default), throughput in samples/s, or a cost: size (the model "
                   "file, MB), p50/p95/p99 (latency of one call, ms)")
    p.add_argument("--x", choices=PLOT_X_AXES, default="accuracy_loss", dest="x_axis",
                   help="x axis: accuracy loss (default), size or a latency percentile. The front is the study's, "
                   "over all its objectives: drawn as a staircase only when the axes are its two")
    p.set_defaults(func=take_action)


def take_action(args: argparse.Namespace) -> int:
    from opsearch.report import (
        PARETO_HTML,
        PARETO_PNG,
        build_report,
        default_output,
        draw_pareto,
        pareto_plot_info,
        write_pareto_html,
    )
    from opsearch.store import load_existing

    study = load_existing(args.storage, args.study_name)
    report = build_report(study, max_accuracy_loss=study_limit(study, args.max_accuracy_loss))
    if not report.rows:
        raise OpsearchError(f"study {args.study_name!r} has no completed trial to plot yet.")
    html = args.html or (args.out is not None and Path(args.out).suffix.lower() in (".html", ".htm"))
    out = args.out or default_output(args.storage, args.study_name, PARETO_HTML if html else PARETO_PNG)
    info = pareto_plot_info(report, y_axis=args.y_axis, x_axis=args.x_axis)
    print(write_pareto_html(info, out) if html else draw_pareto(info, out))
    if args.effects:
        from opsearch.report import draw_effects, effects_plot_info, study_effects

        effects = study_effects(study, report=report)
        print(draw_effects(effects_plot_info(effects, title=f"operator and flag effects: {args.study_name}"),
                           args.effects))
    return 0
