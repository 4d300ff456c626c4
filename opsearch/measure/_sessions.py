"""ONNX Runtime sessions with the study's thread settings, and pre-tokenized inputs to feed them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opsearch.source import Question, Text, tokenize


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


# A model's inputs for one call, by name; a tagger's feed also holds ``word_index`` (each word's first token, -1 for
# a word cut off by max_length, -2 past the row's last word), a question's its windows' ``offset_mapping``,
# ``overflow_to_sample_mapping`` (each window's question) and ``answer_mask`` (1 where an answer may lie). Sessions
# are given the model's inputs only.
Feed = dict[str, np.ndarray]


def encode(tokenizer, texts: list[Text], *, max_length: int, batch_size: int = 1) -> list[Feed]:
    """The texts in order, ``batch_size`` at a time, each batch padded to its longest text; batch 1 is unpadded
    (what a latency-bound service runs), but for a question's windows. The timed workload batches its texts the
    same way."""
    feeds = []
    for i in range(0, len(texts), batch_size):
        batch = texts[i:i + batch_size]
        questions = isinstance(batch[0], Question)
        enc = tokenize(tokenizer, batch, truncation=True, max_length=max_length,
                       padding=len(batch) > 1 or questions, return_tensors="np")
        feed = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}
        if isinstance(batch[0], list):
            feed["word_index"] = _first_tokens(enc, [len(words) for words in batch])
        if questions:
            feed["answer_mask"] = _answer_mask(enc, tokenizer.cls_token_id)
        feeds.append(feed)
    return feeds


def rows_in(feed: Feed) -> int:
    """How many of the study's rows a feed holds (a question's windows are one row)."""
    if "overflow_to_sample_mapping" in feed:
        return int(feed["overflow_to_sample_mapping"].max()) + 1
    return len(next(iter(feed.values())))


def _first_tokens(enc, words: list[int]) -> np.ndarray:
    """Each word's first token in its row (transformers' word alignment: the first sub-token stands for the word)."""
    index = np.full((len(words), max(words)), -2, dtype=np.int64)
    for row, n in enumerate(words):
        index[row, :n] = -1
        seen = set()
        for position, word in enumerate(enc.word_ids(row)):
            if word is not None and word not in seen:
                seen.add(word)
                index[row, word] = position
    return index


def _answer_mask(enc, cls_token_id: int | None) -> np.ndarray:
    """1 where a window's answer may start or end: its context's tokens, and the CLS token that transformers'
    question-answering pipeline also leaves in (it takes part in the softmax but never wins)."""
    mask = np.array([[s == 1 for s in enc.sequence_ids(w)] for w in range(len(enc["input_ids"]))])
    if cls_token_id is not None:
        mask |= np.asarray(enc["input_ids"]) == cls_token_id
    return (mask & (np.asarray(enc["attention_mask"]) == 1)).astype(np.int64)


def encode_padded(tokenizer, texts: list[Text], *, length: int) -> dict[str, np.ndarray]:
    """All texts padded (or truncated) to one length, the model's inputs only: calibration needs inputs of one
    shape."""
    enc = tokenize(tokenizer, texts, truncation=True, max_length=length, padding="max_length", return_tensors="np")
    return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in tokenizer.model_input_names}


def input_names(session) -> set[str]:
    return {i.name for i in session.get_inputs()}


def run_all(session, feeds: list[Feed], output: str) -> list[np.ndarray]:
    names = input_names(session)
    return [session.run([output], {k: v for k, v in feed.items() if k in names})[0] for feed in feeds]
