"""``opsearch worker``: join a study that ``opsearch run`` started, as one more process running its trials."""

from __future__ import annotations

import argparse

from opsearch.cli._flags import add_output_flags, add_setting_flags, add_storage_flags, given_settings, progress
from opsearch.cli._run import finish
from opsearch.config import RUNTIME_FIELDS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("worker", help="join a study that `opsearch run` started, as one more worker",
                              description="Join a stored study as one more worker. Several workers may share one "
                              "storage: sqlite:///FILE.db for a few on one machine, journal:FILE.log, or "
                              "postgresql://... for many machines. Workers on one machine take turns timing (a lock "
                              "file), while quantizing and evaluating overlap; each times against its own fp32 model. "
                              "Run `opsearch remeasure` when they are all done.")
    add_storage_flags(p)
    p.add_argument("--trials", type=int,
                   help="trials this worker runs (default: until the study holds its `trials` completed trials)")
    p.set_defaults(func=take_action, setting_flags=add_setting_flags(p, names=list(RUNTIME_FIELDS)))
    add_output_flags(p)


def take_action(args: argparse.Namespace) -> int:
    from opsearch.search import run_worker

    study = run_worker(storage=args.storage, study_name=args.study_name, n_trials=args.trials,
                       progress=progress(args), **given_settings(args, args.setting_flags))
    return finish(study, args.storage, args)
