"""The `opsearch` command: a thin layer that parses flags and calls the library."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from opsearch._logging import quiet_libraries
from opsearch.config import StudyConfig
from opsearch.errors import ConfigError, OpsearchError
from opsearch.timing import ESTIMATORS

FORMATS = ("text", "markdown", "csv", "json", "html")  # opsearch.formats.FORMATS, kept here for a fast --help
Y_AXES = ("speedup", "throughput")  # opsearch.plot.Y_AXES

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
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        return args.func(args)
    except OpsearchError as exc:
        print(f"opsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nopsearch: interrupted. Completed trials are saved; continue with `opsearch resume`.",
              file=sys.stderr)
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
    p.add_argument("--task", choices=["auto", "classification", "embedding"], default="auto")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", help="start (or continue) a study", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study_file", nargs="?", help="a study TOML file (flags override it); none: the default study")
    _study_flags(p)
    p.set_defaults(func=cmd_run)

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
    p.add_argument("--samples", type=int, default=150, help="texts per round (default 150)")
    p.add_argument("--batch-size", type=int, default=1, help="1: unpadded, one by one (default); N: padded batches")
    p.add_argument("--end-to-end", action="store_true", help="time tokenization too")
    p.add_argument("--rounds", type=int, default=10, help="rounds always measured (default 10)")
    p.add_argument("--max-rounds", type=int, default=30, help="upper bound on rounds (default 30)")
    p.add_argument("--ci-target", type=float, default=0.02, help="stop when the 95%% CI is within +-this (0.02)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop adding rounds after this long (120)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: physical cores)")
    p.add_argument("--sessions", type=int, default=3,
                   help="sessions per model that rounds rotate over, averaging out memory-layout luck (3)")
    p.add_argument("--estimator", choices=ESTIMATORS, default="floor",
                   help="floor (default): ratio of each model's summed fastest time per text over rounds; "
                   "median: median of per-round ratios. Both are printed; this one drives the stop rule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print a JSON object (speedup, speedup_ci, rounds, ...)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("resume", help="continue a stored study with the settings it was made with")
    _storage_flags(p)
    p.add_argument("--trials", type=int, help="how many trials to add (default: the study's trials setting)")
    _isolation_flags(p)
    _output_flags(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("worker", help="join a study that `opsearch run` started, as one more worker",
                       description="Join a stored study as one more worker. Several workers may share one storage: "
                       "sqlite:///FILE.db for a few on one machine, journal:FILE.log, or postgresql://... for many "
                       "machines. Workers on one machine take turns timing (a lock file), while quantizing and "
                       "evaluating overlap; each times against its own fp32 model. Run `opsearch remeasure` when "
                       "they are all done.")
    _storage_flags(p)
    p.add_argument("--trials", type=int,
                   help="trials this worker runs (default: until the study holds its `trials` completed trials)")
    _isolation_flags(p)
    _output_flags(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("report", help="the Pareto front of a stored study, as text, markdown, CSV, JSON or HTML")
    _storage_flags(p)
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--format", choices=FORMATS, default="text",
                       help="text (default), markdown (front, baseline, effects), csv (every completed trial), "
                       "json (everything), html (one self-contained page with interactive plots)")
    shape.add_argument("--json", action="store_true", help="print the front as a JSON list (as before --format)")
    p.add_argument("--out", metavar="FILE", help="write the report here (default: stdout; for html, "
                   "STUDY-report.html next to the study)")
    p.add_argument("--max-accuracy-loss", type=float, metavar="L",
                   help="trials losing more than L accuracy (a fraction: 0.01 is one point) are infeasible")
    p.add_argument("--csv", metavar="PATH", help="also write every completed trial as CSV")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write a trial's quantized model as a folder optimum and transformers load")
    _storage_flags(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="the trial number to export")
    which.add_argument("--best", action="store_true", help="the fastest trial within --max-accuracy-loss")
    p.add_argument("--max-accuracy-loss", type=float, help="with --best: the accuracy you can afford, e.g. 0.01")
    p.add_argument("out_dir", help="a new or empty folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sensitivity", help="rank a configuration's quantized layers (or nodes) by the accuracy "
                       "they cost, and the curve of keeping the worst in fp32")
    _storage_flags(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="the trial whose recipe to analyse")
    which.add_argument("--recipe", metavar="JSON", help='a recipe, e.g. \'{"mode": "dynamic", '
                       '"operators_to_quantize": ["MatMul"], "fusion": "O2"}\'')
    p.add_argument("--by", choices=["layer", "node"], default="layer",
                   help="unit ranked: a transformer layer (node-name prefix) or each node (default layer)")
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
    p.add_argument("--max-accuracy-loss", type=float, metavar="L",
                   help="fade trials losing more than L accuracy (0.01 is one point) and mark the best within it")
    p.add_argument("--y", choices=Y_AXES, default="speedup", dest="y_axis",
                   help="y axis: speedup over fp32 (default) or throughput in samples/s")
    p.set_defaults(func=cmd_plot)
    return parser


def _storage_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///opsearch-runs/default.db")
    p.add_argument("--study-name", required=True, help="the study's name in that storage")


def _study_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", help="checkpoint folder, .onnx file or folder, package:DIST/path, or hub id")
    g.add_argument("--task", choices=["auto", "classification", "embedding"],
                   help="classification: the model's head; embedding: pooled output through a linear probe")
    g.add_argument("--dataset", help="CSV/TSV/JSON/Parquet file, package:DIST/path, or hub id (glue/sst2)")
    g.add_argument("--split", help="evaluation split (default: validation, else test, else train)")
    g.add_argument("--text-column", help="default: the first of sentence, text, sentence1, content, review")
    g.add_argument("--label-column", help="default: label")
    g.add_argument("--label-map", metavar="NAME=ID,...", help="map dataset labels to class ids")
    g.add_argument("--fit-dataset", help="where calibration/probe rows come from (default: held out)")
    g.add_argument("--fit-split", help="split of the fit dataset (e.g. train)")
    g.add_argument("--fit-size", type=int,
                   help="rows held out of the evaluation data for calibration and the probe (default 2000)")
    g.add_argument("--max-samples", type=int, help="cap the evaluation rows (a seeded random subset)")
    g = p.add_argument_group("search")
    g.add_argument("--trials", type=int, help="how many trials to run now (default 20)")
    g.add_argument("--modes", help="dynamic, static, or dynamic,static (default both)")
    g.add_argument("--all-operators", action="store_true", default=None,
                   help="offer every operator type in the graph, not only the quantizable ones")
    g.add_argument("--seed", type=int, help="seeds the sampler: the same seed suggests the same configurations")
    g.add_argument("--fusions", help="graph fusion levels searched before quantization: none,O1,O2,O3 "
                   "(default none,O2)")
    g.add_argument("--formats", help="static formats searched: QOperator,QDQ (default both)")
    g.add_argument("--activation-types", help="static activation types searched: QUInt8,QInt8 (default both)")
    g.add_argument("--calibration-method", help="static calibration: minmax, entropy, percentile, or a "
                   "comma list to search (default minmax)")
    g.add_argument("--calibration-samples", help="calibration rows, or a comma list to search (default 64)")
    g.add_argument("--exclude-fragile", choices=["on", "off", "search"],
                   help="static: keep layer norms, GELU and residual/mask/embedding Adds in fp32 (default search)")
    g.add_argument("--max-accuracy-loss", metavar="LIMIT",
                   help="a constraint for the sampler: 0.01 (1 point of accuracy) or 1%%rel (of fp32 accuracy)")
    g.add_argument("--sampler", choices=["tpe", "nsga2", "random"], help="how trials are chosen (default tpe)")
    g.add_argument("--enumerate", choices=["auto", "on", "off"],
                   help="queue every recipe once instead of sampling: auto when the space <= trials (default)")
    g.add_argument("--sweep-operators", action="store_true", default=None,
                   help="also queue each dynamic operator type alone, first")
    g.add_argument("--storage", help="Optuna storage URL (default sqlite:///opsearch-runs/STUDY_NAME.db)")
    g.add_argument("--study-name", help="default: MODEL-DATASET")
    g = p.add_argument_group("timing")
    g.add_argument("--rounds", type=int, help="paired timing rounds per trial (default 10)")
    g.add_argument("--max-rounds", type=int, help="upper bound when the variation stays high (default 30)")
    g.add_argument("--timing-samples", type=int, help="texts per timing round (default 150)")
    g.add_argument("--ci-target", type=float, help="add rounds until the speedup's 95%% CI is within +-this (0.02)")
    g.add_argument("--max-seconds", type=float, help="stop adding rounds to one trial after this long (120)")
    g.add_argument("--speedup-estimator", choices=ESTIMATORS,
                   help="floor (default): ratio of each side's summed fastest time per text over rounds, "
                   "more reproducible between runs; median: median of per-round ratios, the machine's typical "
                   "interference included")
    g.add_argument("--batch-size", type=int, help="1: unpadded texts one by one (default); N: padded batches")
    g.add_argument("--end-to-end", action="store_true", default=None, help="time tokenization too")
    g.add_argument("--threads", type=int, dest="intra_op_threads", help="ONNX Runtime intra-op threads")
    g.add_argument("--inter-op-threads", type=int, help="ONNX Runtime inter-op threads (default 1)")
    g.add_argument("--spin", action="store_true", default=None, dest="allow_spinning",
                   help="let ONNX Runtime threads spin between runs (default: no)")
    g.add_argument("--no-remeasure", action="store_false", default=None, dest="remeasure_front",
                   help="skip timing the front again side by side at the end")
    _isolation_flags(p)
    _output_flags(p)


def _isolation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("crash isolation")
    g.add_argument("--isolation", choices=["process", "none"],
                   help="process (default): each trial runs in a child process, so a crash, hang or memory "
                   "blow-up fails that trial only; none: in this process (for debugging)")
    g.add_argument("--trial-timeout", type=float, metavar="SECONDS",
                   help="kill a trial stuck this long in one phase (quantizing, evaluating, timing; default 1800)")
    g.add_argument("--trial-memory-mb", type=float, metavar="MB",
                   help="kill a trial whose process grows past this (default: half of this machine's memory)")


def _output_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quiet", action="store_true", help="print only the final report")
    g.add_argument("--json-log", action="store_true",
                   help="print one JSON object per line (messages, trial_started, trial_finished, finished)")


_OVERRIDES = ("model", "task", "dataset", "split", "text_column", "label_column", "fit_dataset", "fit_split",
              "fit_size", "max_samples", "trials", "all_operators", "seed", "storage", "study_name", "rounds",
              "max_rounds", "timing_samples", "intra_op_threads", "ci_target", "max_seconds", "batch_size",
              "end_to_end", "inter_op_threads", "allow_spinning", "remeasure_front", "isolation", "trial_timeout",
              "trial_memory_mb", "sampler", "enumerate", "sweep_operators", "speedup_estimator")


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """A study file and flags compile into one StudyConfig; flags win."""
    overrides = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    if args.label_map:
        overrides["label_map"] = _parse_label_map(args.label_map)
    if args.modes:
        overrides["modes"] = [m.strip() for m in args.modes.split(",") if m.strip()]
    for name in ("fusions", "formats", "activation_types"):
        if getattr(args, name):
            overrides[name] = _split(getattr(args, name))
    if args.calibration_method:
        methods = _split(args.calibration_method)
        overrides["calibration_method"] = methods if len(methods) > 1 else methods[0]
    if args.calibration_samples:
        try:
            sizes = [int(v) for v in _split(args.calibration_samples)]
        except ValueError:
            raise ConfigError(f"--calibration-samples {args.calibration_samples!r}: give whole numbers, "
                              "e.g. 64 or 64,256.") from None
        overrides["calibration_samples"] = sizes if len(sizes) > 1 else sizes[0]
    if args.exclude_fragile:
        overrides["exclude_fragile"] = {"on": True, "off": False}.get(args.exclude_fragile, "search")
    if args.max_accuracy_loss:
        overrides["max_accuracy_loss"] = _limit(args.max_accuracy_loss)
    if args.study_file:
        return StudyConfig.from_toml(args.study_file, **overrides)
    if "model" in overrides or "dataset" in overrides:
        missing = [k for k in ("model", "dataset") if k not in overrides]
        if missing:
            raise ConfigError(f"--{missing[0]} is missing: give both --model and --dataset, or a study file.")
        return StudyConfig.from_dict(overrides, source="the flags")
    return StudyConfig.default().replace(**overrides)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _limit(text: str) -> float | str:
    """``0.01`` is a fraction of accuracy; anything else (``1%rel``) is checked by the config."""
    try:
        return float(text)
    except ValueError:
        return text


def _parse_label_map(text: str) -> dict[str, int]:
    mapping = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise ConfigError(f"--label-map {text!r}: write NAME=ID pairs, e.g. negative=0,positive=1.")
        mapping[name.strip()] = int(value)
    return mapping


def _progress(args: argparse.Namespace):
    from opsearch.progress import Bar, JsonLog, Lines, Quiet

    if getattr(args, "json_log", False):
        return JsonLog(sys.stdout)
    if getattr(args, "quiet", False):
        return Quiet()
    if sys.stderr.isatty():
        return Bar(sys.stderr)
    return Lines(lambda line: print(line, file=sys.stderr, flush=True))


def cmd_inspect(args: argparse.Namespace) -> int:
    from opsearch.graph import QUANT_MODES, inspect_model
    from opsearch.model_source import prepare_model

    with tempfile.TemporaryDirectory(prefix="opsearch-inspect-") as tmp:
        model = prepare_model(args.model, cache_dir=Path(tmp), task=args.task)
        info = inspect_model(model.onnx_path)
    if args.json:
        print(json.dumps({"model": args.model, "task": model.task, **info.to_dict()}, indent=2))
        return 0
    print(f"{args.model}: {sum(o.count for o in info.operators)} nodes, {len(info.operators)} operator types "
          f"({model.task} model)")
    header = f"{'operator':<24}{'nodes':>6}  " + "  ".join(f"{m:>16}" for m in QUANT_MODES)
    print(header)
    for op in info.operators:
        marks = "  ".join(f"{'yes' if op.quantizable[m] else '-':>16}" for m in QUANT_MODES)
        print(f"{op.op_type:<24}{op.count:>6}  {marks}")
    print("quantizable: read from onnxruntime.quantization.registry (onnxruntime "
          f"{_version('onnxruntime')}).")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from opsearch.study import run_study

    config = config_from_args(args)
    study = run_study(config, progress=_progress(args))
    return _finish(study, config.resolved_storage(), args)


def cmd_resume(args: argparse.Namespace) -> int:
    from opsearch.study import resume_study

    study = resume_study(storage=args.storage, study_name=args.study_name, n_trials=args.trials,
                         progress=_progress(args), **_runtime_overrides(args))
    return _finish(study, args.storage, args)


def cmd_worker(args: argparse.Namespace) -> int:
    from opsearch.study import run_worker

    study = run_worker(storage=args.storage, study_name=args.study_name, n_trials=args.trials,
                       progress=_progress(args), **_runtime_overrides(args))
    return _finish(study, args.storage, args)


def _runtime_overrides(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in ("isolation", "trial_timeout", "trial_memory_mb")
            if getattr(args, k, None) is not None}


def _finish(study, storage: str, args: argparse.Namespace | None = None) -> int:
    from opsearch.plot import draw_pareto, pareto_plot_info
    from opsearch.report import build_report, format_report
    from opsearch.study import cache_dir_for

    report = build_report(study)
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
    from opsearch.remeasure import remeasure_front
    from opsearch.study import create_runner, load_config

    runner = create_runner(load_config(args.storage, args.study_name), progress=_progress(args))
    if remeasure_front(runner) is None:
        raise OpsearchError(f"study {args.study_name!r} has no completed trial on its front to re-measure.")
    return _finish(runner.study, args.storage, args)


def cmd_bench(args: argparse.Namespace) -> int:
    from opsearch.bench import bench
    from opsearch.data import load_texts
    from opsearch.runtime import ThreadSettings

    for name in ("samples", "batch_size", "rounds", "max_rounds", "sessions"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}={getattr(args, name)} must be at least 1.")
    if not 0 < args.ci_target < 1:
        raise ConfigError(f"--ci-target={args.ci_target} must lie between 0 and 1 (e.g. 0.02 for +-2%).")
    texts = load_texts(args.dataset, split=args.split, text_column=args.text_column) if args.dataset else None
    result = bench(args.model_a, args.model_b, texts=texts, samples=args.samples, batch_size=args.batch_size,
                   end_to_end=args.end_to_end, rounds=args.rounds, max_rounds=max(args.rounds, args.max_rounds),
                   ci_target=args.ci_target, max_seconds=args.max_seconds,
                   threads=ThreadSettings.resolve(args.threads, 1, False), sessions_per_model=args.sessions,
                   estimator=args.estimator, seed=args.seed)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from opsearch.effects import study_effects
    from opsearch.formats import render
    from opsearch.report import build_report, write_csv
    from opsearch.study import cache_dir_for, load_existing

    study = load_existing(args.storage, args.study_name)
    report = build_report(study, max_accuracy_loss=args.max_accuracy_loss)
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
    from opsearch.export import choose_trial, export_trial
    from opsearch.study import load_existing

    study = load_existing(args.storage, args.study_name)
    number = choose_trial(study, trial=args.trial, max_accuracy_loss=args.max_accuracy_loss)
    out = export_trial(study, number, args.out_dir, storage=args.storage)
    print(f"trial {number} written to {out}: load it with "
          f"ORTModelForSequenceClassification.from_pretrained({str(out)!r})")
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from opsearch.quantize import QuantRecipe
    from opsearch.sensitivity import format_sensitivity, study_sensitivity

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
        from opsearch.sensitivity import enqueue_fallbacks
        from opsearch.study import load_existing

        queued = enqueue_fallbacks(load_existing(args.storage, args.study_name), args.trial, result)
        print(f"queued {len(queued)} trials: trial {args.trial} with its {', '.join(map(str, queued))} most damaging "
              f"{args.by}(s) in fp32; measure them with `opsearch resume --storage {args.storage} --study-name "
              f"{args.study_name} --trials {len(queued)}`", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from opsearch.plot import draw_effects, draw_pareto, effects_plot_info, pareto_plot_info, write_pareto_html
    from opsearch.report import build_report
    from opsearch.study import cache_dir_for, load_existing

    study = load_existing(args.storage, args.study_name)
    report = build_report(study, max_accuracy_loss=args.max_accuracy_loss)
    if not report.rows:
        raise OpsearchError(f"study {args.study_name!r} has no completed trial to plot yet.")
    html = args.html or (args.out is not None and Path(args.out).suffix.lower() in (".html", ".htm"))
    default = cache_dir_for(args.storage, args.study_name).parent / f"{args.study_name}-pareto"
    out = args.out or default.with_suffix(".html" if html else ".png")
    info = pareto_plot_info(report, y_axis=args.y_axis)
    print(write_pareto_html(info, out) if html else draw_pareto(info, out))
    if args.effects:
        from opsearch.effects import study_effects

        effects = study_effects(study, report=report)
        print(draw_effects(effects_plot_info(effects, title=f"operator and flag effects: {args.study_name}"),
                           args.effects))
    return 0


def _version(name: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(name)


if __name__ == "__main__":
    sys.exit(main())
