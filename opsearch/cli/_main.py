"""The `opsearch` command: a thin layer that parses flags and calls the library."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from opsearch.cli._flags import add_limit_flag, add_setting_flags, check_positive, given_settings, spelled
from opsearch.config import OBJECTIVES, PLOT_X_AXES, PLOT_Y_AXES, RUNTIME_FIELDS, TASKS, StudyConfig
from opsearch.errors import ConfigError, OpsearchError, StudyError, StudyStopped

# Kept here, not imported, so that `opsearch --help` loads no report code; tests check they match the report's.
FORMATS = ("text", "markdown", "csv", "json", "html")  # opsearch.report.FORMATS
# opsearch bench: flags that set the study's timing settings, named as bench has always named them.
BENCH_SETTINGS = {"timing_samples": "--samples", "batch_size": "--batch-size", "end_to_end": "--end-to-end",
                  "rounds": "--rounds", "max_rounds": "--max-rounds", "ci_target": "--ci-target",
                  "max_seconds": "--max-seconds", "intra_op_threads": "--threads", "sessions_per_model": "--sessions",
                  "speedup_estimator": "--estimator", "seed": "--seed", "encoding": "--encoding"}

EPILOG = """examples:
  opsearch run                                   the default study (all-MiniLM-L6-v2 on labelled tweets)
  opsearch run studies/minilm-sst2.toml --trials 20
  opsearch run --model ./my-checkpoint --dataset val.csv --label-map negative=0,positive=1
  opsearch resume --storage sqlite:///opsearch-runs/default.db --study-name default --trials 5
  opsearch report --storage sqlite:///opsearch-runs/default.db --study-name default --csv front.csv
  opsearch report --storage sqlite:///opsearch-runs/default.db --study-name default --format html
  opsearch plot   --storage sqlite:///opsearch-runs/default.db --study-name default --out pareto.png
"""


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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="list a model's operator types and which ONNX Runtime can quantize")
    p.add_argument("model", help="checkpoint folder, .onnx file or folder, package:DIST/path, or hub id")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--task", choices=TASKS, default="auto")
    p.add_argument("--groups", action="store_true",
                   help="also list the groups found from the graph's structure: per layer the Q/K/V projections, "
                        "attention scores and context, attention output, FFN input and output; the embeddings, "
                        "pooler and head (what the mixed mode sets a precision for)")
    p.add_argument("--ranges", metavar="DATASET",
                   help="also run the ranges pass on texts of DATASET (a CSV/TSV/JSON file or hub id): each "
                        "group's activation range beside its role's typical one, its outlier channels, and its "
                        "int8 error quantized alone, the worst first: why a group must stay fp32")
    p.add_argument("--rows", type=int, default=32, help="texts the ranges pass runs on (default: 32)")
    p.add_argument("--max-length", type=int, default=128,
                   help="tokens each text is padded or cut to for the ranges pass (default: 128)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", help="start (or continue) a study", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study_file", nargs="?", help="a study TOML file (flags override it); none: the default study")
    p.set_defaults(func=cmd_run, setting_flags=add_setting_flags(p))
    _output_flags(p)

    p = sub.add_parser("remeasure", help="time the Pareto front again, side by side, in one interleaved session")
    _storage_flags(p)
    _output_flags(p)
    p.set_defaults(func=cmd_remeasure)

    p = sub.add_parser("bench", help="paired speedup of ONNX model A over model B, with its confidence interval")
    p.add_argument("model_a", help="the candidate: an ONNX model folder or file (or anything MODEL takes)")
    p.add_argument("model_b", help="the reference, e.g. the fp32 model")
    p.add_argument("--dataset", help="texts to time (default: synthetic sentences from B's vocabulary)")
    p.add_argument("--split")
    p.add_argument("--text-column")
    p.set_defaults(bench_flags=add_setting_flags(p, names=list(BENCH_SETTINGS), rename=BENCH_SETTINGS,
                                                 with_defaults=True))
    p.add_argument("--json", action="store_true", help="print a JSON object (speedup, speedup_ci, rounds, ...)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("resume", help="continue a stored study with the settings it was made with")
    _storage_flags(p)
    p.add_argument("--trials", type=int, help="how many trials to add (default: as many as the study still needs "
                   "to hold its `trials` completed trials, then the front session if it is due)")
    p.set_defaults(func=cmd_resume, setting_flags=add_setting_flags(p, names=list(RUNTIME_FIELDS)))
    _output_flags(p)

    p = sub.add_parser("worker", help="join a study that `opsearch run` started, as one more worker",
                       description="Join a stored study as one more worker. Several workers may share one storage: "
                       "sqlite:///FILE.db for a few on one machine, journal:FILE.log, or postgresql://... for many "
                       "machines. Workers on one machine take turns timing (a lock file), while quantizing and "
                       "evaluating overlap; each times against its own fp32 model. Run `opsearch remeasure` when "
                       "they are all done.")
    _storage_flags(p)
    p.add_argument("--trials", type=int,
                   help="trials this worker runs (default: until the study holds its `trials` completed trials)")
    p.set_defaults(func=cmd_worker, setting_flags=add_setting_flags(p, names=list(RUNTIME_FIELDS)))
    _output_flags(p)

    p = sub.add_parser("report", help="the Pareto front of a stored study, as text, markdown, CSV, JSON or HTML")
    _storage_flags(p)
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
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write a trial's quantized model as a folder optimum and transformers load")
    _storage_flags(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="the trial number to export")
    which.add_argument("--best", action="store_true", help="the fastest trial within --max-accuracy-loss")
    add_limit_flag(p, "with --best: the accuracy you can afford, e.g. 0.01 (one point) or 1%rel (1% of the fp32 "
                   "accuracy) (default: the study's own max_accuracy_loss; none: the fastest trial)")
    p.add_argument("--by", choices=[o for o in OBJECTIVES if o != "accuracy_loss"], default="throughput",
                   help="with --best: best by this objective within the limit: throughput (the fastest, default), "
                   "size (the smallest file), p50/p95/p99 (the shortest call latency)")
    p.add_argument("out_dir", help="a new or empty folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sensitivity", help="rank a configuration's quantized layers (or nodes) by the accuracy "
                       "they cost, and the curve of keeping the worst in fp32")
    _storage_flags(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="the trial whose recipe to analyse")
    which.add_argument("--recipe", metavar="JSON", help='a recipe, e.g. \'{"mode": "dynamic", '
                       '"operators_to_quantize": ["MatMul"], "fusion": "O2"}\'')
    p.add_argument("--by", choices=["layer", "group", "node"], default="layer",
                   help="unit ranked: a transformer layer, a layer's role (layer.3/ffn_in), both found from the "
                        "graph's structure, or each node (default layer)")
    p.add_argument("--max-excluded", type=int, help="stop the curve after excluding this many units")
    p.add_argument("--samples", type=int, help="evaluate on this many rows (default: the study's evaluation split)")
    p.add_argument("--enqueue", action="store_true",
                   help="with --trial: queue the curve's points as trials of the study (the trial's configuration "
                   "with its 1, 2, ... most damaging units kept in fp32); `opsearch resume` then measures them")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("plot", help="draw the Pareto front of a stored study (PNG, or interactive HTML)")
    _storage_flags(p)
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
    p.set_defaults(func=cmd_plot)
    return parser


def _storage_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///opsearch-runs/default.db")
    p.add_argument("--study-name", required=True, help="the study's name in that storage")


def _output_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quiet", action="store_true", help="print only the final report")
    g.add_argument("--json-log", action="store_true",
                   help="print one JSON object per line (messages, trial_started, trial_finished, finished)")


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


def _resume_hint(args: argparse.Namespace) -> str:
    """How to go on with the study a stopped command ran, as the user would type it."""
    storage, name = getattr(args, "storage", None), getattr(args, "study_name", None)
    if getattr(args, "setting_flags", None) is not None and getattr(args, "func", None) is cmd_run:
        try:
            config = config_from_args(args)
            storage, name = config.resolved_storage(), config.resolved_study_name()
        except OpsearchError:
            return "; continue with `opsearch resume`"
    if not storage or not name:
        return ""
    return f"; continue with `opsearch resume --storage {storage} --study-name {name}`"


def _progress(args: argparse.Namespace):
    from opsearch.search import Bar, JsonLog, Lines, Quiet

    if getattr(args, "json_log", False):
        return JsonLog(sys.stdout)
    if getattr(args, "quiet", False):
        return Quiet()
    if sys.stderr.isatty():
        return Bar(sys.stderr)
    return Lines(lambda line: print(line, file=sys.stderr, flush=True))


def cmd_inspect(args: argparse.Namespace) -> int:
    from opsearch.quantize import QUANT_MODES, inspect_model
    from opsearch.source import prepare_model

    if args.rows < 1 or args.max_length < 2:
        raise ConfigError(f"--rows {args.rows} / --max-length {args.max_length}: give at least 1 row of 2 tokens")
    with tempfile.TemporaryDirectory(prefix="opsearch-inspect-") as tmp:
        model = prepare_model(args.model, cache_dir=Path(tmp), task=args.task, need_tokenizer=bool(args.ranges))
        info = inspect_model(model.onnx_path)
        groups = _graph_groups(model.onnx_path) if args.groups or args.ranges else None
        ranges = _ranges(model, args) if args.ranges else None
    if args.json:
        extra = {"groups": groups.to_dict()} if groups is not None else {}
        if ranges is not None:
            extra["ranges"] = ranges.to_dict()
        print(json.dumps({"model": args.model, "task": model.task, **info.to_dict(), **extra}, indent=2))
        return 0
    print(f"{args.model}: {sum(o.count for o in info.operators)} nodes, {len(info.operators)} operator types "
          f"({model.task} model)")
    header = f"{'operator':<24}{'nodes':>6}  " + "  ".join(f"{m:>16}" for m in QUANT_MODES)
    print(header)
    for op in info.operators:
        marks = "  ".join(f"{'yes' if op.quantizable[m] else '-':>16}" for m in QUANT_MODES)
        print(f"{op.op_type:<24}{op.count:>6}  {marks}")
    print("quantizable: read from onnxruntime.quantization.registry (onnxruntime "
          f"{_version('onnxruntime')}); weight_only: what its MatMulNBitsQuantizer takes (a MatMul or Gather "
          "of a constant weight).")
    if groups is not None:
        print(f"\ngroups found from the graph's structure: {groups.layers} layers; "
              + ", ".join(f"{role} {n}" for role, n in groups.counts().items()))
        if args.groups:
            for g in groups.groups:
                print(f"  {g.key:<22} {len(g.nodes)} x {'+'.join(g.op_types):<12} {', '.join(g.nodes)}")
    if ranges is not None:
        from opsearch.quantize import format_ranges

        print()
        print(format_ranges(ranges))
    return 0


def _graph_groups(path: Path):
    import onnx

    from opsearch.quantize import find_groups

    return find_groups(onnx.load(str(path), load_external_data=False))


def _ranges(model, args: argparse.Namespace):
    from transformers import AutoTokenizer

    from opsearch.measure import encode_padded
    from opsearch.quantize import measure_ranges
    from opsearch.source import load_texts

    texts = load_texts(args.ranges)[: args.rows]
    tokenizer = AutoTokenizer.from_pretrained(model.folder)
    return measure_ranges(model.onnx_path, encode_padded(tokenizer, texts, length=args.max_length), rows=len(texts))


def cmd_run(args: argparse.Namespace) -> int:
    from opsearch.search import run_study

    config = config_from_args(args)
    study = run_study(config, progress=_progress(args))
    return _finish(study, config.resolved_storage(), args)


def cmd_resume(args: argparse.Namespace) -> int:
    from opsearch.search import resume_study

    study = resume_study(storage=args.storage, study_name=args.study_name, n_trials=args.trials,
                         progress=_progress(args), **given_settings(args, args.setting_flags))
    return _finish(study, args.storage, args)


def cmd_worker(args: argparse.Namespace) -> int:
    from opsearch.search import run_worker

    study = run_worker(storage=args.storage, study_name=args.study_name, n_trials=args.trials,
                       progress=_progress(args), **given_settings(args, args.setting_flags))
    return _finish(study, args.storage, args)


def _study_limit(study, given: float | str | None) -> float | None:
    """The accuracy limit a read-only command applies, as a fraction: the one given (``--max-accuracy-loss``,
    checked as the setting is), else the study's own (None: no limit)."""
    from opsearch.config import accuracy_limit
    from opsearch.store import StudyRecord

    record = StudyRecord.of(study)
    if given is not None:
        check_positive(argparse.Namespace(max_accuracy_loss=given), {"max_accuracy_loss": "--max-accuracy-loss"})
        if isinstance(given, str) and not record.baseline:
            raise StudyError(f"--max-accuracy-loss {given}: a share of the fp32 accuracy needs the study's fp32 "
                             "baseline, which it has not measured yet; give a fraction (0.01 for one point).")
        return accuracy_limit(given, record.baseline_accuracy if record.baseline else 0.0)
    if not record.complete:
        return None
    return record.config(study.study_name).accuracy_limit(record.baseline_accuracy)


def _finish(study, storage: str, args: argparse.Namespace | None = None) -> int:
    from opsearch.report import build_report, draw_pareto, format_report, pareto_plot_info
    from opsearch.store import cache_dir_for

    report = build_report(study, max_accuracy_loss=_study_limit(study, None))
    if args is not None and getattr(args, "json_log", False):
        front = report.to_frame().to_dict(orient="records")
        print(json.dumps({"event": "finished", "study": study.study_name, "storage": storage, "front": front,
                          "counts": report.counts}, default=str))
        return 0
    print(format_report(report))
    if report.rows:
        out = cache_dir_for(storage, study.study_name).parent / f"{study.study_name}-pareto.png"
        print(f"Pareto plot: {draw_pareto(pareto_plot_info(report), out)}")
    print(f"study: --storage {storage} --study-name {study.study_name}")
    return 0


def cmd_remeasure(args: argparse.Namespace) -> int:
    from opsearch.search import StudyContext, remeasure_front, stop_on_signals
    from opsearch.store import load_existing

    context = StudyContext.stored(args.storage, args.study_name, progress=_progress(args))
    study = load_existing(args.storage, args.study_name)
    with stop_on_signals():
        session = remeasure_front(context, study)
    if session is None:
        raise OpsearchError(f"study {args.study_name!r} has no completed trial on its front to re-measure.")
    return _finish(study, args.storage, args)


def cmd_bench(args: argparse.Namespace) -> int:
    from opsearch.measure import ThreadSettings, TimingProtocol, bench
    from opsearch.source import load_texts

    check_positive(args, args.bench_flags)
    defaults = StudyConfig.__dataclass_fields__
    texts = (load_texts(args.dataset, split=args.split, text_column=args.text_column, encoding=args.encoding)
             if args.dataset else None)
    protocol = TimingProtocol.from_settings(vars(args))  # warmup_rounds, which has no bench flag: its default
    protocol = protocol.replace(max_rounds=max(protocol.rounds, protocol.max_rounds))
    result = bench(args.model_a, args.model_b, texts=texts, samples=args.timing_samples, batch_size=args.batch_size,
                   end_to_end=args.end_to_end, max_length=defaults["max_length"].default,
                   threads=ThreadSettings.resolve(args.intra_op_threads, defaults["inter_op_threads"].default, False),
                   protocol=protocol)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from opsearch.report import build_report, render, study_effects, write_csv
    from opsearch.store import cache_dir_for, load_existing

    study = load_existing(args.storage, args.study_name)
    report = build_report(study, max_accuracy_loss=_study_limit(study, args.max_accuracy_loss))
    if args.json:
        print(report.to_frame().to_json(orient="records", indent=2))
    else:
        effects = study_effects(study, report=report) if args.format in ("markdown", "json", "html") else None
        text = render(report, effects, args.format)
        out = args.out
        if args.format == "html" and not out:
            out = cache_dir_for(args.storage, args.study_name).parent / f"{args.study_name}-report.html"
        if out:
            out = Path(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
            print(f"wrote {out}", file=sys.stderr)
        else:
            print(text, end="" if text.endswith("\n") else "\n")
    if args.csv:
        print(f"wrote {write_csv(report, args.csv)}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from opsearch.report import choose_trial, export_trial
    from opsearch.store import load_existing

    study = load_existing(args.storage, args.study_name)
    number = choose_trial(study, trial=args.trial, max_accuracy_loss=_study_limit(study, args.max_accuracy_loss),
                          by=args.by)
    out = export_trial(study, number, args.out_dir, storage=args.storage)
    print(f"trial {number} written to {out}: load it with "
          f"ORTModelForSequenceClassification.from_pretrained({str(out)!r})")
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from opsearch.quantize import QuantRecipe
    from opsearch.search import format_sensitivity, study_sensitivity

    recipe = None
    if args.recipe:
        try:
            recipe = QuantRecipe.from_dict(json.loads(args.recipe))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"--recipe {args.recipe!r} is not a recipe ({exc}); e.g. "
                              '\'{"mode": "dynamic", "operators_to_quantize": ["MatMul"]}\'.') from None
    for name in ("max_excluded", "samples"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "max_excluded" else 2):
            raise ConfigError(f"--{name.replace('_', '-')}={value} is too small.")
    if args.enqueue and args.trial is None:
        raise ConfigError("--enqueue queues variants of a trial of the study: give --trial N, not --recipe.")
    result = study_sensitivity(storage=args.storage, study_name=args.study_name, trial=args.trial, recipe=recipe,
                               by=args.by, max_excluded=args.max_excluded, samples=args.samples,
                               progress=_progress(args))
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_sensitivity(result))
    if args.enqueue:
        from opsearch.search import enqueue_fallbacks
        from opsearch.store import load_existing

        queued = enqueue_fallbacks(load_existing(args.storage, args.study_name), args.trial, result)
        print(f"queued {len(queued)} trials: trial {args.trial} with its {', '.join(map(str, queued))} most damaging "
              f"{args.by}(s) in fp32; measure them with `opsearch resume --storage {args.storage} --study-name "
              f"{args.study_name} --trials {len(queued)}`", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from opsearch.report import (
        build_report,
        draw_effects,
        draw_pareto,
        effects_plot_info,
        pareto_plot_info,
        write_pareto_html,
    )
    from opsearch.store import cache_dir_for, load_existing

    study = load_existing(args.storage, args.study_name)
    report = build_report(study, max_accuracy_loss=_study_limit(study, args.max_accuracy_loss))
    if not report.rows:
        raise OpsearchError(f"study {args.study_name!r} has no completed trial to plot yet.")
    html = args.html or (args.out is not None and Path(args.out).suffix.lower() in (".html", ".htm"))
    default = cache_dir_for(args.storage, args.study_name).parent / f"{args.study_name}-pareto"
    out = args.out or default.with_suffix(".html" if html else ".png")
    info = pareto_plot_info(report, y_axis=args.y_axis, x_axis=args.x_axis)
    print(write_pareto_html(info, out) if html else draw_pareto(info, out))
    if args.effects:
        from opsearch.report import study_effects

        effects = study_effects(study, report=report)
        print(draw_effects(effects_plot_info(effects, title=f"operator and flag effects: {args.study_name}"),
                           args.effects))
    return 0


def _version(name: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(name)


