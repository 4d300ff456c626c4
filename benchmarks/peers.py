"""What do opsearch's peers answer on the same model, data and accuracy limit, and how fast are their answers?

Each tool runs as its users run it, each in a virtual environment of its own built from PyPI under --envs (their
pins clash with opsearch's: Intel Neural Compressor 2.6 needs numpy<2 and onnx 1.18), all on the same fp32 ONNX
export (opsearch's), the same evaluation rows and the same limit:

  inc         Intel Neural Compressor 2.6, ``quantization.fit`` with ``PostTrainingQuantConfig(approach="dynamic")``
              and an absolute accuracy criterion of --max-accuracy-loss, its ``eval_func`` scoring the rows;
  inc-static  the same with ``approach="static"`` (calibrated on --calibration-rows fit rows; ~9 min on 2 cores);
  olive       Olive 0.13, a workflow of one ``OnnxQuantization`` pass searched with TPE (``max_iter`` caps it: Olive
              drops ``sampler_config``), its built-in accuracy metric (goal: max-degradation of the limit) and
              latency metric, as Olive's BERT examples do;
  opsearch    ``opsearch run STUDY --trials N`` in this environment, then ``opsearch export --best`` (on rows too
              few for any trial to be surely within the limit, the fastest whose point estimate is, marked so).

The wall time of each run to its saved answer is recorded. Then fp32 and every answer are timed in ONE interleaved
session with opsearch's paired timing (``measure_interleaved``, the floor estimator; --rounds x --timing-samples texts,
batch 1, unpadded) and evaluated on the same rows at batch 1, so every speedup and loss comes from the same
measurements, not from each tool's own. The table names the CPU: the figures belong to it.

    python benchmarks/peers.py                     # MiniLM SST-2 under ../shared: inc, olive (20), opsearch (20)
    python benchmarks/peers.py --inc-static        # and INC's static tuning
    python benchmarks/peers.py --rows 100 --olive-max-iter 2 --trials 2 --rounds 5 --timing-samples 20   # smoke
    python benchmarks/peers.py --reuse             # time the answers an earlier run left in --out again

Not a test: about 20 minutes on 2 cores (30 with --inc-static), plus a few minutes of downloads for the first
run's environments. Writes peers.json, peers.md (the table) and each tool's log, settings and answer under --out.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from _pair import SHARED

ROOT = Path(__file__).resolve().parents[1]
PEERS = ("inc", "inc-static", "olive", "opsearch")
TIE_ALPHA = 0.05

# What each peer's environment installs, in one resolver call (installed one by one, pip upgrades what an earlier
# call settled: datasets alone pulls a huggingface-hub that transformers 4.57 refuses). ONNX Runtime is pinned to
# this environment's, so every tool quantizes with the runtime that times the answers; so is datasets (where an
# environment takes it), which this environment resolved with transformers<4.58: unpinned, pip takes a datasets
# that needs huggingface-hub 1.x and backtracks transformers to versions it must build from source.
ENVIRONMENTS = {
    # numpy<2: INC pins it; six and transformers: imported but not declared; onnx 1.18: 1.19 removed onnx.mapping,
    # which INC calls (it then logs the error and reports "Not found any quantized model").
    "inc-2.6": ["neural-compressor==2.6", "numpy<2", "six", "transformers<4.58", "onnx==1.18.0"],
    # requests: imported by Olive's telemetry; datasets: its HuggingfaceContainer loads the rows; torch 2.13.0: the
    # CPU build (an unpinned torch resolves to a CUDA build of several GB).
    "olive-0.13": ["olive-ai==0.13.0", "torch==2.13.0", "requests", "datasets", "transformers<4.58"],
}
PINNED = ("onnxruntime", "datasets")  # to this environment's versions
ENV_OF = {"inc": "inc-2.6", "inc-static": "inc-2.6", "olive": "olive-0.13"}
LABELS = {"inc": "Intel Neural Compressor 2.6, `quantization.fit`, dynamic",
          "inc-static": "Intel Neural Compressor 2.6, `quantization.fit`, static",
          "olive": "Olive 0.13, `OnnxQuantization`, TPE",
          "opsearch": "opsearch"}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OLIVE_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}

# Run in INC's environment: spec.json in, the answer and record.json out.
INC_RUNNER = r"""
import json, sys, time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from transformers import AutoTokenizer

spec = json.loads(Path(sys.argv[1]).read_text())
tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"])


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def feed(text):
    encoded = tokenizer(text, truncation=True, max_length=spec["max_length"], return_tensors="np")
    return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}


evaluated = rows(spec["eval"])
feeds = [feed(r["sentence"]) for r in evaluated]
labels = np.array([r["label"] for r in evaluated])
evaluations = []


def eval_func(model):
    # INC hands over the candidate as an onnx.ModelProto; its accuracy on the rows, one text per call.
    started = time.perf_counter()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    predictions = [int(session.run(None, {k: v for k, v in f.items() if k in names})[0].argmax()) for f in feeds]
    accuracy = float(np.mean(np.asarray(predictions) == labels))
    evaluations.append({"accuracy": accuracy, "seconds": round(time.perf_counter() - started, 2)})
    return accuracy


class CalibrationLoader:
    # What INC's ONNX Runtime adaptor iterates: (inputs, label) pairs, and a batch_size.
    batch_size = 1

    def __init__(self, texts):
        self.texts = texts

    def __iter__(self):
        for text in self.texts:
            yield feed(text), 0


from neural_compressor import PostTrainingQuantConfig, quantization
from neural_compressor.config import AccuracyCriterion

conf = PostTrainingQuantConfig(
    approach=spec["approach"], calibration_sampling_size=[spec["calibration_rows"]],
    accuracy_criterion=AccuracyCriterion(higher_is_better=True, criterion="absolute", tolerable_loss=spec["limit"]))
calibration = None
if spec["approach"] == "static":
    calibration = CalibrationLoader([r["sentence"] for r in rows(spec["fit"])][: spec["calibration_rows"]])
started = time.perf_counter()
quantized = quantization.fit(model=spec["model"], conf=conf, eval_func=eval_func, calib_dataloader=calibration)
if quantized is None:
    sys.exit("neural_compressor.quantization.fit returned no model within the accuracy criterion")
answer = Path(spec["answer"])
answer.mkdir(parents=True, exist_ok=True)
quantized.save(str(answer / "model.onnx"))
Path(spec["record"]).write_text(json.dumps({
    "seconds_in_fit": round(time.perf_counter() - started, 1), "model": str(answer / "model.onnx"),
    "trials": len(evaluations) - 1, "evaluations": evaluations}, indent=2))
"""

# Run in Olive's environment: spec.json in, the workflow's config, its answer and record.json out.
OLIVE_RUNNER = r"""
import json, sys, time
from pathlib import Path

spec = json.loads(Path(sys.argv[1]).read_text())
work = Path(spec["work"])


def data_config(name, path, max_samples=None):
    # Rows from a local JSON Lines file; the task set on both components (otherwise Olive fills in its default,
    # text generation, for an ONNX input model).
    return {"name": name, "type": "HuggingfaceContainer",
            "load_dataset_config": {"data_name": "json", "data_files": path, "split": "train"},
            "pre_process_data_config": {"model_name": spec["tokenizer"], "input_cols": ["sentence"],
                                        "label_col": "label", "max_length": spec["max_length"],
                                        "task": "text-classification", "max_samples": max_samples},
            "post_process_data_config": {"task": "text-classification"},
            "dataloader_config": {"batch_size": 1}}


accuracy = {"name": "accuracy_score", "priority": 1, "goal": {"type": "max-degradation", "value": spec["limit"]}}
if spec["classes"] > 2:
    accuracy["metric_config"] = {"task": "multiclass", "num_classes": spec["classes"]}
config = {
    "input_model": {"type": "ONNXModel", "model_path": spec["model"]},
    "systems": {"local_system": {"type": "LocalSystem", "accelerators": [
        {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}},
    "data_configs": [data_config("eval", spec["eval"]),
                     data_config("calibration", spec["fit"], spec["calibration_rows"])],
    # "type": "OnnxEvaluator": without it the evaluator crashes in resource_path.py.
    "evaluators": {"common_evaluator": {"type": "OnnxEvaluator", "metrics": [
        {"name": "accuracy", "type": "accuracy", "data_config": "eval", "sub_types": [accuracy]},
        {"name": "latency", "type": "latency", "data_config": "eval", "sub_types": [{"name": "avg", "priority": 2}]},
    ]}},
    "passes": {"quantization": {"type": "OnnxQuantization", "data_config": "calibration"}},
    "search_strategy": {"execution_order": "joint", "sampler": "tpe", "max_iter": spec["max_iter"]},
    "evaluator": "common_evaluator", "host": "local_system", "target": "local_system",
    "cache_dir": str(work / "cache"), "output_dir": str(work / "output"),
}
(work / "olive_config.json").write_text(json.dumps(config, indent=2))

from olive.workflows import run as olive_run

started = time.perf_counter()
output = olive_run(str(work / "olive_config.json"))
best = output.get_best_candidate() if output is not None else None
if best is None or not best.model_path:
    sys.exit("olive.workflows.run produced no output model")
footprint = json.loads((work / "output" / "footprint.json").read_text())
steps = [node for node in footprint.values() if node.get("from_pass")]
chosen = footprint.get(best.model_id, {}).get("pass_run_config") or {}
shown = ("quant_mode", "precision", "per_channel", "reduce_range", "quant_preprocess", "quant_format",
         "activation_type", "calibrate_method")
Path(spec["record"]).write_text(json.dumps({
    "seconds_in_run": round(time.perf_counter() - started, 1), "model": str(best.model_path),
    "trials": len(steps), "evaluated": sum(1 for node in steps if node.get("metrics")),
    # A parameter the chosen point left out (static-only ones in dynamic mode) still holds its search space.
    "chosen": {k: chosen[k] for k in shown if isinstance(chosen.get(k), (str, bool, int, float))
               and chosen[k] != "OLIVE_IGNORED_PARAM_VALUE"},
    "metrics": best.metrics_value}, indent=2, default=str))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-sst2"),
                        help="checkpoint folder, or ONNX model with its tokenizer (default: MiniLM SST-2)")
    parser.add_argument("--dataset", default=str(SHARED / "data" / "sst2" / "validation.tsv"),
                        help="the labelled evaluation rows every tool is judged on (default: SST-2 validation)")
    parser.add_argument("--fit-dataset", default=str(SHARED / "data" / "sst2" / "train.tsv"),
                        help="where calibration rows come from, never the evaluated ones (default: SST-2 train)")
    parser.add_argument("--rows", type=int, default=None, help="only the first N evaluation rows (default: all)")
    parser.add_argument("--max-accuracy-loss", type=float, default=0.01,
                        help="the limit every tool is given, a fraction of accuracy (default 0.01: one point)")
    parser.add_argument("--peers", default="inc,olive,opsearch",
                        help=f"comma list of {', '.join(PEERS)} (default: inc,olive,opsearch)")
    parser.add_argument("--inc-static", action="store_true", help="add inc-static to --peers (about 9 minutes)")
    parser.add_argument("--olive-max-iter", type=int, default=20, help="Olive's search steps (default 20)")
    parser.add_argument("--study", default=str(ROOT / "studies" / "minilm-sst2.toml"), help="opsearch's study file")
    parser.add_argument("--trials", type=int, default=20, help="opsearch's trials (default 20)")
    parser.add_argument("--calibration-rows", type=int, default=100,
                        help="fit rows INC static and Olive calibrate on (default 100, INC's sampling size)")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per text (default 256, opsearch's)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds (default 30)")
    parser.add_argument("--timing-samples", type=int, default=150, help="texts per round (default 150)")
    parser.add_argument("--sessions-per-model", type=int, default=3,
                        help="sessions of each model the rounds rotate over (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: physical cores)")
    parser.add_argument("--envs", type=Path, default=Path.home() / ".cache" / "opsearch-peers",
                        help="where the peers' virtual environments are built (default ~/.cache/opsearch-peers)")
    parser.add_argument("--out", type=Path, default=ROOT / "opsearch-runs" / "peers",
                        help="logs, answers, peers.json and peers.md (default opsearch-runs/peers)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the answers an earlier run left in --out; run only the tools without one")
    args = parser.parse_args()
    peers = [p.strip() for p in args.peers.split(",") if p.strip()] + (["inc-static"] if args.inc_static else [])
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        parser.error(f"--peers: unknown {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    peers = [p for p in PEERS if p in peers]
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)

    inputs = prepare_inputs(args)
    runs = {}
    for peer in peers:
        runs[peer] = run_tool(peer, args, inputs)
    results = time_and_evaluate(args, inputs, runs)
    (args.out / "peers.json").write_text(json.dumps(results, indent=2, default=str))
    table = markdown(results)
    (args.out / "peers.md").write_text(table)
    print("\n" + table)
    print(f"figures: {args.out / 'peers.json'}; table: {args.out / 'peers.md'}")
    return 0


# Inputs -----------------------------------------------------------------------------------------------------------


def prepare_inputs(args) -> dict:
    """The fp32 export every tool starts from, and the rows as JSON Lines every tool reads: the evaluated rows
    (labels mapped to the model's class ids) and the fit rows calibration draws from."""
    from opsearch.config import StudyConfig
    from opsearch.source import load_study_data, prepare_model

    started = time.perf_counter()
    model = prepare_model(args.model, cache_dir=args.out / "model")
    config = StudyConfig(model=str(model.folder), dataset=args.dataset, fit_dataset=args.fit_dataset,
                         max_length=args.max_length)
    data = load_study_data(config, id2label=model.id2label, task=model.task)
    evaluated = data.eval.take(args.rows) if args.rows else data.eval
    folder = args.out / "data"
    folder.mkdir(exist_ok=True)
    files = {"eval": folder / "eval.jsonl", "fit": folder / "fit.jsonl"}
    for name, rows in (("eval", evaluated), ("fit", data.fit.take(max(args.calibration_rows, 1)))):
        files[name].write_text("".join(json.dumps({"sentence": t, "label": int(y)}) + "\n"
                                       for t, y in zip(rows.texts, rows.labels.tolist(), strict=True)))
    print(f"fp32 model: {model.onnx_path}; {len(evaluated)} evaluation rows, {args.calibration_rows} calibration "
          f"rows ({time.perf_counter() - started:.0f} s)", flush=True)
    return {"model": model, "texts": evaluated.texts, "labels": evaluated.labels, "files": files,
            "classes": max(len(data.label_names), 2)}


# Environments -----------------------------------------------------------------------------------------------------


def ensure_env(name: str, envs: Path) -> Path:
    """The Python of the peer's environment, built (or rebuilt, when its recipe changed) under ``envs``."""
    pins = {p: f"{p}=={importlib.metadata.version(p)}" for p in PINNED}
    requirements = [pins.get(r, r) for r in ENVIRONMENTS[name]] + [pins["onnxruntime"]]
    folder = envs / name
    python = folder / "bin" / "python"
    marker = folder / "opsearch-peer.json"
    if python.is_file() and marker.is_file() and json.loads(marker.read_text()).get("requirements") == requirements:
        return python
    shutil.rmtree(folder, ignore_errors=True)
    envs.mkdir(parents=True, exist_ok=True)
    print(f"{name}: building its environment in {folder} (pip install {' '.join(requirements)}) ...", flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    log = folder / "install.log"
    with log.open("w") as out:
        done = subprocess.run([str(python), "-m", "pip", "install", *requirements], stdout=out,
                              stderr=subprocess.STDOUT, env=_clean_env())
    if done.returncode:
        raise SystemExit(f"{name}: pip install failed; see {log}")
    frozen = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    marker.write_text(json.dumps({"requirements": requirements, "installed": frozen.split()}, indent=2))
    print(f"{name}: installed in {time.perf_counter() - started:.0f} s", flush=True)
    return python


def _clean_env() -> dict:
    """This process's environment without what points Python at opsearch's checkout or environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **OFFLINE}


# The tools --------------------------------------------------------------------------------------------------------


def run_tool(peer: str, args, inputs: dict) -> dict:
    """Run one tool to its saved answer (or reuse an earlier run's); its record: wall time, trials, answer path."""
    work = args.out / peer
    record_path = work / "record.json"
    if args.reuse and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("model") and Path(record["model"]).is_file():
            print(f"{peer}: reusing the answer in {record['model']}", flush=True)
            return record
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        record = run_opsearch(args, inputs, work) if peer == "opsearch" else run_peer(peer, args, inputs, work)
    except PeerFailed as exc:
        record = {"failed": str(exc)}
    record_path.write_text(json.dumps(record, indent=2, default=str))
    if "failed" in record:
        print(f"{peer}: FAILED: {record['failed']}", flush=True)
    else:
        print(f"{peer}: {_duration(record['wall_s'])} to its answer, {_effort(peer, record)}: {record['model']}",
              flush=True)
    return record


class PeerFailed(Exception):
    pass


def run_peer(peer: str, args, inputs: dict, work: Path) -> dict:
    python = ensure_env(ENV_OF[peer], args.envs)
    model, files = inputs["model"], inputs["files"]
    spec = {"model": str(model.onnx_path), "tokenizer": str(model.folder), "eval": str(files["eval"]),
            "fit": str(files["fit"]), "max_length": args.max_length, "limit": args.max_accuracy_loss,
            "calibration_rows": args.calibration_rows, "classes": inputs["classes"], "work": str(work),
            "answer": str(work / "answer"), "record": str(work / "runner-record.json"),
            "approach": "static" if peer == "inc-static" else "dynamic", "max_iter": args.olive_max_iter}
    (work / "spec.json").write_text(json.dumps(spec, indent=2))
    runner = work / "runner.py"
    runner.write_text(OLIVE_RUNNER if peer == "olive" else INC_RUNNER)
    print(f"{peer}: running ...", flush=True)
    started = time.perf_counter()
    with (work / "log.txt").open("w") as log:  # cwd=work: INC writes its nc_workspace/ there
        done = subprocess.run([str(python), str(runner), str(work / "spec.json")], cwd=work, stdout=log,
                              stderr=subprocess.STDOUT, env=_clean_env())
    wall = time.perf_counter() - started
    if done.returncode or not Path(spec["record"]).is_file():
        tail = (work / "log.txt").read_text().strip().splitlines()[-1:] or ["no output"]
        raise PeerFailed(f"exit {done.returncode} after {wall:.0f} s: {tail[0][:300]} (log: {work / 'log.txt'})")
    return {**json.loads(Path(spec["record"]).read_text()), "wall_s": round(wall, 1)}


def run_opsearch(args, inputs: dict, work: Path) -> dict:
    """``opsearch run STUDY --trials N`` on the same export, rows and limit, then ``opsearch export --best``.

    ``--best`` exports only a trial whose whole loss interval lies within the limit. On few rows none may: then,
    as the report itself suggests, the fastest trial whose interval straddles the limit with its point estimate
    within it (what INC and Olive accept) is exported with ``--trial``, and the record says so."""
    from opsearch.quantize import QuantRecipe
    from opsearch.store import faster_uncertain, load_existing, trial_rows

    storage = f"sqlite:///{work / 'study.db'}"
    common = ["--storage", storage, "--study-name", "peers"]
    opsearch = [sys.executable, "-m", "opsearch.cli"]
    run = [*opsearch, "run", args.study, "--model", str(inputs["model"].folder),
           "--dataset", str(inputs["files"]["eval"]), "--fit-dataset", args.fit_dataset,
           "--max-accuracy-loss", str(args.max_accuracy_loss), "--max-length", str(args.max_length),
           "--trials", str(args.trials), *common]
    answer = work / "answer"
    print(f"opsearch: running {Path(args.study).name} with --trials {args.trials} ...", flush=True)
    started = time.perf_counter()
    with (work / "log.txt").open("w") as log:

        def call(command: list[str]) -> int:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode

        if call(run):
            raise PeerFailed(f"opsearch run failed (log: {work / 'log.txt'})")
        uncertain = None
        if call([*opsearch, "export", *common, "--best", "--max-accuracy-loss", str(args.max_accuracy_loss),
                 str(answer)]):
            study = load_existing(storage, "peers")
            limit_pt = 100 * args.max_accuracy_loss
            rows = [r for r in faster_uncertain(trial_rows(study, max_accuracy_loss=args.max_accuracy_loss),
                                                args.max_accuracy_loss, None) if r.accuracy_loss_pt <= limit_pt]
            if not rows:
                raise PeerFailed("no trial within the limit, surely or by its point estimate "
                                 f"(log: {work / 'log.txt'})")
            uncertain = rows[0].trial
            shutil.rmtree(answer, ignore_errors=True)
            if call([*opsearch, "export", *common, "--trial", str(uncertain), str(answer)]):
                raise PeerFailed(f"opsearch export --trial {uncertain} failed (log: {work / 'log.txt'})")
    wall = time.perf_counter() - started
    trial = json.loads((answer / "opsearch-trial.json").read_text())
    states = Counter(t.state.name.lower() for t in load_existing(storage, "peers").get_trials(deepcopy=False))
    return {"model": str(answer / "model.onnx"), "wall_s": round(wall, 1), "trials": states.get("complete", 0),
            "states": dict(states), "trial": trial["trial"], "preset": trial.get("preset"),
            "answer": QuantRecipe.from_dict(trial["recipe"]).label(), "surely_within": uncertain is None,
            "command": f"run {Path(args.study).name} --trials {args.trials}"}


# Timing and accuracy ----------------------------------------------------------------------------------------------


def time_and_evaluate(args, inputs: dict, runs: dict) -> dict:
    """fp32 and every answer in one interleaved session, then each evaluated on the rows at batch 1."""
    from transformers import AutoTokenizer

    from opsearch.measure import (
        ClassificationTask,
        LoadMeter,
        ThreadSettings,
        TimingProtocol,
        Workload,
        accuracy_loss_ci,
        default_lock_path,
        encode,
        fingerprint,
        library_versions,
        make_session,
        measure_interleaved,
        tie_groups,
        timing_lock,
    )
    from opsearch.quantize import model_file_mb

    model = inputs["model"]
    answers = {peer: Path(run["model"]) for peer, run in runs.items() if "failed" not in run}
    threads = ThreadSettings.resolve(args.threads or None, 1, False)
    tokenizer = AutoTokenizer.from_pretrained(model.folder)
    workload = Workload(inputs["texts"][: args.timing_samples], tokenizer, batch_size=1, max_length=args.max_length)
    protocol = TimingProtocol.from_settings({"rounds": args.rounds, "max_rounds": args.rounds,
                                             "sessions_per_model": args.sessions_per_model, "max_seconds": None})
    task = ClassificationTask(encode(tokenizer, inputs["texts"], max_length=args.max_length), inputs["labels"])
    sessions = {"fp32": [make_session(model.onnx_path, threads) for _ in range(protocol.sessions_per_model)]}
    evaluations = {"fp32": task.evaluate(sessions["fp32"][0])}
    for peer, path in list(answers.items()):
        try:  # an answer ONNX Runtime cannot load or run is that tool's failure, not the benchmark's
            sessions[peer] = [make_session(path, threads) for _ in range(protocol.sessions_per_model)]
            evaluations[peer] = task.evaluate(sessions[peer][0])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises several unrelated types
            runs[peer] = {**runs[peer], "failed": f"its answer does not run: {exc}"[:300]}
            del answers[peer]
    names = list(answers)
    timings = {}
    if names:
        print(f"timing fp32 and {len(names)} answers interleaved: {args.rounds} rounds x {workload.samples} texts, "
              f"batch 1, {threads.intra_op_threads} threads ...", flush=True)
        started = time.perf_counter()
        with timing_lock(default_lock_path(), holder="peers benchmark", on_wait=print):
            measured = measure_interleaved(workload.runner(sessions["fp32"]),
                                           [workload.runner(sessions[n]) for n in names], protocol=protocol,
                                           samples_per_round=workload.samples, load_meter=LoadMeter)
        timings = dict(zip(names, measured, strict=True))
        print(f"timed in {time.perf_counter() - started:.0f} s", flush=True)
    ties = _ties(timings, tie_groups)

    fp32_correct = evaluations["fp32"].predictions == inputs["labels"]
    rows = []
    for peer in runs:
        run = runs[peer]
        label = f"opsearch, `{run['command']}`" if run.get("command") else LABELS[peer]
        row = {"tool": peer, "label": label, "run": run}
        if peer in answers:
            evaluation, timing = evaluations[peer], timings[peer]
            low, high = accuracy_loss_ci(fp32_correct, evaluation.predictions == inputs["labels"])
            row.update({
                "accuracy": evaluation.score, "loss_pt": 100 * (evaluations["fp32"].score - evaluation.score),
                "loss_ci_pt": [100 * low, 100 * high], "speedup": timing.speedup, "speedup_ci": timing.speedup_ci,
                "tie": ties.get(peer, ""), "size_mb": model_file_mb(answers[peer]), "graph": describe(answers[peer]),
                "timing": {k: v for k, v in timing.to_dict().items() if k not in ("candidate_s", "baseline_s")}})
        rows.append(row)
    first = next(iter(timings.values()), None)
    return {
        "machine": fingerprint(threads.__dict__), "versions": library_versions(),
        "peer_environments": {name: _installed(args.envs / name) for name in sorted({ENV_OF[p] for p in runs
                                                                                     if p in ENV_OF})},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "workload": workload.describe(), "rows": len(inputs["texts"]), "limit_pt": 100 * args.max_accuracy_loss,
        "fp32": {"accuracy": evaluations["fp32"].accuracy, "size_mb": model_file_mb(model.onnx_path),
                 "graph": describe(model.onnx_path),
                 "throughput": None if first is None else first.baseline_throughput},
        "rounds": None if first is None else first.rounds,
        "other_cores": None if first is None else first.other_cores,
        "tools": rows,
    }


def _ties(timings: dict, tie_groups) -> dict:
    """A letter per group of answers the session cannot tell apart (only where a group holds two or more)."""
    if len(timings) < 2:
        return {}
    order = sorted(timings, key=lambda n: -timings[n].speedup)
    groups, _ = tie_groups([timings[n].candidate_s for n in order], alpha=TIE_ALPHA)
    letters = iter("ABCDEFGH")
    return {order[i]: letter for group in groups if len(group) > 1 for letter in [next(letters)] for i in group}


def _installed(folder: Path) -> list[str]:
    marker = folder / "opsearch-peer.json"
    return json.loads(marker.read_text()).get("installed", []) if marker.is_file() else []


# What an answer holds ---------------------------------------------------------------------------------------------

# Integer operators ONNX Runtime's quantizers (and INC's) write, and contrib operators fusion leaves.
INTEGER_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "QGemm",
               "QEmbedLayerNormalization", "MatMulNBits", "GatherBlockQuantized", "ConvInteger")
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu",
             "FastGelu", "Gelu")


def describe(path: Path) -> dict:
    """What a model's graph computes in int8, read from the graph itself (the same words for every tool)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    counts = Counter(node.op_type for node in model.graph.node)
    initializers = {i.name: i for i in model.graph.initializer}
    int8 = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}
    weights = Counter(int8[i.data_type] for i in initializers.values()
                      if i.data_type in int8 and "zero_point" not in i.name and int(np.prod(i.dims)) > 1)
    per_channel = any(i.name.endswith("scale") and i.data_type == onnx.TensorProto.FLOAT
                      and numpy_helper.to_array(i).size > 1 for i in initializers.values())
    gathers = sum(1 for node in model.graph.node if node.op_type == "Gather" and node.input[0] in initializers
                  and initializers[node.input[0]].data_type in int8)
    integer = {op: n for op, n in counts.items() if op in INTEGER_OPS or op.startswith("QLinear")}
    if gathers:
        integer["Gather (int8 table)"] = gathers
    fused = {op: n for op, n in counts.items() if op in FUSED_OPS}
    words = ", ".join(f"{op} x{n}" for op, n in sorted(integer.items())) or "no integer operator"
    if weights:
        words += f"; {'/'.join(sorted(weights))} weights {'per-channel' if per_channel else 'per-tensor'}"
    if counts.get("DynamicQuantizeLinear"):
        words += f"; DynamicQuantizeLinear x{counts['DynamicQuantizeLinear']}"
    if counts.get("QuantizeLinear") or counts.get("DequantizeLinear"):
        words += f"; Q/DQ x{counts.get('QuantizeLinear', 0)}/{counts.get('DequantizeLinear', 0)}"
    if fused:
        words += "; fused: " + ", ".join(f"{op} x{n}" for op, n in sorted(fused.items()))
    for op in ("MatMul", "Gemm", "Attention"):
        if counts.get(op):
            words += f"; fp32 {op} x{counts[op]}"
    return {"integer_ops": integer, "fused_ops": fused, "weights": dict(weights), "per_channel": per_channel,
            "fp32_matmuls": counts.get("MatMul", 0), "words": words}


# The table --------------------------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    machine, workload = results["machine"], results["workload"]
    limit = f"{results['limit_pt']:g} accuracy point{'' if results['limit_pt'] == 1 else 's'}"
    cpu = (f"{machine['cpu']} ({', '.join(machine['int8_flags']) or 'no int8 flags'}), "
           f"{machine['physical_cores']} physical cores, {machine['logical_cpus']} logical")
    lines = [
        f"CPU: {cpu}; ONNX Runtime {machine['onnxruntime']}, {machine['threads']['intra_op_threads']} threads.",
        f"Every tool given the same fp32 export, the same {results['rows']} evaluation rows and a limit of "
        f"{limit}; then fp32 and every answer timed in one interleaved session "
        f"({results['rounds']} rounds x {workload['samples']} texts, batch 1, unpadded; floor speedup, 95% CI across "
        f"sessions) and evaluated on those rows at batch 1 (loss: paired bootstrap 95% CI). "
        f"fp32: accuracy {results['fp32']['accuracy']:.4f}, {results['fp32']['size_mb']:.1f} MB.",
    ]
    busy = results.get("other_cores")
    if busy is not None:
        lines.append(f"Other processes kept {busy:.2f} cores busy on average during the timed rounds" + (
            ": these speedups are not publishable; run again on a quiet machine." if busy > 0.25 else "."))
    lines += ["", "| tool | wall time to its answer | its answer | speedup vs fp32 (95% CI) | tie | loss (pt, 95% CI) "
              "| MB |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in results["tools"]:
        run = row["run"]
        if "failed" in run:
            lines.append(f"| {row['label']} | failed | {run['failed']} | - | - | - | - |")
            continue
        low, high = row["speedup_ci"]
        loss_low, loss_high = row["loss_ci_pt"]
        lines.append(f"| {row['label']} | {_duration(run['wall_s'])}, {_effort(row['tool'], run)} | {_answer(row)} "
                     f"| {row['speedup']:.2f}x ({low:.2f}-{high:.2f}) | {row['tie'] or '-'} "
                     f"| {row['loss_pt']:+.2f} ({loss_low:+.2f} to {loss_high:+.2f}) | {row['size_mb']:.1f} |")
    lines += ["", "What each answer's graph computes in int8 (read from the graph):", ""]
    lines += [f"- {row['tool']}: {row['graph']['words']}" for row in results["tools"] if "graph" in row]
    lines.append("")
    lines.append("tie: the session could not tell these answers' speeds apart (Wilcoxon signed-rank on paired "
                 "rounds, Holm-adjusted); the same letter is one speed.")
    return "\n".join(lines) + "\n"


def _answer(row: dict) -> str:
    run = row["run"]
    if row["tool"] == "olive":
        return ", ".join(f"{k}={v}" for k, v in run.get("chosen", {}).items())
    if row["tool"] == "opsearch":
        preset = f" (preset {run['preset']})" if run.get("preset") else ""
        doubt = "" if run.get("surely_within", True) else "; NOT surely within the limit: none was on these rows"
        return f"trial {run['trial']}: {run['answer']}{preset}{doubt}"
    return row["graph"]["words"]


def _effort(peer: str, run: dict) -> str:
    if peer == "olive":
        return f"{run.get('evaluated', '?')} evaluated of {run.get('trials', '?')} steps"
    n = run.get("trials", "?")
    return f"{n} trial" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 100 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    sys.exit(main())
