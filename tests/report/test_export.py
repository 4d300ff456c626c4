from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import fast_settings

from opsearch.cli import main
from opsearch.config import StudyConfig
from opsearch.errors import StudyError
from opsearch.report import TRIAL_FILE, choose_trial
from opsearch.search import run_study


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_checkpoint, tiny_csv):
    folder = tmp_path_factory.mktemp("export-study")
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=f"sqlite:///{folder / 's.db'}",
                         study_name="exp", modes=["dynamic"], **fast_settings())
    return run_study(config, n_trials=3, progress=lambda line: None), config


def test_exported_trial_loads_in_optimum_and_a_pipeline_with_its_recorded_accuracy(study, tmp_path, capsys) -> None:
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    from opsearch.source import load_study_data

    study, config = study
    out = tmp_path / "model"
    assert main(["export", "--storage", config.storage, "--study-name", "exp", "--trial", "0", str(out)]) == 0
    assert "trial 0 written" in capsys.readouterr().out
    assert {"model.onnx", "ort_config.json", "config.json", TRIAL_FILE} <= {p.name for p in out.iterdir()}
    record = json.loads((out / TRIAL_FILE).read_text())
    trial = study.trials[0]
    assert record["recipe"] == trial.user_attrs["recipe"] and record["graph_hash"] == trial.user_attrs["graph_hash"]

    model = ORTModelForSequenceClassification.from_pretrained(out)
    classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(out))
    data = load_study_data(config, id2label={0: "NEGATIVE", 1: "POSITIVE"}, task="classification")
    predicted = [model.config.label2id[p["label"]] for p in classify(data.eval.texts, batch_size=1)]
    accuracy = float(np.mean(np.asarray(predicted) == data.eval.labels))
    assert accuracy == pytest.approx(trial.user_attrs["accuracy"])


def test_best_under_a_loss_limit_is_the_fastest_such_trial(study) -> None:
    from opsearch.report import build_report

    study, _ = study
    rows = build_report(study).rows
    limit = max(r.accuracy_loss_pt for r in rows) / 100
    chosen = choose_trial(study, max_accuracy_loss=limit)
    # The fastest trial that may stand on the front: after the front session, the trials it re-timed.
    eligible = [r for r in rows if r.same_graph_as is None and r.candidate]
    assert chosen == max(eligible, key=lambda r: r.samples_per_s).trial
    assert chosen == build_report(study, max_accuracy_loss=limit).best_feasible.trial


def test_best_refuses_a_limit_no_trial_meets(tmp_path) -> None:
    from report_study import SPECS, make_study

    lossy = make_study(tmp_path / "s.db", [SPECS[2], SPECS[4]])  # losses 1.2 and 2 points
    with pytest.raises(StudyError, match="no completed trial"):
        choose_trial(lossy, max_accuracy_loss=0.01)
    assert choose_trial(lossy, max_accuracy_loss=0.015) == 0


def test_export_refuses_a_non_empty_folder_and_unknown_trials(study, tmp_path, capsys) -> None:
    _, config = study
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    storage = ["--storage", config.storage, "--study-name", "exp"]
    assert main(["export", *storage, "--trial", "0", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", *storage, "--trial", "99", str(tmp_path / "new")]) == 2
    assert "trial 99" in capsys.readouterr().err
