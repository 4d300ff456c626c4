from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import optuna
import pytest
from conftest import fast_settings

from opsearch.cli import main
from opsearch.errors import ConfigError


def _toml(path: Path, **settings) -> Path:
    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    path.write_text("\n".join(f"{k} = {value(v)}" for k, v in settings.items()) + "\n")
    return path


def test_inspect_json(tiny_checkpoint, capsys) -> None:
    assert main(["inspect", str(tiny_checkpoint), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ops = {o["op_type"]: o for o in data["operators"]}
    assert data["task"] == "classification"
    assert ops["MatMul"]["count"] > 0 and ops["MatMul"]["quantizable"]["dynamic"]
    assert not ops["Shape"]["quantizable"]["dynamic"]


def test_inspect_table(tiny_onnx, capsys) -> None:
    assert main(["inspect", str(tiny_onnx.onnx_path)]) == 0
    out = capsys.readouterr().out
    assert "MatMul" in out and "static_qdq" in out and "onnxruntime.quantization.registry" in out


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


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_hub_id_without_hub_fails_fast(env, monkeypatch, capsys) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    started = time.perf_counter()
    assert main(["inspect", "distilbert-base-uncased-finetuned-sst-2-english"]) == 2
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err
    assert "hub cannot be reached" in err and "local folder" in err


def test_help_explains_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("inspect", "run", "resume", "report", "plot"):
        assert command in out


# report and plot on a stored (fake) study: no model needed -----------------------------------------------------


@pytest.fixture(scope="module")
def fake_storage(tmp_path_factory) -> list[str]:
    from report_study import STUDY_NAME, make_study

    db = tmp_path_factory.mktemp("fake") / "study.db"
    make_study(db)
    return ["--storage", f"sqlite:///{db}", "--study-name", STUDY_NAME]


def test_report_json_flag_still_prints_the_front_as_a_list(fake_storage, capsys) -> None:
    from report_study import LISTED_FRONT

    assert main(["report", *fake_storage, "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert isinstance(front, list) and {r["trial"] for r in front} == LISTED_FRONT


@pytest.mark.parametrize("fmt", ["text", "markdown", "csv", "json"])
def test_report_formats_go_to_stdout_or_out(fake_storage, fmt, tmp_path, capsys) -> None:
    assert main(["report", *fake_storage, "--format", fmt, "--max-accuracy-loss", "0.01"]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "sub" / f"report.{fmt}"
    assert main(["report", *fake_storage, "--format", fmt, "--max-accuracy-loss", "0.01", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and str(out) in captured.err
    written = out.read_text()
    assert written.rstrip("\n") == printed.rstrip("\n")
    if fmt == "json":
        data = json.loads(written)
        assert data["best_feasible"] == 1 and data["effects"] and data["operator_matrix"]["trials"]
    elif fmt == "csv":
        assert len(list(csv.DictReader(written.splitlines()))) == 9
    elif fmt == "markdown":
        assert "## Operator and flag effects" in written and "best within 1.00 pt: trial 1" in written
    else:
        assert "best within 1.00 pt: trial 1" in written


def test_report_html_defaults_next_to_the_study(fake_storage, capsys) -> None:
    assert main(["report", *fake_storage, "--format", "html"]) == 0
    db = Path(fake_storage[1][len("sqlite:///"):])
    page = db.parent / f"{fake_storage[3]}-report.html"
    assert str(page) in capsys.readouterr().err
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_report_json_and_format_exclude_each_other(fake_storage, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["report", *fake_storage, "--json", "--format", "markdown"])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["report"], ["plot"], ["export", "--best"]])
def test_read_only_commands_refuse_a_bad_limit_naming_the_flag(fake_storage, command, tmp_path, capsys) -> None:
    out = [str(tmp_path / "model")] if command[0] == "export" else []
    for bad in ("-1", "1pt"):
        assert main([*command, *fake_storage, "--max-accuracy-loss", bad, *out]) == 2
        err = capsys.readouterr().err
        assert f"--max-accuracy-loss {bad}" in err and "0.01 for 1 point" in err and "Traceback" not in err
    assert not (tmp_path / "model").exists()


def test_report_takes_a_limit_relative_to_the_fp32_accuracy(fake_storage, capsys) -> None:
    # the run setting's own forms: a share of the study's fp32 accuracy names the same best trial as its fraction
    from opsearch.store import StudyRecord

    storage, name = fake_storage[1], fake_storage[3]
    baseline = StudyRecord.of(optuna.load_study(study_name=name, storage=storage)).baseline_accuracy
    assert main(["report", *fake_storage, "--format", "json", "--max-accuracy-loss", "0.01"]) == 0
    absolute = json.loads(capsys.readouterr().out)
    share = f"{100 * 0.01 / baseline:.6f}%rel"
    assert main(["report", *fake_storage, "--format", "json", "--max-accuracy-loss", share]) == 0
    relative = json.loads(capsys.readouterr().out)
    assert relative["best_feasible"] == absolute["best_feasible"] == 1
    assert relative["max_accuracy_loss"] == pytest.approx(0.01, rel=1e-5)


@pytest.mark.parametrize(("flags", "suffix"), [(["--html"], ".html"), ([], ".png")])
def test_plot_defaults(fake_storage, flags, suffix, capsys) -> None:
    assert main(["plot", *fake_storage, *flags]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out.suffix == suffix and out.name.startswith(fake_storage[3])
    data = out.read_bytes()
    if suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert data.lstrip().lower().startswith(b"<!doctype html>") and b"plotly.js v" in data


def test_plot_html_from_suffix_with_effects_and_limit(fake_storage, tmp_path, capsys) -> None:
    pareto, effects = tmp_path / "pareto.html", tmp_path / "effects.png"
    assert main(["plot", *fake_storage, "--out", str(pareto), "--effects", str(effects), "--max-accuracy-loss",
                 "0.01", "--y", "throughput"]) == 0
    assert capsys.readouterr().out.split() == [str(pareto), str(effects)]
    text = pareto.read_text()
    assert "best within limit (#1)" in text and "throughput (samples" in text
    assert effects.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
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


def test_sensitivity_enqueue_needs_a_trial(fake_storage, capsys) -> None:
    recipe = '{"mode": "dynamic", "operators_to_quantize": ["MatMul"]}'
    assert main(["sensitivity", *fake_storage, "--recipe", recipe, "--enqueue"]) == 2
    assert "give --trial N" in capsys.readouterr().err


def test_remeasure_of_a_study_opsearch_did_not_make_is_refused(tmp_path, capsys) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(storage=storage, study_name="foreign")
    assert main(["remeasure", "--storage", storage, "--study-name", "foreign"]) == 2
    err = capsys.readouterr().err
    assert "was not made by opsearch" in err and "Traceback" not in err


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
    with pytest.raises(ConfigError, match="^--rounds 40 is above max_rounds=20"):  # the default study's
        config_from_args(_parser().parse_args(["run", "--rounds", "40"]))
