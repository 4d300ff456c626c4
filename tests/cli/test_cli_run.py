"""``opsearch run`` (with resume and remeasure on the study it made): a study file and flags compile into one
config, and bad input stops with a message."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import fast_settings

from opsearch.cli import main
from opsearch.config import StudyConfig
from opsearch.errors import ConfigError


def _toml(path: Path, **settings) -> Path:
    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    path.write_text("\n".join(f"{k} = {value(v)}" for k, v in settings.items()) + "\n")
    return path


def test_run_report_plot_from_a_study_file(tmp_path, tiny_checkpoint, tiny_csv, capsys) -> None:
    study_file = _toml(tmp_path / "tiny.toml", model=str(tiny_checkpoint), dataset=str(tiny_csv),
                       study_name="cli", storage="sqlite:///runs/cli.db", modes=["dynamic"], trials=5,
                       **fast_settings(isolation="process"))
    # A flag overrides the file: 2 trials, not 5.
    assert main(["run", str(study_file), "--trials", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "fp32 baseline" in out
    db = tmp_path / "runs" / "cli.db"  # relative to the study file
    assert db.is_file()
    storage = ["--storage", f"sqlite:///{db}", "--study-name", "cli"]

    assert main(["report", *storage, "--csv", str(tmp_path / "all.csv")]) == 0
    capsys.readouterr()
    with (tmp_path / "all.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {"trial", "speedup", "accuracy_loss_pt", "pareto"} <= set(rows[0])

    assert main(["report", *storage, "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front and all(r["pareto"] for r in front)

    assert main(["plot", *storage, "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["resume", *storage, "--trials", "1", "--quiet"]) == 0
    assert "3 complete" in capsys.readouterr().out

    assert main(["remeasure", *storage]) == 0
    captured = capsys.readouterr()
    assert "re-measuring the front" in captured.err and "front session" in captured.out

    # Machines read one JSON object per line, and nothing else, on stdout.
    assert main(["resume", *storage, "--trials", "2", "--json-log"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds.count("trial_started") == kinds.count("trial_finished") == 2 and kinds[-1] == "finished"
    finished = [e for e in events if e["event"] == "trial_finished"]
    assert [e["done"] for e in finished] == [1, 2] and all(e["total"] == 2 for e in finished)
    assert all(e["state"] == "complete" and e["speedup"] > 0 for e in finished)
    assert events[-1]["counts"]["complete"] == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "./no/such/model", "--dataset", "x.csv"], "model path './no/such/model' does not exist"),
        (["--model", "./m"], "--dataset is missing"),
        (["--model", "./m", "--dataset", "d.csv", "--label-map", "pos:1"], "write NAME=ID pairs"),
        (["--model", "./m", "--dataset", "d.csv", "--trials", "-1"], "--trials -1 must be a whole number"),
    ],
)
def test_bad_input_stops_with_a_message_and_no_traceback(args, message, capsys) -> None:
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_column_lists_the_columns(tmp_path, tiny_checkpoint, tiny_csv, capsys) -> None:
    code = main(["run", "--model", str(tiny_checkpoint), "--dataset", str(tiny_csv), "--text-column", "review",
                 "--storage", f"sqlite:///{tmp_path / 's.db'}", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "'review' is not in the dataset" in err and "['sentence', 'label']" in err


def test_search_flags_compile_into_the_config() -> None:
    from opsearch.cli import config_from_args
    from opsearch.cli._main import _parser

    args = _parser().parse_args(["run", "--model", "./m", "--dataset", "d.csv", "--fusions", "none,O2,O3",
                                 "--formats", "QDQ", "--activation-types", "QInt8", "--calibration-method",
                                 "minmax,percentile", "--calibration-samples", "64,256", "--exclude-fragile", "on",
                                 "--max-accuracy-loss", "1%rel", "--sampler", "nsga2", "--enumerate", "off",
                                 "--sweep-operators", "--seed", "3"])
    cfg = config_from_args(args)
    assert cfg.fusions == ["none", "O2", "O3"] and cfg.formats == ["QDQ"] and cfg.activation_types == ["QInt8"]
    assert cfg.calibration_method == ["minmax", "percentile"] and cfg.calibration_samples == [64, 256]
    assert cfg.exclude_fragile is True and cfg.max_accuracy_loss == "1%rel" and cfg.sampler == "nsga2"
    assert cfg.enumerate == "off" and cfg.sweep_operators and cfg.seed == 3
    assert config_from_args(_parser().parse_args(["run", "--model", "./m", "--dataset", "d.csv",
                                                  "--max-accuracy-loss", "0.01"])).max_accuracy_loss == 0.01


def test_bad_search_flag_stops_with_a_message(capsys) -> None:
    assert main(["run", "--model", "./m", "--dataset", "d.csv", "--fusions", "O9"]) == 2
    assert "--fusions O9 is not one of" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--rounds", "40"], "--rounds 40 is above max_rounds=30: lower rounds or raise max_rounds."),
    (["--max-rounds", "5"], "--max-rounds 5 is below rounds=10: raise max_rounds or lower rounds."),
])
def test_rounds_above_max_rounds_names_the_flag_typed(flags, message) -> None:
    # Found by tests/config/test_settings_fuzz.py: `--rounds 40` alone was refused as "max_rounds=30 is below ...".
    from opsearch.cli import config_from_args
    from opsearch.cli._main import _parser

    with pytest.raises(ConfigError) as info:
        config_from_args(_parser().parse_args(["run", "--model", "./m", "--dataset", "d.csv", *flags]))
    assert str(info.value) == message
    default = StudyConfig.default().max_rounds  # the default study's own, below 40
    with pytest.raises(ConfigError, match=f"^--rounds 40 is above max_rounds={default}"):
        config_from_args(_parser().parse_args(["run", "--rounds", "40"]))
