"""``opsearch run``: start (or continue) a study from a study file and flags; and what every command that runs a
study prints when it ends (``run``, ``resume``, ``worker``, ``remeasure``)."""

from __future__ import annotations

import argparse
import json

from opsearch.cli._flags import add_output_flags, add_setting_flags, given_settings, progress, spelled, study_limit
from opsearch.config import StudyConfig
from opsearch.errors import ConfigError

# The examples `opsearch --help` and `opsearch run --help` end with.
EPILOG = """examples:
  opsearch run                                   the default study (all-MiniLM-L6-v2 on labelled tweets)
  opsearch run studies/minilm-sst2.toml --trials 20
  opsearch run --model ./my-checkpoint --dataset val.csv --label-map negative=0,positive=1
  opsearch resume --storage sqlite:///opsearch-runs/default.db --study-name default --trials 5
  opsearch report --storage sqlite:///opsearch-runs/default.db --study-name default --csv front.csv
  opsearch report --storage sqlite:///opsearch-runs/default.db --study-name default --format html
  opsearch plot   --storage sqlite:///opsearch-runs/default.db --study-name default --out pareto.png
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="start (or continue) a study", epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study_file", nargs="?", help="a study TOML file (flags override it); none: the default study")
    p.set_defaults(func=take_action, setting_flags=add_setting_flags(p))
    add_output_flags(p)


def take_action(args: argparse.Namespace) -> int:
    from opsearch.search import run_study

    config = config_from_args(args)
    try:
        study = run_study(config, progress=progress(args))
    except ConfigError as exc:  # refused once the model is known (a metric that does not fit its task): as typed
        raise (exc.spelled_by(spelled(given_settings(args, args.setting_flags), args.setting_flags)) or exc) from None
    return finish(study, config.resolved_storage(), args)


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """A study file and flags compile into one StudyConfig; flags win. A refused value is named as it was typed."""
    overrides = given_settings(args, args.setting_flags)
    typed = spelled(overrides, args.setting_flags)
    try:
        if args.study_file:
            return StudyConfig.from_toml(args.study_file, **overrides)
        if "model" in overrides or "dataset" in overrides:
            missing = [k for k in ("model", "dataset") if k not in overrides]
            if missing:
                raise ConfigError(f"--{missing[0]} is missing: give both --model and --dataset, or a study file.")
            return StudyConfig.from_dict(overrides, source="the flags", spelled=typed)
        return StudyConfig.default().replace(**overrides)
    except ConfigError as exc:
        raise (exc.spelled_by(typed) or exc) from None


def finish(study, storage: str, args: argparse.Namespace | None = None) -> int:
    """Print the study's report and draw its Pareto plot beside it (with ``--json-log``: one ``finished`` event
    holding the front instead)."""
    from opsearch.report import (
        ANSWER_PNG,
        PARETO_PNG,
        build_report,
        default_output,
        draw_answer,
        draw_pareto,
        format_report,
        front_records,
        pareto_plot_info,
    )

    report = build_report(study, max_accuracy_loss=study_limit(study, None))
    if args is not None and getattr(args, "json_log", False):
        print(json.dumps({"event": "finished", "study": study.study_name, "storage": storage,
                          "front": front_records(report), "counts": report.counts}, default=str))
        return 0
    print(format_report(report))
    if report.rows:
        out = default_output(storage, study.study_name, PARETO_PNG)
        print(f"Pareto plot: {draw_pareto(pareto_plot_info(report), out)}")
    if report.answer:
        out = default_output(storage, study.study_name, ANSWER_PNG)
        print(f"how the answer improved: {draw_answer(report.answer, out, until=report.minutes)}")
    print(f"study: --storage {storage} --study-name {study.study_name}")
    return 0
