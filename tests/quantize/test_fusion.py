"""opsearch.quantize._fusion: fused graphs made once, with contrib operators the space can offer."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from opsearch.quantize import FUSION_LEVELS, FusionFailed, fused_model, inspect_model


@pytest.fixture(scope="module")
def fused_o2(tiny_onnx, tmp_path_factory) -> Path:
    return fused_model(tiny_onnx.onnx_path, "O2", cache_dir=tmp_path_factory.mktemp("fusion-cache"))


def test_none_is_the_fp32_model(tiny_onnx, tmp_path: Path) -> None:
    assert fused_model(tiny_onnx.onnx_path, "none", cache_dir=tmp_path) == tiny_onnx.onnx_path
    assert not (tmp_path / "fused").exists()


def test_o2_fuses_attention_and_layer_normalization(tiny_onnx, fused_o2: Path) -> None:
    before = {o.op_type: o.count for o in inspect_model(tiny_onnx.onnx_path).operators}
    info = inspect_model(fused_o2)
    after = {o.op_type: o.count for o in info.operators}
    assert "Attention" not in before and after["Attention"] == 2  # one per layer of the tiny BERT
    assert after["SkipLayerNormalization"] >= 2
    assert sum(after.values()) < sum(before.values()) / 2
    # ONNX Runtime's registry decides what the space can offer: a fused Attention is dynamic-quantizable.
    assert "Attention" in info.quantizable_in("dynamic")


def test_fused_graph_keeps_inputs_outputs_and_is_typed(tiny_onnx, fused_o2: Path) -> None:
    fp32, fused = onnx.load(str(tiny_onnx.onnx_path)), onnx.load(str(fused_o2))
    assert {i.name for i in fused.graph.input} == {i.name for i in fp32.graph.input}
    assert [o.name for o in fused.graph.output] == [o.name for o in fp32.graph.output]
    assert len(fused.graph.value_info) > 0  # typed for static calibration


def test_fused_once_and_reused(tiny_onnx, tmp_path: Path) -> None:
    first = fused_model(tiny_onnx.onnx_path, "O1", cache_dir=tmp_path)
    made = first.stat().st_mtime_ns
    again = fused_model(tiny_onnx.onnx_path, "O1", cache_dir=tmp_path)
    assert again == first and again.stat().st_mtime_ns == made
    assert sorted(p.name for p in (tmp_path / "fused").iterdir()) == ["O1"]  # no temporary folder left


def test_unknown_level_and_unfusable_model(tmp_path: Path) -> None:
    assert FUSION_LEVELS == ("none", "O1", "O2", "O3")
    with pytest.raises(ValueError, match="O4"):
        fused_model(tmp_path / "model.onnx", "O4", cache_dir=tmp_path)
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(FusionFailed, match="O2"):
        fused_model(folder / "model.onnx", "O2", cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "fused").iterdir())
