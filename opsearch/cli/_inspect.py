"""``opsearch inspect``: a model's operator types and which ONNX Runtime can quantize, its groups found from the
graph's structure, and the ranges pass; computed here, shown by :func:`opsearch.report.format_inspection`."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from opsearch.config import TASKS
from opsearch.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspect", help="list a model's operator types and which ONNX Runtime can quantize")
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
    p.set_defaults(func=take_action)


def take_action(args: argparse.Namespace) -> int:
    from opsearch.quantize import inspect_model
    from opsearch.report import Inspection, format_inspection, inspection_json
    from opsearch.source import prepare_model

    if args.rows < 1 or args.max_length < 2:
        raise ConfigError(f"--rows {args.rows} / --max-length {args.max_length}: give at least 1 row of 2 tokens")
    with tempfile.TemporaryDirectory(prefix="opsearch-inspect-") as tmp:
        model = prepare_model(args.model, cache_dir=Path(tmp), task=args.task, need_tokenizer=bool(args.ranges))
        inspection = Inspection(args.model, model.task, inspect_model(model.onnx_path),
                                _graph_groups(model.onnx_path) if args.groups or args.ranges else None,
                                _ranges(model, args) if args.ranges else None)
    print(inspection_json(inspection) if args.json else format_inspection(inspection, list_groups=args.groups))
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
