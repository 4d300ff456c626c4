"""How reproducible is a speedup? The same quantized model against fp32, measured in 5 separate processes.

Three methods, on the MiniLM SST-2 model under ../shared (or --model/--dataset):
  naive    one timed pass over the whole evaluation set per model per process, as the article measured;
  median   `opsearch bench`'s paired, interleaved rounds: the median of per-round ratios;
  floor    the same rounds: each model's summed fastest time per text, fp32's over the candidate's
           (opsearch's default; adaptive repeats run until its interval is within --ci-target).
Prints each method's speedups and their spread, (max - min) / median. Not a test: it takes minutes and its
numbers depend on the machine. Run: .venv/bin/python benchmarks/speedup_spread.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _pair import add_model_args, quantized_pair, spread

NAIVE = r"""
import csv, sys, time
import numpy as np, onnxruntime as ort
from transformers import AutoTokenizer
from opsearch.measure import make_session, physical_cores, ThreadSettings
quantized, fp32, data, threads = sys.argv[1:5]
tok = AutoTokenizer.from_pretrained(fp32.rsplit("/", 1)[0])
texts = [r["sentence"] for r in csv.DictReader(open(data), delimiter="\t", quoting=csv.QUOTE_NONE)]
feeds = [dict(tok(t, return_tensors="np")) for t in texts]
def one_pass(path):
    s = make_session(path, ThreadSettings(int(threads) or physical_cores()))
    names = {i.name for i in s.get_inputs()}
    fs = [{k: v.astype(np.int64) for k, v in f.items() if k in names} for f in feeds]
    s.run(None, fs[0])
    t = time.perf_counter()
    for f in fs:
        s.run(None, f)
    return time.perf_counter() - t
t_fp32 = one_pass(fp32)
t_q = one_pass(quantized)
print(t_fp32 / t_q)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--ci-target", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=10, help="rounds always measured (default 10)")
    parser.add_argument("--max-rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: physical cores)")
    parser.add_argument("--sessions", type=int, default=3, help="sessions per model that bench rotates over (3)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="opsearch-bench-") as tmp:
        fp32, q, recipe = quantized_pair(args.model, Path(tmp))
        threads = args.threads or "physical cores"
        print(f"model {args.model}, quantized {recipe.label()}, {args.processes} processes each, intra-op threads: "
              f"{threads}, {args.sessions} sessions per model", flush=True)

        results: dict[str, list[float]] = {"naive": [], "median": [], "floor": []}
        seconds: dict[str, float] = {"naive": 0.0, "bench": 0.0}  # the median and the floor share bench's rounds
        for i in range(args.processes):
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", NAIVE, str(q.path), str(fp32.onnx_path), args.dataset,
                                  str(args.threads)],
                                 capture_output=True, text=True, check=True).stdout
            seconds["naive"] += time.perf_counter() - started
            results["naive"].append(float(out.strip().splitlines()[-1]))
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "opsearch.cli", "bench", str(q.path.parent), str(fp32.folder),
                                  "--dataset", args.dataset, "--json", "--ci-target", str(args.ci_target),
                                  "--rounds", str(args.rounds), "--max-rounds", str(max(args.rounds, args.max_rounds)),
                                  "--seed", str(i), "--sessions", str(args.sessions),
                                  *(["--threads", str(args.threads)] if args.threads else [])],
                                 capture_output=True, text=True, check=True).stdout
            seconds["bench"] += time.perf_counter() - started
            record = json.loads(out)
            results["median"].append(record["median_ratio"])
            results["floor"].append(record["floor_speedup"])
            print(f"process {i + 1}: naive {results['naive'][-1]:.3f}x   median {record['median_ratio']:.3f}x   "
                  f"floor {record['floor_speedup']:.3f}x (95% CI {record['speedup_ci'][0]:.3f}-"
                  f"{record['speedup_ci'][1]:.3f}, {record['rounds']} rounds; other processes "
                  f"{record['other_cores'] or 0:.2f} cores)", flush=True)

    print()
    for method, values in results.items():
        print(f"{method:>8}: {min(values):.3f}x to {max(values):.3f}x, median {statistics.median(values):.3f}x, "
              f"spread {spread(values):.1%}  ({seconds['naive' if method == 'naive' else 'bench'] / len(values):.0f} s "
              "per process)")
    ours = spread(results["floor"])
    ratio = spread(results["naive"]) / max(ours, 1e-9)
    print(f"the naive spread is {ratio:.1f}x opsearch's (floor); targets: opsearch spread <= 2% "
          f"({'met' if ours <= 0.02 else 'NOT met'}), at least 5x smaller ({'met' if ratio >= 5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
