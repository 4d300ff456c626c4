"""Stage 1, the inputs: MODEL to one fp32 ONNX model with its tokenizer; DATA to labelled evaluation and fit rows."""

from __future__ import annotations

from opsearch.source._data import LabelledTexts, StudyData, Text, load_study_data, load_texts, tokenize
from opsearch.source._model import PreparedModel, is_local_spec, prepare_model, resolve_local

__all__ = [
    "LabelledTexts",
    "PreparedModel",
    "StudyData",
    "Text",
    "is_local_spec",
    "load_study_data",
    "load_texts",
    "prepare_model",
    "resolve_local",
    "tokenize",
]
