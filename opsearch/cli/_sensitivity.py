"""``opsearch sensitivity``: rank a configuration's quantized layers, groups or nodes by the accuracy they cost, and
optionally queue the curve's points as trials of the study."""

from __future__ import annotations

import argparse
import json
import sys

from opsearch.cli._flags import add_storage_flags, progress
from opsearch.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sensitivity", help="rank a configuration's quantized layers (or nodes) by the "
                              "accuracy they cost, and the curve of keeping the worst in fp32")
    add_storage_flags(p)
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
    p.set_defaults(func=take_action)


def take_action(args: argparse.Namespace) -> int:
    from opsearch.search import format_sensitivity, study_sensitivity

    recipe = _recipe(args)
    result = study_sensitivity(storage=args.storage, study_name=args.study_name, trial=args.trial, recipe=recipe,
                               by=args.by, max_excluded=args.max_excluded, samples=args.samples,
                               progress=progress(args))
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_sensitivity(result))
    if args.enqueue:
        from opsearch.search import enqueue_fallbacks
        from opsearch.store import load_existing

        queued = enqueue_fallbacks(load_existing(args.storage, args.study_name), args.trial, result)
        print(f"queued {len(queued)} trials: trial {args.trial} with its {', '.join(map(str, queued))} most damaging "
              f"{args.by}(s) in fp32; measure them with `opsearch resume --storage {args.storage} --study-name "
              f"{args.study_name} --trials {len(queued)}`", file=sys.stderr)
    return 0


def _recipe(args: argparse.Namespace):
    """The ``--recipe`` given (None: ``--trial``'s), after the flags are checked."""
    from opsearch.quantize import QuantRecipe

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
    return recipe
