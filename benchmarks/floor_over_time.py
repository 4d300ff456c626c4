"""Does the speedup itself move with the machine's state? Paired blocks of rounds, spread over minutes.

On the MiniLM SST-2 model under ../shared (or --model/--dataset), with the quantized configuration of
speedup_spread.py (dynamic, MatMul only): each of --processes separate processes times --blocks blocks of
--rounds paired rounds (fp32 and int8, three sessions each, shuffled order), with --pause seconds of rest
between blocks. It prints each block's floor speedup (see opsearch/timing.py), the floor over all the
process's rounds, and the median of per-round ratios, then the spread of each across processes.

If blocks of the same process disagree by more than their own noise, the machine's state changes the
speedup, and no estimator computed inside one short window can be reproducible to better than that.
Not a test: it takes ~2.5 minutes per process. Run: .venv/bin/python benchmarks/floor_over_time.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _pair import add_model_args, quantized_pair, spread


def child(args: argparse.Namespace) -> None:
    import numpy as np
    from transformers import AutoTokenizer

    from opsearch.measure import ThreadSettings, Workload, floor_seconds, make_session, physical_cores
    from opsearch.source import load_texts

    tokenizer = AutoTokenizer.from_pretrained(Path(args.fp32).parent)
    texts = load_texts(args.dataset)[:args.samples]
    workload = Workload(texts, tokenizer)
    threads = ThreadSettings(args.threads or physical_cores())
    sides = [workload.runner([make_session(path, threads) for _ in range(3)]) for path in (args.fp32, args.quantized)]
    rng = np.random.default_rng(args.seed)
    for _ in range(2):  # warm-up rounds
        for run in sides:
            run()
    calls: list[list[np.ndarray]] = [[], []]
    totals: list[list[float]] = [[], []]
    for block in range(args.blocks):
        if block:
            time.sleep(args.pause)
        for _ in range(args.rounds):
            for i in rng.permutation(2):
                seconds = sides[i]()
                calls[i].append(seconds)
                totals[i].append(float(seconds.sum()))
    fp32, q = np.stack(calls[0]), np.stack(calls[1])
    n = args.rounds
    blocks = [floor_seconds(fp32[b * n:(b + 1) * n]) / floor_seconds(q[b * n:(b + 1) * n]) for b in range(args.blocks)]
    print(json.dumps({"blocks": blocks, "floor": floor_seconds(fp32) / floor_seconds(q),
                      "median": float(np.median(np.asarray(totals[0]) / np.asarray(totals[1])))}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=10, help="paired rounds per block (10)")
    parser.add_argument("--pause", type=float, default=20.0, help="seconds of rest between blocks (20)")
    parser.add_argument("--samples", type=int, default=150, help="texts per round (150)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: physical cores)")
    parser.add_argument("--child", nargs=2, metavar=("FP32", "QUANTIZED"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.fp32, args.quantized = args.child
        child(args)
        return 0

    with tempfile.TemporaryDirectory(prefix="opsearch-bench-") as tmp:
        fp32, q, recipe = quantized_pair(args.model, Path(tmp))
        print(f"model {args.model}, quantized {recipe.label()}: {args.processes} processes of {args.blocks} blocks "
              f"of {args.rounds} paired rounds, {args.pause:.0f} s apart", flush=True)
        records = []
        for i in range(args.processes):
            out = subprocess.run([sys.executable, __file__, "--child", str(fp32.onnx_path), str(q.path),
                                  "--dataset", args.dataset, "--blocks", str(args.blocks), "--rounds", str(args.rounds),
                                  "--pause", str(args.pause), "--samples", str(args.samples), "--threads",
                                  str(args.threads), "--seed", str(i)],
                                 capture_output=True, text=True, check=True).stdout
            records.append(json.loads(out.strip().splitlines()[-1]))
            r = records[-1]
            print(f"process {i + 1}: blocks {' '.join(f'{b:.3f}' for b in r['blocks'])} (spread "
                  f"{spread(r['blocks']):.1%})   floor of all {r['floor']:.3f}x   median {r['median']:.3f}x",
                  flush=True)
    print()
    for label, values in (("first block's floor", [r["blocks"][0] for r in records]),
                          ("floor of all blocks", [r["floor"] for r in records]),
                          ("median of per-round ratios", [r["median"] for r in records])):
        print(f"{label:>27}: {min(values):.3f}x to {max(values):.3f}x, spread {spread(values):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
