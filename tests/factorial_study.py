"""A designed study: a full factorial over the operator and flag parameters whose speedups and losses follow
known rules, so every effect can be checked against the table it came from."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Any

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

Categorical = optuna.distributions.CategoricalDistribution
BOOL = Categorical([False, True])
DISTRIBUTIONS = {
    "mode": Categorical(["dynamic", "static"]),
    "op_MatMul": BOOL,
    "op_Gather": BOOL,
    "per_channel": BOOL,
    "reduce_range": BOOL,
    "activations_symmetric": BOOL,
    "weights_dtype": Categorical(["QInt8", "QUInt8"]),
    "calibration": Categorical(["minmax", "entropy", "percentile"]),
}
REFERENCE = 100.0  # fp32 samples/s
NAME = "factorial"
# The rules: MatMul adds 1.0x, Gather 0.2x, per_channel costs 0.1x; per_channel loses 0.5 pt, QUInt8 0.3 pt.
# reduce_range does nothing.
MATMUL, GATHER, PER_CHANNEL_SPEED, PER_CHANNEL_LOSS, UINT8_LOSS = 1.0, 0.2, -0.1, 0.5, 0.3


def factorial_table(*, interaction: float = 0.0) -> list[dict[str, Any]]:
    """32 dynamic trials over every combination, then 4 static ones (activations_symmetric, calibration)."""
    rows = []
    for i, (mm, ga, pc, rr, dt) in enumerate(itertools.product([False, True], [False, True], [False, True],
                                                               [False, True], ["QInt8", "QUInt8"])):
        noise = 0.01 * ((i * 7) % 5 - 2)  # deterministic jitter, so that sides have a spread
        speedup = 1.0 + MATMUL * mm + GATHER * ga + PER_CHANNEL_SPEED * pc + interaction * (mm and ga) + noise
        loss_pt = 0.1 + PER_CHANNEL_LOSS * pc + UINT8_LOSS * (dt == "QUInt8") + noise
        params = {"mode": "dynamic", "op_MatMul": mm, "op_Gather": ga, "per_channel": pc, "reduce_range": rr,
                  "weights_dtype": dt}
        rows.append({"params": params, "speedup": speedup, "loss_pt": loss_pt})
    for j, (sym, calibration) in enumerate([(False, "minmax"), (True, "minmax"), (False, "entropy"),
                                            (True, "percentile")]):
        params = {"mode": "static", "op_MatMul": True, "op_Gather": False, "per_channel": False,
                  "reduce_range": False, "weights_dtype": "QInt8", "activations_symmetric": sym,
                  "calibration": calibration}
        rows.append({"params": params, "speedup": 1.5 + 0.3 * sym + 0.02 * j, "loss_pt": 0.3 + 0.1 * sym + 0.02 * j})
    return rows


def make_factorial_study(path: Path, table: list[dict[str, Any]] | None = None, **extra_attrs: Any) -> optuna.Study:
    """A fresh SQLite study holding ``table`` (default: :func:`factorial_table`) with opsearch's trial attrs."""
    table = factorial_table() if table is None else table
    storage = f"sqlite:///{path}"
    study = optuna.create_study(study_name=NAME, storage=storage, directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["throughput", "accuracy_loss"])
    study.set_user_attr("baseline", {"metrics": {"accuracy": 0.9}, "timing": {"throughput": REFERENCE}})
    for key, value in extra_attrs.items():
        study.set_user_attr(key, value)
    for row in table:
        p, speedup = row["params"], row["speedup"]
        nodes = {op: n for op, n in (("MatMul", 6), ("Gather", 1)) if p.get(f"op_{op}")}
        attrs = {"label": f"{p.get('mode', 'dynamic')}[{'+'.join(nodes)}]", "speedup": speedup,
                 "quantized_nodes": nodes,
                 "accuracy": 0.9 - row["loss_pt"] / 100,
                 "timing": {"speedup": speedup, "speedup_ci": [0.97 * speedup, 1.03 * speedup], "noisy": False},
                 **row.get("attrs", {})}
        study.add_trial(optuna.trial.create_trial(
            values=[REFERENCE * speedup, row["loss_pt"] / 100], params=p,
            distributions={k: DISTRIBUTIONS[k] for k in p}, user_attrs=attrs))
    return optuna.load_study(study_name=NAME, storage=storage)
