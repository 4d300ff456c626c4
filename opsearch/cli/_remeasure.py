"""``opsearch remeasure``: time a stored study's Pareto front again, side by side, in one interleaved session."""

from __future__ import annotations

import argparse

from opsearch.cli._flags import add_output_flags, add_storage_flags, progress
from opsearch.cli._run import finish
from opsearch.errors import OpsearchError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("remeasure",
                              help="time the Pareto front again, side by side, in one interleaved session")
    add_storage_flags(p)
    add_output_flags(p)
    p.set_defaults(func=take_action)


def take_action(args: argparse.Namespace) -> int:
    from opsearch.search import StudyContext, remeasure_front, stop_on_signals
    from opsearch.store import load_existing

    context = StudyContext.stored(args.storage, args.study_name, progress=progress(args))
    study = load_existing(args.storage, args.study_name)
    with stop_on_signals():
        session = remeasure_front(context, study)
    if session is None:
        raise OpsearchError(f"study {args.study_name!r} has no completed trial on its front to re-measure.")
    return finish(study, args.storage, args)
