"""A report model made by hand, not from a study: the input of the renderers' own tests. Each value is chosen so
that a renderer that lost it would be caught: a front of four (one of them a twin's original), a dominated trial,
one over the limit, two tied in speed, one faster than the best but uncertain against the limit, a precision grid,
what the trials cost, and a CPU and a study name no other test uses."""

from __future__ import annotations

import math
from dataclasses import replace

from opsearch.report import StudyCost, StudyReport, TrialCost
from opsearch.report._effects import Effect, Importances, OperatorMatrix, StudyEffects
from opsearch.store import SameGraphGroup, TrialRow

STUDY = "hand-made <study>"
CPU = "Hand-made CPU 4242"
REFERENCE = 100.0  # the fp32 baseline's samples/s
LIMIT = 0.01  # one point
SESSION = "2026-01-02T03:04:05+00:00"


def row(trial: int, speedup: float, loss_pt: float, ci_pt: tuple[float, float], **changes) -> TrialRow:
    """A completed trial: its speedup over fp32, its accuracy loss and that loss's 95% interval, in points."""
    base = TrialRow(trial=trial, mode="dynamic", operators="MatMulx48", flags="s8", accuracy=0.9 - loss_pt / 100,
                    accuracy_loss_pt=loss_pt, samples_per_s=REFERENCE * speedup, speedup=speedup,
                    speedup_ci_low=0.95 * speedup, speedup_ci_high=1.05 * speedup, speedup_cv=0.02,
                    ci_halfwidth=0.05, rounds=20, noisy=False, same_graph_as=None, pareto=False,
                    loss_ci_low_pt=ci_pt[0], loss_ci_high_pt=ci_pt[1], constraint="within", quantized_nodes=48,
                    size_mb=23.0, latency_p50_ms=5.0, latency_p95_ms=8.0, latency_p99_ms=11.0)
    return replace(base, **changes)


ROWS = [
    row(0, 1.00, 0.00, (0.0, 0.0), operators="(none)", flags="O2", preset="fusion only O2", pareto=True,
        quantized_nodes=0, size_mb=90.3),
    row(1, 2.20, 0.40, (0.2, 0.6), operators="Gatherx3 MatMulx48", pareto=True, tie_group=0, noisy=True,
        remeasured=True, quantized_nodes=51, preset="dynamic: every quantizable operator",
        group_precisions={"layer.0/ffn_in": "dynamic", "layer.0/ffn_out": "fp32", "embeddings": "static"},
        smoothed=("ffn_in", "ffn_out")),
    row(2, 1.90, 0.20, (0.0, 0.4), flags="per_channel s8", pareto=True, tie_group=0, remeasured=True),
    row(3, 1.40, 0.60, (0.3, 0.9), flags="u8", stopped_early="dominated by trial 2 after 5 rounds", rounds=5),
    row(4, 2.60, 3.20, (2.9, 3.5), mode="static", constraint="over", feasible=False,
        infeasible_reason="accuracy loss 3.20 pt is over the limit 1.00 pt"),
    row(5, 2.30, 0.95, (0.6, 1.3), flags="reduce_range s8", pareto=True, constraint="uncertain"),
    row(6, 1.90, 0.20, (0.0, 0.4), flags="per_channel reduce_range s8", pareto=True, same_graph_as=2),
]
FRONT = [5, 1, 2, 0]  # fastest first; 6 repeats 2's graph, 3 is dominated, 4 is over the limit
BEST = 2  # the fastest within the limit is 1, tied in speed with 2, which loses less
KNEE = 1
EFFECTS = StudyEffects(
    effects=[Effect("op_MatMul", "True", 4, 3, 0.512, (0.301, 0.723), 0.25, (0.1, 0.4)),
             Effect("weights_dtype", "QUInt8", 1, 6, math.nan, (math.nan, math.nan), math.nan, (math.nan, math.nan))],
    importances=[Importances("throughput", {"op_MatMul": 0.8, "per_channel": 0.2}),
                 Importances("accuracy_loss", {}, "fANOVA needs two distinct values")],
    matrix=OperatorMatrix(trials=FRONT, op_types=["Gather", "MatMul"], counts=[[0, 48], [3, 48], [0, 48], [0, 0]]),
    interactions=["op_Gather with op_MatMul: faster together than apart"])


def hand_report(**changes) -> StudyReport:
    """The hand-made report (``changes``: fields to replace, e.g. ``rows=[]``)."""
    report = StudyReport(
        study_name=STUDY,
        baseline={"metrics": {"accuracy": 0.9}, "size_mb": 90.4, "accuracy_batch_size": 1, "predictions": None,
                  "labels": None,
                  "timing": {"throughput": REFERENCE, "latency_ms": {"p50": 8.0, "p95": 12.0, "p99": 15.0}}},
        rows=ROWS, same_graph=[SameGraphGroup([2, 6], ["reduce_range"])], counts={"complete": 7, "fail": 1},
        remeasured_at=SESSION, max_accuracy_loss=LIMIT,
        machine={"cpu": CPU, "int8_flags": ["avx512_vnni"], "threads": {"intra_op_threads": 2}},
        versions={"onnxruntime": "1.2.3"},
        settings={"workload": {"samples": 100, "batch_size": 1, "max_length": 128, "mean_tokens": 33.0},
                  "opsearch_config": {"speedup_estimator": "floor"}},
        cost=StudyCost([TrialCost(0, "complete", 10.0, 20.0, 20, 1000), TrialCost(1, "complete", 10.0, 20.0, 20, 1000),
                        TrialCost(3, "complete", 10.0, 5.0, 5, 1000, "dominated by trial 2 after 5 rounds")],
                       eval_rows=1000, early_stop=True))
    return replace(report, **changes)
