"""A real multi-objective Optuna study stored in SQLite, filled with trials that carry the records opsearch stores:
the shared input of the report, plot, format, CLI and dashboard tests."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

Distribution = optuna.distributions.CategoricalDistribution
DISTRIBUTIONS = {
    "mode": Distribution(["dynamic", "static"]),
    "op_MatMul": Distribution([False, True]),
    "op_Gather": Distribution([False, True]),
    "per_channel": Distribution([False, True]),
    "reduce_range": Distribution([False, True]),
    "weights_symmetric": Distribution([False, True]),
    "activations_symmetric": Distribution([False, True]),
    "weights_dtype": Distribution(["QInt8", "QUInt8"]),
}
# The fields every baseline has (predictions and labels None: fp32's per-row answers not kept).
BASELINE = {"metrics": {"accuracy": 0.9123}, "timing": {"throughput": 98.7, "latency_ms": None}, "predictions": None,
            "labels": None, "accuracy_batch_size": 1, "size_mb": None}
STUDY_NAME = "tiny-report"


@dataclass(frozen=True)
class Spec:
    """One trial to store: throughput, accuracy loss, its params and the extras opsearch records."""

    throughput: float
    loss: float
    graph: str | None
    params: dict[str, Any] = field(default_factory=dict)
    noisy: bool = False
    same_graph_as: int | None = None
    preset: str | None = None
    state: optuna.trial.TrialState = optuna.trial.TrialState.COMPLETE
    extra_attrs: dict[str, Any] = field(default_factory=dict)  # more user attrs
    system_attrs: dict[str, Any] = field(default_factory=dict)


def _params(**changes: Any) -> dict[str, Any]:
    return {
        "mode": "dynamic",
        "op_MatMul": True,
        "op_Gather": False,
        "per_channel": False,
        "reduce_range": False,
        "weights_symmetric": True,
        "weights_dtype": "QInt8",
        **changes,
    }


# Throughputs are chosen so that their one-decimal renderings are distinct and unambiguous.
SPECS: list[Spec] = [
    Spec(120.5, 0.0, "h-a", _params(), preset="dynamic: MatMul only"),  # 0: front (no loss)
    Spec(250.4, 0.004, "h-b", _params(op_Gather=True)),  # 1: front
    Spec(180.7, 0.012, "h-c", _params(weights_symmetric=False)),  # 2: dominated by 1
    Spec(333.5, 0.031, "h-d", _params(mode="static", activations_symmetric=True), noisy=True),  # 3: front, fastest
    Spec(110.0, 0.02, "h-e", _params(op_MatMul=False, op_Gather=True)),  # 4: dominated by 0, 1, 2
    Spec(250.4, 0.004, "h-b", _params(op_Gather=True, per_channel=True), same_graph_as=1),  # 5: twin of 1
    Spec(0.0, 0.0, None, _params(), state=optuna.trial.TrialState.FAIL),  # 6: failed
    Spec(
        180.7,
        0.012,
        "h-c",
        _params(weights_symmetric=False, reduce_range=True, weights_dtype="QUInt8"),
        same_graph_as=2,
    ),  # 7: twin of 2, dominated
    Spec(0.0, 0.0, None, _params(reduce_range=True), state=optuna.trial.TrialState.PRUNED),  # 8: pruned
    Spec(140.3, 0.05, None, _params(per_channel=True)),  # 9: dominated, no graph hash recorded
    Spec(140.3, 0.05, "h-a", _params(op_MatMul=True, per_channel=True)),  # 10: same graph as 0, dominated
]
COMPLETE = [i for i, s in enumerate(SPECS) if s.state == optuna.trial.TrialState.COMPLETE]


def dominates(a: Spec, b: Spec) -> bool:
    """Higher throughput and lower loss, at least as good in both and better in one."""
    return a.throughput >= b.throughput and a.loss <= b.loss and (a.throughput > b.throughput or a.loss < b.loss)


EXPECTED_FRONT = {i for i in COMPLETE if not any(dominates(SPECS[j], SPECS[i]) for j in COMPLETE)}
# The listed front names each graph once: a twin that repeats an earlier trial's graph is not listed again.
LISTED_FRONT = {i for i in EXPECTED_FRONT if SPECS[i].same_graph_as is None}


def _attrs(spec: Spec) -> dict[str, Any]:
    p = spec.params
    ops = [op for op in ("MatMul", "Gather") if p.get(f"op_{op}")]
    recipe = {
        "mode": p["mode"],
        "operators_to_quantize": ops,
        "per_channel": p["per_channel"],
        "reduce_range": p["reduce_range"],
        "weights_symmetric": p["weights_symmetric"],
        "activations_symmetric": p.get("activations_symmetric", False),
        "weights_dtype": p["weights_dtype"],
    }
    attrs: dict[str, Any] = {"recipe": recipe, "label": f"{p['mode']}[{'+'.join(ops)}]"}
    if spec.state != optuna.trial.TrialState.COMPLETE:
        attrs["fail_reason"] = "did not finish"
        return attrs
    speedup = spec.throughput / BASELINE["timing"]["throughput"]
    accuracy = BASELINE["metrics"]["accuracy"] - spec.loss
    attrs.update(
        {
            "quantized_nodes": {op: 6 if op == "MatMul" else 1 for op in ops},
            "metrics": {"accuracy": accuracy, "f1": accuracy},
            "accuracy": accuracy,
            "accuracy_loss": spec.loss,
            "speedup": speedup,
            "timing": {
                "speedup": speedup,
                "speedup_ci": [0.95 * speedup, 1.05 * speedup],
                "ci_halfwidth": 0.05,
                "speedup_cv": 0.01,
                "rounds": 30 if spec.noisy else 10,
                "noisy": spec.noisy,
            },
        }
    )
    if spec.graph is not None:
        attrs["graph_hash"] = spec.graph
    if spec.same_graph_as is not None:
        attrs["same_graph_as"] = spec.same_graph_as
    if spec.preset is not None:
        attrs["preset"] = spec.preset
    return attrs


def make_study(path: Path, specs: list[Spec] = SPECS, *, baseline: dict | None = BASELINE) -> optuna.Study:
    """A fresh SQLite study holding ``specs``, reloaded from the file as `opsearch report` would read it."""
    storage = f"sqlite:///{path}"
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["throughput", "accuracy_loss"])
    if baseline is not None:
        study.set_user_attr("baseline", baseline)
    for spec in specs:
        params = {k: v for k, v in spec.params.items() if k != "activations_symmetric" or v}
        complete = spec.state == optuna.trial.TrialState.COMPLETE
        study.add_trial(
            optuna.trial.create_trial(
                state=spec.state,
                values=[spec.throughput, spec.loss] if complete else None,
                params=params,
                distributions={k: DISTRIBUTIONS[k] for k in params},
                user_attrs={**_attrs(spec), **spec.extra_attrs},
                system_attrs=spec.system_attrs,
            )
        )
    return optuna.load_study(study_name=STUDY_NAME, storage=storage)
