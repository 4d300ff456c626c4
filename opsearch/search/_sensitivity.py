"""Which quantized nodes hurt accuracy, and what keeping the worst of them in fp32 buys back.

For one recipe, each unit (a transformer layer, or one role of a layer such as ``layer.3/ffn_in``, both found
from the graph's structure by ``quantize.find_groups``; or a single node) is quantized alone, every other node
of the recipe's operator types left in fp32, and measured against fp32: accuracy drop and mean absolute output
difference. Quantizing one unit alone (rather than excluding one unit from the full recipe) isolates each
unit's own error: removing one of a dozen contributors changes the full recipe's error by less than the
evaluation's noise, while a unit alone shows its damage plainly. Units are ranked by accuracy drop, then output
error; the curve then excludes the most damaging units one by one from the full recipe and measures each step.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import optuna

from opsearch.errors import StudyError
from opsearch.measure import make_session
from opsearch.quantize import QuantRecipe, find_groups, fused_model, quantize
from opsearch.store import TrialRecord, load_existing, trial_attrs

# (accuracy, outputs) of the model at a path: outputs are compared with fp32's to measure the error.
Evaluate = Callable[[Path], tuple[float, np.ndarray]]

@dataclass(frozen=True)
class UnitEffect:
    unit: str
    nodes: tuple[str, ...]
    accuracy: float
    accuracy_drop: float  # fp32 accuracy minus this unit's, alone quantized
    output_error: float  # mean |output - fp32 output|


@dataclass(frozen=True)
class CurvePoint:
    excluded: int  # how many of the most damaging units stay fp32
    units: tuple[str, ...]
    accuracy: float
    accuracy_loss: float
    output_error: float
    quantized_nodes: int


@dataclass(frozen=True)
class Sensitivity:
    recipe: QuantRecipe
    by: str
    baseline_accuracy: float
    ranking: list[UnitEffect]  # most damaging first
    curve: list[CurvePoint]  # curve[0] is the full recipe

    def to_dict(self) -> dict:
        return {"recipe": self.recipe.to_dict(), "by": self.by, "baseline_accuracy": self.baseline_accuracy,
                "ranking": [asdict(u) for u in self.ranking], "curve": [asdict(p) for p in self.curve]}

    def ranked_nodes(self) -> list[str]:
        """The recipe's nodes, most damaging unit first: what ``nodes_to_exclude`` takes from the top."""
        return [node for unit in self.ranking for node in unit.nodes]


def units_of(graph: onnx.ModelProto, names: list[str], *, by: str) -> dict[str, str]:
    """The unit each node belongs to, from the graph's structure (``quantize.find_groups``): by "layer" its layer
    ("layer.3") or, outside the layers, its group ("embeddings", "pooler", "head"); by "group" its layer and role
    ("layer.3/ffn_in"); by "node" itself. A Gemm the dynamic quantizer renamed ``<name>_MatMul`` is its Gemm's."""
    group_of = find_groups(graph).group_of()
    out = {}
    for name in names:
        base = name[: -len("_MatMul")] if name not in group_of and name.endswith("_MatMul") else name
        key = group_of.get(base, name)
        out[name] = name if by == "node" else key.split("/")[0] if by == "layer" and key.startswith("layer.") \
            else key
    return out


def candidate_nodes(graph: onnx.ModelProto, recipe: QuantRecipe) -> list[str]:
    """Nodes of the recipe's operator types that it does not already exclude, in graph order, by the names the
    quantizer matches ``nodes_to_exclude`` against.

    Dynamic quantization rewrites every Gemm as ``<name>_MatMul`` plus an Add before quantizing, so with MatMul
    asked the Gemms (pooler, classifier) are quantized too, under that name.
    """
    kinds, skip = set(recipe.operators_to_quantize), set(recipe.nodes_to_exclude)
    gemm_as_matmul = recipe.mode == "dynamic" and "MatMul" in kinds
    names = []
    for n in graph.graph.node:
        if n.op_type in kinds:
            names.append(n.name)
        elif n.op_type == "Gemm" and gemm_as_matmul:
            names.append(f"{n.name}_MatMul")
    return [name for name in names if name not in skip]


def measure_sensitivity(recipe: QuantRecipe, *, fp32_path: Path, evaluate: Evaluate, by: str = "layer",
                        calibration: dict[str, np.ndarray] | None = None, cache_dir: Path | None = None,
                        max_excluded: int | None = None, progress: Callable[[str], None] = lambda line: None,
                        ) -> Sensitivity:
    """Rank the recipe's units by the damage each does alone, then the curve of excluding the worst.

    ``max_excluded`` bounds the curve (None: every unit). ``cache_dir`` keeps fused graphs (None: temporary).
    """
    if by not in ("layer", "group", "node"):
        raise ValueError(f"by={by!r} is not 'layer', 'group' or 'node'")
    work = Path(tempfile.mkdtemp(prefix="opsearch-sensitivity-"))
    cache = cache_dir or work / "cache"
    try:
        source = fused_model(fp32_path, recipe.fusion, cache_dir=cache)
        nodes = candidate_nodes(onnx.load(str(source), load_external_data=False), recipe)
        units: dict[str, list[str]] = {}
        unit = units_of(onnx.load(str(source), load_external_data=False), nodes, by=by)
        for name in nodes:
            units.setdefault(unit[name], []).append(name)
        base_accuracy, base_out = evaluate(source if recipe.fusion == "none" else fp32_path)

        def measure(variant: QuantRecipe) -> tuple[float, float, int]:
            q = quantize(variant, fp32_path=fp32_path, out_dir=work / "model", calibration=calibration,
                         cache_dir=cache)
            accuracy, out = evaluate(q.path)
            return accuracy, float(np.mean(np.abs(out - base_out))), sum(q.node_counts.values())

        effects = []
        for i, (unit, members) in enumerate(units.items()):
            others = tuple(n for n in nodes if n not in set(members))
            accuracy, error, _ = measure(replace(recipe, nodes_to_exclude=(*recipe.nodes_to_exclude, *others)))
            effects.append(UnitEffect(unit, tuple(members), accuracy, base_accuracy - accuracy, error))
            progress(f"[{i + 1}/{len(units)}] {unit} alone: accuracy {accuracy:.4f}, output error {error:.4g}")
        ranking = sorted(effects, key=lambda e: (-e.accuracy_drop, -e.output_error))

        curve = []
        limit = len(ranking) if max_excluded is None else min(max_excluded, len(ranking))
        for k in range(limit + 1):
            kept = [n for e in ranking[:k] for n in e.nodes]
            if k == len(ranking):
                break  # every unit in fp32: nothing left quantized
            accuracy, error, count = measure(replace(recipe, nodes_to_exclude=(*recipe.nodes_to_exclude, *kept)))
            curve.append(CurvePoint(k, tuple(e.unit for e in ranking[:k]), accuracy, base_accuracy - accuracy,
                                    error, count))
            progress(f"excluding the {k} worst: accuracy {accuracy:.4f}, output error {error:.4g}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Sensitivity(recipe, by, base_accuracy, ranking, curve)


def format_sensitivity(result: Sensitivity) -> str:
    lines = [f"sensitivity of {result.recipe.label()} (fp32 accuracy {result.baseline_accuracy:.4f}), "
             f"each {result.by} quantized alone:",
             f"{'rank':>4}  {result.by:<40} {'nodes':>5} {'accuracy':>9} {'drop pt':>8} {'out err':>10}"]
    for i, e in enumerate(result.ranking, 1):
        lines.append(f"{i:>4}  {e.unit[:40]:<40} {len(e.nodes):>5} {e.accuracy:>9.4f} {100 * e.accuracy_drop:>+8.2f} "
                     f"{e.output_error:>10.4g}")
    lines += ["", "excluding the most damaging one by one (kept fp32):",
              f"{'excluded':>8} {'accuracy':>9} {'loss pt':>8} {'out err':>10} {'int8 nodes':>10}  last excluded"]
    for p in result.curve:
        lines.append(f"{p.excluded:>8} {p.accuracy:>9.4f} {100 * p.accuracy_loss:>+8.2f} {p.output_error:>10.4g} "
                     f"{p.quantized_nodes:>10}  {p.units[-1] if p.units else '-'}")
    return "\n".join(lines)


def study_sensitivity(*, storage: str, study_name: str, trial: int | None = None, recipe: QuantRecipe | None = None,
                      by: str = "layer", max_excluded: int | None = None, samples: int | None = None,
                      progress: Callable[[str], None] = lambda line: None) -> Sensitivity:
    """Sensitivity of a stored study's trial (or of ``recipe``), on the study's model, data and calibration.

    ``samples`` caps the evaluation rows (None: the study's whole evaluation split).
    """
    from opsearch.search._context import StudyContext

    context = StudyContext.stored(storage, study_name, progress=lambda line: None)
    study = load_existing(storage, study_name)
    if recipe is None:
        stored = TrialRecord.of(study.trials[trial]).recipe if trial is not None and trial < len(study.trials) else None
        if stored is None:
            raise StudyError(f"trial {trial} of study {study_name!r} has no recipe: give a trial that ran.")
        recipe = QuantRecipe.from_dict(stored)
    if not recipe.operators_to_quantize:
        raise StudyError(f"{recipe.label()} quantizes nothing: there is no node to rank.")
    rows = context.data.eval if samples is None else context.data.eval.take(samples)
    task = context.task(study, rows=rows)

    def evaluate(path: Path) -> tuple[float, np.ndarray]:
        evaluation = task.evaluate(make_session(path, context.threads))
        return evaluation.score, evaluation.outputs

    return measure_sensitivity(recipe, fp32_path=context.model.onnx_path, evaluate=evaluate, by=by,
                               calibration=context.calibration if recipe.needs_rows else None,
                               cache_dir=context.cache_dir, max_excluded=max_excluded, progress=progress)


def enqueue_fallbacks(study: optuna.Study, trial_number: int, result: Sensitivity) -> list[int]:
    """Queue the sensitivity curve as trials of the study: trial ``trial_number``'s configuration with its 1, 2,
    ... most damaging units kept in fp32, so the next `opsearch resume` measures each one's accuracy and
    throughput for real and the whole trade-off lands on the Pareto front. Returns how many units each excludes.
    """
    source = study.trials[trial_number]
    queued = []
    for point in result.curve[1:]:
        nodes = sorted(n for unit in point.units for e in result.ranking if e.unit == unit for n in e.nodes)
        name = f"trial {trial_number}, {point.excluded} most damaging {result.by}(s) in fp32"
        study.enqueue_trial(source.params, user_attrs=trial_attrs(nodes_to_exclude=nodes, preset=name,
                                                                  fallback_of=trial_number))
        queued.append(point.excluded)
    return queued
