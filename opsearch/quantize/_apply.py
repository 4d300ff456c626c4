"""Turning an fp32 ONNX model into the int8 model a recipe describes."""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from opsearch._files import atomic_folder
from opsearch._logging import quiet
from opsearch.errors import TrialFailed
from opsearch.quantize._fusion import fused_model
from opsearch.quantize._graph import graph_hash, matmul_kinds, model_file_mb, quantized_nodes
from opsearch.quantize._groups import GraphGroups, find_groups, plan, realized
from opsearch.quantize._recipe import QuantRecipe
from opsearch.quantize._smooth import smoothed_model

if TYPE_CHECKING:
    import onnx

# Percentile calibration keeps this share of each activation's histogram (optimum's default).
PERCENTILE = 99.999


class QuantizationFailed(TrialFailed):
    """The quantizer rejected a recipe or produced an unusable model: a failed trial, not a user error."""


@dataclass(frozen=True)
class QuantizedModel:
    path: Path
    graph_hash: str
    node_counts: dict[str, int]  # fp32 operator type -> nodes computed in int8 (or fewer bits)
    seconds: float
    size_mb: float = 0.0  # the model file (and its external data) on disk
    groups: dict[str, str] | None = None  # group key (quantize.find_groups) -> the precision the graph gives it


def quantize(recipe: QuantRecipe, *, fp32_path: Path, out_dir: Path,
             calibration: dict[str, np.ndarray] | None = None, cache_dir: Path | None = None) -> QuantizedModel:
    """Quantize into ``out_dir``, written under a temporary name and renamed.

    An unfused recipe goes through optimum's ORTQuantizer; a fused one is fused first (``fusion.fused_model``,
    cached under ``cache_dir``; ``None``: fused again in a temporary folder) and quantized by ONNX Runtime's
    quantizer directly, which optimum cannot tell to type the contrib operators. A fused recipe that
    quantizes nothing gives the fused fp32 graph. ``calibration`` holds the static mode's inputs, all of one
    shape (see ``runtime.encode_padded``). Node counts are against the graph that was quantized.
    """
    import onnx

    start = time.perf_counter()
    with atomic_folder(out_dir, prefix=".quant-", needs_bytes=2 * Path(fp32_path).stat().st_size) as tmp:
        if recipe.needs_rows and calibration is None and recipe.operators_to_quantize:
            raise QuantizationFailed(("static quantization" if recipe.calibrated else "smoothing")
                                     + " needs calibration samples")
        graph, groups, excluded, model_file = _run_quantizer(recipe, fp32_path, tmp, calibration, cache_dir)
        if model_file is None or not model_file.is_file():
            raise QuantizationFailed("the quantizer wrote no model file")
        quantized = onnx.load(str(model_file))
        counts, precisions = _quantized_counts(recipe, graph, quantized, groups)
        digest = graph_hash(quantized)
        model_file.rename(tmp / "model.onnx")
        size_mb = model_file_mb(tmp / "model.onnx")
        _write_provenance(recipe, tmp, excluded)
        _remove_scratch(tmp)
    return QuantizedModel(out_dir / "model.onnx", digest, counts, time.perf_counter() - start, size_mb, precisions)


def _run_quantizer(recipe: QuantRecipe, fp32_path: Path, tmp: Path, calibration: dict[str, np.ndarray] | None,
                   cache_dir: Path | None) -> tuple[onnx.ModelProto, GraphGroups, tuple[str, ...], Path | None]:
    """Run the recipe's quantizer in ``tmp``; an error other than a failed trial is raised as QuantizationFailed."""
    try:
        with quiet():
            source, graph, groups, excluded = _source_graph(recipe, fp32_path, tmp, cache_dir, calibration)
            model_file = _apply_recipe(recipe, source, tmp, calibration, groups, excluded)
    except TrialFailed:
        raise
    except Exception as exc:  # the quantizer raises many types for recipes it cannot apply
        raise QuantizationFailed(f"{type(exc).__name__}: {exc}") from exc
    return graph, groups, excluded, model_file


def _source_graph(recipe: QuantRecipe, fp32_path: Path, tmp: Path, cache_dir: Path | None,
                  calibration: dict[str, np.ndarray] | None) -> tuple[Path, onnx.ModelProto, GraphGroups,
                                                                     tuple[str, ...]]:
    """Fuse if asked, smooth if asked, then read: the graph's path in a private view, the graph, its groups, and the
    nodes the recipe keeps fp32 by what they are (fragile nodes; MatMuls of two activations), named from this graph:
    after fusion, a fused Attention holds its attention MatMuls already. Smoothing keeps every node's name."""
    source = fp32_path
    cache = cache_dir if cache_dir else tmp / "cache"
    if recipe.fusion != "none":
        source = fused_model(fp32_path, recipe.fusion, cache_dir=cache)
    if recipe.smoothing:
        source = smoothed_model(source, dict(recipe.smoothing), calibration, cache_dir=cache)
    graph = _load_graph(source)
    groups = find_groups(graph)
    excluded = fragile_names(graph) if recipe.exclude_fragile and recipe.mode == "static" else ()
    if recipe.matmul_weights_only:
        excluded = (*excluded, *matmul_kinds(graph).activation)
    return _private_view(source, tmp / "source"), graph, groups, excluded


def _apply_recipe(recipe: QuantRecipe, source: Path, tmp: Path, calibration: dict[str, np.ndarray] | None,
                  groups: GraphGroups, excluded: tuple[str, ...]) -> Path | None:
    """Run the quantizer the recipe's mode and fusion call for; the model file it wrote (None: optimum wrote none)."""
    model_file = tmp / "quantized.onnx"
    if not recipe.operators_to_quantize:
        shutil.copy2(source, model_file)
    elif recipe.mode == "weight_only":
        _quantize_weight_only(recipe, source, model_file)
    elif recipe.mode == "mixed":
        _quantize_mixed(recipe, source, model_file, calibration, groups, tmp)
    elif recipe.fusion == "none":
        return _quantize_optimum(recipe, source, tmp, calibration, excluded)
    else:
        _quantize_ort(recipe, source, model_file, calibration, excluded)
    return model_file


def _quantized_counts(recipe: QuantRecipe, graph: onnx.ModelProto, quantized: onnx.ModelProto,
                      groups: GraphGroups) -> tuple[dict[str, int], dict[str, str]]:
    """How many nodes of each operator type were quantized, and the precision the quantized graph gives each group."""
    kinds = quantized_nodes(graph, quantized, operators=_counted_types(recipe), mode=recipe.mode,
                            qdq=recipe.mode == "static" and recipe.format == "QDQ")
    types = {node.name: node.op_type for node in graph.graph.node}
    counts = dict(sorted(Counter(types[name] for name in kinds).items()))
    return counts, realized(groups, kinds)


def _write_provenance(recipe: QuantRecipe, folder: Path, excluded: tuple[str, ...]) -> None:
    """Save beside the model what made it: the recipe, and for a fused recipe the ORT config optimum would read."""
    if recipe.fusion != "none":
        recipe.to_ort_config(nodes_to_exclude=excluded).save_pretrained(folder)
    (folder / "opsearch-recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))


def _remove_scratch(folder: Path) -> None:
    """Remove what fusion and the quantizers left in ``folder`` beside the model and its records."""
    shutil.rmtree(folder / "cache", ignore_errors=True)
    shutil.rmtree(folder / "source", ignore_errors=True)
    shutil.rmtree(folder / "optimum", ignore_errors=True)
    (folder / "augmented_model.onnx").unlink(missing_ok=True)  # static calibration's scratch model


def _counted_types(recipe: QuantRecipe) -> tuple[str, ...]:
    """The operator types whose standing nodes may count as quantized (a mixed recipe's groups hold Gemms too)."""
    if recipe.mode == "mixed":
        return (*recipe.operators_to_quantize, "Gemm", "MatMul", "Gather")
    return recipe.operators_to_quantize


def _private_view(model: Path, folder: Path) -> Path:
    """The model's folder seen through links in a folder of this trial's own: ONNX Runtime's quantizer writes
    scratch files (``model-inferred.onnx``) beside the model it reads, and two workers quantizing the study's shared
    fp32 model at once would remove each other's."""
    folder.mkdir(parents=True, exist_ok=True)
    for item in model.parent.iterdir():
        if item.is_file():
            (folder / item.name).symlink_to(item.resolve())
    return folder / model.name


def fragile_names(model: onnx.ModelProto) -> tuple[str, ...]:
    from opsearch.quantize._fragile import fragile_nodes

    return tuple(node.name for node in fragile_nodes(model))


def _quantize_optimum(recipe: QuantRecipe, fp32_path: Path, tmp: Path, calibration, excluded) -> Path | None:
    from optimum.onnxruntime import ORTQuantizer

    if (fp32_path.parent / "config.json").is_file():
        quantizer = ORTQuantizer.from_pretrained(fp32_path.parent, file_name=fp32_path.name)
    else:  # a plain ONNX model (studied with an evaluator): optimum's reading of a missing config fails
        from transformers import PretrainedConfig

        quantizer = ORTQuantizer(fp32_path, config=PretrainedConfig())
    config = recipe.to_optimum(nodes_to_exclude=excluded)
    work = tmp / "optimum"
    ranges = _calibrate(quantizer, recipe, calibration, tmp) if recipe.mode == "static" else None
    path = Path(quantizer.quantize(save_dir=work, quantization_config=config, calibration_tensors_range=ranges))
    model_file = next(iter(sorted(work.glob("*quantized*.onnx"))), None) if path.is_dir() else path
    if model_file is None:
        return None
    for item in work.iterdir():  # ort_config.json, config.json: what optimum writes beside the model
        if item != model_file:
            item.rename(tmp / item.name)
    return model_file


def _quantize_ort(recipe: QuantRecipe, source: Path, target: Path, calibration, excluded) -> None:
    """ONNX Runtime's quantizer on a fused graph, with optimum's option names mapped onto its arguments."""
    common = {"op_types_to_quantize": list(recipe.operators_to_quantize),
              "nodes_to_exclude": sorted({*recipe.nodes_to_exclude, *excluded})}
    if recipe.mode == "dynamic":
        _ort_dynamic(recipe, source, target, **common)
    else:
        _ort_static(recipe, source, target, calibration, fmt=recipe.format, **common)


def _ort_extra(recipe: QuantRecipe) -> dict:
    import onnx

    return {
        # Shape inference cannot type the outputs of contrib operators (Attention, SkipLayerNormalization).
        "DefaultTensorType": onnx.TensorProto.FLOAT,
        "WeightSymmetric": recipe.weights_symmetric,
        "ActivationSymmetric": recipe.activations_symmetric,
        "ForceSymmetric": recipe.activations_symmetric and recipe.weights_symmetric,  # as optimum sets it
    }


def _ort_dynamic(recipe: QuantRecipe, source: Path, target: Path, *, const_b_only: bool = True,
                 **selection) -> None:
    """``const_b_only``: ONNX Runtime's default, MatMuls of two activations left fp32 (optimum's quantizer, and a
    mixed recipe that names them, quantize those too). Fused dynamic recipes keep it: they are weight-MatMuls-only
    recipes (``QuantRecipe.matmul_weights_only``), and the graphs stored studies measured stay the same."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    extra = {**_ort_extra(recipe), "MatMulConstBOnly": const_b_only}
    quantize_dynamic(str(source), str(target), extra_options=extra, per_channel=recipe.per_channel,
                     reduce_range=recipe.reduce_range, weight_type=getattr(QuantType, recipe.weights_dtype),
                     **selection)


def _ort_static(recipe: QuantRecipe, source: Path, target: Path, calibration, *, fmt: str, **selection) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    extra = _ort_extra(recipe)
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[recipe.calibration_method]
    if recipe.calibration_method == "percentile":
        extra["CalibPercentile"] = PERCENTILE
    if recipe.float_output:  # the MatMuls' outputs stay float: ONNX Runtime fuses them as MatMulIntegerToFloat
        extra["OpTypesToExcludeOutputQuantization"] = ["MatMul", "Gemm"]
    names = {i.name for i in _load_graph(source).graph.input}
    n = min(recipe.calibration_samples, len(next(iter(calibration.values()))))
    reader = _Feeds([{k: v[i:i + 1] for k, v in calibration.items() if k in names} for i in range(n)])
    quantize_static(str(source), str(target), reader, extra_options=extra,
                    quant_format=QuantFormat.QDQ if fmt == "QDQ" else QuantFormat.QOperator,
                    activation_type=getattr(QuantType, recipe.activations_dtype), calibrate_method=method,
                    per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                    weight_type=getattr(QuantType, recipe.weights_dtype), **selection)


def _quantize_mixed(recipe: QuantRecipe, source: Path, target: Path, calibration, graph_groups: GraphGroups,
                    tmp: Path) -> None:
    """A precision per group: the static groups first (QDQ, calibrated on the fp32 graph), then the dynamic ones
    on the result, each quantizer told exactly which nodes to take (``nodes_to_quantize``)."""
    precisions = plan(recipe, graph_groups)
    groups = graph_groups.by_key()
    chosen = {precision: [(n, op) for key, p in precisions.items() if p == precision
                          for n, op in zip(groups[key].nodes, groups[key].node_types, strict=True)]
              for precision in ("static", "dynamic")}
    if not chosen["static"] and not chosen["dynamic"]:
        raise QuantizationFailed(f"{recipe.label()} leaves every group of this graph in fp32")
    excluded = set(recipe.nodes_to_exclude)
    current = source
    for precision in ("static", "dynamic"):
        nodes = [(n, op) for n, op in chosen[precision] if n not in excluded]
        if not nodes:
            continue
        # The dynamic quantizer rewrites a Gemm as "<name>_MatMul" (and an Add) before it matches names.
        names = sorted({n for n, _ in nodes} | {f"{n}_MatMul" for n, op in nodes if op == "Gemm"})
        types = sorted({op for _, op in nodes} | ({"MatMul"} if any(op == "Gemm" for _, op in nodes) else set()))
        out = target if precision == "dynamic" or not chosen["dynamic"] else tmp / "static.onnx"
        if precision == "static":
            _ort_static(recipe, current, out, calibration, fmt="QDQ", op_types_to_quantize=types,
                        nodes_to_quantize=names)
        else:
            _ort_dynamic(recipe, current, out, const_b_only=False, op_types_to_quantize=types,
                         nodes_to_quantize=names)
        current = out


def _quantize_weight_only(recipe: QuantRecipe, source: Path, target: Path) -> None:
    """ONNX Runtime's blocked weight-only quantizer: MatMul weights at ``weight_bits`` (MatMulNBits), then embedding
    tables at 4 bits (GatherBlockQuantized; the quantizer packs Gathers at 4 bits only)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(source))
    for op, bits in (("MatMul", recipe.weight_bits), ("Gather", 4)):
        if op not in recipe.operators_to_quantize:
            continue
        quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=recipe.block_size,
                                         is_symmetric=recipe.weights_symmetric,
                                         accuracy_level=recipe.accuracy_level or None,
                                         nodes_to_exclude=list(recipe.nodes_to_exclude), op_types_to_quantize=(op,))
        quantizer.process()
        model = quantizer.model.model
    large = model.ByteSize() > 2**31 - 2**26  # protobuf's 2 GB limit, with room for the graph
    onnx.save_model(model, str(target), save_as_external_data=large, location=target.name + ".data")


class _Feeds:
    """ONNX Runtime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _load_graph(path: Path) -> onnx.ModelProto:
    """The fp32 model, read once per process (and again only if the file changed): every trial needs it."""
    stat = path.stat()
    return _load_graph_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _load_graph_cached(path: str, mtime_ns: int, size: int) -> onnx.ModelProto:
    import onnx

    return onnx.load(path)


def _calibrate(quantizer, recipe: QuantRecipe, calibration: dict[str, np.ndarray], tmp: Path):
    import datasets
    from optimum.onnxruntime.configuration import AutoCalibrationConfig

    n = min(recipe.calibration_samples, len(next(iter(calibration.values()))))
    dataset = datasets.Dataset.from_dict({k: v[:n].tolist() for k, v in calibration.items()})
    if recipe.calibration_method == "minmax":
        cal_config = AutoCalibrationConfig.minmax(dataset)
    elif recipe.calibration_method == "entropy":
        cal_config = AutoCalibrationConfig.entropy(dataset)
    else:
        cal_config = AutoCalibrationConfig.percentiles(dataset, percentile=PERCENTILE)
    return quantizer.fit(dataset=dataset, calibration_config=cal_config,
                         onnx_augmented_model_name=tmp / "augmented_model.onnx",
                         operators_to_quantize=list(recipe.operators_to_quantize))
