from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    assert verdict.startswith(("no meaningful difference", "A is faster", "B is faster", "undecided"))
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


def _result(low: float, high: float, *, margin: float = 0.02, candidate_s=(0.1,) * 12, baseline_s=(0.1,) * 12):
    from opsearch.measure import BenchResult, PairedTiming, ThreadSettings

    timing = PairedTiming(tuple(candidate_s), tuple(baseline_s), 10, 1, 0.02, (low, high), candidate_floor_s=0.1,
                          baseline_floor_s=0.1 * (low + high) / 2)  # the speedup: the interval's middle
    return BenchResult("a", "b", timing, {"samples": 10, "batch_size": 1}, ThreadSettings(1), margin)


@pytest.mark.parametrize(("low", "high", "margin", "verdict", "words"), [
    # An A/A pair: 0.9% of one process's luck, +-0.7%: inside the 2% margin, no meaningful difference.
    (0.991 * 0.993, 0.991 * 1.007, 0.02, "same",
     "no meaningful difference (2% margin): A and B differ by at most 1.6%"),
    # A 4% gap measured to +-1% clears the margin: A is faster.
    (1.04 * 0.99, 1.04 * 1.01, 0.02, "a_faster", "A is faster: by 3.0% to 5.0% (2% margin)"),
    (0.90, 0.95, 0.02, "b_faster", "B is faster: by 5.3% to 11.1% (2% margin)"),
    # A 3% gap to +-3%: it may be nothing, it may be 6%: undecided.
    (1.03 * 0.97, 1.03 * 1.03, 0.02, "undecided",
     "undecided: A and B differ by at most 6.1%, which the 2% margin neither rules in nor out; more rounds "
     "(--max-rounds) would decide"),
    # No margin: the plain test, any difference the interval shows.
    (0.991 * 0.993, 0.991 * 1.007, 0.0, "b_faster", "B is faster: by 0.2% to 1.6% (no margin)"),
    (0.98, 1.03, 0.0, "same", "no meaningful difference (no margin): A and B differ by at most 3.0%"),
])
def test_the_verdict_weighs_the_interval_against_the_margin(low, high, margin, verdict, words) -> None:
    result = _result(low, high, margin=margin)
    assert result.drift_sd == 0  # the injected rounds do not drift: the interval is the one measured
    assert result.verdict == verdict and result.to_dict()["verdict"] == verdict
    assert result.to_dict()["margin"] == margin
    assert result.summary().splitlines()[0] == words


def test_drift_over_the_run_widens_the_interval_by_the_injected_amount() -> None:
    """Rounds whose speedup steps by +3%, 0 and -3% over three stretches of the run (with 0.1% of noise inside
    each): the drift term is 3% (log scale), and each side of the interval grows to hypot(measured, 1.96 x 3%)."""
    rng = np.random.default_rng(0)
    steps = np.repeat([0.03, 0.0, -0.03], 8)
    logs = np.log(1.5) + steps + rng.normal(0, 0.001, size=24)
    baseline = 0.15 * np.ones(24)
    candidate = baseline / np.exp(logs)
    result = _result(1.49, 1.51, candidate_s=candidate, baseline_s=baseline)
    assert result.drift_sd == pytest.approx(0.03, rel=0.05)
    low, high = result.interval
    point = result.timing.speedup
    assert np.log(high / point) == pytest.approx(np.hypot(np.log(1.51 / point), 1.959964 * result.drift_sd))
    assert np.log(point / low) == pytest.approx(np.hypot(np.log(point / 1.49), 1.959964 * result.drift_sd))
    record = result.to_dict()
    assert record["speedup_ci"] == [low, high] and record["speedup_ci_sessions"] == [1.49, 1.51]
    assert record["drift_sd"] == result.drift_sd
    steady = _result(1.49, 1.51, candidate_s=baseline / 1.5, baseline_s=baseline)
    assert steady.drift_sd == 0 and steady.interval == (1.49, 1.51)
