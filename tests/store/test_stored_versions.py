"""Studies stored by every earlier version of opsearch still open, report, resume one trial and export.

Each ``*.db`` in tests/fixtures/stored/ is a tiny study that one earlier commit's own code wrote (the folder's
README names the commit and the shape each holds, and make_fixture.py remakes them). A fixture dropped there is
tested by every case below. Only the public API is used: the command line (``opsearch.cli.main``) and
``opsearch.store.cache_dir_for``; what the fixture holds is read with Optuna itself.

Before a case opens a fixture, it copies it, the tiny model and the CSV into its own folder and points the stored
config's paths there: a study stores absolute paths, and a fixture stores ``/FIXTURE`` in place of the folder
it was made in.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest

from opsearch.cli import main
from opsearch.store import cache_dir_for

STORED = Path(__file__).resolve().parents[1] / "fixtures" / "stored"
FIXTURES = sorted(STORED.glob("*.db"))
PLACEHOLDER = "/FIXTURE"  # the folder a fixture's study ran in, as make_fixture.py stores it
# The settings that hold a path: each is pointed at the case's own copy.
PATH_SETTINGS = ("model", "dataset", "fit_dataset", "storage")
MODEL, DATA = "tiny-model", "tiny.csv"

# (fixture, case) -> why today's code fails it: a real finding, kept visible until a migration handles it.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def _cases(case: str) -> list:
    marks = {name: [pytest.mark.xfail(strict=True, reason=reason)] for (name, c), reason in KNOWN_FAILURES.items()
             if c == case}
    return [pytest.param(db, id=db.stem, marks=marks.get(db.stem, [])) for db in FIXTURES]


def test_the_folder_holds_fixtures_and_their_assets() -> None:
    assert len(FIXTURES) >= 2, "tests/fixtures/stored/ holds no stored-study fixtures"
    assert (STORED / MODEL / "config.json").is_file() and (STORED / DATA).is_file()
    unknown = {name for name, _ in KNOWN_FAILURES} - {db.stem for db in FIXTURES}
    assert not unknown, f"KNOWN_FAILURES names fixtures that are not there: {sorted(unknown)}"


@dataclass
class Stored:
    """A fixture copied into a case's folder, with what it holds read by Optuna."""

    folder: Path
    storage: str
    name: str
    complete: list[int]  # the completed trials' numbers
    accuracy: dict[int, float]  # each completed trial's accuracy, as stored
    fp32_accuracy: float

    @property
    def flags(self) -> list[str]:
        return ["--storage", self.storage, "--study-name", self.name]

    def load(self) -> optuna.Study:
        return optuna.load_study(study_name=self.name, storage=self.storage)


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


@pytest.fixture
def stored(request, tmp_path: Path) -> Stored:
    """The fixture ``request.param`` copied into tmp_path, its stored paths pointed at the copies."""
    shutil.copy2(request.param, tmp_path / "study.db")
    shutil.copytree(STORED / MODEL, tmp_path / MODEL)
    shutil.copy2(STORED / DATA, tmp_path / DATA)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    assert len(names) == 1, f"{request.param.name} holds {names}: a fixture holds one study"
    study = optuna.load_study(study_name=names[0], storage=storage)
    config = dict(study.user_attrs["opsearch_config"])
    for key in PATH_SETTINGS:
        if isinstance(config.get(key), str):
            config[key] = config[key].replace(PLACEHOLDER, str(tmp_path))
    assert config["model"] == str(tmp_path / MODEL) and config["dataset"] == str(tmp_path / DATA), config
    assert config["storage"] == storage, config
    study.set_user_attr("opsearch_config", config)
    # What is derived from the paths lands in the case's folder too, and is made afresh (the fp32 export).
    cache = cache_dir_for(storage, names[0])
    assert cache.parent == tmp_path and not cache.exists()
    complete = _complete(study)
    assert len(complete) >= 2, f"{request.param.name} holds {len(complete)} completed trials: make it again"
    return Stored(folder=tmp_path, storage=storage, name=names[0], complete=[t.number for t in complete],
                  accuracy={t.number: float(t.user_attrs["accuracy"]) for t in complete},
                  fp32_accuracy=float(study.user_attrs["baseline"]["metrics"]["accuracy"]))


def _report_json(stored: Stored, capsys) -> dict:
    assert main(["report", *stored.flags, "--format", "json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("stored", _cases("report"), indirect=True)
def test_report_opens_an_older_study(stored: Stored, capsys) -> None:
    assert main(["report", *stored.flags]) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert f"study {stored.name!r}: {len(stored.complete)} complete" in text
    assert f"accuracy {stored.fp32_accuracy:.4f}" in text
    assert f"of {len(stored.complete)} completed trials)" in text

    report = _report_json(stored, capsys)
    assert report["study"] == stored.name and report["counts"]["complete"] == len(stored.complete)
    assert report["baseline"]["metrics"]["accuracy"] == pytest.approx(stored.fp32_accuracy)
    assert sorted(row["trial"] for row in report["rows"]) == stored.complete
    assert {row["trial"]: row["accuracy"] for row in report["rows"]} == pytest.approx(stored.accuracy)
    front = [row["trial"] for row in report["front"]]
    assert front and set(front) <= set(stored.complete)
    table = [line.split() for line in text.splitlines()]
    assert all(any(words[:1] == [str(t)] for words in table) for t in front), "a front trial is not in the text"


@pytest.mark.parametrize("stored", _cases("resume"), indirect=True)
def test_resume_runs_one_more_trial_of_an_older_study(stored: Stored, capsys) -> None:
    code = main(["resume", *stored.flags, "--trials", "1", "--isolation", "none", "--quiet"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    after = _complete(stored.load())
    added = sorted({t.number for t in after} - set(stored.complete))
    assert len(after) == len(stored.complete) + 1 and len(added) == 1, [t.number for t in after]
    new = next(t for t in after if t.number == added[0])
    assert new.user_attrs["recipe"] and 0 <= new.user_attrs["accuracy"] <= 1 and new.values[0] > 0

    report = _report_json(stored, capsys)
    assert report["counts"]["complete"] == len(stored.complete) + 1
    assert added[0] in {row["trial"] for row in report["rows"]}
    assert report["baseline"]["metrics"]["accuracy"] == pytest.approx(stored.fp32_accuracy)


def _rows(label: int, n: int) -> list[str]:
    with (STORED / DATA).open(newline="") as f:
        return [r["sentence"] for r in csv.DictReader(f) if int(r["label"]) == label][:n]


@pytest.mark.parametrize("stored", _cases("export"), indirect=True)
def test_export_writes_a_model_that_answers(stored: Stored, capsys) -> None:
    import onnxruntime
    from transformers import AutoTokenizer

    number = stored.complete[-1]  # the last: a sampled recipe where the study sampled any, else the last preset
    out = stored.folder / "exported"
    assert main(["export", *stored.flags, "--trial", str(number), str(out)]) == 0, capsys.readouterr().err
    assert f"trial {number} written" in capsys.readouterr().out
    record = json.loads((out / "opsearch-trial.json").read_text())
    study = stored.load()
    assert record["trial"] == number and record["graph_hash"] == study.trials[number].user_attrs["graph_hash"]
    measured = study.trials[number].user_attrs["recipe"]  # today's recipe adds fields an older one lacks
    assert {key: record["recipe"].get(key) for key in measured} == measured

    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(out)
    label2id = json.loads((out / "config.json").read_text())["label2id"]
    for label, name in ((1, "POSITIVE"), (0, "NEGATIVE")):
        for text in _rows(label, 2):
            tokens = tokenizer(text, return_tensors="np")
            feed = {i.name: tokens[i.name].astype(np.int64) for i in session.get_inputs()}
            logits = session.run(None, feed)[0]
            assert logits.shape == (1, len(label2id)) and np.isfinite(logits).all()
            if stored.accuracy[number] == 1.0:  # it answered every evaluation row right: these too
                assert int(logits.argmax()) == label2id[name], (text, logits)
