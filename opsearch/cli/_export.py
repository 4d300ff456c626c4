"""``opsearch export``: write a trial's quantized model as a folder optimum and transformers load."""

from __future__ import annotations

import argparse

from opsearch.cli._flags import add_limit_flag, add_storage_flags, study_limit
from opsearch.config import OBJECTIVES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export",
                              help="write a trial's quantized model as a folder optimum and transformers load")
    add_storage_flags(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="the trial number to export")
    which.add_argument("--best", action="store_true", help="the fastest trial within --max-accuracy-loss")
    add_limit_flag(p, "with --best: the accuracy you can afford, e.g. 0.01 (one point) or 1%rel (1% of the fp32 "
                   "accuracy) (default: the study's own max_accuracy_loss; none: the fastest trial)")
    p.add_argument("--by", choices=[o for o in OBJECTIVES if o != "accuracy_loss"], default="throughput",
                   help="with --best: best by this objective within the limit: throughput (the fastest, default), "
                   "size (the smallest file), p50/p95/p99 (the shortest call latency)")
    p.add_argument("out_dir", help="a new or empty folder")
    p.set_defaults(func=take_action)


def take_action(args: argparse.Namespace) -> int:
    from opsearch.report import choose_trial, export_trial
    from opsearch.source import ort_model_name
    from opsearch.store import StudyRecord, load_existing

    study = load_existing(args.storage, args.study_name)
    number = choose_trial(study, trial=args.trial, max_accuracy_loss=study_limit(study, args.max_accuracy_loss),
                          by=args.by)
    out = export_trial(study, number, args.out_dir, storage=args.storage)
    print(f"trial {number} written to {out}: load it with "
          f"{ort_model_name(StudyRecord.of(study).task)}.from_pretrained({str(out)!r})")
    return 0
