"""One quantization recipe, and turning an fp32 ONNX model into the int8 model it describes."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from opsearch.errors import TrialFailed
from opsearch.graph import graph_hash, quantized_node_counts

WEIGHT_TYPES = ("QInt8", "QUInt8")
FORMATS = ("QOperator", "QDQ")


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

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"mode={self.mode!r} is not 'dynamic' or 'static'")
        if self.weights_dtype not in WEIGHT_TYPES:
            raise ValueError(f"weights_dtype={self.weights_dtype!r} is not one of {WEIGHT_TYPES}")
        if self.format not in FORMATS:
            raise ValueError(f"format={self.format!r} is not one of {FORMATS}")
        object.__setattr__(self, "operators_to_quantize", tuple(sorted(self.operators_to_quantize)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> QuantRecipe:
        data = dict(data)
        for key in ("operators_to_quantize", "nodes_to_exclude"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)

    def flags(self) -> list[str]:
        """The flags that differ from the plain recipe, in short words (shared by labels and reports)."""
        flags = [name for name in ("per_channel", "reduce_range") if getattr(self, name)]
        if self.mode == "static" and self.activations_symmetric:
            flags.append("sym_act")
        if not self.weights_symmetric:
            flags.append("asym_w")
        flags.append("s8" if self.weights_dtype == "QInt8" else "u8")
        return flags

    def label(self) -> str:
        fmt = [self.format] if self.mode == "static" else []
        return f"{self.mode}[{'+'.join(self.operators_to_quantize) or '-'}] {' '.join(fmt + self.flags())}"

    def to_optimum(self):
        from onnxruntime.quantization import QuantFormat, QuantizationMode, QuantType
        from optimum.onnxruntime.configuration import QuantizationConfig

        static = self.mode == "static"
        return QuantizationConfig(
            is_static=static,
            format=QuantFormat.QDQ if static and self.format == "QDQ" else QuantFormat.QOperator,
            mode=QuantizationMode.QLinearOps if static else QuantizationMode.IntegerOps,
            activations_dtype=QuantType.QUInt8,
            activations_symmetric=self.activations_symmetric,
            weights_dtype=getattr(QuantType, self.weights_dtype),
            weights_symmetric=self.weights_symmetric,
            per_channel=self.per_channel,
            reduce_range=self.reduce_range,
            operators_to_quantize=list(self.operators_to_quantize),
            nodes_to_exclude=list(self.nodes_to_exclude),
        )


@dataclass(frozen=True)
class QuantizedModel:
    path: Path
    graph_hash: str
    node_counts: dict[str, int]  # fp32 operator type -> nodes computed in int8
    seconds: float


def quantize(recipe: QuantRecipe, *, fp32_path: Path, out_dir: Path,
             calibration: dict[str, np.ndarray] | None = None) -> QuantizedModel:
    """Quantize with optimum's ORTQuantizer into ``out_dir``, written under a temporary name and renamed.

    ``calibration`` holds the static mode's inputs, all of one shape (see ``runtime.encode_padded``).
    """
    from optimum.onnxruntime import ORTQuantizer

    start = time.perf_counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".quant-", dir=out_dir.parent))
    try:
        quantizer = ORTQuantizer.from_pretrained(fp32_path.parent, file_name=fp32_path.name)
        config = recipe.to_optimum()
        ranges = None
        if recipe.mode == "static" and calibration is None:
            raise QuantizationFailed("static quantization needs calibration samples")
        try:
            with _quiet():
                if recipe.mode == "static":
                    ranges = _calibrate(quantizer, recipe, calibration, tmp)
                path = quantizer.quantize(save_dir=tmp, quantization_config=config,
                                          calibration_tensors_range=ranges)
        except QuantizationFailed:
            raise
        except Exception as exc:  # the quantizer raises many types for recipes it cannot apply
            raise QuantizationFailed(f"{type(exc).__name__}: {exc}") from exc
        path = Path(path)
        model_file = next(iter(sorted(tmp.glob("*quantized*.onnx"))), None) if path.is_dir() else path
        if model_file is None:
            raise QuantizationFailed("the quantizer wrote no model file")
        fp32 = _load_graph(fp32_path)
        quantized = onnx.load(str(model_file))
        counts = quantized_node_counts(fp32, quantized, operators=recipe.operators_to_quantize,
                                        qdq=recipe.mode == "static" and recipe.format == "QDQ")
        digest = graph_hash(quantized)
        model_file.rename(tmp / "model.onnx")
        (tmp / "opsearch-recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return QuantizedModel(out_dir / "model.onnx", digest, counts, time.perf_counter() - start)


def _load_graph(path: Path) -> onnx.ModelProto:
    """The fp32 model, read once per process (and again only if the file changed): every trial needs it."""
    stat = path.stat()
    return _load_graph_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _load_graph_cached(path: str, mtime_ns: int, size: int) -> onnx.ModelProto:
    return onnx.load(path)


@contextlib.contextmanager
def _quiet():
    """The quantizer prints calibration chatter and shape-inference dumps that a user cannot act on."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


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
        cal_config = AutoCalibrationConfig.percentiles(dataset, percentile=99.999)
    return quantizer.fit(dataset=dataset, calibration_config=cal_config,
                         onnx_augmented_model_name=tmp / "augmented_model.onnx",
                         operators_to_quantize=list(recipe.operators_to_quantize))
