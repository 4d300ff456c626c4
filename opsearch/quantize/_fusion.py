"""Graph fusion before quantization: the fp32 graph rewritten by optimum's ORTOptimizer at one level.

A fused graph holds ONNX Runtime's contrib operators (Attention, SkipLayerNormalization, BiasGelu, ...),
so the quantizer sees other operator types than in the exported graph: quantizing a fused Attention
gives one QAttention kernel where the unfused graph gave a dozen separate nodes. Each level is made
once per study and cached; the fused graph keeps the fp32 model's inputs and outputs.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from opsearch._files import atomic_folder
from opsearch._logging import quiet
from opsearch.config import FUSIONS as FUSION_LEVELS
from opsearch.errors import TrialFailed

_MARKER = "opsearch-fusion.json"
logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import onnx


class FusionFailed(TrialFailed):
    """The optimizer could not fuse this model at this level (e.g. an architecture it does not know)."""


def fused_model(fp32_path: Path, level: str, *, cache_dir: Path) -> Path:
    """The fp32 model fused at ``level``, made once under ``cache_dir/fused/<level>`` and reused after.

    ``level="none"`` returns ``fp32_path`` itself. The cached graph is remade when the fp32 file changed.
    Raises :class:`FusionFailed` when the optimizer cannot handle the model.
    """
    if level not in FUSION_LEVELS:
        raise ValueError(f"fusion={level!r} is not one of {FUSION_LEVELS}")
    if level == "none":
        return fp32_path
    fp32_path = Path(fp32_path)
    target = Path(cache_dir) / "fused" / level
    source = source_stamp(fp32_path)
    marker = target / _MARKER
    if marker.is_file() and (target / "model.onnx").is_file():
        try:
            if json.loads(marker.read_text()).get("source") == source:
                return target / "model.onnx"
        except ValueError:
            pass  # a damaged marker: make the graph again
    with atomic_folder(target, prefix=f".fuse-{level}-", needs_bytes=fp32_path.stat().st_size) as tmp:
        _optimize(fp32_path, level, tmp)
        (tmp / _MARKER).write_text(json.dumps({"source": source, "level": level}, indent=2))
    return target / "model.onnx"


def source_stamp(path: Path) -> dict:
    """What identifies a source model file for a graph cached from it: its path, size and modification time."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _optimize(fp32_path: Path, level: str, out: Path) -> None:
    import onnx
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    work = out / "optimizer"
    try:
        with quiet():
            optimizer = ORTOptimizer.from_pretrained(fp32_path.parent, file_names=[fp32_path.name])
            config = AutoOptimizationConfig.with_optimization_level(level)
            optimizer.optimize(save_dir=work, optimization_config=config)
    except Exception as exc:  # optimum raises many types for models it cannot fuse
        raise FusionFailed(f"fusion {level} failed: {type(exc).__name__}: {exc}") from exc
    written = sorted(work.glob("*.onnx"))
    if not written:
        raise FusionFailed(f"fusion {level}: the optimizer wrote no model file")
    model = onnx.load(str(written[0]))
    _check_same_interface(onnx.load(str(fp32_path), load_external_data=False), model, level)
    onnx.save(_with_shapes(model), str(out / "model.onnx"))
    if (work / "ort_config.json").exists():  # optimum's record of the optimization it applied
        shutil.copy2(work / "ort_config.json", out / "ort_config.json")
    shutil.rmtree(work, ignore_errors=True)


def _with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Typed intermediate tensors, which static calibration needs to find what to observe.

    ONNX's own shape inference cannot type contrib operators; ONNX Runtime's symbolic inference can.
    Where it fails too, the graph is kept untyped: dynamic quantization copes with DefaultTensorType.
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
    except Exception as exc:  # the inference raises many types on graphs it cannot follow
        logger.info("symbolic shape inference failed on the fused graph (%s); kept untyped", exc)
        return model


def _check_same_interface(fp32: onnx.ModelProto, fused: onnx.ModelProto, level: str) -> None:
    """The rest of the pipeline feeds the fused model what it feeds fp32 and reads the same outputs."""
    before = ([i.name for i in fp32.graph.input], [o.name for o in fp32.graph.output])
    after = ([i.name for i in fused.graph.input], [o.name for o in fused.graph.output])
    if set(before[0]) != set(after[0]) or before[1] != after[1]:
        raise FusionFailed(f"fusion {level} changed the model's inputs/outputs from {before} to {after}")
