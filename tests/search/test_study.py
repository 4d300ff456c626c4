from __future__ import annotations

import os
import socket
from pathlib import Path

import optuna
import pytest
from conftest import fast_settings

from opsearch.config import StudyConfig
from opsearch.errors import StudyError
from opsearch.measure import LinearProbe, unpack_labels
from opsearch.quantize import QuantizationFailed
from opsearch.report import build_report
from opsearch.search import create_runner, resume_study, run_study
from opsearch.store import TrialRecord, cache_dir_for, load_existing

COMPLETE = optuna.trial.TrialState.COMPLETE


def _config(tmp_path: Path, model: Path, data: Path, **extra) -> StudyConfig:
    return StudyConfig(model=str(model), dataset=str(data), storage=f"sqlite:///{tmp_path / 'study.db'}",
                       study_name="tiny", **fast_settings(**extra))


def _snapshot(study: optuna.Study) -> dict[int, tuple]:
    """The trials that ran (queued presets not yet run are left out: a resume runs them next)."""
    return {t.number: (t.state, t.values, t.params, t.user_attrs) for t in study.get_trials()
            if t.state != optuna.trial.TrialState.WAITING}


def test_study_runs_trials_and_records_everything(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"])
    study = run_study(config, n_trials=3, progress=lambda line: None)
    assert study.metric_names == ["throughput", "accuracy_loss"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for key in ("opsearch_config", "search_space", "baseline", "machine", "versions", "threads", "data"):
        assert key in study.user_attrs, key
    assert StudyConfig.from_dict(study.user_attrs["opsearch_config"]) == config
    baseline = study.user_attrs["baseline"]
    assert 0 <= baseline["metrics"]["accuracy"] <= 1 and baseline["timing"]["throughput"] > 0

    trials = study.get_trials(states=(COMPLETE,))
    assert trials, [t.user_attrs.get("fail_reason") for t in study.trials]
    # The first trials are the starting points, labelled: INC's default first, the MatMuls with a constant weight.
    assert study.trials[0].user_attrs["preset"] == "dynamic: weight MatMuls only"
    assert study.trials[0].user_attrs["quantized_nodes"]["MatMul"] > 0
    for t in trials:
        attrs = t.user_attrs
        assert set(attrs) >= {"recipe", "graph_hash", "quantized_nodes", "metrics", "accuracy", "timing", "speedup"}
        assert t.values[1] == pytest.approx(baseline["metrics"]["accuracy"] - attrs["accuracy"])
        assert t.values[0] == pytest.approx(baseline["timing"]["throughput"] * attrs["timing"]["speedup"])
        assert config.rounds <= attrs["timing"]["rounds"] <= config.max_rounds
    # Trial models are removed once measured; the export stays cached next to the study.
    cache = cache_dir_for(config.resolved_storage(), "tiny")
    assert (cache / "fp32" / "model.onnx").is_file()
    assert not list((cache / "trials").glob("trial-*"))


def test_resume_adds_trials_and_keeps_the_old_ones(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    config = _config(tmp_path, tiny_checkpoint, tiny_csv)
    study = run_study(config, n_trials=2, progress=lambda line: None)
    before = _snapshot(study)
    export = cache_dir_for(config.resolved_storage(), "tiny") / "fp32" / "model.onnx"
    exported_at = export.stat().st_mtime_ns

    lines: list[str] = []
    resumed = resume_study(storage=config.resolved_storage(), study_name="tiny", n_trials=2, progress=lines.append)
    after = _snapshot(resumed)
    assert len(after) == len(before) + 2
    assert {n: after[n] for n in before} == before
    assert export.stat().st_mtime_ns == exported_at  # exported once per study, never again
    assert any("resuming 'tiny'" in line for line in lines)


def test_a_study_stored_before_the_floor_estimator_goes_on_with_the_median(tmp_path, tiny_checkpoint,
                                                                           tiny_csv) -> None:
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"])
    study = run_study(config, n_trials=1, progress=lambda line: None)
    done = {t.number for t in study.get_trials(states=(COMPLETE,))}
    assert done and all(study.trials[n].user_attrs["timing"]["estimator"] == "floor" for n in done)
    stored = dict(study.user_attrs["opsearch_config"])
    del stored["speedup_estimator"]  # as a study made before the setting existed holds it
    study.set_user_attr("opsearch_config", stored)

    resumed = resume_study(storage=config.resolved_storage(), study_name="tiny", n_trials=1,
                           progress=lambda line: None)
    new = [t for t in resumed.get_trials(states=(COMPLETE,)) if t.number not in done]
    assert new and all(t.user_attrs["timing"]["estimator"] == "median" for t in new)


def test_same_graph_is_measured_once(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"])
    runner = create_runner(config, progress=lambda line: None)
    # Transpose alone quantizes nothing, so the weight type cannot matter: both give one graph.
    for dtype in ("QInt8", "QUInt8"):
        runner.study.enqueue_trial({"op_Gather": False, "op_MatMul": False, "op_Transpose": True,
                                    "per_channel": False, "reduce_range": False, "weights_symmetric": True,
                                    "weights_dtype": dtype})
    # The presets come first in the queue; run them too.
    runner.optimize(len(runner.study.get_trials(states=(optuna.trial.TrialState.WAITING,))))
    first, second = [t for t in runner.study.trials if t.params.get("op_Transpose") and not t.params["op_MatMul"]
                     and not t.params["op_Gather"]]
    assert first.user_attrs["graph_hash"] == second.user_attrs["graph_hash"]
    assert second.user_attrs["same_graph_as"] == first.number
    assert second.values == first.values and second.user_attrs["timing"] == first.user_attrs["timing"]
    groups = build_report(runner.study).same_graph
    assert any(set(g.trials) >= {first.number, second.number} and "weights_dtype" in g.differing for g in groups)


def test_a_failing_configuration_fails_its_trial_and_the_study_goes_on(tmp_path, tiny_checkpoint, tiny_csv,
                                                                       monkeypatch) -> None:
    import opsearch.search._trial as trial_module

    real = trial_module.quantize
    calls = {"n": 0}

    def flaky(recipe, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise QuantizationFailed("injected: the quantizer rejected this recipe")
        return real(recipe, **kwargs)

    monkeypatch.setattr(trial_module, "quantize", flaky)  # patched here: the trial runs in this process
    study = run_study(_config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"], isolation="none"), n_trials=2,
                      progress=lambda line: None)
    failed, ok = [t for t in study.trials if t.state != optuna.trial.TrialState.WAITING]
    assert failed.state == optuna.trial.TrialState.FAIL
    assert "injected" in failed.user_attrs["fail_reason"]
    assert ok.state == COMPLETE


def test_existing_study_with_other_settings_is_refused(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"])
    study = run_study(config, n_trials=1, progress=lambda line: None)
    before = _snapshot(study)
    with pytest.raises(StudyError, match="already exists with other settings.*modes"):
        run_study(config.replace(modes=["static"]), n_trials=1, progress=lambda line: None)
    assert _snapshot(load_existing(config.resolved_storage(), "tiny")) == before


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_trial_left_running_by_a_dead_process_is_marked_failed(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"])
    study = run_study(config, n_trials=1, progress=lambda line: None)
    orphan = study.ask()  # stays RUNNING, as after a kill -9
    orphan.set_user_attr("worker", {"host": socket.gethostname(), "pid": _dead_pid()})
    from opsearch.search import SearchSpace

    space = SearchSpace.from_dict(study.user_attrs["search_space"])
    recipe = space.suggest(orphan)  # it had drawn its configuration before the process died
    orphan.set_user_attr("recipe", recipe.to_dict())  # as the runner stores it, once drawn whole
    orphan_params = study.trials[orphan.number].params
    resumed = resume_study(storage=config.resolved_storage(), study_name="tiny", n_trials=1,
                           progress=lambda line: None)
    swept = resumed.trials[orphan.number]
    assert swept.state == optuna.trial.TrialState.FAIL
    assert "interrupted" in swept.user_attrs["fail_reason"]
    assert len(resumed.get_trials(states=(COMPLETE,))) == 2  # exactly the one trial asked for was added
    # Queued again, behind the presets still waiting: it runs with the configuration it had drawn.
    (retry,) = [t for t in resumed.trials if t.user_attrs.get("retry_of") == orphan.number]
    drawn = retry.params if retry.state == COMPLETE else retry.system_attrs["fixed_params"]
    assert drawn == orphan_params


@pytest.mark.parametrize("storage", ["sqlite:///{}/s.db", "journal:{}/s.log"])
def test_two_processes_sweeping_one_orphan_at_once_fail_it_and_queue_it_once(tmp_path, monkeypatch,
                                                                             storage: str) -> None:
    # Two workers start together after a crash: both read the dead worker's trial as RUNNING before either
    # marks it failed. The second must step aside, neither crash on a finished trial nor queue it twice.
    from opsearch.search._open import sweep_interrupted
    from opsearch.store import open_storage

    study = optuna.create_study(storage=open_storage(storage.format(tmp_path)), study_name="s")
    orphan = study.ask()
    orphan.suggest_categorical("x", [1, 2])
    orphan.set_user_attr("recipe", {"mode": "dynamic"})  # drawn whole: a configuration to queue again
    orphan.set_user_attr("worker", {"host": socket.gethostname(), "pid": _dead_pid()})
    seen_by_second = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    lines: list[str] = []
    sweep_interrupted(study, lines.append, tmp_path)
    monkeypatch.setattr(study, "get_trials", lambda *args, **kwargs: seen_by_second)
    sweep_interrupted(study, lines.append, tmp_path)  # acts on what it read before the first one wrote
    monkeypatch.undo()
    assert study.trials[orphan.number].state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == orphan.number]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.WAITING
    assert len(lines) == 1


@pytest.mark.parametrize("worker", ["this process", "another host", "not yet recorded"])
def test_a_trial_a_live_worker_may_be_running_is_left_alone(tmp_path, tiny_checkpoint, tiny_csv, worker) -> None:
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"], remeasure_front=False)
    study = run_study(config, n_trials=1, progress=lambda line: None)
    running = study.ask()
    if worker != "not yet recorded":
        host = socket.gethostname() if worker == "this process" else "elsewhere"
        running.set_user_attr("worker", {"host": host, "pid": os.getpid() if worker == "this process" else 1})
    resumed = resume_study(storage=config.resolved_storage(), study_name="tiny", n_trials=1,
                           progress=lambda line: None)
    assert resumed.trials[running.number].state == optuna.trial.TrialState.RUNNING
    assert len(resumed.get_trials(states=(COMPLETE,))) == 2


def test_resume_of_a_missing_study_names_the_ones_there(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(storage=storage, study_name="other")
    with pytest.raises(StudyError, match="no study 'nope'.*other"):
        resume_study(storage=storage, study_name="nope")


def test_unwritable_storage_is_refused(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "file").write_text("")
    config = _config(tmp_path, tiny_checkpoint, tiny_csv).replace(storage=f"sqlite:///{locked / 'file' / 'x.db'}")
    with pytest.raises(StudyError, match="cannot write"):
        run_study(config, n_trials=1, progress=lambda line: None)


def test_embedding_study_fits_the_probe_once_and_reuses_it(tmp_path, tiny_encoder_checkpoint, tiny_csv,
                                                           monkeypatch) -> None:
    config = _config(tmp_path, tiny_encoder_checkpoint, tiny_csv, modes=["dynamic"])
    study = run_study(config, n_trials=1, progress=lambda line: None)
    assert study.user_attrs["task"] == "embedding"
    probe = study.user_attrs["probe"]
    assert probe["n_fit"] == config.probe_samples
    done = study.get_trials(states=(COMPLETE,))
    cosine = done[0].user_attrs["metrics"]["cosine_to_fp32"]
    assert 0.9 < cosine < 1.0  # quantization moved the embeddings, a little
    assert study.user_attrs["baseline"]["metrics"]["cosine_to_fp32"] == pytest.approx(1.0)

    def refit(*args, **kwargs):
        raise AssertionError("the probe was fitted again on resume")

    monkeypatch.setattr(LinearProbe, "fit", classmethod(refit))
    resumed = resume_study(storage=config.resolved_storage(), study_name="tiny", n_trials=1,
                           progress=lambda line: None)
    assert resumed.user_attrs["probe"] == probe
    assert len(resumed.get_trials(states=(COMPLETE,))) == 2


def test_front_is_remeasured_side_by_side_and_the_report_uses_it(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    from opsearch.search import front_trials

    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"])
    lines: list[str] = []
    study = run_study(config, n_trials=5, progress=lines.append)
    record = study.user_attrs["front_remeasured"]
    front = front_trials(study)
    assert set(record["trials"]) == {str(t.number) for t in front}
    assert config.rounds <= record["rounds"] <= config.max_rounds
    assert any(line.startswith("re-measuring the front") for line in lines)
    # The members were compared with each other: every re-timed trial is in exactly one tie group, fastest first.
    assert sorted(n for group in record["ties"] for n in group) == sorted(int(n) for n in record["trials"])
    speed = [record["trials"][str(group[0])]["speedup"] for group in record["ties"]]
    assert speed == sorted(speed, reverse=True)
    # Each trial kept its predictions, its loss's paired interval and the batch its accuracy belongs to.
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        measured = TrialRecord.of(t)
        low, high = measured.accuracy_loss_ci
        assert low <= measured.accuracy_loss <= high and measured.accuracy_batch_size == config.batch_size
        if measured.same_graph_as is None:  # a repeat shares its twin's measurements
            assert len(unpack_labels(measured.predictions)) == study.user_attrs["data"]["eval_rows"]
    rows = {r.trial: r for r in build_report(study).rows}
    for number, timing in record["trials"].items():
        row = rows[int(number)]
        assert row.remeasured and row.speedup == pytest.approx(timing["speedup"])
        reference = study.user_attrs["baseline"]["timing"]["throughput"]
        assert row.samples_per_s == pytest.approx(reference * timing["speedup"])
        # The trial's own record, measured during the study, is left as it was.
        assert study.trials[int(number)].user_attrs["timing"]["speedup"] != timing["speedup"]
    # However low the front session's numbers, a trial timed only at another moment does not join the front.
    slowed = {n: {**t, "speedup": t["speedup"] / 100} for n, t in record["trials"].items()}
    study.set_user_attr("front_remeasured", {**record, "trials": slowed})
    report = build_report(study)
    assert any(not r.remeasured for r in report.rows)  # there is a trial that could wrongly join
    assert report.front and all(r.remeasured for r in report.front)
    assert {r.trial for r in report.rows if r.pareto} <= {int(n) for n in slowed}


def test_resuming_on_another_machine_warns_and_times_fp32_first(tmp_path, tiny_checkpoint, tiny_csv,
                                                                monkeypatch) -> None:
    import opsearch.search._runner as runner_module

    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"], remeasure_front=False)
    study = run_study(config, n_trials=1, progress=lambda line: None)
    first_machine = study.trials[0].user_attrs["machine_id"]
    real = runner_module.fingerprint
    monkeypatch.setattr(runner_module, "fingerprint", lambda threads=None: {**real(threads), "cpu": "Other CPU"})
    lines: list[str] = []
    resumed = resume_study(storage=config.resolved_storage(), study_name="tiny", n_trials=1, progress=lines.append)
    warning = next(line for line in lines if line.startswith("WARNING: this study was measured on another machine"))
    assert "Other CPU" in warning
    assert lines.index(warning) < next(i for i, line in enumerate(lines) if "trial 1" in line)
    (baseline,) = resumed.user_attrs["baselines"]
    assert baseline["machine"]["cpu"] == "Other CPU" and baseline["timing"]["throughput"] > 0
    last = resumed.get_trials(states=(COMPLETE,))[-1]
    assert last.user_attrs["machine_id"] == baseline["machine_id"] != first_machine
    # A second resume on that machine does not warn again.
    lines.clear()
    resume_study(storage=config.resolved_storage(), study_name="tiny", n_trials=1, progress=lines.append)
    assert not any(line.startswith("WARNING: this study") for line in lines)


def test_fused_presets_run_and_constraints_are_recorded(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"], fusions=["none", "O2"],
                     max_accuracy_loss=0.005, remeasure_front=False, sweep_operators=True)
    runner = create_runner(config, progress=lambda line: None)
    assert runner.context.space.operators_for("O2", "dynamic") == ("Attention", "Gather", "MatMul")
    waiting = runner.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    names = [t.user_attrs["preset"] for t in waiting]
    assert "fusion only O2" in names and "sweep: Transpose alone" in names
    assert "dynamic: MatMul only / sweep: MatMul alone" in names
    runner.optimize(len(waiting))
    done = {t.user_attrs["preset"]: t for t in runner.study.get_trials(states=(COMPLETE,))}
    fused = done["fusion only O2"]
    assert fused.user_attrs["recipe"]["fusion"] == "O2" and fused.user_attrs["quantized_nodes"] == {}
    assert fused.user_attrs["accuracy_loss"] == pytest.approx(0.0, abs=0.02)
    for trial in done.values():
        assert trial.user_attrs["constraints"] == pytest.approx([trial.values[1] - 0.005])
        assert trial.constraints == {"accuracy_loss": pytest.approx(trial.values[1] - 0.005)}
    # The fused graph was made once, in the study's cache, and reused by every fused trial.
    assert (cache_dir_for(config.resolved_storage(), "tiny") / "fused" / "O2" / "model.onnx").is_file()


def test_small_space_is_enumerated_each_recipe_once(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"], trials=200)
    runner = create_runner(config, progress=lambda line: None)
    expected = [tuple(sorted(p.items())) for p in runner.context.space.enumerate_params()]
    assert len(expected) == runner.context.space.size() <= config.trials
    queued = [tuple(sorted(t.system_attrs["fixed_params"].items()))
              for t in runner.study.get_trials(states=(optuna.trial.TrialState.WAITING,))]
    assert sorted(queued) == sorted(expected)  # every recipe, presets included, exactly once
    # Resuming does not queue them again.
    again = create_runner(config, progress=lambda line: None)
    assert len(again.study.trials) == len(queued)
    assert create_runner(config.replace(trials=5, study_name="big"), progress=lambda line: None).study.trials[-1] \
        .user_attrs.get("preset")  # a space larger than the trials: presets only, no enumeration


def test_between_timings_this_process_keeps_one_fp32_session(tmp_path, tiny_checkpoint, tiny_csv,
                                                               monkeypatch) -> None:
    # Trials time fp32 in their own process: the study's process opens its extra timing sessions only to time.
    import gc
    import weakref

    import opsearch.search._context as context_module

    opened: list[weakref.ref] = []
    make_session = context_module.make_session

    def tracked(*args, **kwargs):
        session = make_session(*args, **kwargs)
        opened.append(weakref.ref(session))
        return session

    monkeypatch.setattr(context_module, "make_session", tracked)
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"], sessions_per_model=3)
    runner = create_runner(config, progress=lambda line: None)
    gc.collect()
    assert len(opened) == 3  # the baseline was timed over three fp32 sessions
    assert [ref() for ref in opened if ref() is not None] == [runner.context.fp32_session]
    with runner.context.fp32_timing_sessions() as sessions:
        assert len(sessions) == 3 and sessions[0] is runner.context.fp32_session
    gc.collect()
    assert sessions == []
    assert sum(ref() is not None for ref in opened) == 1


def test_a_three_objective_study_stores_each_value_by_name_resumes_and_reports(tmp_path, tiny_checkpoint,
                                                                               tiny_csv) -> None:
    from opsearch.report import render

    objectives = ["throughput", "accuracy_loss", "size", "p99"]
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["weight_only"], objectives=objectives)
    study = run_study(config, n_trials=2, progress=lambda line: None)
    ran = len([t for t in study.trials if t.state != optuna.trial.TrialState.WAITING])
    assert study.metric_names == objectives
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE", "MINIMIZE"]
    resumed = resume_study(storage=config.resolved_storage(), study_name="tiny", n_trials=2,
                           progress=lambda line: None)
    done = resumed.get_trials(states=(COMPLETE,))
    assert len([t for t in resumed.trials if t.state != optuna.trial.TrialState.WAITING]) == ran + 2
    assert len(done) >= 3
    assert [TrialRecord.of(t).preset for t in done[:2]] == ["weight-only: 4-bit MatMul",
                                                           "weight-only: 4-bit MatMul and embeddings"]
    baseline = resumed.user_attrs["baseline"]
    assert baseline["size_mb"] > 0 and baseline["timing"]["latency_ms"]["p99"] > 0
    for t in done:
        record = TrialRecord.of(t)
        throughput, loss, size, p99 = t.values
        assert size == pytest.approx(record.size_mb) and 0 < size < baseline["size_mb"]
        assert p99 == pytest.approx(record.timing["latency_ms"]["p99"])
        assert loss == pytest.approx(record.accuracy_loss)
        assert throughput == pytest.approx(baseline["timing"]["throughput"] * record.speedup)
    report = build_report(resumed)
    assert report.objectives == tuple(objectives)
    assert {r.trial for r in report.rows if r.pareto}  # a front over the four objectives
    assert all(r.size_mb > 0 and r.latency_p99_ms > 0 for r in report.rows)
    csv = render(report, None, "csv").splitlines()
    assert {"size_mb", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"} <= set(csv[0].split(","))


def test_a_study_searching_smoothing_measures_a_smoothed_recipe(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    """``smoothing`` searched: the study prepares calibration rows although it searches dynamic mode only, a
    configuration with a role smoothed runs as a trial, its recipe records the strength, and its graph is not the
    unsmoothed configuration's."""
    config = _config(tmp_path, tiny_checkpoint, tiny_csv, modes=["dynamic"], smoothing=[0.5])
    runner = create_runner(config, progress=lambda line: None)
    plain = {"op_Gather": False, "op_MatMul": True, "op_Transpose": False, "matmul_weights_only": True,
             "per_channel": False, "reduce_range": False, "weights_symmetric": True, "weights_dtype": "QInt8"}
    plain = runner.context.space.complete(plain)
    smoothed = {**plain, "smooth_ffn_out": 0.5, "smooth_qkv": 0.5}
    for params in (plain, smoothed):
        runner.study.enqueue_trial(params)
    runner.optimize(len(runner.study.get_trials(states=(optuna.trial.TrialState.WAITING,))))
    by_params = {tuple(sorted(t.params.items())): t for t in runner.study.get_trials(states=(COMPLETE,))}
    first, second = (by_params[tuple(sorted(p.items()))] for p in (plain, smoothed))
    assert TrialRecord.of(second).recipe["smoothing"] == [["ffn_out", 0.5], ["qkv", 0.5]]
    assert TrialRecord.of(first).recipe["smoothing"] == []
    assert TrialRecord.of(first).graph_hash != TrialRecord.of(second).graph_hash
    assert "smooth:ffn_out@0.5,qkv@0.5" in TrialRecord.of(second).label
