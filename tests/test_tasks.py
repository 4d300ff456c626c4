"""One study per task beyond single-text classification, on a tiny model trained here: each runs, names its metric,
exports, and its export loads in optimum's pipeline for that task with the score the study recorded."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import (
    TAGS,
    TOPICS,
    fast_settings,
    make_tiny_head,
    make_tiny_reader,
    make_tiny_tagger,
    pair_rows,
    question_rows,
    rating_rows,
    tagged_rows,
    topic_rows,
    write_table,
)
from pipelines import pipeline_score

from opsearch.cli import main
from opsearch.config import StudyConfig
from opsearch.errors import DatasetError
from opsearch.measure import metric_for, metric_loss_ci, pack_labels, unpack_labels
from opsearch.report import TRIAL_FILE, build_report, format_report
from opsearch.search import create_runner, run_study


def _study(tmp_path, model, data, **settings):
    config = StudyConfig(model=str(model), dataset=str(data), storage=f"sqlite:///{tmp_path / 's.db'}",
                         study_name="task", modes=["dynamic"], **fast_settings(remeasure_front=False, **settings))
    lines: list[str] = []
    return run_study(config, n_trials=2, progress=lines.append), config, lines


def _export(config, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["export", "--storage", config.storage, "--study-name", "task", "--trial", "0", str(out)]) == 0
    capsys.readouterr()
    return out, json.loads((out / TRIAL_FILE).read_text())


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-pairs")
    return make_tiny_head(folder / "model", pair_rows(240, seed=1), num_labels=2), write_table(
        folder / "pairs.csv", pair_rows(200, seed=2))


@pytest.fixture(scope="module")
def rating_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-ratings")
    model = make_tiny_head(folder / "model", rating_rows(240, seed=1), num_labels=1, problem_type="regression",
                           steps=120)
    return model, write_table(folder / "ratings.csv", rating_rows(200, seed=2))


def test_a_pair_classifier_reads_both_texts_and_its_export_scores_the_same_in_a_pipeline(pair_model, tmp_path,
                                                                                          capsys):

    model, data = pair_model
    study, config, lines = _study(tmp_path, model, data, metric="mcc", max_accuracy_loss=0.05)
    assert any("columns 'sentence1', 'sentence2', 'label'" in line for line in lines)  # GLUE's pair, found
    off = [line for line in lines if line.startswith("early stopping for the limit: off: MCC is not a mean")]
    assert len(off) == 1 and lines.index(off[0]) < next(i for i, line in enumerate(lines) if "trial 0" in line)
    report = build_report(study)
    assert report.metric == "mcc" and "fp32 baseline: MCC " in format_report(report)
    baseline = report.baseline["metrics"]
    assert baseline["accuracy"] > 0.9  # far above chance: the label lives in the second text only

    out, record = _export(config, tmp_path, capsys)
    assert record["metric"] == "mcc"
    rows = _evaluation_rows(config, "classification")
    assert all(isinstance(text, tuple) for text in rows.texts)
    assert pipeline_score("classification", out, rows, metric="mcc") == pytest.approx(record["metrics"]["mcc"])


def test_a_regressor_is_read_from_its_config_judged_by_spearman_and_scores_the_same_in_a_pipeline(rating_model,
                                                                                                   tmp_path, capsys):

    model, data = rating_model
    study, config, lines = _study(tmp_path, model, data)
    assert any("(regression)" in line for line in lines)  # problem_type read from the checkpoint
    report = build_report(study)
    assert report.metric == "spearman" and report.baseline["metrics"]["spearman"] > 0.8
    assert "Spearman" in format_report(report)
    trial = study.trials[0]
    assert trial.user_attrs["accuracy"] == trial.user_attrs["metrics"]["spearman"]
    low, high = trial.user_attrs["accuracy_loss_ci"]
    assert low <= trial.user_attrs["accuracy_loss"] <= high and high - low < 0.2  # a paired bootstrap, not a guess

    out, record = _export(config, tmp_path, capsys)
    rows = _evaluation_rows(config, "regression")
    spearman = pipeline_score("regression", out, rows, metric="spearman")
    assert spearman == pytest.approx(record["metrics"]["spearman"], abs=1e-6)


@pytest.fixture(scope="module")
def topic_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-topics")
    model = make_tiny_head(folder / "model", topic_rows(300, seed=1), num_labels=3,
                           problem_type="multi_label_classification", steps=120,
                           id2label=dict(enumerate(TOPICS)), label2id={t: i for i, t in enumerate(TOPICS)})
    return model, write_table(folder / "topics.csv", topic_rows(200, seed=2))


def test_a_multi_label_tagger_is_judged_by_micro_f1_and_scores_the_same_in_a_pipeline(topic_model, tmp_path,
                                                                                       capsys):

    model, data = topic_model
    study, config, lines = _study(tmp_path, model, data)
    assert any("(multi-label)" in line for line in lines)  # problem_type read from the checkpoint
    report = build_report(study)
    assert report.metric == "f1_micro" and report.baseline["metrics"]["f1_micro"] > 0.9
    assert "fp32 baseline: micro F1 " in format_report(report)
    trial = next(t for t in study.trials if t.state.name == "COMPLETE")
    baseline = study.user_attrs["baseline"]
    labels, fp32 = unpack_labels(baseline["labels"]), unpack_labels(baseline["predictions"])
    answers = unpack_labels(trial.user_attrs["predictions"])
    assert labels.shape == fp32.shape == answers.shape == (len(labels), 3)
    f1 = metric_for("f1_micro", "multi-label")
    assert trial.user_attrs["accuracy_loss"] == pytest.approx(f1.score(fp32, labels) - f1.score(answers, labels))
    assert trial.user_attrs["accuracy_loss_ci"] == pytest.approx(list(metric_loss_ci(f1, fp32, answers, labels)))
    runner = create_runner(config, progress=lambda line: None)  # what judges the next trials: label-set F1
    try:
        changed = np.where(np.arange(len(labels))[:, None] < 20, 1 - fp32, fp32)
        assert runner.fp32.metric.tasks == ("multi-label",)
        assert runner.fp32.loss_ci(pack_labels(changed), seed=0) == pytest.approx(
            list(metric_loss_ci(f1, fp32, changed, labels)))
    finally:
        runner.close()

    out, record = _export(config, tmp_path, capsys)
    rows = _evaluation_rows(config, "multi-label", dict(enumerate(TOPICS)))
    assert rows.labels.shape == (len(rows.texts), 3)
    assert pipeline_score("multi-label", out, rows, metric="f1_micro") == pytest.approx(record["metrics"]["f1_micro"])


def test_labels_and_metrics_that_do_not_fit_the_task_are_refused_naming_the_fix(rating_model, pair_model, tmp_path,
                                                                                capsys):
    model, ratings = rating_model
    with pytest.raises(DatasetError, match="--task regression"):
        _study(tmp_path, model, ratings, task="classification")
    pairs_model, pairs = pair_model
    with pytest.raises(DatasetError, match="text pair column 'hypothesis'.*--text-pair-column"):
        _study(tmp_path, pairs_model, pairs, text_pair_column="hypothesis")
    assert main(["run", "--model", str(pairs_model), "--dataset", str(pairs), "--metric", "spearman", "--storage",
                 f"sqlite:///{tmp_path / 'm.db'}", "--trials", "1"]) != 0
    assert ("--metric spearman does not fit a classification model's predictions: use one of ['accuracy', "
            "'f1_macro', 'f1_micro', 'f1_weighted', 'mcc']") in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()  # refused before anything was stored
    words = write_table(tmp_path / "words.csv", [{"sentence": "good film", "label": "high"}] * 100)
    with pytest.raises(DatasetError, match="'high'.*not a number.*--label-column"):
        _study(tmp_path, model, words, task="regression")


@pytest.fixture(scope="module")
def tagger_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-tagger")
    return make_tiny_tagger(folder / "model", tagged_rows(300, seed=1)), write_table(folder / "tags.csv",
                                                                                      tagged_rows(200, seed=2))


def test_a_tagger_is_judged_by_entity_f1_at_first_sub_tokens_and_scores_the_same_in_a_pipeline(tagger_model,
                                                                                                tmp_path, capsys):

    model, data = tagger_model
    study, config, lines = _study(tmp_path, model, data, max_accuracy_loss=0.05)
    assert any("(token-classification)" in line for line in lines)  # ForTokenClassification read from the config
    assert any("columns 'tokens', 'ner_tags'" in line for line in lines)
    assert any(line.startswith("early stopping for the limit: off: entity F1 is not a mean") for line in lines)
    report = build_report(study)
    assert report.metric == "entity_f1" and report.baseline["metrics"]["entity_f1"] > 0.8
    assert "fp32 baseline: entity F1 " in format_report(report)
    trial = next(t for t in study.trials if t.state.name == "COMPLETE")
    baseline = study.user_attrs["baseline"]
    labels, fp32 = unpack_labels(baseline["labels"]), unpack_labels(baseline["predictions"])
    answers = unpack_labels(trial.user_attrs["predictions"])
    entity = metric_for("entity_f1", "token-classification", TAGS)
    assert labels.shape == fp32.shape == answers.shape
    assert trial.user_attrs["accuracy_loss_ci"] == pytest.approx(list(metric_loss_ci(entity, fp32, answers, labels)))

    out, record = _export(config, tmp_path, capsys)
    assert record["metric"] == "entity_f1"
    rows = _evaluation_rows(config, "token-classification", dict(enumerate(TAGS)))
    assert labels.shape == (len(rows.texts), max(len(words) for words in rows.texts))  # a tag per word, padded
    assert any(word.endswith("s") and word[:-1] in ("good", "bad", "great", "poor") for r in rows.texts for word in r)
    assert pipeline_score("token-classification", out, rows, metric="entity_f1", tags=TAGS) == pytest.approx(
        record["metrics"]["entity_f1"])


@pytest.fixture(scope="module")
def reader_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-reader")
    return make_tiny_reader(folder / "model", question_rows(300, seed=1)), write_table(
        folder / "questions.csv", question_rows(120, seed=2, words=(20, 60)))


def test_a_question_answerer_reads_long_contexts_in_windows_and_scores_the_same_in_a_pipeline(reader_model,
                                                                                               tmp_path, capsys):
    from transformers import AutoTokenizer


    model, data = reader_model
    study, config, lines = _study(tmp_path, model, data)
    assert any("(question-answering)" in line for line in lines)
    assert any("contexts longer than 32 tokens are read in" in line for line in lines)
    report = build_report(study)
    assert report.metric == "squad_f1" and "fp32 baseline: SQuAD F1 " in format_report(report)
    assert re.search(r"workload: 10 questions in \d+ windows, one question's windows per call", format_report(report))
    assert report.baseline["metrics"]["squad_f1"] > 0.8
    rows = _evaluation_rows(config, "question-answering")
    tokenizer = AutoTokenizer.from_pretrained(model)
    # Answers past the first window are found: the windows are read, not only the first.
    far = [i for i, q in enumerate(rows.texts)
           if len(tokenizer(q.question, q.context[:q.context.index(rows.answers[i][0])])["input_ids"]) > 32]
    fp32 = unpack_labels(study.user_attrs["baseline"]["predictions"])  # each question's F1
    assert len(far) >= 15 and fp32[far].mean() > 0.8

    out, record = _export(config, tmp_path, capsys)
    for metric in ("exact_match", "squad_f1"):
        assert pipeline_score("question-answering", out, rows, metric=metric) == pytest.approx(
            record["metrics"][metric])


def test_tags_and_answers_that_do_not_fit_are_refused_naming_the_row_and_the_fix(tagger_model, reader_model,
                                                                                 tmp_path, capsys):
    model, _ = tagger_model
    short = write_table(tmp_path / "short.csv", [{"tokens": "good film", "ner_tags": "B-POS"}] * 50)
    with pytest.raises(DatasetError, match="row 1 has 2 words in 'tokens' but 1 tags in 'ner_tags'"):
        _study(tmp_path, model, short)
    unknown = write_table(tmp_path / "unknown.csv", [{"tokens": "good film", "ner_tags": "B-PER O"}] * 100)
    with pytest.raises(DatasetError, match=r"do not match the model's classes.*--label-map"):
        _study(tmp_path, model, unknown)
    reader, questions = reader_model
    elsewhere = write_table(tmp_path / "elsewhere.csv", [{"question": "good", "context": "the film was good",
                                                          "answers": "great"}] * 100)
    with pytest.raises(DatasetError, match="row 1: the answer 'great' in 'answers' is not in its context"):
        _study(tmp_path, reader, elsewhere)
    assert main(["run", "--model", str(reader), "--dataset", str(questions), "--metric", "mcc", "--storage",
                 f"sqlite:///{tmp_path / 'm.db'}", "--trials", "1"]) != 0
    assert ("--metric mcc does not fit a question-answering model's predictions: use one of ['exact_match', "
            "'squad_f1']") in capsys.readouterr().err


def _evaluation_rows(config: StudyConfig, task: str, id2label: dict[int, str] | None = None):
    """The rows the study evaluated (its held-out fit rows left out), labels mapped to the model's."""
    from opsearch.source import load_study_data

    return load_study_data(config, id2label=id2label, task=task).eval
