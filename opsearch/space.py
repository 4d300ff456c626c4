"""The search space: one boolean per operator type the mode can quantize, plus the quantization flags.

Operator parameters are conditional on the mode (``op_MatMul`` is only asked in a mode that can quantize
MatMul), so a combination the quantizer would ignore is never sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from opsearch.graph import GraphInfo
from opsearch.quantize import WEIGHT_TYPES, QuantRecipe

# The registry whose operators each study mode offers.
_REGISTRY_OF_MODE = {"dynamic": "dynamic", "static": "static_qoperator"}


@dataclass(frozen=True)
class SearchSpace:
    operators: dict[str, tuple[str, ...]]  # mode -> operator types offered
    calibration_method: str = "minmax"
    calibration_samples: int = 64

    @classmethod
    def from_graph(cls, graph: GraphInfo, *, modes: list[str], all_operators: bool = False,
                   calibration_method: str = "minmax", calibration_samples: int = 64) -> SearchSpace:
        """``all_operators`` offers every type in the graph, quantizable or not, to show which change nothing."""
        operators = {mode: tuple(graph.op_types() if all_operators else
                                 graph.quantizable_in(_REGISTRY_OF_MODE[mode])) for mode in modes}
        return cls(operators, calibration_method, calibration_samples)

    @property
    def modes(self) -> list[str]:
        return list(self.operators)

    def size(self) -> int:
        """How many distinct recipes the space holds."""
        total = 0
        for mode, ops in self.operators.items():
            flags = 2 * 2 * 2 * len(WEIGHT_TYPES) * (2 if mode == "static" else 1)
            total += (2 ** len(ops)) * flags
        return total

    def suggest(self, trial: optuna.Trial) -> QuantRecipe:
        mode = trial.suggest_categorical("mode", self.modes) if len(self.modes) > 1 else self.modes[0]
        chosen = tuple(op for op in self.operators[mode] if trial.suggest_categorical(f"op_{op}", [False, True]))
        static = mode == "static"
        return QuantRecipe(
            mode=mode,
            operators_to_quantize=chosen,
            per_channel=trial.suggest_categorical("per_channel", [False, True]),
            reduce_range=trial.suggest_categorical("reduce_range", [False, True]),
            weights_symmetric=trial.suggest_categorical("weights_symmetric", [False, True]),
            activations_symmetric=trial.suggest_categorical("activations_symmetric", [False, True]) if static
            else False,
            weights_dtype=trial.suggest_categorical("weights_dtype", list(WEIGHT_TYPES)),
            calibration_method=self.calibration_method,
            calibration_samples=self.calibration_samples,
        )

    def presets(self) -> list[tuple[str, dict]]:
        """Known configurations a study tries first, as Optuna parameters, each with its name.

        "MatMul only" is the article's best dynamic recipe; "every quantizable operator" shows what the rest add.
        """
        out = []
        for mode in self.modes:
            ops = self.operators[mode]
            base = {"per_channel": False, "reduce_range": False, "weights_symmetric": True, "weights_dtype": "QInt8"}
            if mode == "static":
                base["activations_symmetric"] = False
            if len(self.modes) > 1:
                base["mode"] = mode
            if mode == "dynamic" and "MatMul" in ops:
                out.append((f"{mode}: MatMul only", {**base, **{f"op_{op}": op == "MatMul" for op in ops}}))
            if mode == "dynamic" and len(ops) > 1:
                out.append((f"{mode}: every quantizable operator", {**base, **{f"op_{op}": True for op in ops}}))
        return out

    def to_dict(self) -> dict:
        return {"operators": {m: list(o) for m, o in self.operators.items()},
                "calibration_method": self.calibration_method, "calibration_samples": self.calibration_samples}
