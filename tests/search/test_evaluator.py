"""Your own evaluation: an evaluator's per-row scores or predictions plus a metric judge a study as the built-in
metrics do; it is stored by name and loaded again by resume and a worker; bad evaluators are named, and a trial whose
evaluator fails fails alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest
from conftest import fast_settings

from opsearch.cli import main
from opsearch.config import StudyConfig
from opsearch.errors import ConfigError, StudyError
from opsearch.measure import METRICS, EvaluatorTask, Predictions, evaluator_name
from opsearch.report import build_report, format_report
from opsearch.search import resume_study, run_study
from opsearch.store import StudyRecord

EVALUATORS = '''
    import numpy as np
    from sklearn.metrics import matthews_corrcoef

    from opsearch import Predictions

    calls = []


    def right(candidate):
        """Per-row scores: 1 for a right answer."""
        logits = np.concatenate(candidate.run("logits"))
        return (logits.argmax(axis=1) == candidate.labels).astype(float)


    def mcc(candidate):
        logits = np.concatenate(candidate.run("logits"))
        return Predictions(logits.argmax(axis=1), candidate.labels, matthews_corrcoef, name="my mcc")


    def fails_after_fp32(candidate):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("this evaluator only knows fp32")
        return right(candidate)


    def broken(candidate):
        raise RuntimeError("no GPU here")


    def wrong_shape(candidate):
        return np.zeros((3, 2))


    def own_inputs(candidate):
        """A plain ONNX model's evaluation: the evaluator reads the rows with its own tokenizer."""
        import os

        from transformers import AutoTokenizer

        assert not candidate.feeds  # the study has no tokenizer to make them with
        tokenizer = AutoTokenizer.from_pretrained(os.environ["MY_TOKENIZER"])
        right = []
        for text, label in zip(candidate.texts, candidate.labels):
            feed = {k: v.astype(np.int64) for k, v in tokenizer(text, return_tensors="np").items()}
            right.append(float(candidate.session.run(["logits"], feed)[0].argmax() == label))
        return np.array(right)


'''


@pytest.fixture()
def evaluators(tmp_path, monkeypatch):
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "my_eval.py").write_text(textwrap.dedent(EVALUATORS))
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("my_eval", None)
    import my_eval

    return my_eval


def _ran(study) -> list:
    return [t for t in study.trials if t.state.name in ("COMPLETE", "FAIL")]


def _config(tmp_path, checkpoint, data, **settings) -> StudyConfig:
    settings = {"study_name": "ev", "modes": ["dynamic"], "remeasure_front": False, **settings}
    return StudyConfig(model=str(checkpoint), dataset=str(data), storage=f"sqlite:///{tmp_path / 's.db'}",
                       **fast_settings(**settings))


def test_per_row_scores_judge_a_study_exactly_as_accuracy_does(evaluators, tmp_path, tiny_checkpoint, tiny_csv):
    mine = run_study(_config(tmp_path, tiny_checkpoint, tiny_csv), n_trials=2, progress=lambda line: None,
                     evaluator=evaluators.right)
    assert mine.user_attrs["opsearch_config"]["evaluator"] == "my_eval:right"
    builtin = run_study(_config(tmp_path, tiny_checkpoint, tiny_csv, study_name="builtin"), n_trials=2,
                        progress=lambda line: None)
    for a, b in zip(_ran(mine), _ran(builtin), strict=True):
        assert a.user_attrs["accuracy"] == pytest.approx(b.user_attrs["accuracy"])
        assert a.user_attrs["accuracy_loss"] == pytest.approx(b.user_attrs["accuracy_loss"])
        assert a.user_attrs["accuracy_loss_ci"] == pytest.approx(b.user_attrs["accuracy_loss_ci"])
    assert "fp32 baseline: score " in format_report(build_report(mine))


def test_predictions_and_a_metric_give_the_builtin_metrics_answer_and_its_bootstrap(evaluators, tmp_path,
                                                                                      tiny_checkpoint, tiny_csv):
    mine = run_study(_config(tmp_path, tiny_checkpoint, tiny_csv), n_trials=2, progress=lambda line: None,
                     evaluator=evaluators.mcc)
    builtin = run_study(_config(tmp_path, tiny_checkpoint, tiny_csv, study_name="builtin", metric="mcc"), n_trials=2,
                        progress=lambda line: None)
    assert mine.user_attrs["baseline"]["metrics"]["my mcc"] == pytest.approx(
        builtin.user_attrs["baseline"]["metrics"]["mcc"])
    for a, b in zip(_ran(mine), _ran(builtin), strict=True):
        assert a.user_attrs["accuracy_loss"] == pytest.approx(b.user_attrs["accuracy_loss"])
        assert a.user_attrs["accuracy_loss_ci"] == pytest.approx(b.user_attrs["accuracy_loss_ci"], abs=1e-9)
    report = build_report(mine)
    assert report.metric == "my mcc" and "fp32 baseline: my mcc " in format_report(report)


def test_an_evaluator_goes_round_trip_through_resume_and_a_worker_process(evaluators, tmp_path, tiny_checkpoint,
                                                                         tiny_csv, capsys):
    config = _config(tmp_path, tiny_checkpoint, tiny_csv)
    run_study(config, n_trials=1, progress=lambda line: None, evaluator=evaluators.mcc)
    lines: list[str] = []
    resume_study(storage=config.storage, study_name="ev", n_trials=0, progress=lines.append)
    assert any("fp32 my mcc" in line for line in lines)  # resumed: the evaluator loaded, and fp32 scored again
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "user_code"), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.run([sys.executable, "-m", "opsearch.cli", "worker", "--storage", config.storage,
                             "--study-name", "ev", "--trials", "1"], capture_output=True, text=True, env=env,
                            timeout=600)
    assert worker.returncode == 0, worker.stderr[-2000:]
    study = resume_study(storage=config.storage, study_name="ev", n_trials=0, progress=lines.append)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2 and all("my mcc" in t.user_attrs["metrics"] for t in done)

    # The module gone: resume says which evaluator could not be loaded, and changes nothing.
    sys.path.remove(str(tmp_path / "user_code"))
    sys.modules.pop("my_eval")
    assert main(["resume", "--storage", config.storage, "--study-name", "ev", "--trials", "1"]) != 0
    err = capsys.readouterr().err
    assert "my_eval:mcc: its module could not be loaded (ModuleNotFoundError" in err and "Traceback" not in err
    import optuna

    assert len(_ran(optuna.load_study(study_name="ev", storage=config.storage))) == 2


def test_a_trial_whose_evaluator_fails_fails_alone_with_its_message(evaluators, tmp_path, tiny_checkpoint, tiny_csv):
    study = run_study(_config(tmp_path, tiny_checkpoint, tiny_csv), n_trials=2, progress=lambda line: None,
                      evaluator=evaluators.fails_after_fp32)
    assert [t.state.name for t in _ran(study)] == ["FAIL", "FAIL"]
    reason = study.trials[0].user_attrs["fail_reason"]
    assert "my_eval:fails_after_fp32 raised RuntimeError: this evaluator only knows fp32" in reason
    assert "my_eval.py:" in reason  # where it raised


@pytest.mark.parametrize(("name", "message"), [
    ("broken", "raised RuntimeError: no GPU here"),
    ("wrong_shape", "shape (3, 2)"),
])
def test_an_evaluator_that_fails_on_fp32_stops_the_study_naming_it(evaluators, tmp_path, tiny_checkpoint, tiny_csv,
                                                                   name, message):
    with pytest.raises(StudyError, match="fp32 model could not be evaluated.*" + message.replace("(", r"\(")
                       .replace(")", r"\)")):
        run_study(_config(tmp_path, tiny_checkpoint, tiny_csv), n_trials=1, progress=lambda line: None,
                  evaluator=getattr(evaluators, name))
    assert not (tmp_path / "s.db").exists()  # a refused new study leaves nothing behind


def test_a_trial_process_gets_the_evaluator_by_name_and_loads_it_again(evaluators):
    """What a spawned trial process receives: the task pickled without its function, loaded again by name."""
    import pickle

    task = EvaluatorTask("my_eval:right", texts=["a"], labels=np.array([1]), feeds=[])
    task.metric, task.labels = "a metric only this process has", np.array([0.0])
    state = pickle.dumps(task)
    assert b"right" in state and b"a metric only" not in state
    again = pickle.loads(state)
    assert again.function is evaluators.right and again.metric is None and again.labels.tolist() == [0.0]


def test_an_evaluator_returning_other_rows_than_for_fp32_fails_the_trial():
    from opsearch.errors import TrialFailed

    task = EvaluatorTask.__new__(EvaluatorTask)
    task.spec, task.texts, task.rows_labels, task.feeds, task.labels, task.metric = "x:y", [], None, [], None, None
    answers = iter([np.array([1.0, 0.0, 1.0, 1.0]), np.array([1.0, 0.0, 1.0])])
    task.function = lambda candidate: next(answers)
    assert task.evaluate(session=None).score == 0.75  # fp32: four rows
    with pytest.raises(TrialFailed, match="returned 3 rows; it returned 4 for fp32"):
        task.evaluate(session=None)


def test_bad_evaluator_names_are_refused_naming_the_flag(evaluators, tmp_path, tiny_checkpoint, tiny_csv, capsys):
    with pytest.raises(ConfigError, match="evaluator='nofunction' is not MODULE:FUNCTION"):
        StudyConfig(model="m", dataset="d", evaluator="nofunction")
    assert main(["run", "--model", str(tiny_checkpoint), "--dataset", str(tiny_csv), "--evaluator",
                 "no_such_module:evaluate",
                 "--storage", f"sqlite:///{tmp_path / 'bad.db'}", "--trials", "1"]) != 0
    err = capsys.readouterr().err
    assert "--evaluator no_such_module:evaluate: its module could not be loaded (ModuleNotFoundError" in err
    assert main(["run", "--model", str(tiny_checkpoint), "--dataset", str(tiny_csv), "--evaluator",
                 "my_eval:nothing_here",
                 "--storage", f"sqlite:///{tmp_path / 'bad.db'}", "--trials", "1"]) != 0
    assert "module 'my_eval' has no function 'nothing_here'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not a module-level function"):
        evaluator_name(lambda candidate: 0)


def test_predictions_are_a_metric_the_bootstrap_can_resample():
    task = EvaluatorTask.__new__(EvaluatorTask)
    task.spec = "x:y"
    values, references, metric = task._read(Predictions(np.array([0, 1, 1]), np.array([0, 1, 0]),
                                                        lambda p, r: float((p == r).mean()), name="agree"))
    assert metric.name == "agree" and not metric.decomposes and metric.score(values, references) == 2 / 3
    assert metric.batched(values[None], references[None]).tolist() == [2 / 3]
    assert METRICS["accuracy"].score(values, references) == 2 / 3


def test_an_evaluators_loss_interval_equals_the_builtin_metrics_on_the_same_changed_answers():
    """Where the trial's answers differ from fp32's: per-row scores give accuracy's paired interval, predictions
    with a metric give the built-in metric's bootstrap (same rows resampled)."""

    from opsearch.measure import Fp32Answers, pack_labels

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 500)
    fp32 = np.where(rng.random(500) < 0.85, labels, rng.integers(0, 3, 500))
    trial = np.where(rng.random(500) < 0.1, rng.integers(0, 3, 500), fp32)
    task = EvaluatorTask.__new__(EvaluatorTask)
    task.spec = "x:y"

    _, _, scores = task._read((fp32 == labels).astype(float))
    mine = Fp32Answers(0.0, np.zeros(500), (fp32 == labels).astype(float), metric=scores)
    builtin = Fp32Answers(0.0, labels, fp32, metric=METRICS["accuracy"])
    ci = mine.loss_ci(pack_labels((trial == labels).astype(float)), seed=1)
    assert ci == pytest.approx(builtin.loss_ci(pack_labels(trial), seed=1)) and ci[1] > 0

    def mcc(predictions, references):  # the user's metric (numpy's MCC: scikit-learn's would take seconds here)
        return float(METRICS["mcc"].batched(predictions[None], references[None])[0])

    _, _, whole = task._read(Predictions(fp32, labels, mcc, name="my mcc"))
    mine = Fp32Answers(0.0, labels, fp32, metric=whole)
    builtin = Fp32Answers(0.0, labels, fp32, metric=METRICS["mcc"])
    ci = mine.loss_ci(pack_labels(trial), seed=2)
    assert ci == pytest.approx(builtin.loss_ci(pack_labels(trial), seed=2)) and ci[1] > ci[0]


def test_a_plain_onnx_model_without_a_tokenizer_is_studied_with_an_evaluator(evaluators, tmp_path, tiny_onnx,
                                                                            tiny_checkpoint, tiny_csv, monkeypatch):
    import shutil

    from opsearch.errors import ModelError

    plain = tmp_path / "plain" / "model.onnx"
    plain.parent.mkdir()
    shutil.copy(tiny_onnx.onnx_path, plain)
    monkeypatch.setenv("MY_TOKENIZER", str(tiny_checkpoint))
    lines: list[str] = []
    study = run_study(_config(tmp_path, plain, tiny_csv), n_trials=2, progress=lines.append,
                      evaluator=evaluators.own_inputs)
    assert any("no tokenizer beside it: your evaluator scores it" in line for line in lines)
    text = format_report(build_report(study))
    assert "rows of 32 tokens drawn at random (the model has no tokenizer)" in text
    assert "early stopping off (your evaluator scores whole evaluations)" in text
    assert sum(t.state.name == "COMPLETE" and t.user_attrs["speedup"] > 0 for t in study.trials) == 2
    builtin = run_study(_config(tmp_path, tiny_checkpoint, tiny_csv, study_name="builtin"), n_trials=0,
                        progress=lambda line: None)
    assert (study.user_attrs["baseline"]["metrics"]["score"]
            == builtin.user_attrs["baseline"]["metrics"]["accuracy"])  # the same rows, read by the user's code

    # The default modes: static, which needs calibration inputs, is left out (said), not refused; the study stores
    # the modes it searched, and the same command again continues it.
    defaults = _config(tmp_path, plain, tiny_csv, study_name="defaults", trials=1).replace(
        modes=StudyConfig(model="m", dataset="d").modes)
    assert "static" in defaults.modes
    lines.clear()
    study = run_study(defaults, progress=lines.append, evaluator=evaluators.own_inputs)
    assert "modes: dynamic, weight_only (static needs calibration inputs" in "\n".join(lines)
    assert StudyRecord.of(study).opsearch_config["modes"] == ["dynamic", "weight_only"]
    again = run_study(defaults, progress=lambda line: None, evaluator=evaluators.own_inputs)
    assert len(again.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2

    with pytest.raises(StudyError, match="static calibration .*need the model's tokenizer.*--modes dynamic"):
        run_study(_config(tmp_path, plain, tiny_csv, study_name="static", modes=["dynamic", "static"]), n_trials=1,
                  progress=lambda line: None, evaluator=evaluators.own_inputs)
    with pytest.raises(ModelError, match="no tokenizer next to the ONNX model"):
        run_study(_config(tmp_path, plain, tiny_csv, study_name="none"), n_trials=1, progress=lambda line: None)
