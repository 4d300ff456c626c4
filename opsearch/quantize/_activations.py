"""The fp32 graph run on calibration rows with chosen activations exposed as outputs, and each activation's range
(overall and per channel): what the ranges pass and smoothing both read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

BATCH_ROWS = 8


def expose(model: onnx.ModelProto, tensors: list[str]) -> None:
    """Add each of ``tensors`` that is not yet an output of ``model``'s graph to its outputs."""
    import onnx

    existing = {o.name for o in model.graph.output}
    for tensor in tensors:
        if tensor not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))


def exposed_session(model: onnx.ModelProto, folder: Path, threads: int) -> ort.InferenceSession:
    """A CPU session on ``model``, saved into ``folder``, that runs the graph exactly as it is written."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=model.ByteSize() > 2**31 - 2**26,
                    location="model.onnx.data")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def calibration_batches(session: ort.InferenceSession, calibration: dict[str, np.ndarray],
                        n: int) -> list[dict[str, np.ndarray]]:
    """The first ``n`` calibration rows as the session's feeds, ``BATCH_ROWS`` rows a batch."""
    names = {i.name for i in session.get_inputs()}
    return [{k: v[i:i + BATCH_ROWS] for k, v in calibration.items() if k in names} for i in range(0, n, BATCH_ROWS)]


def activation_stats(session: ort.InferenceSession, wanted: list[str],
                      batches: list[dict[str, np.ndarray]]) -> dict[str, Stats]:
    """Each of the ``wanted`` activations' range over all the batches (the range static calibration fixes)."""
    stats = {t: Stats() for t in wanted}
    for feeds in batches:
        for tensor, value in zip(wanted, session.run(wanted, feeds), strict=True):
            stats[tensor].add(value)
    return stats


class Stats:
    """An activation's running min, max and per-channel max |x| (the last axis is the channel)."""

    def __init__(self) -> None:
        self.low, self.high, self.channels = 0.0, 0.0, None

    def add(self, value: np.ndarray) -> None:
        self.low, self.high = min(self.low, float(value.min())), max(self.high, float(value.max()))
        per_channel = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
        self.channels = per_channel if self.channels is None else np.maximum(self.channels, per_channel)


