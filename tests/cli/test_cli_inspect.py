"""``opsearch inspect``: a model's operator table, as a table and as JSON."""

from __future__ import annotations

import json
import time

import pytest

from opsearch.cli import main


def test_inspect_json(tiny_checkpoint, capsys) -> None:
    assert main(["inspect", str(tiny_checkpoint), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ops = {o["op_type"]: o for o in data["operators"]}
    assert data["task"] == "classification"
    assert ops["MatMul"]["count"] > 0 and ops["MatMul"]["quantizable"]["dynamic"]
    assert not ops["Shape"]["quantizable"]["dynamic"]


def test_inspect_table(tiny_onnx, capsys) -> None:
    assert main(["inspect", str(tiny_onnx.onnx_path)]) == 0
    out = capsys.readouterr().out
    assert "MatMul" in out and "static_qdq" in out and "onnxruntime.quantization.registry" in out


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_hub_id_without_hub_fails_fast(env, monkeypatch, capsys) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    started = time.perf_counter()
    assert main(["inspect", "distilbert-base-uncased-finetuned-sst-2-english"]) == 2
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err
    assert "hub cannot be reached" in err and "local folder" in err
