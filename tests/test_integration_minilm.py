"""Integration: the MiniLM SST-2 classifier under ../shared, a few real trials, a resume."""

from __future__ import annotations

import re

import optuna
import pytest
from conftest import MINILM_SST2, SST2, needs_shared

from opsearch.config import StudyConfig
from opsearch.search import resume_study, run_study

pytestmark = [pytest.mark.integration, needs_shared(MINILM_SST2), needs_shared(SST2)]

STUDY_FILE = "studies/minilm-sst2.toml"


def test_minilm_sst2_study_runs_resumes_and_keeps_its_trials(tmp_path) -> None:
    # No front session: what this test checks is the trials; the tiny studies test the front session.
    config = StudyConfig.from_toml(STUDY_FILE, storage=f"sqlite:///{tmp_path / 'minilm.db'}", modes=["dynamic"],
                                   fusions=["none"], rounds=6, max_rounds=10, timing_samples=100, remeasure_front=False)
    study = run_study(config, n_trials=1, progress=lambda line: None)  # one trial, then one more on resume

    # The fp32 ONNX export scores what PyTorch scored when the model was trained (TRAINING.md).
    trained = float(re.search(r"accuracy \(PyTorch fp32\): ([0-9.]+)", (MINILM_SST2 / "TRAINING.md").read_text())[1])
    baseline = study.user_attrs["baseline"]
    assert baseline["metrics"]["accuracy"] == pytest.approx(trained, abs=0.003)
    assert study.user_attrs["data"]["eval_rows"] == 872

    matmul = study.trials[0]
    assert matmul.user_attrs["preset"] == "dynamic: weight MatMuls only"
    assert matmul.state == optuna.trial.TrialState.COMPLETE
    n_matmul = next(o["count"] for o in study.user_attrs["graph"]["operators"] if o["op_type"] == "MatMul")
    assert n_matmul == 48  # 6 layers x (Q, K, V, QK^T, attention x V, out, FFN in, FFN out)
    # The 12 attention MatMuls (QK^T, attention x V) take two activations: the starting point keeps them fp32.
    assert study.user_attrs["graph"]["matmuls"] == {"weight": 36, "activation": 12}
    assert matmul.user_attrs["quantized_nodes"]["MatMul"] == 36
    assert matmul.values[1] < 0.02  # under 2 points lost
    # Measured side by side with fp32 in the same rounds: int8 MatMul is clearly faster.
    assert matmul.user_attrs["timing"]["speedup"] > 1.2
    assert matmul.user_attrs["timing"]["speedup_ci"][0] > 1.0

    def ran(s: optuna.Study) -> dict:  # queued presets not yet run are left out: a resume runs them next
        return {t.number: (t.values, t.params, t.user_attrs) for t in s.trials
                if t.state != optuna.trial.TrialState.WAITING}

    before = ran(study)
    resumed = resume_study(storage=config.resolved_storage(), study_name=config.resolved_study_name(), n_trials=1,
                           progress=lambda line: None)
    after = ran(resumed)
    assert len(after) == len(before) + 1
    assert {n: after[n] for n in before} == before


def test_one_labelled_file_is_enough_for_a_study(tmp_path, capsys) -> None:
    """A newcomer's first command: the 872-row validation file alone, no --fit-dataset. Static calibration needs
    calibration_samples rows: those are held out (and said so), the rest evaluated."""
    from opsearch.cli import main
    from opsearch.store import StudyRecord, load_existing

    storage = f"sqlite:///{tmp_path / 'one-file.db'}"
    code = main(["run", "--model", str(MINILM_SST2), "--dataset", str(SST2 / "validation.tsv"), "--trials", "1",
                 "--storage", storage, "--study-name", "one-file", "--rounds", "3", "--max-rounds", "3",
                 "--timing-samples", "40", "--fusions", "none", "--no-remeasure"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "808 evaluation rows" in err and "64 rows held out by a shuffle seeded 0 for static calibration" in err
    data = StudyRecord.of(load_existing(storage, "one-file")).data
    assert data["eval_rows"] == 808 and data["fit_rows"] == 64
