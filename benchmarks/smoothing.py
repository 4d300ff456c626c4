"""What smoothing (quantize._smooth, SmoothQuant per role) does to int8 accuracy, recipe by recipe.

On the MiniLM SST-2 model under ../shared (or --model/--dataset, a labelled file the model's head answers), each
recipe below is quantized with and without smoothing, and scored on every row of --dataset, one text at a time;
the factors come from the first --fit-rows rows of --fit-dataset (default: the training file beside --dataset).
With --time, it then times what the inserted Muls cost: `opsearch bench` of dynamic per-tensor int8 against the
same with every role smoothed at the first strength (a post-LN encoder: one fp32 Mul per role and layer), side by
side in one process; run that part on a quiet machine.
Run: .venv/bin/python benchmarks/smoothing.py [--time]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np
from _pair import add_model_args

ROLES = ("qkv", "attn_out", "ffn_in", "ffn_out")
BASES = {
    "dynamic per tensor": {"mode": "dynamic", "operators_to_quantize": ("MatMul",), "weights_dtype": "QInt8"},
    "dynamic per channel": {"mode": "dynamic", "operators_to_quantize": ("MatMul",), "weights_dtype": "QInt8",
                            "per_channel": True},
    "static QDQ per channel": {"mode": "static", "operators_to_quantize": ("MatMul",), "format": "QDQ",
                               "per_channel": True, "weights_dtype": "QInt8"},
}


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--fit-dataset", default=None, help="factor and calibration rows (default: train.tsv beside "
                        "--dataset)")
    parser.add_argument("--fit-rows", type=int, default=64)
    parser.add_argument("--strengths", default="0.5,0.75,0.85")
    parser.add_argument("--time", action="store_true", help="also time the smoothed model against the plain one")
    args = parser.parse_args()

    import onnxruntime as ort
    from transformers import AutoTokenizer

    from opsearch.measure import encode_padded
    from opsearch.quantize import QuantRecipe, quantize
    from opsearch.source import prepare_model

    data = Path(args.dataset)
    fit = Path(args.fit_dataset) if args.fit_dataset else data.with_name("train" + data.suffix)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rows = _rows(data)
    labels = np.array([int(r["label"]) for r in rows])
    texts = [tokenizer(r["sentence"], return_tensors="np", truncation=True, max_length=128) for r in rows]
    calibration = encode_padded(tokenizer, [r["sentence"] for r in _rows(fit)[:args.fit_rows]], length=64)

    def accuracy(path: Path) -> float:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        answers = [int(session.run(None, {k: v for k, v in t.items() if k in names})[0].argmax()) for t in texts]
        return float((np.array(answers) == labels).mean())

    strengths = [float(a) for a in args.strengths.split(",")]
    with tempfile.TemporaryDirectory(prefix="opsearch-smoothing-") as tmp:
        tmp = Path(tmp)
        fp32 = prepare_model(args.model, cache_dir=tmp / "cache")
        print(f"{args.model} on {data.name} ({len(rows)} rows): fp32 accuracy {accuracy(fp32.onnx_path):.4f}; "
              f"factors from {args.fit_rows} rows of {fit.name}", flush=True)
        smoothings = {"not smoothed": ()}
        smoothings |= {f"every role at {a:g}": tuple((r, a) for r in ROLES) for a in strengths}
        smoothings |= {f"{r} alone at {strengths[len(strengths) // 2]:g}": ((r, strengths[len(strengths) // 2]),)
                       for r in ROLES}
        print(f"{'smoothing':<24}" + "".join(f"{name:>24}" for name in BASES))
        for i, (label, smoothing) in enumerate(smoothings.items()):
            scores = []
            for j, base in enumerate(BASES.values()):
                quantized = quantize(QuantRecipe(**base, smoothing=smoothing), fp32_path=fp32.onnx_path,
                                     out_dir=tmp / f"q{i}-{j}", calibration=calibration, cache_dir=tmp / "cache")
                scores.append(accuracy(quantized.path))
            print(f"{label:<24}" + "".join(f"{s:>24.4f}" for s in scores), flush=True)
        if args.time:
            _time(fp32, calibration, strengths[0], args, tmp)
    return 0


def _time(fp32, calibration, alpha: float, args, tmp: Path) -> None:
    """`opsearch bench` of plain dynamic int8 (A) against it smoothed at ``alpha`` in every role (B)."""
    import subprocess

    from _pair import TOKENIZER_FILES

    from opsearch.quantize import QuantRecipe, quantize

    folders = []
    for name, smoothing in (("plain", ()), ("smoothed", tuple((r, alpha) for r in ROLES))):
        recipe = QuantRecipe(**BASES["dynamic per tensor"], smoothing=smoothing)
        quantized = quantize(recipe, fp32_path=fp32.onnx_path, out_dir=tmp / f"timed-{name}",
                             calibration=calibration, cache_dir=tmp / "cache")
        for item in TOKENIZER_FILES:
            if (fp32.folder / item).exists():
                (quantized.path.parent / item).write_bytes((fp32.folder / item).read_bytes())
        folders.append(quantized.path.parent)
    print(f"\nA: dynamic per-tensor int8; B: the same, every role smoothed at {alpha:g}", flush=True)
    subprocess.run([sys.executable, "-m", "opsearch.cli", "bench", str(folders[0]), str(folders[1]),
                    "--dataset", args.dataset], check=True)


if __name__ == "__main__":
    sys.exit(main())
