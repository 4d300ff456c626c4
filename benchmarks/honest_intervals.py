"""Do opsearch's speedup intervals hold across processes, and does `opsearch bench` tell same from different?

On the MiniLM SST-2 model under ../shared (or --model/--dataset), --processes separate `opsearch bench` processes
(20 by default), each measuring three pairs in turn:
  calibration  dynamic MatMul int8 against fp32: the share of processes whose 95% interval covers the median of
               all processes' estimates (target >= 90%), and the mean half-width (target <= 5%);
  A/A          the int8 model against a byte-identical copy under another path: "no meaningful difference"
               (verdict "same", within bench's 2% margin) in at least 19 of 20;
  A/B          the int8 model against itself with --fp32-nodes kept in fp32 (by default layer 0's feed-forward
               input and attention output projections), a real difference of 5-10%: the right one declared faster
               in at least 19 of 20 (which is faster is decided by the median of all processes).
Every interval is bench's: across sessions, widened by the drift over its run; the verdicts use its margin.
Not a test: it takes about 15 minutes and its numbers depend on the machine.
Run: .venv/bin/python benchmarks/honest_intervals.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _pair import TOKENIZER_FILES, add_model_args


def _with_tokenizer(model_dir: Path, fp32_folder: Path) -> Path:
    for name in TOKENIZER_FILES:
        if (fp32_folder / name).exists():
            (model_dir / name).write_bytes((fp32_folder / name).read_bytes())
    return model_dir


def _matmuls(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "MatMul"]


def _bench(a: Path, b: Path, args, seed: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "opsearch.cli", "bench", str(a), str(b), "--dataset", args.dataset,
                          "--json", "--samples", str(args.samples), "--rounds", str(args.rounds),
                          "--max-rounds", str(args.max_rounds), "--seed", str(seed), "--margin", str(args.margin),
                          *(["--sessions", str(args.sessions)] if args.sessions else [])],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.set_defaults(processes=20)
    parser.add_argument("--samples", type=int, default=100, help="texts per timing round (100)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--max-rounds", type=int, default=24)
    parser.add_argument("--margin", type=float, default=0.02, help="bench's margin (0.02)")
    parser.add_argument("--fp32-nodes", default="layer.0/intermediate/dense,layer.0/attention/output/dense",
                        help="the MatMuls the A/B pair's slower model keeps in fp32: comma-separated parts of their "
                             "names (default: layer 0's feed-forward input and attention output projections, about "
                             "7%% of the int8 model's time on MiniLM)")
    parser.add_argument("--sessions", type=int, default=0,
                        help="sessions per model, the blocks of the interval across sessions (0: bench's default)")
    args = parser.parse_args()

    from opsearch.measure import fingerprint
    from opsearch.quantize import QuantRecipe, quantize
    from opsearch.source import prepare_model

    with tempfile.TemporaryDirectory(prefix="opsearch-honest-") as tmp:
        tmp = Path(tmp)
        fp32 = prepare_model(args.model, cache_dir=tmp)
        s8 = quantize(QuantRecipe("dynamic", ("MatMul",)), fp32_path=fp32.onnx_path, out_dir=tmp / "s8")
        kept = tuple(n for n in _matmuls(fp32.onnx_path) if any(part in n for part in args.fp32_nodes.split(",")))
        if not kept:
            parser.error(f"--fp32-nodes {args.fp32_nodes!r} names no MatMul of the model")
        slower = quantize(QuantRecipe("dynamic", ("MatMul",), nodes_to_exclude=kept), fp32_path=fp32.onnx_path,
                          out_dir=tmp / "ffn-fp32")
        s8_dir = _with_tokenizer(s8.path.parent, fp32.folder)
        slower_dir = _with_tokenizer(slower.path.parent, fp32.folder)
        copy = shutil.copytree(s8_dir, tmp / "s8-copy")
        pairs = {"calibration": (s8_dir, fp32.folder), "A/A": (s8_dir, copy), "A/B": (s8_dir, slower_dir)}
        machine = fingerprint({})
        cpu = f"{machine.get('cpu', '?')} (int8 flags {', '.join(machine.get('int8_flags', [])) or 'none'})"
        print(f"CPU: {cpu}; {args.processes} processes, each: {', '.join(pairs)}; {args.samples} texts per round, "
              f"{args.rounds}-{args.max_rounds} rounds, sessions per model: {args.sessions or 'default'}", flush=True)
        results: dict[str, list[dict]] = {name: [] for name in pairs}
        for i in range(args.processes):
            for name, (a, b) in pairs.items():
                results[name].append(_bench(a, b, args, seed=i))
            line = "   ".join(f"{name} {r[-1]['speedup']:.3f}x [{r[-1]['speedup_ci'][0]:.3f}-"
                               f"{r[-1]['speedup_ci'][1]:.3f}] {r[-1]['verdict']}" for name, r in results.items())
            print(f"process {i + 1}: {line}", flush=True)

    print()
    calibration = results["calibration"]
    centre = statistics.median(r["speedup"] for r in calibration)
    covered = sum(r["speedup_ci"][0] <= centre <= r["speedup_ci"][1] for r in calibration)
    rounds_only = sum(r["rounds_ci"][0] <= centre <= r["rounds_ci"][1] for r in calibration)
    half = statistics.mean(r["ci_halfwidth"] for r in calibration)
    n = len(calibration)
    print(f"calibration: median of {n} processes {centre:.3f}x; intervals covering it {covered}/{n} "
          f"({covered / n:.0%}, target >= 90%: {'met' if covered / n >= 0.9 else 'NOT met'}); the bootstrap over "
          f"rounds alone covers it {rounds_only}/{n}; mean half-width {half:.1%} (target <= 5%: "
          f"{'met' if half <= 0.05 else 'NOT met'})")
    within = sum(r["speedup_ci_sessions"][0] <= centre <= r["speedup_ci_sessions"][1] for r in calibration)
    drift = statistics.median(r["drift_sd"] for r in calibration)
    print(f"  without the drift term {within}/{n}; median drift term {drift:.1%} (sd, log scale)")
    same = sum(r["verdict"] == "same" for r in results["A/A"])
    most = statistics.median(r["most_apart"] for r in results["A/A"])
    met = "met" if same >= 0.95 * n else "NOT met"
    verdicts = ", ".join(f"{v} {sum(r['verdict'] == v for r in results['A/A'])}" for v in
                         ("same", "a_faster", "b_faster", "undecided"))
    print(f"A/A: 'no meaningful difference' (margin {args.margin:.0%}) in {same}/{n} (target >= 19 of 20: {met}); "
          f"median 'differ by at most' {most:.1%}; verdicts: {verdicts}")
    ab = results["A/B"]
    truth = "a_faster" if statistics.median(r["speedup"] for r in ab) > 1 else "b_faster"
    right = sum(r["verdict"] == truth for r in ab)
    print(f"A/B (all MatMuls int8 against {len(kept)} of them kept in fp32: {', '.join(kept)}): median speedup "
          f"{statistics.median(r['speedup'] for r in ab):.3f}x; "
          f"the right one ({truth}) declared faster in {right}/{n} (target >= 19 of 20: "
          f"{'met' if right >= 0.95 * n else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
