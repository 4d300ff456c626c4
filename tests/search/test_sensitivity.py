"""opsearch.search._sensitivity: a node made fragile on purpose is ranked first, and the curve buys its error back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import fast_settings
from onnx import numpy_helper
from transformers import AutoTokenizer

from opsearch.measure import ThreadSettings, encode, make_session, run_all
from opsearch.quantize import QuantRecipe
from opsearch.search import format_sensitivity, measure_sensitivity, units_of

DAMAGED = "/bert/encoder/layer.1/intermediate/dense/MatMul"
HEAD = ("/bert/pooler/dense/Gemm_MatMul", "/classifier/Gemm_MatMul")


@pytest.fixture(scope="module")
def damaged_model(tiny_onnx, tmp_path_factory) -> Path:
    """The tiny BERT with one weight outlier in layer 1's FFN that fp32 never sees (its input feature is held at
    zero by the LayerNorm before it), while per-tensor int8 rounds every other weight of that matrix to 0."""
    folder = tmp_path_factory.mktemp("damaged")
    for item in tiny_onnx.folder.iterdir():
        if item.is_file():
            (folder / item.name).write_bytes(item.read_bytes())
    model = onnx.load(str(folder / "model.onnx"))
    nodes = {n.name: n for n in model.graph.node}
    producers = {o: n for n in model.graph.node for o in n.output}
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    def value(name: str) -> np.ndarray:
        while name not in constants:  # the export shares identical weights through Identity nodes
            name = producers[name].input[0]
        return constants[name]

    norm = nodes["/bert/encoder/layer.1/attention/output/LayerNorm/LayerNormalization"]
    gamma, beta = value(norm.input[1]).copy(), value(norm.input[2]).copy()
    gamma[0] = beta[0] = 0.0
    model.graph.initializer.extend([numpy_helper.from_array(gamma, "damaged.gamma"),
                                    numpy_helper.from_array(beta, "damaged.beta")])
    norm.input[1], norm.input[2] = "damaged.gamma", "damaged.beta"
    matmul = nodes[DAMAGED]
    weight = next(i for i in model.graph.initializer if i.name == matmul.input[1])
    values = numpy_helper.to_array(weight).copy()
    values[0, :] = 1000.0 * float(np.abs(values).max())
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(folder / "model.onnx"))
    return folder / "model.onnx"


def _evaluate(model_path: Path):
    from conftest import sentiment_rows

    tokenizer = AutoTokenizer.from_pretrained(model_path.parent)
    feeds = encode(tokenizer, [r["sentence"] for r in sentiment_rows(40)], max_length=32)
    reference = np.concatenate(run_all(make_session(model_path, ThreadSettings(1)), feeds, "logits")).argmax(1)

    def evaluate(path: Path):
        logits = np.concatenate(run_all(make_session(path, ThreadSettings(1)), feeds, "logits"))
        return float(np.mean(logits.argmax(1) == reference)), logits  # agreement with fp32

    return evaluate


@pytest.mark.parametrize(("name", "by", "unit"), [
    ("/bert/encoder/layer.1/attention/self/query/MatMul", "layer", "layer.1"),
    ("/bert/encoder/layer.1/attention/self/query/MatMul", "group", "layer.1/qkv"),
    ("/bert/encoder/layer.0/output/dense/MatMul", "group", "layer.0/ffn_out"),
    ("/bert/pooler/dense/Gemm_MatMul", "layer", "pooler"),
    ("/classifier/Gemm", "group", "head"),
    ("/bert/encoder/layer.1/attention/self/query/MatMul", "node", "/bert/encoder/layer.1/attention/self/query/MatMul"),
])
def test_units_come_from_the_graphs_structure(tiny_onnx, name: str, by: str, unit: str) -> None:
    graph = onnx.load(str(tiny_onnx.onnx_path), load_external_data=False)
    assert units_of(graph, [name], by=by) == {name: unit}


def test_damaging_node_ranks_first_and_excluding_it_helps(damaged_model: Path) -> None:
    # The head (pooler, classifier: Gemms quantized as MatMul) stays fp32: among the encoder's nodes, the damage
    # injected in one must stand out.
    recipe = QuantRecipe("dynamic", ("MatMul",), nodes_to_exclude=(HEAD))
    result = measure_sensitivity(recipe, fp32_path=damaged_model, evaluate=_evaluate(damaged_model), by="node",
                                 max_excluded=2)
    assert result.ranking[0].unit == DAMAGED
    assert result.ranking[0].output_error > 5 * result.ranking[1].output_error
    full, first = result.curve[0], result.curve[1]
    assert full.excluded == 0 and first.units == (DAMAGED,)
    assert first.output_error < full.output_error / 2
    assert first.quantized_nodes == full.quantized_nodes - 1
    assert len(result.curve) == 3 and result.ranked_nodes()[0] == DAMAGED
    text = format_sensitivity(result)
    assert DAMAGED[:40] in text and "excluding the most damaging" in text
    assert json.loads(json.dumps(result.to_dict()))["ranking"][0]["unit"] == DAMAGED


def test_by_layer_groups_the_damaged_layer(damaged_model: Path) -> None:
    result = measure_sensitivity(QuantRecipe("dynamic", ("MatMul",), nodes_to_exclude=HEAD), fp32_path=damaged_model,
                                 evaluate=_evaluate(damaged_model), by="layer", max_excluded=1)
    assert {u.unit for u in result.ranking} == {"layer.0", "layer.1"}
    assert result.ranking[0].unit == "layer.1" and DAMAGED in result.ranking[0].nodes


def test_cli_sensitivity_of_a_stored_trial(tmp_path, tiny_checkpoint, tiny_csv, capsys) -> None:
    from opsearch.cli import main
    from opsearch.config import StudyConfig
    from opsearch.search import run_study

    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=f"sqlite:///{tmp_path / 's.db'}",
                         study_name="sens", **fast_settings(modes=["dynamic"], remeasure_front=False))
    run_study(config, n_trials=1, progress=lambda line: None)
    storage = ["--storage", config.resolved_storage(), "--study-name", "sens"]
    assert main(["sensitivity", *storage, "--trial", "0", "--json", "--quiet", "--samples", "30"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recipe"]["operators_to_quantize"] == ["MatMul"]
    assert {u["unit"] for u in data["ranking"]} >= {"layer.0", "layer.1"}
    assert data["curve"][0]["excluded"] == 0
    assert main(["sensitivity", *storage, "--recipe", "{not json"]) == 2


def test_the_curve_queued_as_trials_is_measured_for_real(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    import optuna
    from conftest import fast_settings

    from opsearch.config import StudyConfig
    from opsearch.search import enqueue_fallbacks, resume_study, run_study, study_sensitivity
    from opsearch.store import load_existing

    storage = f"sqlite:///{tmp_path / 'fb.db'}"
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=storage, study_name="fb",
                         modes=["dynamic"], remeasure_front=False, **fast_settings())
    study = run_study(config, n_trials=1, progress=lambda line: None)  # trial 0: the "MatMul only" preset
    result = study_sensitivity(storage=storage, study_name="fb", trial=0, by="layer")
    assert len(result.curve) >= 3
    queued = enqueue_fallbacks(load_existing(storage, "fb"), 0, result)
    assert queued == list(range(1, len(result.curve)))

    waiting = len(load_existing(storage, "fb").get_trials(states=(optuna.trial.TrialState.WAITING,)))
    resumed = resume_study(storage=storage, study_name="fb", n_trials=waiting, progress=lambda line: None)
    fallbacks = [t for t in resumed.trials if t.user_attrs.get("fallback_of") == 0]
    assert [t.state for t in fallbacks] == [optuna.trial.TrialState.COMPLETE] * len(queued)
    assert all(t.params == study.trials[0].params for t in fallbacks)  # same parameters, yet not pruned as repeats
    for trial, point in zip(fallbacks, result.curve[1:], strict=True):
        excluded = trial.user_attrs["recipe"]["nodes_to_exclude"]
        assert len(excluded) == len(trial.user_attrs["nodes_to_exclude"]) > 0
        assert f"exclude{len(excluded)}" in trial.user_attrs["label"]
        # The study measured exactly what the curve predicted: the same nodes quantized, the same accuracy.
        assert sum(trial.user_attrs["quantized_nodes"].values()) == point.quantized_nodes
        assert trial.user_attrs["accuracy"] == pytest.approx(point.accuracy)
        assert trial.user_attrs["timing"]["speedup"] > 0
    counts = [sum(t.user_attrs["quantized_nodes"].values()) for t in fallbacks]
    assert counts == sorted(counts, reverse=True) and counts[0] < sum(study.trials[0].user_attrs[
        "quantized_nodes"].values())
