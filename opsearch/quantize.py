"""One quantization recipe, and turning an fp32 ONNX model into the int8 model it describes."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from opsearch._logging import quiet
from opsearch.errors import TrialFailed
from opsearch.fusion import FUSION_LEVELS, fused_model
from opsearch.graph import graph_hash, quantized_node_counts

WEIGHT_TYPES = ("QInt8", "QUInt8")
ACTIVATION_TYPES = ("QUInt8", "QInt8")
FORMATS = ("QOperator", "QDQ")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Percentile calibration keeps this share of each activation's histogram (optimum's default).
PERCENTILE = 99.999


class QuantizationFailed(TrialFailed):
    """The quantizer rejected a recipe or produced an unusable model: a failed trial, not a user error."""


@dataclass(frozen=True)
class QuantRecipe:
    """Everything that decides the quantized graph. Names follow optimum's QuantizationConfig."""

    mode: str  # "dynamic" or "static"
    operators_to_quantize: tuple[str, ...]
    per_channel: bool = False
    reduce_range: bool = False
    weights_symmetric: bool = True
    activations_symmetric: bool = False
    weights_dtype: str = "QInt8"
    format: str = "QOperator"  # static only; dynamic mode always writes integer operators
    calibration_method: str = "minmax"
    calibration_samples: int = 64
    nodes_to_exclude: tuple[str, ...] = ()
    # The graph quantized: the export ("none") or the export fused by ORTOptimizer at O1/O2/O3.
    fusion: str = "none"
    activations_dtype: str = "QUInt8"  # static only: dynamic quantization computes uint8 activations
    # Static only: keep the nodes opsearch.fragile finds (normalizations, GELU, residual/mask/embedding Adds) fp32.
    exclude_fragile: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"mode={self.mode!r} is not 'dynamic' or 'static'")
        if self.weights_dtype not in WEIGHT_TYPES:
            raise ValueError(f"weights_dtype={self.weights_dtype!r} is not one of {WEIGHT_TYPES}")
        if self.activations_dtype not in ACTIVATION_TYPES:
            raise ValueError(f"activations_dtype={self.activations_dtype!r} is not one of {ACTIVATION_TYPES}")
        if self.format not in FORMATS:
            raise ValueError(f"format={self.format!r} is not one of {FORMATS}")
        if self.fusion not in FUSION_LEVELS:
            raise ValueError(f"fusion={self.fusion!r} is not one of {FUSION_LEVELS}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration_method={self.calibration_method!r} is not one of {CALIBRATION_METHODS}")
        if self.mode == "static" and self.activations_dtype == "QInt8" and self.weights_dtype == "QUInt8":
            raise ValueError("activations_dtype='QInt8' with weights_dtype='QUInt8': ONNX Runtime's static "
                             "quantization does not support that pair")
        object.__setattr__(self, "operators_to_quantize", tuple(sorted(self.operators_to_quantize)))
        object.__setattr__(self, "nodes_to_exclude", tuple(self.nodes_to_exclude))

    @property
    def is_fp32(self) -> bool:
        """True when the recipe would give back the fp32 model itself (nothing fused, nothing quantized)."""
        return not self.operators_to_quantize and self.fusion == "none"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> QuantRecipe:
        """Tolerant of records from other versions: missing fields take their defaults, unknown ones are dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for key in ("operators_to_quantize", "nodes_to_exclude"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)

    def flags(self) -> list[str]:
        """The flags that differ from the plain recipe, in short words (shared by labels and reports)."""
        flags = [self.fusion] if self.fusion != "none" else []
        if not self.operators_to_quantize:
            return flags  # nothing quantized: the quantization flags change nothing
        flags += [name for name in ("per_channel", "reduce_range") if getattr(self, name)]
        if self.mode == "static" and self.activations_symmetric:
            flags.append("sym_act")
        if not self.weights_symmetric:
            flags.append("asym_w")
        flags.append("s8" if self.weights_dtype == "QInt8" else "u8")
        if self.mode == "static":
            if self.activations_dtype == "QInt8":
                flags.append("s8act")
            flags.append(f"{self.calibration_method}@{self.calibration_samples}")
            if self.exclude_fragile:
                flags.append("fp32_fragile")
        if self.nodes_to_exclude:
            flags.append(f"exclude{len(self.nodes_to_exclude)}")
        return flags

    def label(self) -> str:
        if not self.operators_to_quantize:
            return f"fp32 fused {self.fusion}" if self.fusion != "none" else "fp32"
        fmt = [self.format] if self.mode == "static" else []
        return f"{self.mode}[{'+'.join(self.operators_to_quantize) or '-'}] {' '.join(fmt + self.flags())}"

    def to_optimum(self, *, nodes_to_exclude: tuple[str, ...] | list[str] = ()):
        """optimum's QuantizationConfig; ``nodes_to_exclude`` adds names resolved from the graph (fragile nodes)."""
        from onnxruntime.quantization import QuantFormat, QuantizationMode, QuantType
        from optimum.onnxruntime.configuration import QuantizationConfig

        static = self.mode == "static"
        return QuantizationConfig(
            is_static=static,
            format=QuantFormat.QDQ if static and self.format == "QDQ" else QuantFormat.QOperator,
            mode=QuantizationMode.QLinearOps if static else QuantizationMode.IntegerOps,
            activations_dtype=getattr(QuantType, self.activations_dtype) if static else QuantType.QUInt8,
            activations_symmetric=self.activations_symmetric,
            weights_dtype=getattr(QuantType, self.weights_dtype),
            weights_symmetric=self.weights_symmetric,
            per_channel=self.per_channel,
            reduce_range=self.reduce_range,
            operators_to_quantize=list(self.operators_to_quantize),
            nodes_to_exclude=sorted({*self.nodes_to_exclude, *nodes_to_exclude}),
        )

    def to_ort_config(self, *, nodes_to_exclude: tuple[str, ...] | list[str] = ()):
        """optimum's ORTConfig: the fusion as its optimization config, the quantization as its quantization config."""
        from optimum.onnxruntime.configuration import AutoOptimizationConfig, ORTConfig

        optimization = AutoOptimizationConfig.with_optimization_level(self.fusion) if self.fusion != "none" else None
        quantization = self.to_optimum(nodes_to_exclude=nodes_to_exclude) if self.operators_to_quantize else None
        return ORTConfig(optimization=optimization, quantization=quantization)


@dataclass(frozen=True)
class QuantizedModel:
    path: Path
    graph_hash: str
    node_counts: dict[str, int]  # fp32 operator type -> nodes computed in int8
    seconds: float


def quantize(recipe: QuantRecipe, *, fp32_path: Path, out_dir: Path,
             calibration: dict[str, np.ndarray] | None = None, cache_dir: Path | None = None) -> QuantizedModel:
    """Quantize into ``out_dir``, written under a temporary name and renamed.

    An unfused recipe goes through optimum's ORTQuantizer; a fused one is fused first (``fusion.fused_model``,
    cached under ``cache_dir``; ``None``: fused again in a temporary folder) and quantized by ONNX Runtime's
    quantizer directly, which optimum cannot tell to type the contrib operators. A fused recipe that
    quantizes nothing gives the fused fp32 graph. ``calibration`` holds the static mode's inputs, all of one
    shape (see ``runtime.encode_padded``). Node counts are against the graph that was quantized.
    """
    start = time.perf_counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".quant-", dir=out_dir.parent))
    try:
        if recipe.mode == "static" and calibration is None and recipe.operators_to_quantize:
            raise QuantizationFailed("static quantization needs calibration samples")
        model_file = tmp / "quantized.onnx"
        try:
            with quiet():
                source = fp32_path
                if recipe.fusion != "none":
                    source = fused_model(fp32_path, recipe.fusion, cache_dir=cache_dir if cache_dir else tmp / "cache")
                graph = _load_graph(source)
                excluded = fragile_names(graph) if recipe.exclude_fragile and recipe.mode == "static" else ()
                if not recipe.operators_to_quantize:
                    shutil.copy2(source, model_file)
                elif recipe.fusion == "none":
                    model_file = _quantize_optimum(recipe, source, tmp, calibration, excluded)
                else:
                    _quantize_ort(recipe, source, model_file, calibration, excluded)
        except TrialFailed:
            raise
        except Exception as exc:  # the quantizer raises many types for recipes it cannot apply
            raise QuantizationFailed(f"{type(exc).__name__}: {exc}") from exc
        if model_file is None or not model_file.is_file():
            raise QuantizationFailed("the quantizer wrote no model file")
        quantized = onnx.load(str(model_file))
        counts = quantized_node_counts(graph, quantized, operators=recipe.operators_to_quantize,
                                        qdq=recipe.mode == "static" and recipe.format == "QDQ")
        digest = graph_hash(quantized)
        model_file.rename(tmp / "model.onnx")
        if recipe.fusion != "none":
            recipe.to_ort_config(nodes_to_exclude=excluded).save_pretrained(tmp)
        (tmp / "opsearch-recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
        shutil.rmtree(tmp / "cache", ignore_errors=True)
        shutil.rmtree(tmp / "optimum", ignore_errors=True)
        (tmp / "augmented_model.onnx").unlink(missing_ok=True)  # static calibration's scratch model
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return QuantizedModel(out_dir / "model.onnx", digest, counts, time.perf_counter() - start)


def fragile_names(model: onnx.ModelProto) -> tuple[str, ...]:
    from opsearch.fragile import fragile_nodes

    return tuple(node.name for node in fragile_nodes(model))


def _quantize_optimum(recipe: QuantRecipe, fp32_path: Path, tmp: Path, calibration, excluded) -> Path | None:
    from optimum.onnxruntime import ORTQuantizer

    quantizer = ORTQuantizer.from_pretrained(fp32_path.parent, file_name=fp32_path.name)
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
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    extra = {
        # Shape inference cannot type the outputs of contrib operators (Attention, SkipLayerNormalization).
        "DefaultTensorType": onnx.TensorProto.FLOAT,
        "WeightSymmetric": recipe.weights_symmetric,
        "ActivationSymmetric": recipe.activations_symmetric,
        "ForceSymmetric": recipe.activations_symmetric and recipe.weights_symmetric,  # as optimum sets it
    }
    common = {"op_types_to_quantize": list(recipe.operators_to_quantize), "per_channel": recipe.per_channel,
              "reduce_range": recipe.reduce_range, "weight_type": getattr(QuantType, recipe.weights_dtype),
              "nodes_to_exclude": sorted({*recipe.nodes_to_exclude, *excluded})}
    if recipe.mode == "dynamic":
        quantize_dynamic(str(source), str(target), extra_options=extra, **common)
        return
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[recipe.calibration_method]
    if recipe.calibration_method == "percentile":
        extra["CalibPercentile"] = PERCENTILE
    names = {i.name for i in _load_graph(source).graph.input}
    n = min(recipe.calibration_samples, len(next(iter(calibration.values()))))
    reader = _Feeds([{k: v[i:i + 1] for k, v in calibration.items() if k in names} for i in range(n)])
    quantize_static(str(source), str(target), reader, extra_options=extra,
                    quant_format=QuantFormat.QDQ if recipe.format == "QDQ" else QuantFormat.QOperator,
                    activation_type=getattr(QuantType, recipe.activations_dtype), calibrate_method=method,
                    **common)


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
