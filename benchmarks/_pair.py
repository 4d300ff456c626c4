"""What the speedup benchmarks share: the MiniLM SST-2 defaults, the spread, and one quantized pair."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "config.json")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-sst2"))
    parser.add_argument("--dataset", default=str(SHARED / "data" / "sst2" / "validation.tsv"))
    parser.add_argument("--processes", type=int, default=5)


def spread(values: list[float]) -> float:
    """(max - min) / median."""
    return (max(values) - min(values)) / statistics.median(values)


def quantized_pair(model: str, tmp: Path):
    """The fp32 export and its dynamic MatMul-only quantization (the article's best dynamic configuration),
    the quantized folder given the tokenizer too, so that either folder is a MODEL for `opsearch bench`."""
    from opsearch.quantize import QuantRecipe, quantize
    from opsearch.source import prepare_model

    fp32 = prepare_model(model, cache_dir=tmp)
    recipe = QuantRecipe("dynamic", ("MatMul",))
    q = quantize(recipe, fp32_path=fp32.onnx_path, out_dir=tmp / "quantized")
    for name in TOKENIZER_FILES:
        if (fp32.folder / name).exists():
            (q.path.parent / name).write_bytes((fp32.folder / name).read_bytes())
    return fp32, q, recipe
