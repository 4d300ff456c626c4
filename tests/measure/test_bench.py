from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsearch.cli import main
from opsearch.quantize import QuantRecipe, quantize


@pytest.fixture(scope="module")
def quantized_folder(tiny_onnx, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "q"
    result = quantize(QuantRecipe("dynamic", ("MatMul",)), fp32_path=tiny_onnx.onnx_path, out_dir=out)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        if (tiny_onnx.folder / name).exists():
            (result.path.parent / name).write_bytes((tiny_onnx.folder / name).read_bytes())
    return result.path.parent


def test_bench_json_has_speedup_interval_and_rounds(quantized_folder, tiny_onnx, tiny_csv, capsys) -> None:
    code = main(["bench", str(quantized_folder), str(tiny_onnx.folder), "--dataset", str(tiny_csv), "--samples", "20",
                 "--rounds", "4", "--max-rounds", "6", "--threads", "1", "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["speedup_ci"][0] <= record["speedup"] <= record["speedup_ci"][1]
    assert 4 <= record["rounds"] <= 6
    assert record["workload"]["samples"] == 20
    assert record["throughput_a"] > 0 and record["throughput_b"] > 0
    # speedup is A over B: B's floor (its fastest time per text, summed) over A's
    assert record["speedup"] == pytest.approx(record["baseline_floor_s"] / record["candidate_floor_s"])
    # and each throughput belongs to its model: no round runs a model faster than its floor
    assert record["throughput_a"] <= 20 / record["candidate_floor_s"]
    assert record["throughput_b"] <= 20 / record["baseline_floor_s"]


def test_bench_without_dataset_uses_synthetic_texts(quantized_folder, tiny_onnx, capsys) -> None:
    assert main(["bench", str(tiny_onnx.folder), str(tiny_onnx.folder), "--samples", "10", "--rounds", "3",
                 "--max-rounds", "3", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    verdict, measured = out.splitlines()[:2]
    assert verdict.startswith(("no measurable difference", "A is faster", "B is faster"))
    assert measured.startswith("A is ") and "paired rounds" in out and "10 texts per round" in out


def test_bench_rejects_bad_numbers(tiny_onnx, capsys) -> None:
    assert main(["bench", str(tiny_onnx.folder), str(tiny_onnx.folder), "--rounds", "0"]) == 2
    assert "--rounds 0 must be a whole number of at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("estimator", ["floor", "median"])
def test_bench_reports_both_estimators_and_the_chosen_one_leads(quantized_folder, tiny_onnx, tiny_csv, capsys,
                                                                estimator: str) -> None:
    args = ["bench", str(quantized_folder), str(tiny_onnx.folder), "--dataset", str(tiny_csv), "--samples", "20",
            "--rounds", "4", "--max-rounds", "4", "--threads", "1", "--json"]
    assert main([*args, "--estimator", estimator]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["estimator"] == estimator
    assert record["speedup"] == record["floor_speedup" if estimator == "floor" else "median_ratio"]
    assert record["floor_speedup"] > 0 and record["median_ratio"] > 0
    assert record["median_ratio_ci"][0] <= record["median_ratio"] <= record["median_ratio_ci"][1]


def _result(low: float, high: float):
    from opsearch.measure import BenchResult, PairedTiming, ThreadSettings

    timing = PairedTiming((0.1,) * 4, (0.1,) * 4, 10, 1, 0.02, (low, high), candidate_floor_s=0.1, baseline_floor_s=0.1)
    return BenchResult("a", "b", timing, {"samples": 10, "batch_size": 1}, ThreadSettings(1))


@pytest.mark.parametrize(("low", "high", "verdict", "words"), [
    (0.98, 1.03, "same", "no measurable difference: A and B differ by at most 3.0%"),
    (1.04, 1.09, "a_faster", "A is faster: by 4.0% to 9.0%"),
    (0.90, 0.95, "b_faster", "B is faster: by 5.3% to 11.1%"),
])
def test_the_verdict_follows_the_interval(low, high, verdict, words) -> None:
    result = _result(low, high)
    assert result.verdict == verdict and result.to_dict()["verdict"] == verdict
    assert result.summary().splitlines()[0] == words
