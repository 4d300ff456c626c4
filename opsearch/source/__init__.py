"""Stage 1, the inputs: MODEL to one fp32 ONNX model with its tokenizer; DATA to labelled evaluation and fit rows."""

from __future__ import annotations

from opsearch.source._data import (
    LabelledTexts,
    Question,
    StudyData,
    Text,
    load_study_data,
    load_texts,
    question_stride,
    tokenize,
)
from opsearch.source._model import (
    PreparedModel,
    has_tokenizer,
    is_local_spec,
    ort_model_name,
    plain_onnx,
    prepare_model,
    resolve_local,
)
from opsearch.source._spans import QUESTION_TASKS, TAG_PAD, TAG_TASKS

__all__ = [
    "LabelledTexts",
    "PreparedModel",
    "QUESTION_TASKS",
    "Question",
    "TAG_PAD",
    "TAG_TASKS",
    "StudyData",
    "Text",
    "has_tokenizer",
    "plain_onnx",
    "is_local_spec",
    "load_study_data",
    "load_texts",
    "ort_model_name",
    "prepare_model",
    "question_stride",
    "resolve_local",
    "tokenize",
]
