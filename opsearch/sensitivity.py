"""Which quantized nodes hurt accuracy, and what keeping the worst of them in fp32 buys back.

For one recipe, each unit (a transformer layer, by node-name prefix such as ``/bert/encoder/layer.3/``,
or a single node) is quantized alone, every other node of the recipe's operator types left in fp32,
and measured against fp32: accuracy drop and mean absolute output difference. Quantizing one unit alone
(rather than excluding one unit from the full recipe) isolates each unit's own error: removing one of a
dozen contributors changes the full recipe's error by less than the evaluation's noise, while a unit
alone shows its damage plainly. Units are ranked by accuracy drop, then output error; the curve then
excludes the most damaging units one by one from the full recipe and measures each step.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from opsearch.fusion import fused_model
from opsearch.quantize import QuantRecipe, quantize

# (accuracy, outputs) of the model at a path: outputs are compared with fp32's to measure the error.
Evaluate = Callable[[Path], tuple[float, np.ndarray]]

_LAYER = re.compile(r"layers?[._/](\d+)")


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


def unit_of(node_name: str, *, by: str) -> str:
    """The unit a node belongs to: its layer ("layer.3"), else its name's folder ("/bert/pooler"), or itself."""
    if by == "node":
        return node_name
    match = _LAYER.search(node_name)
    if match:
        return f"layer.{match[1]}"
    folder = node_name.rsplit("/", 2)[0] if node_name.count("/") >= 2 else ""
    return folder or node_name


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
    if by not in ("layer", "node"):
        raise ValueError(f"by={by!r} is not 'layer' or 'node'")
    work = Path(tempfile.mkdtemp(prefix="opsearch-sensitivity-"))
    cache = cache_dir or work / "cache"
    try:
        source = fused_model(fp32_path, recipe.fusion, cache_dir=cache)
        nodes = candidate_nodes(onnx.load(str(source), load_external_data=False), recipe)
        units: dict[str, list[str]] = {}
        for name in nodes:
            units.setdefault(unit_of(name, by=by), []).append(name)
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
    from transformers import AutoTokenizer

    from opsearch.data import load_study_data
    from opsearch.embedding import LinearProbe
    from opsearch.errors import StudyError
    from opsearch.model_source import prepare_model
    from opsearch.runtime import ThreadSettings, encode, encode_padded, make_session, run_all
    from opsearch.study import cache_dir_for, load_existing, stored_config
    from opsearch.tasks import EmbeddingTask

    study = load_existing(storage, study_name)
    config = stored_config(study)
    if recipe is None:
        if trial is None or trial >= len(study.trials) or "recipe" not in study.trials[trial].user_attrs:
            raise StudyError(f"trial {trial} of study {study_name!r} has no recipe: give a trial that ran.")
        recipe = QuantRecipe.from_dict(study.trials[trial].user_attrs["recipe"])
    if not recipe.operators_to_quantize:
        raise StudyError(f"{recipe.label()} quantizes nothing: there is no node to rank.")
    cache = cache_dir_for(storage, study_name)
    model = prepare_model(config.model, cache_dir=cache, task=config.task)
    data = load_study_data(config, id2label=model.id2label, task=model.task)
    tokenizer = AutoTokenizer.from_pretrained(model.folder)
    evaluation = data.eval if samples is None else data.eval.take(samples)
    feeds = encode(tokenizer, evaluation.texts, max_length=config.max_length)
    labels = np.asarray(evaluation.labels)
    calibration = None
    if recipe.mode == "static":
        calibration = encode_padded(tokenizer, data.fit.texts[: config.calibration_rows],
                                    length=config.calibration_max_length)
    threads = ThreadSettings.resolve(config.intra_op_threads, config.inter_op_threads, config.allow_spinning)
    probe = LinearProbe.from_dict(study.user_attrs["probe"]) if "probe" in study.user_attrs else None

    def evaluate(path: Path) -> tuple[float, np.ndarray]:
        session = make_session(path, threads)
        if probe is not None:
            task = EmbeddingTask(feeds, labels, probe=probe, pooling=model.pooling, normalize=model.normalize)
            out = task.embeddings(session)
            predictions = probe.predict(out)
        else:
            out = np.concatenate(run_all(session, feeds, "logits"), axis=0)
            predictions = out.argmax(axis=1)
        return float(np.mean(predictions == labels)), out

    return measure_sensitivity(recipe, fp32_path=model.onnx_path, evaluate=evaluate, by=by, calibration=calibration,
                               cache_dir=cache, max_excluded=max_excluded, progress=progress)


# A trial user attribute: nodes kept in fp32 on top of what the trial's parameters say (see enqueue_fallbacks).
EXCLUDE_ATTR = "nodes_to_exclude"


def enqueue_fallbacks(study, trial_number: int, result: Sensitivity) -> list[int]:
    """Queue the sensitivity curve as trials of the study: trial ``trial_number``'s configuration with its 1, 2,
    ... most damaging units kept in fp32, so the next `opsearch resume` measures each one's accuracy and
    throughput for real and the whole trade-off lands on the Pareto front. Returns how many units each excludes.
    """
    source = study.trials[trial_number]
    queued = []
    for point in result.curve[1:]:
        nodes = sorted(n for unit in point.units for e in result.ranking if e.unit == unit for n in e.nodes)
        study.enqueue_trial(source.params, user_attrs={
            EXCLUDE_ATTR: nodes,
            "preset": f"trial {trial_number}, {point.excluded} most damaging {result.by}(s) in fp32",
            "fallback_of": trial_number})
        queued.append(point.excluded)
    return queued

