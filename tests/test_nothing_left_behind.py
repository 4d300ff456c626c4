"""Read-only commands only read, a refused run leaves nothing it did not find, and messages say what to do:
a missing storage, a storage URL opsearch cannot open, a trial that does not exist, a lone ONNX file to inspect,
a timing lock another process holds."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import sentiment_rows, write_table

from opsearch.cli import main
from opsearch.measure import timing_lock
from opsearch.store import open_storage


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("command", [
    ["report"], ["plot"], ["export", "--best", "OUT"], ["remeasure"], ["sensitivity", "--trial", "0"],
    ["resume"], ["worker"],
])
def test_a_command_on_a_missing_storage_says_so_and_creates_nothing(tmp_path, capsys, command) -> None:
    before = _tree(tmp_path)
    argv = [part if part != "OUT" else str(tmp_path / "out") for part in command]
    code = main([argv[0], "--storage", f"sqlite:///{tmp_path / 'nosuch' / 'x.db'}", "--study-name", "x", *argv[1:]])
    err = capsys.readouterr().err
    assert code == 2 and "there is no file" in err and "nosuch/x.db" in err and "Traceback" not in err
    assert _tree(tmp_path) == before


def test_a_mistyped_storage_names_the_folders_studies(tmp_path, capsys) -> None:
    (tmp_path / "default.db").write_bytes(b"")
    code = main(["report", "--storage", f"sqlite:///{tmp_path / 'defualt.db'}", "--study-name", "default"])
    assert code == 2 and "the folder holds default.db" in capsys.readouterr().err


@pytest.mark.parametrize(("storage", "message"), [
    ("foo://x", "'foo' is not a database opsearch can open; give sqlite:///FILE.db, journal:FILE.log"),
    ("my-study.db", "is not a storage URL: give sqlite:///FILE.db"),
])
def test_a_storage_url_opsearch_cannot_open_lists_the_ones_it_can(tmp_path, storage, message, capsys) -> None:
    from opsearch.errors import StudyError

    with pytest.raises(StudyError, match=message.replace(".", r"\.").replace("/", "/")):
        open_storage(storage)
    os.chdir(tmp_path)
    assert main(["report", "--storage", storage, "--study-name", "s"]) == 2
    assert message in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_a_refused_run_leaves_nothing_it_did_not_find(tmp_path, tiny_checkpoint, capsys) -> None:
    # The labels do not match the model's classes: found after the export, when the data is read.
    data = write_table(tmp_path / "d.csv", [{"sentence": r["sentence"], "label": ["meh", "so-so"][i % 2]}
                                           for i, r in enumerate(sentiment_rows(120))])
    runs = tmp_path / "runs"
    before = _tree(tmp_path)
    code = main(["run", "--model", str(tiny_checkpoint), "--dataset", str(data), "--storage",
                 f"sqlite:///{runs / 'deep' / 'study.db'}", "--study-name", "s", "--modes", "dynamic", "--quiet"])
    assert code == 2 and "do not match the model's classes" in capsys.readouterr().err
    assert _tree(tmp_path) == before  # no study file, no cache, not even the folders it made


def test_a_refused_run_into_an_existing_storage_keeps_the_other_studies(tmp_path, tiny_checkpoint, tiny_csv,
                                                                       capsys) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    flags = ["--storage", storage, "--modes", "dynamic", "--trials", "1", "--rounds", "3", "--max-rounds", "3",
             "--timing-samples", "10", "--threads", "1", "--quiet", "--no-remeasure", "--isolation", "none"]
    assert main(["run", "--model", str(tiny_checkpoint), "--dataset", str(tiny_csv), "--study-name", "good",
                 *flags]) == 0
    bad = write_table(tmp_path / "bad.csv", [{"sentence": r["sentence"], "label": 1} for r in sentiment_rows(60)])
    capsys.readouterr()
    assert main(["run", "--model", str(tiny_checkpoint), "--dataset", str(bad), "--study-name", "bad", *flags]) == 2
    from opsearch.store import load_existing

    assert load_existing(storage, "good").trials  # untouched
    assert main(["report", "--storage", storage, "--study-name", "bad"]) == 2
    assert "no study 'bad'" in capsys.readouterr().err


def test_export_of_a_trial_that_does_not_exist_says_so(tmp_path, tiny_checkpoint, tiny_csv, capsys) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["run", "--model", str(tiny_checkpoint), "--dataset", str(tiny_csv), "--storage", storage,
                 "--study-name", "e", "--modes", "dynamic", "--trials", "1", "--rounds", "3", "--max-rounds", "3",
                 "--timing-samples", "10", "--threads", "1", "--quiet", "--no-remeasure", "--isolation",
                 "none"]) == 0
    capsys.readouterr()
    assert main(["export", "--storage", storage, "--study-name", "e", "--trial", "999", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "trial 999 of study 'e' does not exist; completed trials: [0]" in err


def test_inspect_lists_a_lone_onnx_files_operators_without_a_tokenizer(tmp_path, tiny_onnx, capsys) -> None:
    lone = tmp_path / "alone.onnx"
    shutil.copy2(tiny_onnx.onnx_path, lone)
    assert main(["inspect", str(lone)]) == 0
    out = capsys.readouterr().out
    assert "MatMul" in out and "operator types" in out


def test_a_process_that_finds_the_timing_lock_taken_says_who_holds_it(tmp_path) -> None:
    lock = tmp_path / "timing.lock"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with timing_lock(lock, holder="other-study"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    said: list[str] = []
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    with timing_lock(lock, holder="me", on_wait=said.append):
        waited = time.monotonic() - started
    holder.join()
    assert waited >= 0.4  # it did wait for the holder
    assert len(said) == 1 and f"held by pid {os.getpid()} (study 'other-study'), timing for" in said[0]
    assert not Path(str(lock) + ".holder").exists()  # the note goes with the lock
    quiet: list[str] = []
    with timing_lock(lock, on_wait=quiet.append):
        pass
    assert quiet == []  # a free lock is taken without a word
