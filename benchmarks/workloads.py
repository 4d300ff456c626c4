"""Does the best quantization depend on the workload? One study at each batch size, the same configurations.

Runs a study at the first batch size (``--batch-sizes``, default 1: one text per call, unpadded), then the same
study at each other batch size (default 32, padded to the longest text of each batch), measuring exactly the
first run's configurations in the same order (its presets, then the configurations its sampler chose, queued;
see ``early_stopping.py``). Accuracy is evaluated under each study's own batching. For every configuration it
prints, per workload, the accuracy loss, the speedup over fp32 and the p99 latency of one call, with the file
size; then, per workload, the fastest configuration within the limit, the smallest, the avx512_vnni preset beside
them, and where the best static configuration ranks against the best dynamic one.

    python benchmarks/workloads.py                                   # MiniLM SST-2, batch 1 and 32
    python benchmarks/workloads.py studies/minilm-sst2.toml --trials 30 --objectives throughput,accuracy_loss,size

Not a test: about 25 minutes for both runs of 24 trials on 2 cores. The studies and their logs go to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import optuna
from early_stopping import run_pair_member, sampled_configurations

PRESET = "avx512_vnni"


def rows_by_configuration(storage: str, name: str) -> tuple[dict, dict]:
    """Each completed configuration's row (keyed by its parameters), and the study's best-within answers."""
    from opsearch.report import build_report
    from opsearch.store import StudyRecord, best_within

    study = optuna.load_study(study_name=name, storage=storage)
    record = StudyRecord.of(study)
    limit = record.config(name).accuracy_limit(record.baseline_accuracy)
    report = build_report(study, max_accuracy_loss=limit)
    by_trial = {t.number: t for t in study.trials}
    rows = {}
    for r in report.rows:
        twin = r.same_graph_as if r.same_graph_as is not None else r.trial
        source = next(x for x in report.rows if x.trial == twin)
        rows[tuple(sorted(by_trial[r.trial].params.items()))] = {
            "trial": r.trial, "label": by_trial[r.trial].user_attrs.get("label", ""), "mode": r.mode,
            "preset": r.preset, "loss_pt": r.accuracy_loss_pt, "loss_ci_pt": [r.loss_ci_low_pt, r.loss_ci_high_pt],
            "constraint": r.constraint, "speedup": source.speedup, "size_mb": r.size_mb,
            "p50_ms": source.latency_p50_ms, "p99_ms": source.latency_p99_ms, "pareto": r.pareto}
    best = {"fastest": best_within(report.rows, limit), "smallest": best_within(report.rows, limit, objective="size")}
    baseline = record.baseline
    summary = {"limit_pt": None if limit is None else 100 * limit, "machine": record.machine,
               "workload": record.workload, "fp32_size_mb": baseline.get("size_mb"),
               "fp32_p99_ms": (baseline["timing"].get("latency_ms") or {}).get("p99"),
               **{k: None if v is None else v.trial for k, v in best.items()}}
    return rows, summary


def ranks(rows: dict) -> dict:
    """Among configurations within the limit, ranked by speedup: the best static and the best dynamic one's rank."""
    within = sorted((r for r in rows.values() if r["constraint"] == "within" and math.isfinite(r["speedup"])),
                    key=lambda r: -r["speedup"])
    out = {}
    for mode in ("static", "dynamic", "weight_only"):
        place = next((i + 1 for i, r in enumerate(within) if r["mode"] == mode), None)
        out[mode] = None if place is None else {"rank": place, "of": len(within), "trial": within[place - 1]["trial"],
                                                "speedup": within[place - 1]["speedup"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default=str(Path(__file__).resolve().parents[1] / "studies"
                                                        / "minilm-sst2.toml"))
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--objectives", default="throughput,accuracy_loss,size")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="opsearch-workloads-"))
    out.mkdir(parents=True, exist_ok=True)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    name = Path(args.study).stem
    storage = f"sqlite:///{out / 'workloads.db'}"
    results, queue = {}, None
    for batch in batches:
        study_name = f"{name}-batch{batch}"
        settings = ["--batch-size", str(batch), "--objectives", args.objectives]
        started = time.perf_counter()
        wall = run_pair_member(args.study, storage, study_name, ["--trials", str(args.trials)] if queue is None
                               else [], out / f"{study_name}.log", queue, settings=settings)
        rows, summary = rows_by_configuration(storage, study_name)
        results[batch] = {"wall_s": wall, "rows": rows, "summary": summary, "ranks": ranks(rows)}
        print(f"batch {batch}: {len(rows)} configurations in {time.perf_counter() - started:.0f} s", flush=True)
        if queue is None:
            queue = sampled_configurations(storage, study_name)

    first = results[batches[0]]
    print(f"\nCPU: {first['summary']['machine'].get('cpu')} {first['summary']['machine'].get('int8_flags')}; "
          f"limit {first['summary']['limit_pt']} pt; fp32 {first['summary']['fp32_size_mb']:.1f} MB")
    keys = [k for k in first["rows"] if all(k in results[b]["rows"] for b in batches)]
    head = "trial  configuration" + "".join(f" | b{b}: loss pt, speedup, p99 ms" for b in batches) + " | MB"
    print(head)
    for key in sorted(keys, key=lambda k: -first["rows"][k]["speedup"] if math.isfinite(
            first["rows"][k]["speedup"]) else 0):
        row = first["rows"][key]
        cells = "".join(f" | {results[b]['rows'][key]['loss_pt']:+.2f} {results[b]['rows'][key]['speedup']:.2f}x "
                        f"{results[b]['rows'][key]['p99_ms']:.1f}" for b in batches)
        print(f"{row['trial']:>5}  {(row['preset'] or row['label'])[:60]:<60}{cells} | {row['size_mb']:.1f}")
    for b in batches:
        s, r = results[b]["summary"], results[b]["ranks"]
        preset = next((x for x in results[b]["rows"].values() if PRESET in x["preset"].split(" / ")), None)
        print(f"\nbatch {b}: fastest within the limit trial {s['fastest']}, smallest trial {s['smallest']}; "
              f"the {PRESET} preset: " + ("not run" if preset is None else
                                          f"trial {preset['trial']}, {preset['speedup']:.2f}x, loss "
                                          f"{preset['loss_pt']:+.2f} pt, p99 {preset['p99_ms']:.1f} ms, "
                                          f"{preset['size_mb']:.1f} MB"))
        print("  best within the limit per mode (rank by speedup): " + "; ".join(
            f"{mode} " + ("none" if v is None else f"#{v['rank']} of {v['of']} (trial {v['trial']}, "
                                                   f"{v['speedup']:.2f}x)") for mode, v in r.items()))
    serial = {b: {**v, "rows": list(v["rows"].values())} for b, v in results.items()}
    (out / "workloads.json").write_text(json.dumps(serial, indent=2, default=str))
    print(f"\nstudies: {storage}; figures: {out / 'workloads.json'}")


if __name__ == "__main__":
    main()
