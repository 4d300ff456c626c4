"""opsearch.report's graph inspection (what ``opsearch inspect`` prints), on an inspection made by hand."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from opsearch.quantize import QUANT_MODES, GraphGroups, GraphInfo, Group, GroupRange, GroupRanges, OperatorInfo
from opsearch.report import Inspection, format_inspection, inspection_json

GRAPH = GraphInfo("model.onnx", [
    OperatorInfo("MatMul", 48, {"dynamic": True, "static_qoperator": True, "static_qdq": True, "weight_only": True}),
    OperatorInfo("Shape", 7, {mode: False for mode in QUANT_MODES}),
])
GROUPS = GraphGroups((Group("layer.0/ffn_in", "ffn_in", 0, ("/l0/ffn/MatMul",), ("MatMul",)),
                      Group("layer.0/ffn_out", "ffn_out", 0, ("/l0/out/MatMul", "/l0/out/Add"), ("MatMul", "Add")),
                      Group("embeddings", "embeddings", None, ("/emb/Gather",), ("Gather",))), layers=1)
RANGES = GroupRanges((GroupRange("layer.0/ffn_out", "ffn_out", 0, 412.0, 20.0, 37.5, {"static": 0.31}),), rows=16)


def test_the_table_marks_what_each_mode_quantizes() -> None:
    lines = format_inspection(Inspection("my-model", "classification", GRAPH)).splitlines()
    assert lines[0] == "my-model: 55 nodes, 2 operator types (classification model)"
    assert lines[1].split() == ["operator", "nodes", *QUANT_MODES]
    assert lines[2].split() == ["MatMul", "48", "yes", "yes", "yes", "yes"]
    assert lines[3].split() == ["Shape", "7", "-", "-", "-", "-"]
    assert f"(onnxruntime {importlib.metadata.version('onnxruntime')})" in lines[4]
    assert len(lines) == 5  # no groups, no ranges asked for


@pytest.mark.parametrize("list_groups", [False, True])
def test_groups_are_counted_and_listed_when_asked(list_groups: bool) -> None:
    text = format_inspection(Inspection("m", "embedding", GRAPH, GROUPS), list_groups=list_groups)
    assert "\n\ngroups found from the graph's structure: 1 layers; ffn_in 1, ffn_out 1, embeddings 1" in text
    assert ("  layer.0/ffn_out        2 x Add+MatMul   /l0/out/MatMul, /l0/out/Add" in text) is list_groups


def test_the_ranges_pass_follows_the_table() -> None:
    text = format_inspection(Inspection("m", "classification", GRAPH, GROUPS, RANGES))
    ranges = text.split("\n\n")[-1]
    assert ranges.startswith("activation ranges on 16 calibration rows")
    assert "layer.0/ffn_out" in ranges and "20.6x" in ranges  # 412 over its role's typical 20


def test_the_ranges_pass_says_what_smoothing_would_do_and_which_groups_it_cannot_bring_under() -> None:
    ranges = GroupRanges((
        GroupRange("layer.0/ffn_in", "ffn_in", 0, 30.0, 30.0, 18.0, {"dynamic": 0.20}, {"0.5": 0.03, "0.75": 0.02}),
        GroupRange("layer.0/ffn_out", "ffn_out", 0, 412.0, 20.0, 37.5, {"dynamic": 0.31}, {"0.5": 0.12, "0.85": 0.09}),
        GroupRange("embeddings", "embeddings", None, 1.0, 1.0, float("nan"), {"dynamic": 0.01})), rows=16)
    text = format_inspection(Inspection("m", "classification", GRAPH, GROUPS, ranges)).split("\n\n")[-1]
    rows = {line.split()[0]: line.split() for line in text.splitlines()[2:5]}
    assert rows["layer.0/ffn_in"][-2:] == ["2.00%", "@0.75"] and rows["layer.0/ffn_out"][-2:] == ["9.00%", "@0.85"]
    assert rows["embeddings"][-1] == "-"
    assert text.splitlines()[-1] == ("2 group(s) lose 5% or more under dynamic int8; smoothing brings 1 of them under "
                                     "it; for layer.0/ffn_out no strength does: keep them fp32 (the mixed mode's fp32 "
                                     "choice).")


def test_json_holds_the_graph_the_groups_and_the_ranges() -> None:
    data = json.loads(inspection_json(Inspection("m", "classification", GRAPH, GROUPS, RANGES)))
    assert (data["model"], data["task"], data["path"]) == ("m", "classification", "model.onnx")
    assert [(o["op_type"], o["count"], o["quantizable"]["dynamic"]) for o in data["operators"]] == [
        ("MatMul", 48, True), ("Shape", 7, False)]
    assert [g["key"] for g in data["groups"]["groups"]] == ["layer.0/ffn_in", "layer.0/ffn_out", "embeddings"]
    assert data["ranges"]["rows"] == 16 and data["ranges"]["groups"][0]["abs_max"] == 412.0
    assert set(json.loads(inspection_json(Inspection("m", "classification", GRAPH)))) == {
        "model", "task", "path", "operators", "matmuls"}


@pytest.mark.parametrize(("weight", "activation", "line"), [
    (36, 12, "MatMul 48: 36 with a constant weight, 12 activation x activation"),
    (18, 0, "MatMul 18: all with a constant weight"),
])
def test_the_matmuls_are_split_by_what_feeds_them(weight: int, activation: int, line: str) -> None:
    graph = GraphInfo(GRAPH.path, GRAPH.operators, weight_matmuls=weight, activation_matmuls=activation)
    lines = format_inspection(Inspection("m", "classification", graph)).splitlines()
    assert lines[5].startswith(line)
    assert json.loads(inspection_json(Inspection("m", "classification", graph)))["matmuls"] == {
        "weight": weight, "activation": activation}
