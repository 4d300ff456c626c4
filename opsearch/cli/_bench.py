"""``opsearch bench``: the paired speedup of one ONNX model over another, with its confidence interval, timed as a
study times its trials (:func:`opsearch.measure.bench`)."""

from __future__ import annotations

import argparse
import json

from opsearch.cli._flags import add_setting_flags, check_positive
from opsearch.config import StudyConfig

# The flags that set the study's timing settings, named as `opsearch bench` has always named them.
BENCH_SETTINGS = {"timing_samples": "--samples", "batch_size": "--batch-size", "end_to_end": "--end-to-end",
                  "rounds": "--rounds", "max_rounds": "--max-rounds", "ci_target": "--ci-target",
                  "max_seconds": "--max-seconds", "intra_op_threads": "--threads", "sessions_per_model": "--sessions",
                  "speedup_estimator": "--estimator", "seed": "--seed", "encoding": "--encoding",
                  "margin": "--margin"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench",
                              help="paired speedup of ONNX model A over model B, with its confidence interval")
    p.add_argument("model_a", help="the candidate: an ONNX model folder or file (or anything MODEL takes)")
    p.add_argument("model_b", help="the reference, e.g. the fp32 model")
    p.add_argument("--dataset", help="texts to time (default: synthetic sentences from B's vocabulary)")
    p.add_argument("--split")
    p.add_argument("--text-column")
    p.set_defaults(bench_flags=add_setting_flags(p, names=list(BENCH_SETTINGS), rename=BENCH_SETTINGS,
                                                 with_defaults=True))
    p.add_argument("--json", action="store_true", help="print a JSON object (speedup, speedup_ci, rounds, ...)")
    p.set_defaults(func=take_action)


def take_action(args: argparse.Namespace) -> int:
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
                   protocol=protocol, margin=args.margin)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0
