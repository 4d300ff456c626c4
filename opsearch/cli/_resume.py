"""``opsearch resume``: continue a stored study with the settings it was made with."""

from __future__ import annotations

import argparse

from opsearch.cli._flags import add_output_flags, add_setting_flags, add_storage_flags, given_settings, progress
from opsearch.cli._run import finish
from opsearch.config import RUNTIME_FIELDS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("resume", help="continue a stored study with the settings it was made with")
    add_storage_flags(p)
    p.add_argument("--trials", type=int, help="how many trials to add (default: as many as the study still needs "
                   "to hold its `trials` completed trials, then the front session if it is due)")
    p.set_defaults(func=take_action, setting_flags=add_setting_flags(p, names=list(RUNTIME_FIELDS)))
    add_output_flags(p)


def take_action(args: argparse.Namespace) -> int:
    from opsearch.search import resume_study

    study = resume_study(storage=args.storage, study_name=args.study_name, n_trials=args.trials,
                         progress=progress(args), **given_settings(args, args.setting_flags))
    return finish(study, args.storage, args)
