"""Bad input stops at once, through the CLI, with a message that names the fix, no traceback, and nothing
lost: the catalog of the mistakes users make, each as they would make it."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from conftest import fast_settings, make_tiny_bert, sentiment_rows, write_table

from opsearch.cli import main

SETTINGS = [f"--{k.replace('_', '-')}={v}" for k, v in
            {"rounds": 3, "max_rounds": 4, "timing_samples": 10, "threads": 1}.items()]


def _run(capsys, tmp_path: Path, model, dataset, *extra: str) -> tuple[int, str]:
    code = main(["run", "--model", str(model), "--dataset", str(dataset), "--storage",
                 f"sqlite:///{tmp_path / 'runs' / 'study.db'}", "--study-name", "s", "--trials", "1", "--modes",
                 "dynamic", "--quiet", "--no-remeasure", *SETTINGS, *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _onnx_folder(tmp_path: Path, tiny_onnx) -> Path:
    folder = tmp_path / "onnx-model"
    shutil.copytree(tiny_onnx.onnx_path.parent, folder)
    return folder


def _bad_model(kind: str, tmp_path: Path, tiny_onnx) -> Path:
    if kind == "missing":
        return tmp_path / "no-such-model"
    if kind == "not ONNX":
        path = tmp_path / "model.bin"
        path.write_bytes(b"\0" * 64)
        return path
    folder = _onnx_folder(tmp_path, tiny_onnx)
    if kind == "truncated":
        data = (folder / "model.onnx").read_bytes()
        (folder / "model.onnx").write_bytes(data[: len(data) // 3])
    elif kind == "without a tokenizer":
        for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
    return folder


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", "does not exist"),
    ("not ONNX", "is not an .onnx file: give an ONNX model or a checkpoint folder"),
    ("truncated", "is not a valid ONNX model"),
    ("without a tokenizer", "no tokenizer next to the ONNX model"),
])
def test_a_bad_model(kind: str, message: str, tmp_path, tiny_onnx, tiny_csv, capsys) -> None:
    code, err = _run(capsys, tmp_path, _bad_model(kind, tmp_path, tiny_onnx), tiny_csv)
    assert code == 2 and message in err


def _bad_dataset(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    if kind == "missing":
        return tmp_path / "no-such.csv"
    if kind == "empty":
        path.write_text("")
    elif kind == "without the named columns":
        write_table(path, [{"review": r["sentence"], "stars": r["label"]} for r in sentiment_rows(120)])
    elif kind == "with labels the model does not know":
        write_table(path, [{"sentence": r["sentence"], "label": ["bad", "good", "meh"][i % 3]}
                           for i, r in enumerate(sentiment_rows(120))])
    elif kind == "with one class":
        write_table(path, [{"sentence": r["sentence"], "label": 1} for r in sentiment_rows(120)])
    return path


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("without the named columns", "columns are ['review', 'stars']. Pass --label-column"),
    ("with labels the model does not know", "['bad', 'good', 'meh']"),
    ("with one class", "hold one class only"),
])
def test_a_bad_dataset(kind: str, message: str, tmp_path, tiny_checkpoint, capsys) -> None:
    code, err = _run(capsys, tmp_path, tiny_checkpoint, _bad_dataset(kind, tmp_path), "--fit-size", "40")
    assert code == 2 and message in err


def test_labels_the_model_does_not_know_list_the_models_classes_too(tmp_path, tiny_checkpoint, capsys) -> None:
    code, err = _run(capsys, tmp_path, tiny_checkpoint,
                     _bad_dataset("with labels the model does not know", tmp_path), "--fit-size", "40")
    assert code == 2 and "NEGATIVE" in err and "POSITIVE" in err


def _ragged(path: Path, line: int, extra: str) -> Path:
    """Sentiment rows with ``extra`` appended to one line (1-based) of the file."""
    delimiter = "\t" if path.suffix == ".tsv" else ","
    write_table(path, sentiment_rows(120), delimiter=delimiter)
    lines = path.read_text().splitlines()
    lines[line - 1] += extra
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("name", "extra", "fix"), [
    pytest.param("ragged.csv", ", really", "a text holding a comma, a quote or a line break goes in double quotes, "
                 "its own quotes doubled", id="csv"),
    pytest.param("ragged.tsv", "\treally", "a TSV is read unquoted: a text may not hold a tab", id="tsv"),
])
def test_a_row_with_more_fields_than_the_header(name: str, extra: str, fix: str, tmp_path, tiny_checkpoint,
                                                capsys) -> None:
    path = _ragged(tmp_path / name, 7, extra)
    code, err = _run(capsys, tmp_path, tiny_checkpoint, path, "--fit-size", "40")
    assert code == 2
    assert err.startswith(f"opsearch: error: dataset file {str(path)!r}: line 7 has 3 fields, the header has 2. "
                          f"Fix the row so it has one value per column ({fix}).")
    assert "An error occurred while generating the dataset" not in err  # the message is ours, not datasets'


def _latin1(path: Path, *, one_class: bool = False) -> Path:
    rows = [{**r, "label": 1} if one_class else r for r in sentiment_rows(120)]
    rows[3]["sentence"] = "un film très bon"  # line 5 of the file
    write_table(path, rows)
    path.write_bytes(path.read_text().encode("latin-1"))
    return path


def test_a_file_not_in_utf8_is_refused_naming_line_offset_and_fix(tmp_path, tiny_checkpoint, capsys) -> None:
    path = _latin1(tmp_path / "latin1.csv")
    offset = path.read_bytes().index(b"\xe8")
    code, err = _run(capsys, tmp_path, tiny_checkpoint, path, "--fit-size", "40")
    assert code == 2
    assert err.startswith(f"opsearch: error: dataset file {str(path)!r} is not valid utf-8: line 5, byte offset "
                          f"{offset} (after 'un film tr'), holds byte 0xe8. Give the file's encoding (--encoding "
                          'latin-1, or encoding = "latin-1" in a study file; ')
    assert "or re-save the file as UTF-8." in err


def test_the_encoding_flag_reaches_the_data(tmp_path, tiny_checkpoint, capsys) -> None:
    # One class only, so that a file read past its bytes stops at the next check, without a study's minutes.
    path = _latin1(tmp_path / "latin1.csv", one_class=True)
    code, err = _run(capsys, tmp_path, tiny_checkpoint, path, "--fit-size", "40")
    assert code == 2 and "is not valid utf-8: line 5" in err
    code, err = _run(capsys, tmp_path, tiny_checkpoint, path, "--fit-size", "40", "--encoding", "latin-1")
    assert code == 2 and "hold one class only" in err and "utf-8" not in err


def test_an_encoding_python_does_not_know(tmp_path, tiny_checkpoint, tiny_csv, capsys) -> None:
    code, err = _run(capsys, tmp_path, tiny_checkpoint, tiny_csv, "--encoding", "utf-9")
    assert code == 2 and "--encoding utf-9 is not a text encoding Python knows" in err


def test_a_storage_that_cannot_be_written(tmp_path, tiny_checkpoint, tiny_csv, capsys) -> None:
    (tmp_path / "a-file").write_text("")
    code = main(["run", "--model", str(tiny_checkpoint), "--dataset", str(tiny_csv), "--storage",
                 f"sqlite:///{tmp_path / 'a-file' / 'study.db'}", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err and "--storage sqlite:///" in err and "Traceback" not in err


def test_a_study_name_taken_by_another_search_is_refused_and_left_alone(tmp_path, tiny_checkpoint, tiny_csv,
                                                                        capsys) -> None:
    code, _ = _run(capsys, tmp_path, tiny_checkpoint, tiny_csv, "--fit-size", "60")
    assert code == 0
    capsys.readouterr()
    storage = f"sqlite:///{tmp_path / 'runs' / 'study.db'}"
    before = [(t.number, t.state, t.values, t.user_attrs) for t in optuna.load_study(study_name="s",
                                                                                     storage=storage).trials]
    other = make_tiny_bert(tmp_path / "other-model", seed=3)
    code, err = _run(capsys, tmp_path, other, tiny_csv, "--fit-size", "60")
    assert code == 2 and "already exists with other settings" in err and "model:" in err
    assert "--study-name" in err  # the fix: a new name
    after = [(t.number, t.state, t.values, t.user_attrs) for t in optuna.load_study(study_name="s",
                                                                                    storage=storage).trials]
    assert after == before


def test_an_fp32_model_at_chance_stops_the_study(tmp_path, capsys) -> None:
    untrained = make_tiny_bert(tmp_path / "untrained", trained=False)
    data = write_table(tmp_path / "d.csv", sentiment_rows(240))
    code, err = _run(capsys, tmp_path, untrained, data, "--fit-size", "60")
    assert code == 2
    assert "no better than always answering the majority class" in err and "--label-map" in err


def test_a_quantized_model_at_chance_fails_its_trial_and_never_wins(tmp_path, tiny_checkpoint, tiny_csv,
                                                                    monkeypatch) -> None:
    import numpy as np

    from opsearch.config import StudyConfig
    from opsearch.measure import ClassificationTask
    from opsearch.search import run_study

    real = ClassificationTask.outputs
    calls = {"n": 0}

    def broken_after_fp32(self, session, feeds) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            return real(self, session, feeds)  # the fp32 baseline
        rows = sum(len(feed["input_ids"]) for feed in feeds)
        return np.tile([1.0, 0.0], (rows, 1))  # one class for every row: chance

    monkeypatch.setattr(ClassificationTask, "outputs", broken_after_fp32)
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=f"sqlite:///{tmp_path}/c.db",
                         study_name="c", modes=["dynamic"], remeasure_front=False, **fast_settings())
    study = run_study(config, n_trials=2, progress=lambda line: None)
    ran = [t for t in study.trials if t.state != optuna.trial.TrialState.WAITING]  # presets still queued
    assert [t.state for t in ran] == [optuna.trial.TrialState.FAIL] * 2
    assert all("at chance level" in t.user_attrs["fail_reason"] for t in ran)
    assert not study.best_trials
