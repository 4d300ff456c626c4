"""Integration: on MiniLM SST-2 (../shared), static int8 within 1 point of fp32, and a fused graph quantized."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MINILM_SST2, SST2, needs_shared

from opsearch.config import StudyConfig
from opsearch.quantize import QuantRecipe, quantize

pytestmark = [pytest.mark.integration, needs_shared(MINILM_SST2), needs_shared(SST2)]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    from transformers import AutoTokenizer

    from opsearch.measure import ClassificationTask, ThreadSettings, encode, encode_padded, make_session
    from opsearch.source import load_study_data, prepare_model

    config = StudyConfig.from_toml("studies/minilm-sst2.toml")
    cache = tmp_path_factory.mktemp("minilm-cache")
    model = prepare_model(config.model, cache_dir=cache, task=config.task)
    data = load_study_data(config, id2label=model.id2label, task=model.task)
    tokenizer = AutoTokenizer.from_pretrained(model.folder)
    task = ClassificationTask(encode(tokenizer, data.eval.texts, max_length=config.max_length), data.eval.labels)
    calibration = encode_padded(tokenizer, data.fit.texts[:64], length=config.calibration_max_length)

    def accuracy(path: Path) -> float:
        return task.evaluate(make_session(path, ThreadSettings(2))).score

    return model, cache, calibration, accuracy, accuracy(model.onnx_path)


@pytest.mark.parametrize("recipe", [
    QuantRecipe("static", ("MatMul",), calibration_samples=64),
    QuantRecipe("static", ("Add", "MatMul"), calibration_samples=64, exclude_fragile=True),
    QuantRecipe("dynamic", ("Attention", "MatMul"), fusion="O2"),
], ids=lambda r: r.label())
def test_recipe_keeps_accuracy(minilm, tmp_path: Path, recipe: QuantRecipe) -> None:
    model, cache, calibration, accuracy, fp32 = minilm
    assert fp32 == pytest.approx(0.8922, abs=0.003)
    result = quantize(recipe, fp32_path=model.onnx_path, out_dir=tmp_path / "q", calibration=calibration,
                      cache_dir=cache)
    assert result.node_counts.get("MatMul", 0) > 0
    if recipe.fusion == "O2":
        assert result.node_counts["Attention"] == 6  # one fused attention per layer
    # Measured by hand (issue 5): -0.23, -1.49 and -0.23 points.
    assert fp32 - accuracy(result.path) <= (0.01 if "Add" not in recipe.operators_to_quantize else 0.02)
