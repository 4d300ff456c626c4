"""The `opsearch` command: a thin layer that parses flags and calls the library. Each command lives in its own
module, its parser beside its action; this one gathers them, dispatches, and turns errors and stops into messages
and exit codes."""

from __future__ import annotations

import argparse
import sys

from opsearch.cli._bench import add_parser as add_bench
from opsearch.cli._export import add_parser as add_export
from opsearch.cli._inspect import add_parser as add_inspect
from opsearch.cli._plot import add_parser as add_plot
from opsearch.cli._remeasure import add_parser as add_remeasure
from opsearch.cli._report import add_parser as add_report
from opsearch.cli._resume import add_parser as add_resume
from opsearch.cli._run import EPILOG, config_from_args
from opsearch.cli._run import add_parser as add_run
from opsearch.cli._sensitivity import add_parser as add_sensitivity
from opsearch.cli._worker import add_parser as add_worker
from opsearch.errors import OpsearchError, StudyStopped

# Each command's parser with its action (set as its `func`), in the order `opsearch --help` lists them.
COMMANDS = (add_inspect, add_run, add_remeasure, add_bench, add_resume, add_worker, add_report, add_export,
            add_sensitivity, add_plot)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)  # a flag's own parser (--label-map) may refuse its text
        from opsearch._logging import quiet_libraries

        quiet_libraries()
        return args.func(args)
    except OpsearchError as exc:
        print(f"opsearch: error: {exc}", file=sys.stderr)
        return 2
    except StudyStopped as stop:
        where = _resume_hint(args)
        print(f"\nopsearch: stopped: {stop.reason}. Completed trials are saved{where}.", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # a command that runs no study (inspect, bench, report): nothing to keep
        print("\nopsearch: interrupted.", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opsearch",
        description="Search which int8 quantization of a transformer classifier is fastest for the accuracy "
        "you can afford: an Optuna study over operator types and quantization flags, measured on throughput "
        "and accuracy loss, reported as a Pareto front.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def _resume_hint(args: argparse.Namespace) -> str:
    """How to go on with the study a stopped command ran, as the user would type it."""
    storage, name = getattr(args, "storage", None), getattr(args, "study_name", None)
    if getattr(args, "command", None) == "run":  # its study is named by its study file and flags
        try:
            config = config_from_args(args)
            storage, name = config.resolved_storage(), config.resolved_study_name()
        except OpsearchError:
            return "; continue with `opsearch resume`"
    if not storage or not name:
        return ""
    return f"; continue with `opsearch resume --storage {storage} --study-name {name}`"
