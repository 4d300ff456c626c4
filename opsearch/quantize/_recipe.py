"""One quantization recipe: everything that decides the quantized graph, in optimum's names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from opsearch.config import (
    ACCURACY_LEVELS,
    ACTIVATION_TYPES,
    BLOCK_SIZES,
    CALIBRATION_METHODS,
    FORMATS,
    MIXED_PRECISIONS,
    MODES,
    WEIGHT_BITS,
    WEIGHT_TYPES,
)
from opsearch.config import FUSIONS as FUSION_LEVELS
from opsearch.quantize._smooth import SMOOTH_ROLES, SMOOTHED_OPS

# The vocabulary each of a recipe's fields takes (opsearch.config names them once).
_CHOICES = {"mode": MODES, "weight_bits": WEIGHT_BITS, "block_size": BLOCK_SIZES, "accuracy_level": ACCURACY_LEVELS,
            "weights_dtype": WEIGHT_TYPES, "activations_dtype": ACTIVATION_TYPES, "format": FORMATS,
            "fusion": FUSION_LEVELS, "calibration_method": CALIBRATION_METHODS}


@dataclass(frozen=True)
class QuantRecipe:
    """Everything that decides the quantized graph. Names follow optimum's QuantizationConfig."""

    mode: str  # "dynamic", "static", "weight_only" or "mixed"
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
    # Static only: keep fp32 the nodes opsearch.quantize._fragile finds (normalizations, GELU, residual Adds).
    exclude_fragile: bool = False
    # weight_only: MatMul weights in blocks of block_size at weight_bits (MatMulNBits), embeddings (Gather) at 4 bits
    # (GatherBlockQuantized); symmetric or not by weights_symmetric; accuracy_level 4 computes MatMulNBits in int8.
    weight_bits: int = 4
    block_size: int = 128
    accuracy_level: int = 0
    # mixed: a precision ("dynamic", "static") per role (quantize.ROLES; a role left out stays fp32); the first and
    # last layers kept fp32 whole; groups kept fp32 by key (the most sensitive, from the study's sensitivity pass).
    # The static part is QDQ, calibrated as static mode is; float_output leaves its MatMuls' outputs unquantized.
    precisions: tuple[tuple[str, str], ...] = ()
    fp32_first: int = 0
    fp32_last: int = 0
    fp32_groups: tuple[str, ...] = ()
    float_output: bool = False
    # Dynamic and static: quantize only the MatMuls with a constant weight; those of two activations (attention's
    # scores and context) stay fp32, as Intel Neural Compressor leaves them. The quantizer names them from the graph
    # it quantizes (quantize.matmul_kinds) and adds them to nodes_to_exclude.
    matmul_weights_only: bool = False
    # Dynamic, static and mixed: roles (quantize.SMOOTH_ROLES) whose projections' input activations are smoothed
    # before quantizing, each with its strength alpha in (0, 1) (quantize._smooth: SmoothQuant's migration of
    # activation outliers into the weights). Kept only where a projection of that role is quantized.
    smoothing: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {choices}")
        if self.mode == "static" and self.activations_dtype == "QInt8" and self.weights_dtype == "QUInt8":
            raise ValueError("activations_dtype='QInt8' with weights_dtype='QUInt8': ONNX Runtime's static "
                             "quantization does not support that pair")
        object.__setattr__(self, "operators_to_quantize", tuple(sorted(self.operators_to_quantize)))
        object.__setattr__(self, "nodes_to_exclude", tuple(self.nodes_to_exclude))
        object.__setattr__(self, "precisions", tuple(sorted((str(r), str(p)) for r, p in self.precisions)))
        object.__setattr__(self, "fp32_groups", tuple(self.fp32_groups))
        bad = [p for _, p in self.precisions if p not in MIXED_PRECISIONS]
        if bad:
            raise ValueError(f"precision {bad[0]!r} is not one of {MIXED_PRECISIONS}")
        if self.mode == "mixed" and self.operators_to_quantize and not self.precisions:
            raise ValueError("a mixed recipe names no role to quantize (precisions is empty)")
        object.__setattr__(self, "matmul_weights_only", self._weights_only())
        object.__setattr__(self, "smoothing", self._smoothing())

    def _smoothing(self) -> tuple[tuple[str, float], ...]:
        """``smoothing`` checked and kept where it changes what is quantized: a role's projections quantized
        (a mixed recipe's role not fp32; a dynamic or static recipe's MatMuls or Gemms), sorted by role."""
        pairs = tuple(sorted((str(r), float(a)) for r, a in self.smoothing))
        for role, alpha in pairs:
            if role not in SMOOTH_ROLES:
                raise ValueError(f"smoothing role {role!r} is not one of {SMOOTH_ROLES}")
            if not 0 < alpha < 1:
                raise ValueError(f"smoothing strength {alpha!r} for {role} is not in (0, 1)")
        if len({r for r, _ in pairs}) != len(pairs):
            raise ValueError(f"smoothing names a role twice: {pairs}")
        if self.mode == "mixed":
            quantized = {r for r, p in self.precisions if p != "fp32"}
            return tuple((r, a) for r, a in pairs if r in quantized)
        if self.mode in ("dynamic", "static") and SMOOTHED_OPS & set(self.operators_to_quantize):
            return pairs
        return ()

    def _weights_only(self) -> bool:
        """``matmul_weights_only`` where it decides the graph: off without a MatMul quantized dynamic or static (a
        weight-only quantizer takes weights anyway; a mixed recipe sets its attention MatMuls by role), and on for a
        fused dynamic recipe, since ONNX Runtime's dynamic quantizer (the fused graph's) leaves activation MatMuls
        fp32 by default (``MatMulConstBOnly``), so two spellings of one graph are one recipe."""
        if self.mode not in ("dynamic", "static") or "MatMul" not in self.operators_to_quantize:
            return False
        return bool(self.matmul_weights_only) or (self.mode == "dynamic" and self.fusion != "none")

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
        for key in ("operators_to_quantize", "nodes_to_exclude", "fp32_groups"):
            data[key] = tuple(data.get(key, ()))
        data["precisions"] = tuple(tuple(pair) for pair in data.get("precisions", ()))
        data["smoothing"] = tuple(tuple(pair) for pair in data.get("smoothing", ()))
        return cls(**data)

    @property
    def calibrated(self) -> bool:
        """Whether any node is quantized static (a calibrated quantizer)."""
        return self.mode == "static" or any(p == "static" for _, p in self.precisions)

    @property
    def needs_rows(self) -> bool:
        """Whether quantizing reads calibration rows: a calibrated quantizer, or smoothing's activation maxima."""
        return self.calibrated or bool(self.smoothing)

    def flags(self) -> list[str]:
        """The flags that differ from the plain recipe, in short words (shared by labels and reports)."""
        flags = [self.fusion] if self.fusion != "none" else []
        if not self.operators_to_quantize:
            return flags  # nothing quantized: the quantization flags change nothing
        if self.mode == "weight_only":
            flags += [f"int{self.weight_bits}" if "MatMul" in self.operators_to_quantize else "int4",
                      f"block{self.block_size}"]
            if self.accuracy_level and "MatMul" in self.operators_to_quantize:
                flags.append(f"acc{self.accuracy_level}")
            if not self.weights_symmetric:
                flags.append("asym_w")
            if self.nodes_to_exclude:
                flags.append(f"exclude{len(self.nodes_to_exclude)}")
            return flags
        if self.mode == "mixed":
            flags += [f"{precision}:{'+'.join(r for r, p in self.precisions if p == precision)}"
                      for precision in MIXED_PRECISIONS if any(p == precision for _, p in self.precisions)]
            flags += [f"fp32_{end}{n}" for end, n in (("first", self.fp32_first), ("last", self.fp32_last)) if n]
            if self.fp32_groups:
                flags.append(f"fp32_top{len(self.fp32_groups)}")
        if self.smoothing:
            flags.append("smooth:" + ",".join(f"{r}@{a:g}" for r, a in self.smoothing))
        flags += [name for name in ("per_channel", "reduce_range", "matmul_weights_only") if getattr(self, name)]
        static = self.calibrated
        if static and self.activations_symmetric:
            flags.append("sym_act")
        if not self.weights_symmetric:
            flags.append("asym_w")
        flags.append("s8" if self.weights_dtype == "QInt8" else "u8")
        if static:
            if self.activations_dtype == "QInt8":
                flags.append("s8act")
            if self.float_output:
                flags.append("float_out")
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
        if self.mode == "mixed":
            return f"mixed {' '.join(self.flags())}"
        return f"{self.mode}[{'+'.join(self.operators_to_quantize) or '-'}] {' '.join(fmt + self.flags())}"

    def to_optimum(self, *, nodes_to_exclude: tuple[str, ...] | list[str] = ()):
        """optimum's QuantizationConfig; ``nodes_to_exclude`` adds names resolved from the graph (fragile nodes, the
        activation MatMuls ``matmul_weights_only`` keeps fp32: optimum has no such option)."""
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
        # optimum has no weight-only or mixed config: its ORTConfig then records the fusion alone (the recipe
        # file says the rest)
        quantize = self.operators_to_quantize and self.mode not in ("weight_only", "mixed")
        quantization = self.to_optimum(nodes_to_exclude=nodes_to_exclude) if quantize else None
        return ORTConfig(optimization=optimization, quantization=quantization)


