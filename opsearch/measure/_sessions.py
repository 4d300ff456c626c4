"""ONNX Runtime sessions with the study's thread settings, and pre-tokenized inputs to feed them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opsearch.source import Text, tokenize


@dataclass(frozen=True)
class ThreadSettings:
    """The same for the baseline and every trial, and stored with the study."""

    intra_op_threads: int
    inter_op_threads: int = 1
    allow_spinning: bool = False

    @classmethod
    def resolve(cls, intra_op_threads: int | None, inter_op_threads: int, allow_spinning: bool) -> ThreadSettings:
        return cls(intra_op_threads or physical_cores(), inter_op_threads, allow_spinning)


def physical_cores() -> int:
    """Physical cores where the system says (psutil), else the logical count."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def make_session(path: str | Path, threads: ThreadSettings):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def session_options(threads: ThreadSettings):
    """ONNX Runtime's options for a study's sessions: its threads, sequential execution, spinning as set."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads.intra_op_threads
    options.inter_op_num_threads = threads.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads burn a core between runs; off by default so that timing reflects the model alone.
    spin = "1" if threads.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.log_severity_level = 3
    return options


Feed = dict[str, np.ndarray]
def encode(tokenizer, texts: list[Text], *, max_length: int, batch_size: int = 1) -> list[Feed]:
    """The texts in order, ``batch_size`` at a time, each batch padded to its longest text; batch 1 is unpadded
    (what a latency-bound service runs). The timed workload batches its texts the same way."""
    feeds = []
    for i in range(0, len(texts), batch_size):
        batch = texts[i:i + batch_size]
        enc = tokenize(tokenizer, batch if len(batch) > 1 else batch[0], truncation=True, max_length=max_length,
                       padding=len(batch) > 1, return_tensors="np")
        feeds.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items()})
    return feeds


def encode_padded(tokenizer, texts: list[Text], *, length: int) -> dict[str, np.ndarray]:
    """All texts padded (or truncated) to one length: calibration needs inputs of one shape."""
    enc = tokenize(tokenizer, texts, truncation=True, max_length=length, padding="max_length", return_tensors="np")
    return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}


def input_names(session) -> set[str]:
    return {i.name for i in session.get_inputs()}


def run_all(session, feeds: list[Feed], output: str) -> list[np.ndarray]:
    names = input_names(session)
    return [session.run([output], {k: v for k, v in feed.items() if k in names})[0] for feed in feeds]
